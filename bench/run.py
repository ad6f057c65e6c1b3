"""The benchmark driver: start each server under test, run the workloads, print one table.

``python -m bench`` from the repository root. Every size and time is in `bench.config`.
Servers run as subprocesses on free loopback ports; the load generators (`bench.loadgen`) run
as processes of their own, and the driver only starts them, reads the server's RSS and CPU time
from outside (psutil), and collects what they report.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import re
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench import config as C
from bench.loadgen import raise_nofile_limit

RESULTS = Path(__file__).resolve().parent / "results"
"""Raw results kept in the repository (``--save LABEL``), one JSON file per full run."""
LOGS = RESULTS / "logs"
"""Server logs of the last run (ignored by git)."""


class BenchError(RuntimeError):
    """A server or a load generator misbehaved; the measurement is void."""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((C.HOST, 0))
        return int(s.getsockname()[1])


def available(spec: C.ServerSpec) -> str | None:
    """None when the server can run here, else why not."""
    if str(C.SRC) not in sys.path:
        sys.path.insert(0, str(C.SRC))
    for module in spec.requires:
        try:
            found = importlib.util.find_spec(module)
        except ImportError:
            found = None
        if found is None:
            return f"{module} is not importable yet"
    return None


@dataclass
class Server:
    """A server under test, running as a subprocess on a free loopback port."""

    spec: C.ServerSpec
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    data: Path | None = None  # the --data directory of a durable server (removed at stop)

    def start(self) -> None:
        """Start it and wait until it accepts connections and answers a subscribe."""
        self.port = free_port()
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log = LOGS / f"server-{self.spec.key}.log"
        argv = self.spec.command(self.port)
        if self.spec.data:
            self.data = Path(tempfile.mkdtemp(prefix=f"bench-{self.spec.key}-"))
            argv += ["--data", str(self.data)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=C.REPO,
                env=C.child_env(self.spec.env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + C.SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.spec.name} exited at start-up:\n{self.log_tail()}")
            try:
                with socket.create_connection((C.HOST, self.port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise BenchError(f"{self.spec.name} did not listen within the start-up timeout")
        self.warm_up()

    def warm_up(self) -> None:
        """One subscriber, one publish, one event received: imports and first-use paths done."""
        with socket.create_connection((C.HOST, self.port), timeout=10) as sub:
            sub.sendall(b"GET /events/warmup HTTP/1.1\r\nHost: bench\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                part = sub.recv(65536)
                if not part:
                    raise BenchError(f"{self.spec.name} closed the warm-up stream")
                head += part
            time.sleep(0.05)
            body = b'{"data": "warm"}'
            with socket.create_connection((C.HOST, self.port), timeout=10) as pub:
                pub.sendall(
                    b"POST /events/warmup HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                    b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                answer = pub.recv(65536)
                if not answer.startswith(b"HTTP/1.1 2"):
                    raise BenchError(f"{self.spec.name} refused the warm-up publish: {answer!r}")
            while b"warm" not in head:
                part = sub.recv(65536)
                if not part:
                    raise BenchError(f"{self.spec.name} ended the warm-up stream")
                head += part
        time.sleep(0.2)

    def processes(self) -> list[psutil.Process]:
        """The server's process and its children (workers)."""
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def rss(self) -> int:
        """Resident memory of the server's processes, in bytes."""
        return sum(p.memory_info().rss for p in self.processes())

    def cpu(self) -> float:
        """CPU seconds (user + system) the server's processes have used."""
        total = 0.0
        for p in self.processes():
            t = p.cpu_times()
            total += t.user + t.system
        return total

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = None

    def data_bytes(self) -> int:
        """Bytes of every file in the ``--data`` directory now (history file, WAL, lock)."""
        if self.data is None:
            return 0
        return sum(f.stat().st_size for f in self.data.iterdir() if f.is_file())

    def log_tail(self) -> str:
        """The end of its log, for error messages."""
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_bytes()[-2000:].decode(errors="replace")


class LineReader:
    """Reads JSON lines from a child's stdout with a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def line(self, timeout: float) -> dict[str, Any]:
        """The next JSON line; raises BenchError on timeout or exit."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise BenchError("the load generator did not answer in time")
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise BenchError(f"the load generator exited (code {self.proc.wait()})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return dict(json.loads(line))


def run_loadgens(
    port: int,
    specs: list[dict[str, Any]],
    between: Callable[[], None] | None = None,
    *,
    stream_publish: bool = False,
) -> list[dict[str, Any]]:
    """Start one loadgen per spec, wait until all are ready, call ``between``, go, collect.

    With ``stream_publish`` the publisher uses streaming POSTs (NDJSON) instead of a request
    per event."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for spec in specs:
            spec = {**spec, "host": C.HOST, "port": port}
            if stream_publish and spec.get("publish"):
                spec["publish"] = {**spec["publish"], "stream": True}
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.loadgen", json.dumps(spec)],
                    cwd=C.REPO,
                    env=C.child_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
        readers = [LineReader(p) for p in procs]
        steps = max(len(spec.get("phases") or ()) for spec in specs)
        for k in range(steps):  # interleave the phased ones' connections, in spec order
            for spec, p, r in zip(specs, procs, readers, strict=True):
                if k < len(spec.get("phases") or ()):
                    assert p.stdin is not None
                    p.stdin.write(b"next\n")
                    p.stdin.flush()
                    step = r.line(C.CONNECT_TIMEOUT_S + 30)
                    if step.get("failures"):
                        raise BenchError(f"subscribers failed to connect: {step['failures']}")
        for r in readers:
            ready = r.line(C.CONNECT_TIMEOUT_S + 30)
            if ready.get("failures"):
                raise BenchError(f"subscribers failed to connect: {ready['failures']}")
        if between is not None:
            between()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        results = [r.line(C.RUN_DEADLINE_S + 60) for r in readers]
        for p in procs:
            p.wait(30)
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def split(n: int) -> list[tuple[int, int]]:
    """(first, count) of each loadgen process's share of ``n`` subscribers."""
    k = max(1, math.ceil(n / C.SUBSCRIBERS_PER_LOADGEN))
    shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
    out, first = [], 0
    for share in shares:
        out.append((first, share))
        first += share
    return out


def base_spec() -> dict[str, Any]:
    """The loadgen settings common to every workload."""
    return {
        "event_bytes": C.EVENT_DATA_BYTES,
        "connect_concurrency": C.CONNECT_CONCURRENCY,
        "connect_timeout": C.CONNECT_TIMEOUT_S,
        "settle": C.SETTLE_S,
        "stall": C.STALL_S,
        "deadline": C.RUN_DEADLINE_S,
        "sample_bytes": C.SAMPLE_BYTES,
        "read_interval": C.READ_INTERVAL_S,
    }


def collect(server: Server, results: list[dict[str, Any]], cpu0: float) -> dict[str, Any]:
    """Fold the loadgens' reports and the server's CPU into one measurement."""
    pub = next(r["publish"] for r in results if r.get("publish"))
    received = sum(r["received"] for r in results)
    expected = sum(r["expected"] for r in results)
    last = max(r["last_event_ns"] for r in results)
    span = (last - pub["start_ns"]) / 1e9 if last > pub["start_ns"] else float("nan")
    verify = [r["verify"] for r in results if r["verify"].get("verified") is not None]
    return {
        "rate": received / span if span > 0 else 0.0,
        "received": received,
        "expected": expected,
        "complete": received == expected and pub["errors"] == 0,
        "publish_errors": pub["errors"],
        "publish_first_error": pub["first_error"],
        "clients_seen": pub["clients_seen"],
        "short_subscribers": sum(r["short"] for r in results),
        "closed_early": sum(r["closed_early"] for r in results),
        "server_cpu_s": server.cpu() - cpu0,
        "loadgen_cpu_s": sum(r["cpu_s"] for r in results),
        "loadgen_wall_s": max(r["wall_s"] for r in results),
        "span_s": span,
        "verified": all(v["verified"] for v in verify) if verify else None,
        "verify_problems": [v["why"] for v in verify if not v["verified"]],
        "loop": results[0].get("loop"),
        **({"data_bytes": server.data_bytes()} if server.data is not None else {}),
    }


def measure_fanout(server: Server, subscribers: int, publishers: int) -> dict[str, Any]:
    """W1: one channel, ``subscribers`` clients, events back to back from ``publishers``."""
    events = C.w1_events(subscribers)
    path = "/events/bench"
    specs = []
    for i, (_first, count) in enumerate(split(subscribers)):
        spec = base_spec()
        spec["subscribe"] = {"mode": "one", "path": path, "count": count, "expect": events}
        if i == 0:
            spec["publish"] = {
                "mode": "fanout",
                "path": path,
                "events": events,
                "connections": publishers,
                "batch": C.PUBLISH_BATCH,
            }
        specs.append(spec)
    cpu0 = [0.0]
    results = run_loadgens(
        server.port,
        specs,
        lambda: cpu0.__setitem__(0, server.cpu()),
        stream_publish=server.spec.stream_publish,
    )
    out = collect(server, results, cpu0[0])
    out["events"] = events
    return out


def measure_selectors(server: Server, subscribers: int, publishers: int) -> dict[str, Any]:
    """W5: ``subscribers`` clients, each on one stream of the shared channel and W5_OWN_CHANNELS
    of its own; W1's events back to back to the shared channel, a trickle to own channels."""
    events = C.w1_events(subscribers)
    shared, own_base = "/events/bench5", "/events/own/"
    plan = {
        "subscribers": subscribers,
        "shared_events": events,
        "own_events": C.W5_OWN_EVENTS,
        "own_channels": C.W5_OWN_CHANNELS,
    }
    specs = []
    for i, (first, count) in enumerate(split(subscribers)):
        spec = base_spec()
        spec["subscribe"] = {
            "mode": "selectors",
            "shared": shared,
            "own_base": own_base,
            "first": first,
            "count": count,
            **plan,
        }
        if i == 0:
            spec["publish"] = {
                "mode": "selectors",
                "path": shared,
                "own_base": own_base,
                "events": events + C.W5_OWN_EVENTS,
                "connections": publishers,
                "batch": C.PUBLISH_BATCH,
                **plan,
            }
        specs.append(spec)
    cpu0 = [0.0]
    results = run_loadgens(
        server.port,
        specs,
        lambda: cpu0.__setitem__(0, server.cpu()),
        stream_publish=server.spec.stream_publish,
    )
    out = collect(server, results, cpu0[0])
    out["events"] = events
    out["own_events"] = C.W5_OWN_EVENTS
    return out


def measure_idle(server: Server, subscribers: int) -> dict[str, Any]:
    """W2: ``subscribers`` idle clients; the server's RSS growth per connection."""
    rss0 = server.rss()
    rss1 = [0]
    specs = []
    for _first, count in split(subscribers):
        spec = base_spec()
        spec["subscribe"] = {"mode": "one", "path": "/events/idle", "count": count, "expect": 0}
        specs.append(spec)

    def read_rss() -> None:
        time.sleep(C.W2_SETTLE_S)
        rss1[0] = server.rss()

    results = run_loadgens(server.port, specs, read_rss)
    connected = sum(r["connected"] for r in results)
    return {
        "kib_per_conn": (rss1[0] - rss0) / connected / 1024,
        "rss0_mib": rss0 / 2**20,
        "rss1_mib": rss1[0] / 2**20,
        "connected": connected,
        "complete": connected == subscribers and server.alive(),
        "loadgen_cpu_s": sum(r["cpu_s"] for r in results),
    }


def percentile(hist: dict[int, int], q: float) -> float:
    """The q-quantile (0..1) of a 10 us-bin histogram, in milliseconds (bin midpoint)."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = q * (total - 1)
    seen = 0
    for b in sorted(hist):
        seen += hist[b]
        if seen > rank:
            return (b + 0.5) / 100
    return (max(hist) + 0.5) / 100


def measure_latency(server: Server, subscribers: int, rate: int) -> dict[str, Any]:
    """W3: ``subscribers`` clients, events paced at ``rate`` per second for W3_SECONDS; latency
    from the time each event was due to be published (see `bench.loadgen`), and the publish
    rate the server let the publisher reach (``publish_rate``: below ``rate`` the server did not
    sustain it).

    Two kinds of load generator: a probe process holding the W3_TIMED timed subscribers (and the
    publisher), which does little else, so its receipt times are not queued behind the other
    subscribers' reads; and the others, which only count (batched reads). Their connections are
    interleaved, so the timed subscribers sit evenly spread in the server's subscription order.
    """
    events = max(1, int(rate * C.W3_SECONDS))
    path = "/events/latency"
    timed = max(1, min(C.W3_TIMED, subscribers))
    probe = base_spec()
    probe.update(latency=True, timed=timed, read_interval=0.0, phases=[1] * timed)
    probe["subscribe"] = {"mode": "one", "path": path, "count": timed, "expect": events}
    probe["publish"] = {
        "mode": "paced",
        "path": path,
        "events": events,
        "connections": 1,
        "rate": rate,
    }
    specs = []
    for _first, count in split(subscribers - timed) if subscribers > timed else []:
        spec = base_spec()
        spec["read_interval"] = C.W3_READ_INTERVAL_S
        spec["subscribe"] = {"mode": "one", "path": path, "count": count, "expect": events}
        # Before each timed subscriber, an even share of these (the probe connects after them).
        spec["phases"] = [count // timed + (1 if k < count % timed else 0) for k in range(timed)]
        specs.append(spec)
    specs.append(probe)
    cpu0 = [0.0]
    results = run_loadgens(
        server.port,
        specs,
        lambda: cpu0.__setitem__(0, server.cpu()),
        stream_publish=server.spec.stream_publish,
    )
    out = collect(server, results, cpu0[0])
    hist: dict[int, int] = {}
    for r in results:
        for k, v in r["hist"].items():
            hist[int(k)] = hist.get(int(k), 0) + v
    pub = next(r["publish"] for r in results if r.get("publish"))
    took = (pub["end_ns"] - pub["start_ns"]) / 1e9
    out.update(
        offered_rate=rate,
        publish_rate=events / took if took > 0 else 0.0,
        p50_ms=percentile(hist, 0.50),
        p99_ms=percentile(hist, 0.99),
        max_ms=percentile(hist, 1),
        timed=sum(r.get("timed", 0) for r in results),
        samples=sum(hist.values()),
    )
    return out


def measure_channels(server: Server, channels: int) -> dict[str, Any]:
    """W4: ``channels`` channels with one subscriber each; events to random channels."""
    base = "/events/c"
    specs = []
    for i, (first, count) in enumerate(split(channels)):
        spec = base_spec()
        spec["subscribe"] = {
            "mode": "each",
            "base": base,
            "first": first,
            "count": count,
            "channels": channels,
            "events": C.W4_EVENTS,
            "seed": C.W4_SEED,
        }
        if i == 0:
            spec["publish"] = {
                "mode": "random",
                "base": base,
                "events": C.W4_EVENTS,
                "connections": C.W4_PUBLISHERS,
                "channels": channels,
                "seed": C.W4_SEED,
            }
        specs.append(spec)
    cpu0 = [0.0]
    results = run_loadgens(
        server.port,
        specs,
        lambda: cpu0.__setitem__(0, server.cpu()),
        stream_publish=server.spec.stream_publish,
    )
    return collect(server, results, cpu0[0])


@dataclass
class Case:
    """One point of a workload: how to measure it, and which figures it yields."""

    workload: str
    label: str
    param: dict[str, Any]
    measure: Callable[[Server], dict[str, Any]]
    metrics: tuple[tuple[str, str, bool], ...]  # (key, label, higher is better)
    fresh_server: bool = False
    selectors: bool = False  # only servers that answer GET /events?channel=... can run it
    # A case measured alternately with this one, run by run, on the same server instance, so
    # that their ratio does not drift with the machine's load (W5's W1 at its size).
    reference: Case | None = None

    def runs_on(self, spec: C.ServerSpec) -> bool:
        """Whether ``spec`` runs this case (W5 needs channel selectors; the durable servers run
        W1 only, where they are compared with the in-memory hub)."""
        return self.why_not(spec) is None

    def why_not(self, spec: C.ServerSpec) -> str | None:
        """Why ``spec`` does not run this case, or None when it does."""
        if spec.data and self.workload != "W1":
            return "skipped: --data is measured on W1 only"
        if self.selectors and not spec.selectors:
            return "skipped: no channel selectors (GET /events?channel=)"
        return None


RATE = (("rate", "delivered events/s", True),)
METRICS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "W1": RATE,
    "W2": (("kib_per_conn", "KiB per connection", False),),
    "W3": (
        ("p50_ms", "p50 ms", False),
        ("p99_ms", "p99 ms", False),
        ("max_ms", "max ms", False),
        ("publish_rate", "published events/s", True),
    ),
    "W4": RATE,
    "W5": RATE,
}


def cases(workloads: list[str]) -> Iterator[Case]:
    """The measurements to make, in order."""
    rate = METRICS["W1"]

    def fanout(n: int, p: int) -> Case:
        return Case(
            "W1",
            f"{n} subs, {p} pub",
            {"subscribers": n, "publishers": p},
            lambda s: measure_fanout(s, n, p),
            rate,
        )

    # W5 is checked against W1 at its size: those W1 cases run with W5, alternating with it.
    w5_references = {(C.W5_SUBSCRIBERS, p) for p in C.W5_PUBLISHERS} if "W5" in workloads else set()
    if "W1" in workloads:
        for n in C.W1_SUBSCRIBERS:
            for p in C.W1_PUBLISHERS:
                if (n, p) not in w5_references:
                    yield fanout(n, p)
    if "W2" in workloads:
        for n in C.W2_SUBSCRIBERS:
            yield Case(
                "W2",
                f"{n} idle subs",
                {"subscribers": n},
                lambda s, n=n: measure_idle(s, n),
                METRICS["W2"],
                fresh_server=True,
            )
    if "W3" in workloads:
        n = C.W3_SUBSCRIBERS
        for r in C.W3_RATES or (C.W3_RATE,):
            yield Case(
                "W3",
                f"{n} subs, {r}/s x {C.W3_SECONDS:g}s",
                {"subscribers": n, "rate": r},
                lambda s, r=r: measure_latency(s, n, r),
                METRICS["W3"],
            )
    if "W4" in workloads:
        yield Case(
            "W4",
            f"{C.W4_CHANNELS} channels x 1 sub",
            {"channels": C.W4_CHANNELS},
            lambda s: measure_channels(s, C.W4_CHANNELS),
            rate,
        )
    if "W5" in workloads:
        n, selectors = C.W5_SUBSCRIBERS, 1 + C.W5_OWN_CHANNELS
        for p in C.W5_PUBLISHERS:
            yield Case(
                "W5",
                f"{n} subs x {selectors} channels, {p} pub",
                {
                    "subscribers": n,
                    "publishers": p,
                    "selectors": selectors,
                    "own_events": C.W5_OWN_EVENTS,
                    "target_ratio": C.W5_TARGET_RATIO,
                },
                lambda s, n=n, p=p: measure_selectors(s, n, p),
                rate,
                selectors=True,
                reference=fanout(n, p),
            )


@dataclass
class Record:
    """Every run of one case on one server."""

    case: Case
    server: C.ServerSpec
    runs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    skipped: str | None = None  # why this server does not run this case (not a failure)
    source: str = ""  # the run it comes from: "" measured now, else its --from-json file


def run_all(
    servers: list[C.ServerSpec], workloads: list[str], runs: int, log: Callable[[str], None]
) -> list[Record]:
    """Measure every case on every server, runs interleaved across servers (and with a case's
    reference); records in table order (by workload, subscribers, publishers)."""
    records: list[Record] = []
    by_workload: dict[str, list[Case]] = {}
    for case in cases(workloads):
        by_workload.setdefault(case.workload, []).append(case)
    for wcases in by_workload.values():
        shared: dict[str, Server] = {}
        try:
            if not wcases[0].fresh_server:
                needed = [c for case in wcases for c in (case.reference, case) if c is not None]
                for spec in servers:
                    if not any(c.runs_on(spec) for c in needed):
                        continue
                    shared[spec.key] = Server(spec)
                    try:
                        shared[spec.key].start()
                    except (BenchError, OSError) as exc:
                        shared[spec.key].stop()
                        log(f"  ! {spec.name}: {exc}")
                        del shared[spec.key]
            for case in wcases:
                alternating = [c for c in (case.reference, case) if c is not None]
                recs = {
                    (c.label, spec.key): Record(c, spec) for c in alternating for spec in servers
                }
                for rec in recs.values():
                    rec.skipped = rec.case.why_not(rec.server)
                records.extend(recs.values())
                for run in range(runs):
                    for c in alternating:
                        for spec in servers:
                            measure_once(recs[(c.label, spec.key)], shared, run, log)
        finally:
            for server in shared.values():
                server.stop()
    order = {w: i for i, w in enumerate(C.WORKLOADS)}
    records.sort(
        key=lambda r: (
            order.get(r.case.workload, len(order)),
            r.case.param.get("subscribers", 0),
            r.case.param.get("publishers", 0),
        )
    )
    return records


def measure_once(
    rec: Record, shared: dict[str, Server], run: int, log: Callable[[str], None]
) -> None:
    """One run of ``rec``'s case on its server, added to ``rec`` (or its error recorded)."""
    case, spec = rec.case, rec.server
    if rec.error is not None or rec.skipped is not None:
        return
    server = Server(spec) if case.fresh_server else shared.get(spec.key)
    if server is None:
        rec.error = "server did not start"
        return
    try:
        if case.fresh_server:
            server.start()
        result = case.measure(server)
        if not server.alive():
            raise BenchError(f"the server died:\n{server.log_tail()}")
    except (BenchError, OSError, psutil.Error) as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
        log(f"  ! {case.workload} {case.label} {spec.name}: {rec.error}")
        return
    finally:
        if case.fresh_server:
            server.stop()
    rec.runs.append(result)
    log(f"  {case.workload} {case.label:28} run {run + 1} {spec.name:30} " + summary(case, result))
    time.sleep(C.BETWEEN_RUNS_S)


def summary(case: Case, result: dict[str, Any]) -> str:
    """A one-line account of one run, for the progress log."""
    parts = [f"{label}={result[key]:,.2f}" for key, label, _ in case.metrics]
    if "received" in result:
        parts.append(f"delivered {result['received']}/{result['expected']}")
        parts.append(
            f"cpu server {result['server_cpu_s']:.2f}s loadgen {result['loadgen_cpu_s']:.2f}s"
        )
        if result.get("verified") is False:
            parts.append(f"VERIFY FAILED {result['verify_problems']}")
    if "connected" in result:
        parts.append(f"{result['connected']} connected")
    return "  ".join(parts)


def run_problems(run: dict[str, Any]) -> list[str]:
    """What is wrong with one run's result: empty when it passed every check.

    A fan-out run (W1, W3, W4, W5) passes when every event was published without error, every
    subscriber received every event it was sent, and the load generators' parse check (ssehub's
    parser over the received bytes) found every event intact. An idle run (W2) passes when every
    connection was made and the server lived.
    """
    problems = []
    if "received" in run:
        if run.get("publish_errors"):
            problems.append(
                f"{run['publish_errors']} publish errors (first: {run.get('publish_first_error')})"
            )
        if run["received"] != run["expected"]:
            problems.append(f"delivered {run['received']} of {run['expected']} events")
        if run.get("verified") is not True:
            why = run.get("verify_problems") or "no load generator checked its bytes"
            problems.append(f"parse check failed: {why}")
    elif not run.get("complete"):
        problems.append(f"only {run.get('connected')} connections, or the server died")
    return problems


@dataclass(frozen=True)
class SelectorRatio:
    """W5 against W1 on one server: same subscribers, same publishers, same run (issue 13)."""

    server: str
    subscribers: int
    publishers: int
    w5: float  # median delivered events/s
    w1: float | None  # None: no W1 figure at this size in the same run
    target: float | None  # the least W5 / W1 that passes; None: not checked (smoke)

    @property
    def ratio(self) -> float | None:
        """W5 / W1, or None without a W1 figure."""
        return self.w5 / self.w1 if self.w1 else None

    def problem(self) -> str | None:
        """Why this fails the bench, or None when it passes or is not checked."""
        if self.target is None:
            return None
        who = f"W5 {self.subscribers} subs, {self.publishers} pub on {self.server}"
        if self.ratio is None:
            return f"{who}: no W1 figure at {self.subscribers} subs in the same run to compare"
        if self.ratio < self.target:
            return (
                f"{who}: {self.w5:,.0f} events/s is {self.ratio:.2f}x W1's {self.w1:,.0f} "
                f"on one channel, below the target of {self.target:.2f}x"
            )
        return None


def selector_ratios(records: list[Record]) -> list[SelectorRatio]:
    """W5's median against W1's for every server that ran W5, pairing only runs of one source."""
    w1: dict[tuple[str, str, int, int], float] = {}
    for rec in records:
        if rec.case.workload == "W1" and rec.runs:
            key = (rec.source, rec.server.key, rec.case.param["subscribers"])
            w1[(*key, rec.case.param["publishers"])] = stats([r["rate"] for r in rec.runs])[0]
    out = []
    for rec in records:
        if rec.case.workload != "W5" or not rec.runs:
            continue
        n, p = rec.case.param["subscribers"], rec.case.param["publishers"]
        out.append(
            SelectorRatio(
                rec.server.name,
                n,
                p,
                stats([r["rate"] for r in rec.runs])[0],
                w1.get((rec.source, rec.server.key, n, p)),
                rec.case.param.get("target_ratio"),
            )
        )
    return out


@dataclass(frozen=True)
class DataRatio:
    """W1 on the durable hub (``--data``) against the in-memory one: same subscribers, same
    publishers, same run (issue 15)."""

    server: str
    subscribers: int
    publishers: int
    data: float  # median delivered events/s with --data
    memory: float | None  # None: the in-memory hub has no figure at this size in the run
    target: float | None  # the least data / memory that passes; None: not checked
    data_bytes: int | None  # the --data directory's size after the last run

    @property
    def ratio(self) -> float | None:
        """``--data`` / in-memory, or None without an in-memory figure."""
        return self.data / self.memory if self.memory else None

    def problem(self) -> str | None:
        """Why this fails the bench, or None when it passes or is not checked."""
        if self.target is None:
            return None
        who = f"W1 {self.subscribers} subs, {self.publishers} pub on {self.server}"
        if self.ratio is None:
            return f"{who}: no in-memory figure at that size in the same run to compare"
        if self.ratio < self.target:
            return (
                f"{who}: {self.data:,.0f} events/s is {self.ratio:.2f}x the in-memory hub's "
                f"{self.memory:,.0f}, below the target of {self.target:.2f}x"
            )
        return None


def n_of(rec: Record) -> int:
    """The subscribers of ``rec``'s case."""
    return int(rec.case.param["subscribers"])


def data_ratios(records: list[Record]) -> list[DataRatio]:
    """W1 with ``--data`` against W1 in memory at every size both ran (one source each)."""
    memory: dict[tuple[str, int, int], float] = {}
    for rec in records:
        if rec.case.workload == "W1" and rec.runs and rec.server.key == C.DATA_REFERENCE:
            key = (rec.source, rec.case.param["subscribers"], rec.case.param["publishers"])
            memory[key] = stats([r["rate"] for r in rec.runs])[0]
    out = []
    for rec in records:
        if rec.case.workload != "W1" or not rec.runs or not rec.server.data:
            continue
        checked = rec.server.key == C.DATA_SERVER and n_of(rec) == C.DATA_SUBSCRIBERS
        n, p = rec.case.param["subscribers"], rec.case.param["publishers"]
        sizes = [r["data_bytes"] for r in rec.runs if "data_bytes" in r]
        out.append(
            DataRatio(
                rec.server.name,
                n,
                p,
                stats([r["rate"] for r in rec.runs])[0],
                memory.get((rec.source, n, p)),
                C.DATA_TARGET_RATIO if checked else None,
                sizes[-1] if sizes else None,
            )
        )
    return out


def data_table(records: list[Record]) -> str:
    """W1 with --data / in memory, with issue 15's target; empty without --data figures."""
    ratios = data_ratios(records)
    if not ratios:
        return ""
    rows = [
        "W1 on the durable hub (--data) against the in-memory hub, same run:",
        "",
        "| Server | Subscribers | Publishers | --data events/s | in-memory events/s "
        "| --data / memory | --data dir after the run | Target |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ratios:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        memory = "not measured" if r.memory is None else fmt(r.memory)
        size = "" if r.data_bytes is None else f"{r.data_bytes / 1024:,.0f} KiB"
        if r.target is None:
            verdict = "not checked"
        elif r.ratio is None:
            verdict = "CHECK FAILED: no in-memory figure"
        else:
            met = r.ratio >= r.target
            verdict = f"≥ {r.target:.2f}x: " + ("met" if met else "MISSED, CHECK FAILED")
        rows.append(
            f"| {r.server} | {r.subscribers} | {r.publishers} | {fmt(r.data)} | {memory} "
            f"| {ratio} | {size} | {verdict} |"
        )
    return "\n".join(rows)


def void_runs(records: list[Record]) -> list[str]:
    """Every failed run and every measurement that could not be made, one line each."""
    out = []
    for rec in records:
        who = f"{rec.case.workload} {rec.case.label} on {rec.server.name}"
        if rec.error is not None:
            out.append(f"{who}: {rec.error}")
        for i, run in enumerate(rec.runs):
            out.extend(f"{who}, run {i + 1}: {problem}" for problem in run_problems(run))
    return out


def missed_targets(records: list[Record]) -> list[str]:
    """Every checked target a run missed (W5 against W1, --data against memory), one line
    each."""
    checked: list[SelectorRatio | DataRatio] = [*selector_ratios(records), *data_ratios(records)]
    return [p for r in checked if (p := r.problem()) is not None]


def failures(records: list[Record]) -> list[str]:
    """Everything that fails the bench: void runs, then missed targets."""
    return void_runs(records) + missed_targets(records)


def report_failures(records: list[Record]) -> int:
    """Print the failures (to stderr, after the table); the exit status: 1 if any, else 0."""
    void, missed = void_runs(records), missed_targets(records)
    if void:
        print(f"\nBENCH FAILED: {len(void)} problem(s); these figures are void:", file=sys.stderr)
        for line in void:
            print(f"  - {line}", file=sys.stderr)
    if missed:
        print(f"\nBENCH FAILED: {len(missed)} checked target(s) missed:", file=sys.stderr)
        for line in missed:
            print(f"  - {line}", file=sys.stderr)
    return 1 if void or missed else 0


def stats(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(v: float) -> str:
    """A figure with sensible precision."""
    if math.isnan(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(records: list[Record]) -> str:
    """The results as one Markdown table: medians, min-max, ratios against the references."""
    rows = [
        "| Workload | Case | Server | Figure | Median | Min - max | vs sse-starlette | vs bare "
        "| Server CPU s | CPU µs / delivery | Loadgen CPU s | Delivered |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    medians: dict[tuple[str, str, str], float] = {}
    for rec in records:
        for key, _label, _hi in rec.case.metrics:
            if rec.runs and key in rec.runs[0]:
                medians[(rec.case.label, key, rec.server.key)] = stats([r[key] for r in rec.runs])[
                    0
                ]
    for rec in records:
        for key, label, _hi in rec.case.metrics:
            prefix = f"| {rec.case.workload} | {rec.case.label} | {rec.server.name} | {label} "
            if not rec.runs:
                rows.append(prefix + f"| {rec.error or rec.skipped or 'skipped'} | | | | | | | |")
                continue
            if key not in rec.runs[0]:
                continue  # a figure this file's runs predate
            med, lo, hi = stats([r[key] for r in rec.runs])
            ratios = []
            for ref in C.REFERENCES:
                base = medians.get((rec.case.label, key, ref))
                ratios.append(f"{med / base:.2f}x" if base else "")
            runs = rec.runs
            cpu = (
                fmt(statistics.median(r["server_cpu_s"] for r in runs))
                if "server_cpu_s" in runs[0]
                else ""
            )
            per_delivery = ""
            if "server_cpu_s" in runs[0] and "received" in runs[0]:
                figures = [r["server_cpu_s"] * 1e6 / r["received"] for r in runs if r["received"]]
                if figures:
                    per_delivery = f"{statistics.median(figures):.2f}"
            lcpu = runs[0].get("loadgen_cpu_s")
            lg = ""
            if lcpu is not None:
                lg = fmt(statistics.median(r["loadgen_cpu_s"] for r in runs))
                if "loadgen_wall_s" in runs[0]:
                    lg += f" / {fmt(statistics.median(r['loadgen_wall_s'] for r in runs))} wall"
            if "received" in runs[0]:
                got = sum(r["received"] for r in runs)
                want = sum(r["expected"] for r in runs)
                delivered = f"{100 * got / want:.1f}%" if want else ""
            else:
                got = sum(r["connected"] for r in runs)
                delivered = f"{got // len(runs)} conns"
            if any(run_problems(r) for r in runs):
                delivered += " CHECK FAILED"
            rows.append(
                prefix
                + f"| {fmt(med)} | {fmt(lo)} - {fmt(hi)} | {ratios[0]} | {ratios[1]} "
                + f"| {cpu} | {per_delivery} | {lg} | {delivered} |"
            )
    return "\n".join(rows)


def latency_table(records: list[Record]) -> str:
    """W3 at several rates (``--w3-rates``): the highest rate the bare baseline sustains, and
    every server's p99 there against bare's (issue 18); empty with fewer than two W3 rates or
    without the baseline. Printed, not checked: latency on a shared machine is noisy, so the
    figure is a reading, not a gate."""
    w3 = [r for r in records if r.case.workload == "W3" and r.runs and "publish_rate" in r.runs[0]]
    rates = sorted({r.case.param.get("rate", 0) for r in w3})
    bare = {r.case.param.get("rate"): r for r in w3 if r.server.key == "bare"}
    if len(rates) < 2 or not bare:
        return ""

    def med(rec: Record, key: str) -> float:
        return stats([r[key] for r in rec.runs])[0]

    def sustained(rec: Record) -> bool:
        rate = rec.case.param["rate"]
        reached = med(rec, "publish_rate")
        return reached >= C.W3_SUSTAINED * rate and not any(run_problems(r) for r in rec.runs)

    rows = [
        "W3 p99 at each rate (median of runs); `sustained` = at least "
        f"{C.W3_SUSTAINED:.0%} of the offered rate published, every event delivered:",
        "",
        "| Rate /s | Server | published /s | sustained | p50 ms | p99 ms | p99 vs bare |",
        "|---:|---|---:|---|---:|---:|---:|",
    ]
    for rate in rates:
        base = bare.get(rate)
        base_p99 = med(base, "p99_ms") if base else None
        for rec in (r for r in w3 if r.case.param.get("rate") == rate):
            p99 = med(rec, "p99_ms")
            vs = f"{p99 / base_p99:.2f}x" if base_p99 else ""
            rows.append(
                f"| {rate} | {rec.server.name} "
                f"| {fmt(med(rec, 'publish_rate'))} "
                f"| {'yes' if sustained(rec) else 'no'} "
                f"| {fmt(med(rec, 'p50_ms'))} | {fmt(p99)} | {vs} |"
            )
    top = max((rate for rate, rec in bare.items() if sustained(rec)), default=None)
    if top is None:
        rows.append("\nThe bare baseline sustained none of these rates.")
        return "\n".join(rows)
    base_p99 = med(bare[top], "p99_ms")
    rows.append(f"\nHighest rate the bare baseline sustains here: {top}/s (p99 {fmt(base_p99)} ms)")
    for rec in w3:
        if rec.server.key == "bare" or rec.case.param.get("rate") != top:
            continue
        p99 = med(rec, "p99_ms")
        verdict = "no worse than bare: met" if p99 <= base_p99 else "worse than bare: missed"
        ratio = p99 / base_p99
        rows.append(f"- {rec.server.name}: p99 {fmt(p99)} ms, {ratio:.2f}x bare, {verdict}")
    return "\n".join(rows)


def selector_table(records: list[Record]) -> str:
    """W5 / W1 per server and publishers, with issue 13's target; empty without W5 figures."""
    ratios = selector_ratios(records)
    if not ratios:
        return ""
    rows = [
        "W5 (one stream, several channels) against W1 (one channel), same server, same run:",
        "",
        "| Server | Subscribers | Publishers | W5 events/s | W1 events/s | W5 / W1 | Target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in ratios:
        if r.ratio is None:
            ratio, w1 = "", "not measured"
        else:
            ratio, w1 = f"{r.ratio:.2f}x", fmt(r.w1 or 0.0)
        if r.target is None:
            verdict = "not checked (smoke sizes)"
        elif r.ratio is None:
            verdict = "CHECK FAILED: no W1 figure"
        else:
            met = r.ratio >= r.target
            verdict = f"≥ {r.target:.2f}x: " + ("met" if met else "MISSED, CHECK FAILED")
        rows.append(
            f"| {r.server} | {r.subscribers} | {r.publishers} | {fmt(r.w5)} | {w1} | {ratio} "
            f"| {verdict} |"
        )
    return "\n".join(rows)


def plot(records: list[Record], path: Path) -> None:
    """Delivered events/s against subscribers (W1) for every server, one line per publishers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    series: dict[tuple[str, int], list[tuple[int, float, float, float]]] = {}
    for rec in records:
        if rec.case.workload != "W1" or not rec.runs:
            continue
        med, lo, hi = stats([r["rate"] for r in rec.runs])
        key = (rec.server.name, rec.case.param["publishers"])
        series.setdefault(key, []).append((rec.case.param["subscribers"], med, lo, hi))
    colors: dict[str, str] = {}
    for (name, pubs), points in sorted(series.items()):
        points.sort()
        xs = [p[0] for p in points]
        color = colors.setdefault(name, f"C{len(colors)}")
        ax.errorbar(
            xs,
            [p[1] for p in points],
            yerr=[[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]],
            label=f"{name}, {pubs} publisher{'s' if pubs > 1 else ''}",
            color=color,
            linestyle="-" if pubs == 1 else "--",
            marker="o",
            capsize=3,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("subscribers on one channel")
    ax.set_ylabel("delivered events/s (median of runs, min-max bars)")
    ax.set_title("W1 fan-out: 64-byte events published back to back")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cases_order(records: list[Record]) -> Iterator[str]:
    """Case labels in first-seen order (workloads in order)."""
    seen: dict[str, None] = {}
    for r in sorted(records, key=lambda r: r.case.workload):
        seen.setdefault(r.case.label, None)
    return iter(seen)


def load(path: Path) -> tuple[str, int, list[Record]]:
    """Records back from a ``--json`` file: (machine, runs, records)."""
    data = json.loads(path.read_text())
    specs = {s.key: s for s in C.SERVERS}
    records = []
    for r in data["results"]:
        spec = specs.get(r["server"]) or C.ServerSpec(r["server"], r["server_name"], ())
        case = Case(r["workload"], r["case"], r["param"], lambda s: {}, METRICS[r["workload"]])
        records.append(Record(case, spec, r["runs"], r["error"], r.get("skipped"), str(path)))
    return data["machine"], data["runs"], records


def machine() -> str:
    """A one-line description of the machine."""
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _label(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        raise argparse.ArgumentTypeError("letters, digits, '.', '_' and '-' only")
    return text


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench [--smoke] [--servers ...] [--workloads ...] ...``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    parser.add_argument(
        "--servers",
        default=",".join(s.key for s in C.SERVERS if not s.opt_in),
        help="comma-separated keys: "
        + ", ".join(s.key for s in C.SERVERS if not s.opt_in)
        + " (the default), and the variants "
        + ", ".join(s.key for s in C.SERVERS if s.opt_in),
    )
    parser.add_argument(
        "--workloads",
        default=",".join(C.WORKLOADS),
        help="e.g. W1,W3 (W5 brings W1 at W5's size: its target is a ratio to it)",
    )
    parser.add_argument(
        "--w1-subscribers",
        metavar="N,N",
        help="W1 sizes to run, e.g. 1000 (default: every size in bench.config.W1_SUBSCRIBERS)",
    )
    parser.add_argument(
        "--w3-rates",
        metavar="R,R",
        help="W3 publish rates to run, e.g. 200,300,400 (default: bench.config.W3_RATE); with "
        "two or more, a table gives every server's p99 at the highest rate bare sustains",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3)")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument(
        "--save",
        type=_label,
        metavar="LABEL",
        help="also keep every run's figures as bench/results/<date>-LABEL.json (commit it with "
        "the BENCHMARKS.md tables computed from it)",
    )
    parser.add_argument("--plot", type=Path, help="write the W1 plot (PNG) here")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="measure nothing: print the table (and --plot) from earlier --json files, merged",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        merged: list[Record] = []
        for path in args.from_json:
            host, runs, recs = load(path)
            merged.extend(recs)
        order = {s.key: i for i, s in enumerate(C.SERVERS)}
        merged.sort(key=lambda r: (r.case.workload, order.get(r.server.key, 99)))
        labels = {label: i for i, label in enumerate(cases_order(merged))}
        merged.sort(key=lambda r: labels[r.case.label])
        print(f"machine: {host}\nruns per figure: {runs}\n")
        print(table(merged))
        if selector_table(merged):
            print("\n" + selector_table(merged))
        if latency_table(merged):
            print("\n" + latency_table(merged))
        if data_table(merged):
            print("\n" + data_table(merged))
        if args.plot:
            plot(merged, args.plot)
        return report_failures(merged)
    if args.smoke:
        C.apply_smoke()
    if args.w1_subscribers:
        try:
            C.W1_SUBSCRIBERS = tuple(int(n) for n in args.w1_subscribers.split(",") if n.strip())
        except ValueError:
            parser.error(f"--w1-subscribers: not a list of numbers: {args.w1_subscribers!r}")
    if args.w3_rates:
        try:
            C.W3_RATES = tuple(int(n) for n in args.w3_rates.split(",") if n.strip())
        except ValueError:
            parser.error(f"--w3-rates: not a list of numbers: {args.w3_rates!r}")
    runs = args.runs or C.RUNS
    limit = raise_nofile_limit()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    wanted = [k.strip() for k in args.servers.split(",") if k.strip()]
    unknown = set(wanted) - {s.key for s in C.SERVERS}
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    servers = []
    for spec in C.SERVERS:
        if spec.key not in wanted:
            continue
        why = available(spec)
        if why is not None:
            print(f"skipping {spec.name}: {why}", flush=True)
            continue
        servers.append(spec)
    workloads = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    log(f"machine: {machine()}; open-file limit {limit}; runs {runs}")
    t0 = time.monotonic()
    records = run_all(servers, workloads, runs, log)
    print(f"\nmachine: {machine()}")
    print(f"runs per figure: {runs}; total time {time.monotonic() - t0:.0f} s\n")
    print(table(records))
    if selector_table(records):
        print("\n" + selector_table(records))
    if latency_table(records):
        print("\n" + latency_table(records))
    if data_table(records):
        print("\n" + data_table(records))
    outputs = [args.json] if args.json else []
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        outputs.append(RESULTS / f"{time.strftime('%Y-%m-%d')}-{args.save}.json")
    for output in outputs:
        output.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "argv": list(sys.argv[1:] if argv is None else argv),
                    "smoke": args.smoke,
                    "runs": runs,
                    "results": [
                        {
                            "workload": r.case.workload,
                            "case": r.case.label,
                            "param": r.case.param,
                            "server": r.server.key,
                            "server_name": r.server.name,
                            "error": r.error,
                            "skipped": r.skipped,
                            "runs": r.runs,
                        }
                        for r in records
                    ],
                },
                indent=1,
            )
            + "\n"
        )
        print(f"raw results: {output}", file=sys.stderr)
    if args.plot:
        plot(records, args.plot)
    return report_failures(records)
