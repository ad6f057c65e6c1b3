"""What a publish costs with durable history, per ``--fsync`` mode, in one process.

``python -m bench.durable [--events N]``: a `Hub` with no subscriber publishes N small events
to one channel, one at a time (each waits for its commit) and four at a time (they share
commits), on the memory backend and on `SqliteBackend` with each fsync mode, in a temporary
directory. Prints microseconds of wall-clock and of CPU time (every thread of the process) per
publish, and the fsync time of this machine's disk. No HTTP, no fan-out: the cost the durable
backend adds to each publish, to read beside W1 (``python -m bench --servers
ssehub,ssehub-data,ssehub-data-always,ssehub-data-off --workloads W1``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from ssehub import Hub, MemoryBackend, SqliteBackend
from ssehub.backends.base import Backend
from ssehub.backends.sqlite import FSYNC_MODES


async def publish_cost(backend: Backend, events: int, together: int) -> tuple[float, float]:
    """(wall µs, CPU µs) per publish of ``events`` events, ``together`` at a time."""
    hub = Hub(backend=backend, keepalive=None)
    await hub.start()
    data = "x" * 64
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(0, events, together):
        await asyncio.gather(*(hub.publish("/bench", data) for _ in range(together)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await hub.shutdown()
    return wall / events * 1e6, cpu / events * 1e6


def fsync_ms(directory: Path, count: int = 20) -> float:
    """The median time of an fsync of 16 KiB just written, in ms."""
    fd = os.open(directory / "fsync-probe", os.O_RDWR | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 16384)
            start = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.durable [--events N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.durable", description=__doc__)
    parser.add_argument("--events", type=int, default=4000, help="events per measurement")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-durable-") as tmp:
        directory = Path(tmp)
        print(f"fsync of 16 KiB on this disk: {fsync_ms(directory):.2f} ms (median of 20)")
        print("| Backend | Together | Wall µs / publish | CPU µs / publish |")
        print("|---|---:|---:|---:|")
        for together in (1, 4):
            backends: list[tuple[str, Backend]] = [("memory", MemoryBackend())]
            for mode in FSYNC_MODES:
                path = directory / f"history-{mode}-{together}.sqlite3"
                backends.append((f"sqlite, fsync {mode}", SqliteBackend(path, fsync=mode)))
            for name, backend in backends:
                wall, cpu = asyncio.run(publish_cost(backend, args.events, together))
                print(f"| {name} | {together} | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
