"""Tools for attacking a real ``ssehub serve`` over sockets and measuring what it costs others.

Two healthy clients measure what an attack costs others, each bounding the worst delay of its
events while the attack runs: `HealthyWatch`, a subscriber and a publisher in a process of their
own (the connection attacks), and `HealthyProbe`, a thread that publishes a small event every few
milliseconds on a channel of its own and times how long it takes to come back on its open stream
(the content and volume attacks). Every socket here talks to 127.0.0.1 only, and every loop is
bounded in count or time.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psutil

from tests.server.hub_process import HubProcess

T = TypeVar("T")

DELAY_BOUND = 0.100
"""The worst delivery delay a healthy subscriber may see while an attack runs (seconds)."""

FIGURES: dict[str, float] = {}
"""Worst delays measured, by test (printed at the end of a run with ``-s``)."""

_CONTENT_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def address(hub: HubProcess) -> tuple[str, int]:
    """The hub's (host, port)."""
    parts = urlsplit(hub.url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return parts.hostname, parts.port


def rss(hub: HubProcess) -> int:
    """The hub process's resident memory in bytes."""
    return int(psutil.Process(hub.proc.pid).memory_info().rss)


def connect(hub: HubProcess, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the hub."""
    sock = socket.create_connection(address(hub), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    host: str = "127.0.0.1",
) -> bytes:
    """One HTTP/1.1 request, keep-alive, with a Content-Length."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ResponseReader:
    """Reads complete HTTP/1.1 responses (Content-Length framed) off a socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("the hub closed the connection")
        self.buf += chunk

    def read(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lowercase names), body."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        match = _CONTENT_LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        body, self.buf = rest[:length], rest[length:]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers, body


def exchange(
    hub: HubProcess, raw: bytes, timeout: float = 30.0
) -> tuple[int, dict[str, str], bytes]:
    """Send one raw request on a new connection; return its response."""
    with connect(hub, timeout) as sock:
        sock.sendall(raw)
        return ResponseReader(sock).read()


def pipelined(
    hub: HubProcess, requests: Iterable[bytes], window: int = 500, timeout: float = 30.0
) -> list[int]:
    """Send ``requests`` on one keep-alive connection, ``window`` at a time; their statuses."""
    statuses: list[int] = []
    pending = list(requests)
    with connect(hub, timeout) as sock:
        reader = ResponseReader(sock)
        for start in range(0, len(pending), window):
            batch = pending[start : start + window]
            sock.sendall(b"".join(batch))
            statuses.extend(reader.read()[0] for _ in batch)
    return statuses


def fill_channels(hub: HubProcess, count: int, prefix: str, body: bytes = b"x") -> None:
    """Create ``count`` channels with one retained event each (pipelined publishes)."""
    statuses = pipelined(
        hub, (request_bytes("POST", f"/events/{prefix}{i}", body) for i in range(count))
    )
    assert statuses == [200] * count, sorted(set(statuses))


def metric(hub: HubProcess, name: str, headers: Sequence[tuple[str, str]] = ()) -> float:
    """The value of an unlabelled series of ``/metrics``."""
    status, _, body = exchange(hub, request_bytes("GET", "/metrics", headers=headers))
    assert status == 200, body
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


class HealthyProbe:
    """A healthy subscriber and its publisher, timing each event's round trip (see the module).

    Use as a context manager around an attack; `worst` is the longest delay seen (seconds) and
    `count` the events timed. ``headers`` go with every request (a token, say).
    """

    def __init__(
        self,
        hub: HubProcess,
        name: str,
        interval: float = 0.005,
        headers: Sequence[tuple[str, str]] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.hub = hub
        self.name = name
        self.channel = f"/events/healthy-{uuid.uuid4().hex[:8]}"
        self.interval = interval
        self.headers = headers
        self.host = host
        self.delays: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthy-probe", daemon=True)
        self._stream: socket.socket | None = None
        self._publisher: socket.socket | None = None

    @property
    def worst(self) -> float:
        """The longest round trip seen, in seconds."""
        return max(self.delays, default=0.0)

    @property
    def count(self) -> int:
        """How many events were timed."""
        return len(self.delays)

    def __enter__(self) -> HealthyProbe:
        self._stream = connect(self.hub)
        self._stream.sendall(
            request_bytes("GET", self.channel, headers=self.headers, host=self.host)
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self._stream.recv(65536)
            assert chunk, "the healthy stream was refused"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        self._buf = head.partition(b"\r\n\r\n")[2]
        self._publisher = connect(self.hub)
        self._thread.start()
        # At least a few round trips before the attack starts: the probe is live.
        deadline = time.monotonic() + 5
        while self.count < 3 and self.error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.count >= 3, f"the healthy probe does not run: {self.error!r}"
        return self

    def _run(self) -> None:
        assert self._stream is not None and self._publisher is not None
        replies = ResponseReader(self._publisher)
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                marker = f"data: probe {n}\n".encode()
                started = time.monotonic()
                self._publisher.sendall(
                    request_bytes(
                        "POST",
                        self.channel,
                        f"probe {n}".encode(),
                        headers=self.headers,
                        host=self.host,
                    )
                )
                while marker not in self._buf:
                    chunk = self._stream.recv(65536)
                    if not chunk:
                        raise EOFError("the healthy stream ended")
                    self._buf += chunk
                self.delays.append(time.monotonic() - started)
                self._buf = self._buf.partition(marker)[2]
                status, _, body = replies.read()
                if status != 200:
                    raise AssertionError(f"the healthy publish got {status}: {body!r}")
                self._stop.wait(self.interval)
        except BaseException as exc:
            self.error = exc

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(15)
        for sock in (self._stream, self._publisher):
            if sock is not None:
                sock.close()
        FIGURES[self.name] = self.worst
        print(
            f"\nHEALTHY {self.name}: worst {self.worst * 1000:.1f} ms over {self.count} events",
            flush=True,
        )

    def check(self) -> None:
        """Assert the probe ran throughout and its worst delay is under `DELAY_BOUND`."""
        assert self.error is None, f"the healthy client failed: {self.error!r}"
        assert self.count >= 3
        assert self.worst < DELAY_BOUND, (
            f"a healthy subscriber waited {self.worst * 1000:.0f} ms for an event "
            f"(bound {DELAY_BOUND * 1000:.0f} ms)"
        )


def repeat_for(seconds: float, attack: Callable[[], T], most: int = 1000) -> list[T]:
    """Run ``attack`` again and again for ``seconds`` (at least once, at most ``most`` times),
    so the healthy probe times many events while it runs; every result, in order."""
    results = [attack()]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(results) < most:
        results.append(attack())
    return results


def error_of(body: bytes) -> str:
    """The ``error`` of a JSON error body."""
    value = json.loads(body)["error"]
    assert isinstance(value, str)
    return value


# -- the connection attacks (tests/server/test_hostile_connections.py) ---------------------

WATCH_SCRIPT = Path(__file__).with_name("healthy_watch.py")
HEALTHY_BOUND_MS = 100.0
"""A healthy subscriber's worst delivery delay while an attack runs (issue 10)."""
MiB = 1024 * 1024


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
