"""Profile one server under one workload with py-spy: where the server's time goes.

``python -m bench.profile --server ssehub --workload W3`` starts the server as ``python -m
bench`` does, attaches ``py-spy record`` to it (sampling, non-blocking, so the server is not
paused), runs the workload once, and prints the server's user and system CPU seconds and the
functions that hold most samples (own time, and time including callees). py-spy is not a
dependency of ssehub: ``.venv/bin/pip install py-spy``. The raw collapsed stacks are kept
(``--raw``) for a flame graph (``py-spy record --format flamegraph`` or any collapsed-stack
viewer).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench import config as C
from bench.run import (
    RESULTS,
    Server,
    measure_channels,
    measure_fanout,
    measure_latency,
    measure_selectors,
)


def frame_name(frame: str) -> str:
    """``function (path/to/file.py:line)`` -> ``function (file.py)``: one name per function."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1].rstrip(")")
    return f"{name} ({file})" if file else name


def summarize(raw: Path, top: int) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top own-time functions, top inclusive functions) from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        # The first frame names the thread ("process 123:..."); skip it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return total, own.most_common(top), inclusive.most_common(top)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m bench.profile --server KEY --workload W1|W3|W4|W5 [...]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--server", default="ssehub", choices=[s.key for s in C.SERVERS])
    parser.add_argument("--workload", default="W3", choices=["W1", "W3", "W4", "W5"])
    parser.add_argument("--subscribers", type=int, default=1_000, help="W1, W3 and W5")
    parser.add_argument("--publishers", type=int, default=1, help="W1 and W5")
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--raw", type=Path, default=None, help="keep the collapsed stacks here")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        parser.error("py-spy is not installed (.venv/bin/pip install py-spy)")
    spec = next(s for s in C.SERVERS if s.key == args.server)
    raw = args.raw or RESULTS / f"profile-{args.server}-{args.workload}.txt"
    server = Server(spec)
    server.start()
    spy: subprocess.Popen[bytes] | None = None
    try:
        assert server.proc is not None
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(server.proc.pid),
                "--rate",
                str(args.rate),
                "--nonblocking",
                "--format",
                "raw",
                "--output",
                str(raw),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # py-spy attaches
        proc = server.processes()[0]
        t0 = proc.cpu_times()
        result: dict[str, Any]
        if args.workload == "W1":
            result = measure_fanout(server, args.subscribers, args.publishers)
        elif args.workload == "W3":
            result = measure_latency(server, args.subscribers, C.W3_RATE)
        elif args.workload == "W5":
            result = measure_selectors(server, args.subscribers, args.publishers)
        else:
            result = measure_channels(server, C.W4_CHANNELS)
        t1 = proc.cpu_times()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
        server.stop()
    figures = {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in result.items()
        if k in ("rate", "p50_ms", "p99_ms", "max_ms", "received", "expected", "span_s")
    }
    print(f"{spec.name}, {args.workload}: {figures}")
    print(
        f"server CPU: user {t1.user - t0.user:.2f} s, system {t1.system - t0.system:.2f} s "
        f"(loadgen {result.get('loadgen_cpu_s', 0):.2f} s)"
    )
    if not raw.exists():
        assert spy is not None and spy.stderr is not None
        print(f"py-spy wrote nothing: {spy.stderr.read().decode(errors='replace')[-500:]}")
        return 1
    total, own, inclusive = summarize(raw, args.top)
    print(f"\n{total} samples at {args.rate}/s (busy samples only); collapsed stacks in {raw}")
    print("\nown time (leaf frame):")
    for name, n in own:
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("\nincluding callees:")
    for name, n in inclusive:
        print(f"  {100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
