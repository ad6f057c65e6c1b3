"""Latency on an idle server: one event at a time to a small fan-out, against the bare baseline.

Run with ``python -m bench.idle_latency`` (``--smoke`` for a few seconds). W3 measures latency
under a paced load of 1,000 subscribers; this measures what a chat-like app sees most of the
time: an event published while nothing else is happening, to 1, 10 or 100 subscribers. With
``--subscribers 0`` it measures the publish path alone: the answer's latency and the server's
CPU per publish (a request per event, one in flight).

One process and one thread hold every connection (so one clock stamps both ends): S
subscribers of one channel on raw sockets and one keep-alive publisher connection. Each
iteration stamps the time, sends one ``POST`` (a request per event), and waits until every
subscriber has the event and the answer has arrived, then pauses ``--pause-ms`` so the server
is idle again. The latency of a delivery is from just before the request was sent to the
moment its subscriber's socket returned the event; "answer" is the same for the publisher's
response; "server CPU" is the CPU time (user + system) of the server's processes over the run,
per event. Servers run alternately (``--runs`` rounds), each freshly started as ``python -m
bench`` starts it; the figures are medians over the rounds of each run's p50 and p99.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import selectors
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import config as C
from bench.run import Server

_HEAD_END = b"\r\n\r\n"


def _subscribe(port: int, path: str) -> socket.socket:
    sock = socket.create_connection((C.HOST, port), timeout=10)
    sock.sendall(b"GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path.encode())
    head = b""
    while _HEAD_END not in head:
        part = sock.recv(65536)
        if not part:
            raise RuntimeError("the server closed a stream before its head")
        head += part
    sock.setblocking(False)
    return sock


def _answered(data: bytes) -> bool:
    """Whether ``data`` holds a whole response (head and Content-Length body)."""
    head, found, body = data.partition(_HEAD_END)
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


def _quantile(values: list[int], q: float) -> float:
    """The ``q`` quantile of nanosecond figures, in microseconds."""
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))] / 1000


def _cpu_seconds(server: Server) -> float:
    """CPU time of the server's processes: from the scheduler's nanosecond count on Linux
    (psutil's clock ticks are 10 ms, too coarse for a few thousand publishes), else psutil."""
    try:
        return sum(
            int(Path(f"/proc/{p.pid}/schedstat").read_text().split()[0]) / 1e9
            for p in server.processes()
        )
    except (OSError, ValueError, IndexError):
        return server.cpu()


def _us(value: float | None) -> str:
    return "      -" if value is None else f"{value:7.1f}"


def _ratio(value: float | None, bare: float | None) -> str:
    return "" if value is None or not bare else f"{value / bare:.2f}x"


def measure(server: Server, subscribers: int, iterations: int, pause_s: float) -> dict[str, Any]:
    """One run: ``iterations`` events, one at a time, to ``subscribers`` raw streams."""
    path = "/events/idle-latency"
    subs = [_subscribe(server.port, path) for _ in range(subscribers)]
    pub = socket.create_connection((C.HOST, server.port), timeout=10)
    pub.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pub.setblocking(False)
    sel = selectors.DefaultSelector()
    for sock in subs:
        sel.register(sock, selectors.EVENT_READ)
    sel.register(pub, selectors.EVENT_READ)
    time.sleep(0.2)  # every stream registered and its first bytes (retry, keep-alive) sent
    for sock in subs:
        try:
            while sock.recv(65536):
                pass
        except BlockingIOError:
            pass
    deliveries: list[int] = []
    answers: list[int] = []
    cpu_before = _cpu_seconds(server)
    try:
        for i in range(iterations):
            marker = b"i%d-" % i
            body = b'{"data": "%s"}' % marker
            request = (
                b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
            )
            tails = dict.fromkeys(subs, b"")
            answer = b""
            answered = False
            deadline = time.monotonic() + 10
            start = time.perf_counter_ns()
            pub.send(request)
            while tails or not answered:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"event {i}: not delivered within 10 s")
                for key, _ in sel.select(1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    now = time.perf_counter_ns() - start
                    if not data:
                        raise RuntimeError("the server closed a connection")
                    if sock is pub:
                        answer += data
                        if _answered(answer):
                            answered = True
                            answers.append(now)
                            if not answer.startswith(b"HTTP/1.1 2"):
                                raise RuntimeError(f"publish refused: {answer[:200]!r}")
                    elif sock in tails:
                        seen = tails[sock] + data
                        if marker in seen:
                            del tails[sock]
                            deliveries.append(now)
                        else:
                            tails[sock] = seen[-64:]
            time.sleep(pause_s)
        cpu = _cpu_seconds(server) - cpu_before
    finally:
        sel.close()
        pub.close()
        for sock in subs:
            sock.close()
    return {
        "subscribers": subscribers,
        "iterations": iterations,
        "delivered": len(deliveries),
        "p50_us": _quantile(deliveries, 0.5) if deliveries else None,
        "p99_us": _quantile(deliveries, 0.99) if deliveries else None,
        "answer_p50_us": _quantile(answers, 0.5),
        "cpu_us_per_event": cpu / iterations * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every server at every size and print one table per size."""
    parser = argparse.ArgumentParser(prog="python -m bench.idle_latency", description=__doc__)
    parser.add_argument("--servers", default="ssehub,bare", help="keys from bench/config.py")
    parser.add_argument(
        "--subscribers", default="0,1,10,100", metavar="N,N", help="0: the publish path alone"
    )
    parser.add_argument("--iterations", type=int, default=2000, help="events per run")
    parser.add_argument("--pause-ms", type=float, default=2.0, help="idle time between events")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run")
    parser.add_argument(
        "--save", metavar="LABEL", help="keep the raw figures in bench/results/idle/"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.subscribers, args.iterations, args.runs = "0,1,3", 50, 1
    keys = args.servers.split(",")
    specs = [next(s for s in C.SERVERS if s.key == key) for key in keys]
    sizes = [int(n) for n in args.subscribers.split(",")]
    print(
        f"# {args.iterations} events per run, {args.pause_ms} ms apart; runs: {args.runs}",
        file=sys.stderr,
    )
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n in sizes:
        for _ in range(args.runs):
            for spec in specs:
                server = Server(spec)
                server.start()
                try:
                    result = measure(server, n, args.iterations, args.pause_ms / 1000)
                finally:
                    server.stop()
                results.setdefault((spec.key, n), []).append(result)
                print(
                    f"  {n} subs  {spec.name:36} p50 {_us(result['p50_us'])} us  "
                    f"p99 {_us(result['p99_us'])} us  answer {_us(result['answer_p50_us'])} us  "
                    f"server CPU {_us(result['cpu_us_per_event'])} us/event",
                    file=sys.stderr,
                )
    fields = ("p50_us", "p99_us", "answer_p50_us", "cpu_us_per_event")
    for n in sizes:
        print(f"\n**One event at a time to {n} subscriber(s)** (medians of {args.runs} runs)\n")
        print(
            "| server | p50 us | p99 us | answer p50 us | server CPU us / event "
            "| p50 vs bare | p99 vs bare | answer vs bare | CPU vs bare |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

        def median(key: str, field: str, n: int = n) -> float | None:
            values = [r[field] for r in results[key, n] if r[field] is not None]
            return statistics.median(values) if values else None

        for spec in specs:
            ratios = [""] * len(fields)
            if "bare" in keys:
                ratios = [_ratio(median(spec.key, f), median("bare", f)) for f in fields]
            figures = " | ".join(_us(median(spec.key, f)).strip() for f in fields)
            print(f"| {spec.name} | {figures} | {' | '.join(ratios)} |")
    if args.save:
        date = datetime.date.today().isoformat()
        path = Path(__file__).resolve().parent / "results" / "idle" / f"{date}-{args.save}.json"
        path.parent.mkdir(exist_ok=True)
        raw = {
            "cores": os.cpu_count(),
            "args": vars(args),
            "results": {f"{key}-{n}": runs for (key, n), runs in results.items()},
        }
        path.write_text(json.dumps(raw, indent=1) + "\n")
        print(f"\n# saved {path}", file=sys.stderr)
    return 0  # a run that missed an event raised already (measure's 10 s bound)


if __name__ == "__main__":
    sys.exit(main())
