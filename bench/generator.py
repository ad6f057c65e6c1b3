"""``python -m bench.generator``: per-request generator streams, ssehub against sse-starlette.

Each server is the same Starlette app under uvicorn (uvloop and httptools when installed), one
route ``GET /gen?n=N`` whose response streams an async generator of N small events (``data:
<i>``): ssehub's `EventSourceResponse` against sse-starlette's. The client (this process, on
its own core) opens ``--streams`` concurrent streams at once, reads each to its end over raw
sockets (a small chunked-body decoder, so the client costs little per event) and checks every
delivery: exactly N events, numbered 1 to N in order, and the chunked body's terminator. The
figure is events delivered per second over all streams, from the first request to the last
byte. Servers run one after the other in the same invocation, ``--rounds`` times, alternating;
the best round of each is reported, with the ratio.

Exits 1 when any round fails its delivery check (a server error, a short stream, a gap). With
``--save LABEL`` the raw figures go to ``bench/results/generator/<date>-LABEL.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "generator"
"""Raw results of ``--save`` (a folder of their own: `python -m bench` reads bench/results/)."""
HOST = "127.0.0.1"

APP = """
import sys
from starlette.applications import Starlette
from starlette.routing import Route
import uvicorn

KIND = sys.argv[1]
if KIND == "ssehub":
    from ssehub.integrations.starlette import EventSourceResponse
else:
    from sse_starlette import EventSourceResponse


async def gen(request):
    n = int(request.query_params["n"])

    async def events():
        for i in range(1, n + 1):
            yield str(i)

    return EventSourceResponse(events())


app = Starlette(routes=[Route("/gen", gen)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False, lifespan="off", backlog=4096)
"""

SERVERS = {"ssehub": "ssehub EventSourceResponse", "sse-starlette": "sse-starlette"}


class DeliveryError(RuntimeError):
    """A stream did not deliver exactly what the generator yielded."""


@dataclass
class Round:
    """One measurement of one server."""

    server: str
    streams: int
    events: int
    seconds: float = 0.0
    events_per_s: float = 0.0
    error: str | None = None
    bytes_read: int = 0


@dataclass
class Report:
    """Everything one invocation measured."""

    machine: str
    date: str
    argv: list[str]
    rounds: list[Round] = field(default_factory=list)


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_DATA = re.compile(rb"data: (\d+)")


async def read_stream(port: int, n: int) -> int:
    """GET /gen?n=N, de-chunk the body, check it holds events 1..N in order; bytes read."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    try:
        request = f"GET /gen?n={n} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200" or b"transfer-encoding: chunked" not in head.lower():
            raise DeliveryError(f"unexpected response head: {head[:200]!r}")
        body = bytearray()
        total = len(head)
        while True:  # bounded: each read consumes bytes, and the body ends with the 0 chunk
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            total += len(size_line) + len(data)
            if size == 0:
                break
            body += data[:-2]
    finally:
        writer.close()
    numbers = [int(m) for m in _DATA.findall(body)]
    if len(numbers) != n or numbers[0] != 1 or numbers[-1] != n:
        raise DeliveryError(f"expected events 1..{n}, got {len(numbers)} events")
    if numbers != list(range(1, n + 1)):
        raise DeliveryError("events out of order or repeated")
    return total


async def measure(port: int, streams: int, n: int) -> tuple[float, int]:
    """Open ``streams`` streams at once; seconds until the last one ended, and bytes read."""
    start = time.perf_counter()
    sizes = await asyncio.gather(*(read_stream(port, n) for _ in range(streams)))
    return time.perf_counter() - start, sum(sizes)


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait until the server accepts connections (or fail if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} while starting")
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def run_round(server: str, streams: int, n: int, log: bool = True) -> Round:
    """Start ``server``'s app, measure one round, stop it."""
    port = free_port()
    result = Round(server, streams, n)
    proc = subprocess.Popen([sys.executable, "-c", APP, server, str(port)], cwd=ROOT)
    try:
        wait_port(port, proc)
        seconds, size = asyncio.run(
            asyncio.wait_for(measure(port, streams, n), timeout=max(60.0, streams * n / 5000))
        )
        result.seconds = seconds
        result.bytes_read = size
        result.events_per_s = streams * n / seconds
    except (DeliveryError, OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if log:
        figure = result.error or f"{result.events_per_s:,.0f} events/s in {result.seconds:.2f} s"
        print(f"  {SERVERS[server]:<28} {figure}", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.generator [--streams 100] [--events 10000] ...``."""
    parser = argparse.ArgumentParser(prog="python -m bench.generator", description=__doc__)
    parser.add_argument("--streams", type=int, default=100, help="concurrent streams")
    parser.add_argument("--events", type=int, default=10_000, help="events per stream")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server (best kept)")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--save", metavar="LABEL", help="keep them in bench/results/generator/ too")
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = set(servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.save is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", args.save):
        parser.error("--save takes letters, digits, '.', '_' and '-'")
    machine = f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
    machine += f"{platform.python_version()}, {platform.system()} {platform.release()}"
    report = Report(machine, time.strftime("%Y-%m-%dT%H:%M:%S%z"), list(sys.argv[1:]))
    print(f"{args.streams} streams x {args.events} events, {args.rounds} round(s)", file=sys.stderr)
    for index in range(args.rounds):
        print(f"round {index + 1}", file=sys.stderr)
        for server in servers:
            report.rounds.append(run_round(server, args.streams, args.events))
    best: dict[str, float] = {}
    failed = [r for r in report.rounds if r.error is not None]
    for r in report.rounds:
        if r.error is None:
            best[r.server] = max(best.get(r.server, 0.0), r.events_per_s)
    print(f"\nmachine: {machine}")
    print(f"{args.streams} concurrent streams x {args.events} events, best of {args.rounds}")
    for server in servers:
        figure = f"{best[server]:>12,.0f} events/s" if server in best else "   (no valid run)"
        print(f"  {SERVERS[server]:<28} {figure}")
    if "ssehub" in best and "sse-starlette" in best:
        print(f"  ratio ssehub / sse-starlette: {best['ssehub'] / best['sse-starlette']:.1f}x")
    outputs = [args.json] if args.json else []
    if args.save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        outputs.append(RESULTS / f"{time.strftime('%Y-%m-%d')}-{args.save}.json")
    for output in outputs:
        output.write_text(json.dumps(asdict(report), indent=1) + "\n")
        print(f"raw results: {output}", file=sys.stderr)
    for r in failed:
        print(f"FAILED: {SERVERS[r.server]}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
