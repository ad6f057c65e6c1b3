"""Measure what an idle SSE connection costs in each framework's server (run by hand, not a test).

    .venv/bin/python -m tests.integrations.measure_connection_cost [connections]

For each framework it serves the test app (``apps.py``) in a child process, opens N idle
streams to one channel over raw loopback sockets, waits until the hub counts them all, and
prints the growth of the server's threads and resident memory (summed over its process tree,
so gunicorn's worker is included).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen

import psutil

from tests.integrations.conftest import FRAMEWORKS, Served, _start

ROOT = Path(__file__).resolve().parents[2]


def _tree(pid: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    procs = [proc, *proc.children(recursive=True)]
    return sum(p.memory_info().rss for p in procs), sum(p.num_threads() for p in procs)


def _count(served: Served, name: str) -> int:
    with urlopen(served.clients(name), timeout=5) as response:
        count: int = json.load(response)["clients"]
        return count


async def _open(host: str, port: int, path: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer._ssehub_reader = reader  # type: ignore[attr-defined]  # keep the reader alive
    return writer


async def _measure(served: Served, pid: int, connections: int) -> dict[str, float]:
    name = "idle"
    url = urlsplit(served.events(name))
    assert url.hostname is not None and url.port is not None
    _count(served, name)  # warm up the app (and the hub's loop thread)
    time.sleep(0.5)
    rss0, threads0 = _tree(pid)
    writers = []
    for _ in range(connections):
        writers.append(await _open(url.hostname, url.port, url.path))
    deadline = time.monotonic() + 30
    while _count(served, name) != connections:
        if time.monotonic() > deadline:
            raise TimeoutError("not every stream was counted by the hub")
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    rss1, threads1 = _tree(pid)
    for writer in writers:
        writer.close()
    return {
        "threads_per_connection": (threads1 - threads0) / connections,
        "kib_per_connection": (rss1 - rss0) / connections / 1024,
    }


def _serve(name: str) -> None:
    for served in _start(name):
        print(json.dumps({"base": served.base, "prefix": served.prefix}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        _serve(sys.argv[2])
        return
    connections = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    env = {**os.environ, "SSEHUB_WSGI_THREADS": str(connections + 20), "PYTHONPATH": str(ROOT)}
    print(f"{'framework':<12} {'threads/conn':>12} {'KiB/conn':>9}")
    for name in FRAMEWORKS:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.integrations.measure_connection_cost", "--serve", name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        try:
            assert child.stdout is not None
            info = json.loads(child.stdout.readline())
            served = Served(name, info["base"], info["prefix"])
            result = asyncio.run(_measure(served, child.pid, connections))
            print(
                f"{name:<12} {result['threads_per_connection']:>12.2f}"
                f" {result['kib_per_connection']:>9.1f}",
                flush=True,
            )
        finally:
            assert child.stdin is not None
            child.stdin.close()
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(5)


if __name__ == "__main__":
    main()
