"""Issue 18's speed figures, all from one run: the local bus and the streaming publish.

Run with ``python -m bench.localbus`` (``--smoke`` for a few seconds of tiny sizes;
``--save LABEL`` keeps the raw figures as ``bench/results/localbus/<date>-LABEL.json``).
Three parts, each on freshly started standalone hubs (``python -m ssehub serve``) and the load
generator of ``bench.run``:

1. **--workers 2 vs 1, in memory** (W1: one channel, S subscribers, P publisher connections,
   ``--events`` events), publishing with a request per event and with the streaming publish.
   The figure is server CPU per delivery: the CPU seconds of every hub process (the
   supervisor, whose sequencer is the bus, and the workers) over the events received by all
   subscribers. Target: 2 workers within 1.15x of 1. It also prints write system calls per
   delivery (as part 1b): run as fast as each goes, one saturated process puts many events in
   each write, so the ratio here mostly measures how much more each setup coalesces.
   Part 1b runs 1 and 2 workers at one paced rate (``--paced-rate``, one publisher, a request
   per event, the W3 load generator), where both keep up: once writes coalesce, CPU per
   delivery depends on load, and part 1 lets each setup run as fast as it can, so one process,
   faster, coalesces more. At one rate the two compare like with like. It also prints the
   write system calls of all hub processes per delivery: 1 when each event costs a write per
   subscriber, less as writes carry several events.
   Part 1c isolates the bus: 1 and 2 workers at each paced rate with ``--bus-subscribers``
   subscribers (8: almost no fan-out, yet both workers have some, as they do at S: with 2,
   both landed on one worker half the time and the other's intake went unmeasured), so the
   extra CPU per event of 2 workers is the bus's (the worker's hop to the sequencer, the
   sequencer, and each worker's intake); the sequencer's share (the supervisor's CPU) is
   printed apart. Over S subscribers that is ``bus / S`` per delivery, printed against part
   1b's one-process CPU per delivery at the same rate when part 1b ran.
2. **Streaming publish vs a request per event**, one publisher into one channel (W1 with
   ``--stream-subscribers`` subscribers and 1 publisher connection): events published per
   second (delivered events/s over the subscribers). Target: at least 3x.
3. **W4** (``--w4-channels`` channels with one subscriber each, events to random channels):
   ssehub with the streaming publish (1 and 2 workers) and with a request per event, against
   the bare asyncio baseline (a request per event: it has no streaming publish). Target: ssehub
   at least 1.0x bare.

**Projection to 4, 8 and 16 cores** (part 1's figures). Let ``C1`` be the CPU per event of one
process (S deliveries and the publish), ``W2`` the workers' CPU per event with 2 workers and
``Q2`` the supervisor's (the sequencer). The bus costs each worker ``b = (W2 - C1) / 2`` per
event (receiving and dispatching every event, and the publishing worker's round trip), and the
sequencer ``q = Q2 / 2`` per event per worker it feeds (it writes each event to every worker;
counting all of its cost as per worker is the pessimistic reading). With N workers, the CPU per
event is ``C1 + N (b + q)``, so per delivery it is that over S, and the ratio to one process
``(C1 + N (b + q)) / C1``. The events/s N cores can carry: ``N / (C1 + N (b + q))`` (every core
busy, the load generator elsewhere), but never more than the sequencer's one core allows,
``1 / (N q)``. Assumptions: costs linear in N, subscribers spread evenly, no contention for
memory bandwidth; a machine shared with other work makes every figure noisy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import config as C
from bench.redis_workers import wait_for_workers
from bench.run import Server, measure_channels, measure_fanout, measure_latency

HUB = ("{python}", "-m", "ssehub", "serve", "--host", "{host}", "--port", "{port}")
MODES = {"request": "a request per event", "stream": "streaming"}


def spec(workers: int, stream: bool = False) -> C.ServerSpec:
    """The standalone hub with ``workers`` processes (in memory), publishing streamed or not."""
    argv = HUB + (("--workers", str(workers)) if workers > 1 else ())
    name = f"ssehub --workers {workers}" + (", streaming publish" if stream else "")
    key = f"memory-{workers}" + ("-stream" if stream else "")
    return C.ServerSpec(key, name, argv, stream_publish=stream)


def bare_spec() -> C.ServerSpec:
    """The bare asyncio baseline of ``python -m bench``."""
    return next(s for s in C.SERVERS if s.key == "bare")


def _runs_on_one_hub(
    server_spec: C.ServerSpec, workers: int, runs: int, measure: Callable[[Server], dict[str, Any]]
) -> list[dict[str, Any]]:
    """``runs`` measurements on one fresh hub, each with the supervisor's CPU apart and the
    write system calls of all its processes (``server_writes``: to clients and to the bus,
    the run's connections and answers included)."""
    server = Server(server_spec)
    server.start()
    try:
        wait_for_workers(server, workers)
        server.warm_up()
        out = []
        for _ in range(runs):
            processes = server.processes()
            root = processes[0]
            before = sum(root.cpu_times()[:2])
            writes = _writes(processes)
            result = measure(server)
            result["supervisor_cpu_s"] = sum(root.cpu_times()[:2]) - before if workers > 1 else 0
            result["server_writes"] = _writes(processes) - writes
            out.append(result)
        return out
    finally:
        server.stop()


def _writes(processes: list[Any]) -> int:
    """Write system calls made so far by ``processes`` (psutil's ``io_counters``)."""
    return sum(p.io_counters().write_count for p in processes)


def fanout(
    server_spec: C.ServerSpec, workers: int, subscribers: int, publishers: int, runs: int
) -> list[dict[str, Any]]:
    """``runs`` W1 runs on one fresh hub, each with the supervisor's CPU apart."""
    return _runs_on_one_hub(
        server_spec, workers, runs, lambda s: measure_fanout(s, subscribers, publishers)
    )


def paced(
    server_spec: C.ServerSpec, workers: int, subscribers: int, rate: int, runs: int
) -> list[dict[str, Any]]:
    """``runs`` W3-style runs (one publisher, ``rate`` events/s for W3_SECONDS) on one fresh hub:
    the same load for 1 and 2 workers, so their CPU per delivery compares like with like."""
    return _runs_on_one_hub(
        server_spec, workers, runs, lambda s: measure_latency(s, subscribers, rate)
    )


def channels(
    server_spec: C.ServerSpec, count: int, runs: int, workers: int = 1
) -> list[dict[str, Any]]:
    """``runs`` W4 runs on one fresh server."""
    server = Server(server_spec)
    server.start()
    try:
        wait_for_workers(server, workers)
        return [measure_channels(server, count) for _ in range(runs)]
    finally:
        server.stop()


def _median(results: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in results)


def _complete(results: list[dict[str, Any]]) -> bool:
    return all(r["complete"] and r.get("verified") is not False for r in results)


def projection(
    one: list[dict[str, Any]], two: list[dict[str, Any]], subscribers: int
) -> dict[str, Any]:
    """The cost model of the module docstring, from part 1's medians."""
    events_1 = _median(one, "events")
    c1 = max(1e-9, _median(one, "server_cpu_s") / events_1)
    q2 = _median(two, "supervisor_cpu_s") / events_1
    w2 = _median(two, "server_cpu_s") / events_1 - q2
    b = max(0.0, (w2 - c1) / 2)
    q = q2 / 2
    rows = {}
    for n in (1, 2, 4, 8, 16):
        per_event = c1 + (n * (b + q) if n > 1 else 0.0)
        rate = n / per_event
        if n > 1 and q > 0:
            rate = min(rate, 1 / (n * q))
        rows[n] = {
            "cpu_per_delivery_us": per_event / subscribers * 1e6,
            "vs_one_process": per_event / c1,
            "events_per_s": rate,
            "deliveries_per_s": rate * subscribers,
        }
    return {"c1_us": c1 * 1e6, "b_us": b * 1e6, "q_us": q * 1e6, "cores": rows}


Results = list[dict[str, Any]]


def _cpu_per_delivery(results: Results) -> float:
    """Server CPU microseconds per delivery (medians over the runs)."""
    return _median(results, "server_cpu_s") / _median(results, "received") * 1e6


def _writes_per_delivery(results: Results) -> float:
    """Write system calls of all hub processes per delivery (medians over the runs): 1 when
    every event costs a write per subscriber, less as writes carry several events."""
    return _median(results, "server_writes") / max(1.0, _median(results, "received"))


def run_part1(args: argparse.Namespace, raw: dict[str, Any]) -> list[Results]:
    """--workers 2 vs 1, each as fast as it goes, and the projection from it."""
    subs, pubs, runs = args.subscribers, args.publishers, args.runs
    print(f"# part 1: W1 {subs} subscribers, {pubs} publishers, 1 and 2 workers", file=sys.stderr)
    part1 = {
        (mode, n): fanout(spec(n, stream=mode == "stream"), n, subs, pubs, runs)
        for mode in ("request", "stream")
        for n in (1, 2)
    }
    raw["workers"] = {f"{mode}-{n}": results for (mode, n), results in part1.items()}
    print(f"\n**--workers 2 vs 1, in memory** (W1, {subs} subscribers, {pubs} publishers)\n")
    print(
        "| publish | workers | delivered events/s | server CPU s | CPU per delivery "
        "| writes per delivery | complete |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for mode in ("request", "stream"):
        per = {}
        for n in (1, 2):
            results = part1[mode, n]
            per[n] = _cpu_per_delivery(results)
            print(
                f"| {MODES[mode]} | {n} | {_median(results, 'rate'):,.0f} "
                f"| {_median(results, 'server_cpu_s'):.2f} | {per[n]:.3f} us "
                f"| {_writes_per_delivery(results):.3f} "
                f"| {'yes' if _complete(results) else 'NO'} |"
            )
        # At smoke sizes the CPU time may read 0 (its clock ticks are 10 ms).
        raw["ratios"][f"workers2_cpu_per_delivery_{mode}"] = (
            per[2] / per[1] if per[1] else float("nan")
        )
    print()
    for mode in ("request", "stream"):
        ratio = raw["ratios"][f"workers2_cpu_per_delivery_{mode}"]
        print(f"CPU per delivery, 2 workers / 1, {MODES[mode]}: **{ratio:.2f}x** (target: 1.15x)")
    models = {mode: projection(part1[mode, 1], part1[mode, 2], subs) for mode in MODES}
    raw["projection"] = models
    print("\nProjection (the model in bench/localbus.py's docstring), per publish mode:\n")
    for mode, model in models.items():
        print(
            f"- {MODES[mode]}: C1 = {model['c1_us']:.1f} us/event, b = {model['b_us']:.1f} "
            f"us/event/worker, q = {model['q_us']:.2f} us/event/worker"
        )
    print("\n| cores = workers | publish | CPU per delivery | vs 1 process | deliveries/s |")
    print("|---:|---|---:|---:|---:|")
    for n in (1, 2, 4, 8, 16):
        for mode, model in models.items():
            row = model["cores"][n]
            print(
                f"| {n} | {MODES[mode]} | {row['cpu_per_delivery_us']:.3f} us "
                f"| {row['vs_one_process']:.2f}x | {row['deliveries_per_s']:,.0f} |"
            )
    return list(part1.values())


def _paced_rates(args: argparse.Namespace) -> list[int]:
    """The rates of --paced-rate (0 for none)."""
    return [int(r) for r in str(args.paced_rate).split(",") if int(r) > 0]


def _paced_pairs(
    args: argparse.Namespace, subscribers: int, part: str
) -> dict[tuple[int, int], Results]:
    """1 and 2 workers at each rate of --paced-rate with ``subscribers`` subscribers, keyed by
    (rate, workers); empty when --paced-rate is 0."""
    rates = _paced_rates(args)
    if rates:
        print(
            f"# part {part}: {','.join(map(str, rates))}/s paced, 1 and 2 workers, "
            f"{subscribers} subscribers",
            file=sys.stderr,
        )
    return {
        (rate, n): paced(spec(n), n, subscribers, rate, args.runs) for rate in rates for n in (1, 2)
    }


def run_part1b(args: argparse.Namespace, raw: dict[str, Any]) -> list[Results]:
    """--workers 2 vs 1 at each paced rate of --paced-rate."""
    subs = args.subscribers
    part1b = _paced_pairs(args, subs, "1b")
    if not part1b:
        return []
    rates = _paced_rates(args)
    raw["paced"] = {f"{rate}-{n}": results for (rate, n), results in part1b.items()}
    print(
        f"\n**--workers 2 vs 1 at one load**: events/s from one publisher (a request per "
        f"event), {subs} subscribers; sustained = at least {C.W3_SUSTAINED:.0%} of the rate "
        "published\n"
    )
    print(
        "| rate /s | workers | published events/s | sustained | CPU per delivery "
        "| writes per delivery | p99 ms | complete |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---|")
    for rate in rates:
        per = {}
        for n in (1, 2):
            results = part1b[rate, n]
            per[n] = _cpu_per_delivery(results)
            reached = _median(results, "publish_rate")
            print(
                f"| {rate} | {n} | {reached:,.1f} "
                f"| {'yes' if reached >= C.W3_SUSTAINED * rate else 'no'} "
                f"| {per[n]:.3f} us "
                f"| {_writes_per_delivery(results):.3f} "
                f"| {_median(results, 'p99_ms'):.2f} "
                f"| {'yes' if _complete(results) else 'NO'} |"
            )
        raw["ratios"][f"workers2_cpu_per_delivery_paced_{rate}"] = (
            per[2] / per[1] if per[1] else float("nan")
        )
    print()
    for rate in rates:
        ratio = raw["ratios"][f"workers2_cpu_per_delivery_paced_{rate}"]
        print(f"CPU per delivery, 2 workers / 1, at {rate}/s: **{ratio:.2f}x** (target: 1.15x)")
    return list(part1b.values())


def run_part2(args: argparse.Namespace, raw: dict[str, Any]) -> list[Results]:
    """Streaming publish against a request per event, one publisher into one channel."""
    ss, runs = args.stream_subscribers, args.runs
    print(f"# part 2: one publisher, {ss} subscribers", file=sys.stderr)
    per_request = fanout(spec(1), 1, ss, 1, runs)
    streamed = fanout(spec(1, stream=True), 1, ss, 1, runs)
    raw["publish"] = {"request": per_request, "stream": streamed}
    published = [_median(results, "rate") / ss for results in (per_request, streamed)]
    print(f"\n**One publisher into one channel** ({ss} subscribers)\n")
    print("| publish | events/s | complete |")
    print("|---|---:|---|")
    for label, results, value in (
        ("a request per event", per_request, published[0]),
        ("streaming (NDJSON)", streamed, published[1]),
    ):
        print(f"| {label} | {value:,.0f} | {'yes' if _complete(results) else 'NO'} |")
    raw["ratios"]["stream_vs_request"] = ratio = published[1] / published[0]
    print(f"\nStreaming / per request: **{ratio:.2f}x** (target: 3x)")
    return [per_request, streamed]


def run_part3(args: argparse.Namespace, raw: dict[str, Any]) -> list[Results]:
    """W4: the streaming publish (1 and 2 workers) and a request per event, against bare."""
    count, runs = args.w4_channels, args.runs
    print(f"# part 3: W4 {count} channels, streaming publish vs bare", file=sys.stderr)
    w4 = {
        "stream": channels(spec(1, stream=True), count, runs),
        "request": channels(spec(1), count, runs),
        "workers2-stream": channels(spec(2, stream=True), count, runs, workers=2),
        "bare": channels(bare_spec(), count, runs),
    }
    raw["w4"] = w4
    bare = _median(w4["bare"], "rate")
    print(f"\n**W4** ({count} channels x 1 subscriber)\n")
    print("| server | delivered events/s | vs bare | complete |")
    print("|---|---:|---:|---|")
    for label, key in (
        ("ssehub, streaming publish", "stream"),
        ("ssehub --workers 2, streaming publish", "workers2-stream"),
        ("ssehub, a request per event", "request"),
        ("bare asyncio baseline (a request per event)", "bare"),
    ):
        value = _median(w4[key], "rate")
        print(
            f"| {label} | {value:,.0f} | {value / bare:.2f}x "
            f"| {'yes' if _complete(w4[key]) else 'NO'} |"
        )
    for key in ("stream", "workers2-stream", "request"):
        raw["ratios"][f"w4_{key.replace('-', '_')}_vs_bare"] = _median(w4[key], "rate") / bare
    print(
        f"\nssehub streaming / bare: **{raw['ratios']['w4_stream_vs_bare']:.2f}x** "
        "(target: at least 1.0x)"
    )
    return list(w4.values())


def run_part1c(args: argparse.Namespace, raw: dict[str, Any]) -> list[Results]:
    """The bus's own CPU per event: 1 and 2 workers at each paced rate, with almost no
    subscribers."""
    few = args.bus_subscribers
    part1c = _paced_pairs(args, few, "1c")
    if not part1c:
        return []
    rates = _paced_rates(args)
    raw["bus"] = {f"{rate}-{n}": results for (rate, n), results in part1c.items()}
    subs = args.subscribers
    print(
        f"\n**The bus's own cost** ({few} subscribers, a request per event): server CPU per "
        f"event with 1 and 2 workers; the difference over {subs} subscribers is what the bus "
        "adds per delivery\n"
    )
    print(
        "| rate /s | CPU per event, 1 worker | 2 workers | of which the sequencer "
        f"| bus per event | bus per delivery at {subs} | vs 1 worker's CPU per delivery "
        "(part 1b) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in rates:
        # Every subscriber receives every event: events = received / subscribers.
        events = {n: _median(part1c[rate, n], "received") / few for n in (1, 2)}
        per_event = {n: _median(part1c[rate, n], "server_cpu_s") / events[n] * 1e6 for n in (1, 2)}
        sequencer = _median(part1c[rate, 2], "supervisor_cpu_s") / events[2] * 1e6
        raw["ratios"][f"sequencer_us_per_event_paced_{rate}"] = sequencer
        bus = per_event[2] - per_event[1]
        share = ""
        paced_one = raw.get("paced", {}).get(f"{rate}-1")
        if paced_one:
            share = f"{bus / subs / _cpu_per_delivery(paced_one):.1%}"
            raw["ratios"][f"bus_share_paced_{rate}"] = bus / subs / _cpu_per_delivery(paced_one)
        print(
            f"| {rate} | {per_event[1]:.1f} us | {per_event[2]:.1f} us | {sequencer:.1f} us "
            f"| {bus:.1f} us | {bus / subs:.3f} us | {share} |"
        )
    return list(part1c.values())


PARTS = {"1": run_part1, "1b": run_part1b, "1c": run_part1c, "2": run_part2, "3": run_part3}


def main(argv: list[str] | None = None) -> int:
    """Measure the parts asked for and print their tables; exit 1 if a run lost events."""
    parser = argparse.ArgumentParser(prog="python -m bench.localbus", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--events", type=int, default=4000, help="events per W1 run (part 1)")
    parser.add_argument("--stream-subscribers", type=int, default=10)
    parser.add_argument("--w4-channels", type=int, default=C.W4_CHANNELS)
    parser.add_argument(
        "--paced-rate",
        default="150",
        metavar="R,R",
        help="part 1b: 1 and 2 workers at each of these publish rates (one publisher, a "
        "request per event), where both keep up; 0 skips it",
    )
    parser.add_argument(
        "--bus-subscribers", type=int, default=8, help="part 1c: subscribers (almost none)"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="which parts to run, e.g. 1b (default: all)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument(
        "--save", metavar="LABEL", help="keep the raw figures in bench/results/localbus/"
    )
    args = parser.parse_args(argv)
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    if args.smoke:
        args.subscribers, args.w4_channels, args.runs, args.events = 20, 20, 1, 200
    # Part 1's runs publish --events events (W1's default is fewer for 1,000 subscribers: too
    # short a run for a CPU figure).
    C.W1_DELIVERIES = args.events * args.subscribers
    C.W1_MAX_EVENTS = max(C.W1_MAX_EVENTS, args.events)
    print(f"# {os.cpu_count()} cores; runs per figure: {args.runs}", file=sys.stderr)
    raw: dict[str, Any] = {"cores": os.cpu_count(), "runs": args.runs, "args": vars(args)}
    raw["ratios"] = {}
    everything: list[Results] = []
    for part in parts:
        everything += PARTS[part](args, raw)
    if args.save:
        date = datetime.date.today().isoformat()
        # Apart from `python -m bench`'s files, whose format tests/test_bench_checks.py checks.
        path = Path(__file__).resolve().parent / "results" / "localbus" / f"{date}-{args.save}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(raw, indent=1, default=str) + "\n")
        print(f"\n# saved {path}", file=sys.stderr)
    return 0 if all(_complete(results) for results in everything) else 1


if __name__ == "__main__":
    sys.exit(main())
