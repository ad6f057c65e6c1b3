"""Tools for running attacks on a real ``ssehub serve``: a healthy client that measures how long
its events take while the attack runs, the server's RSS and CPU seen from outside, and raw
sockets. Every wait here has a deadline."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from tests.server.hub_process import HubProcess

WATCH_SCRIPT = Path(__file__).with_name("healthy_watch.py")
HEALTHY_BOUND_MS = 100.0
"""A healthy subscriber's worst delivery delay while an attack runs (issue 10)."""
MiB = 1024 * 1024


def address(hub: HubProcess) -> tuple[str, int]:
    """The hub's (host, port)."""
    host, port = hub.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


class HealthyWatch:
    """A subscriber and a publisher on one channel, in a process of their own, for the time of
    a ``with`` block; `result` then holds the events' worst and median delay (ms)."""

    def __init__(
        self, hub: HubProcess, channel: str = "/events/healthy-watch", token: str | None = None
    ) -> None:
        host, port = address(hub)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(WATCH_SCRIPT),
                host,
                str(port),
                channel,
                *([token] if token else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.result: dict[str, Any] = {}

    def __enter__(self) -> HealthyWatch:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 15)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the healthy watcher did not start: {line!r}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            out, _ = self.proc.communicate("stop\n", timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        self.result = json.loads(lines[-1]) if lines else {"errors": ["no result"]}

    def check(self, attack: str) -> float:
        """Assert the watcher saw every event, no error, and a worst delay under the bound;
        print and return that worst delay."""
        result = self.result
        print(f"\nFIGURES {attack}: healthy subscriber {result}")
        assert not result["errors"], result
        # At least a second of events at one per 20 ms: the attack lasted that long.
        assert result["published"] >= 40 and result["received"] == result["published"], result
        assert result["max_ms"] < HEALTHY_BOUND_MS, result
        return float(result["max_ms"])


@dataclass
class ResourceWatch:
    """The hub process's RSS (peak over the baseline) and CPU time, sampled every 20 ms."""

    pid: int
    baseline_rss: int = 0
    peak_rss: int = 0
    cpu_start: float = 0.0
    cpu_seconds: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ResourceWatch:
        proc = psutil.Process(self.pid)
        self.baseline_rss = self.peak_rss = proc.memory_info().rss
        times = proc.cpu_times()
        self.cpu_start = times.user + times.system
        self._thread = threading.Thread(target=self._sample, args=(proc,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, proc: psutil.Process) -> None:
        deadline = time.monotonic() + 300
        while not self._stop.wait(0.02) and time.monotonic() < deadline:
            self.peak_rss = max(self.peak_rss, proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(5)
        proc = psutil.Process(self.pid)
        self.peak_rss = max(self.peak_rss, proc.memory_info().rss)
        times = proc.cpu_times()
        self.cpu_seconds = times.user + times.system - self.cpu_start

    @property
    def rss_delta_mib(self) -> float:
        """The peak RSS over the baseline, in MiB."""
        return (self.peak_rss - self.baseline_rss) / MiB

    def report(self, attack: str) -> None:
        """Print the figures (collected for the issue's note with ``pytest -s``)."""
        print(
            f"\nFIGURES {attack}: server peak RSS +{self.rss_delta_mib:.1f} MiB, "
            f"CPU {self.cpu_seconds:.2f} s"
        )


def connect(hub: HubProcess, timeout: float = 5.0) -> socket.socket:
    """A raw TCP connection to the hub."""
    sock = socket.create_connection(address(hub), timeout=timeout)
    return sock


@dataclass
class Response:
    """What came back on a raw connection: the status (0: none), the raw bytes, and whether
    the server then closed its side."""

    status: int
    raw: bytes
    closed: bool
    statuses: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """A header of the last response head, or None."""
        head = self.raw.rsplit(b"HTTP/1.1 ", 1)[-1].partition(b"\r\n\r\n")[0]
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode()
        return None


def read_until_closed(sock: socket.socket, timeout: float) -> Response:
    """Read until the server closes (or resets) the connection, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    raw = b""
    closed = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        raw += chunk
    statuses = [
        int(part.split(b" ", 1)[0]) for part in raw.split(b"HTTP/1.1 ")[1:] if part[:3].isdigit()
    ]
    return Response(statuses[-1] if statuses else 0, raw, closed, statuses)


def readable(sock: socket.socket) -> bool:
    """Whether the server has sent something (or closed) on ``sock``."""
    ready, _, _ = select.select([sock], [], [], 0)
    return bool(ready)


def rss_mib(pid: int) -> float:
    """A process's RSS now, in MiB."""
    return psutil.Process(pid).memory_info().rss / MiB


def nofile_env(tmp_path: Path, limit: int) -> dict[str, str]:
    """Environment for a hub process whose open-file limit (soft and hard) is ``limit``: a
    ``sitecustomize`` on PYTHONPATH sets it before anything else runs."""
    site = tmp_path / f"nofile-{limit}"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(
        f"import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))\n"
    )
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{site}{os.pathsep}{path}" if path else str(site)}
