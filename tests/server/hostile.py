"""Tools for attacking a real ``ssehub serve`` over sockets and measuring what it costs others.

`HealthyProbe` is the concurrent healthy client: in a thread of its own, it publishes a small
event to a channel of its own every few milliseconds and times how long it takes to come back on
its open stream. While the hub's event loop is held by an attack, that time grows; its worst
value is what the tests bound. Every socket here talks to 127.0.0.1 only, and every loop is
bounded in count or time.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import TypeVar
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
