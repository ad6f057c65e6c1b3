"""A healthy client of a hub under attack, in a process of its own (so the attack's threads
cannot delay it): it subscribes to one channel and publishes to it every 20 ms, each event's
data being its publish time, and reports how long each event took to arrive.

``python tests/server/healthy_watch.py HOST PORT CHANNEL [TOKEN]`` (TOKEN: the publish token)
prints ``ready`` once its stream is
open, publishes until a line (or EOF) arrives on stdin, then prints one JSON line: events
published and received, the worst and median delivery delay in milliseconds, and any error.
Every loop here is bounded by a deadline.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import threading
import time

from ssehub.wire import EventParser

PERIOD_S = 0.02
MAX_RUN_S = 120.0  # a watcher never outlives this, whatever the test does


def _read_head(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Read one response head from ``sock`` into ``buf``; return (status, rest after head)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed before the response head")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head + b"\r\n\r\n" + rest


class Subscriber(threading.Thread):
    """Reads the stream and records each event's delay (now minus the time in its data)."""

    def __init__(self, host: str, port: int, channel: str) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection((host, port), timeout=MAX_RUN_S)
        self.sock.sendall(f"GET {channel} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        buf = bytearray()
        status, raw = _read_head(self.sock, buf)
        if status != 200:
            raise RuntimeError(f"subscribe answered {status}")
        self.first = raw.partition(b"\r\n\r\n")[2]
        self.delays_ms: list[float] = []
        self.error: str | None = None
        self.received = threading.Event()

    def run(self) -> None:
        parser = EventParser()
        data = self.first
        deadline = time.monotonic() + MAX_RUN_S
        try:
            while time.monotonic() < deadline:
                for event in parser.feed(data):
                    if event.data.isdigit():
                        self.delays_ms.append((time.monotonic_ns() - int(event.data)) / 1e6)
                        self.received.set()
                data = self.sock.recv(65536)
                if not data:
                    self.error = "the stream ended"
                    return
        except OSError as exc:
            self.error = f"stream: {exc!r}"


def main() -> None:
    host, port, channel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    auth = b"Authorization: Bearer %s\r\n" % sys.argv[4].encode() if len(sys.argv) > 4 else b""
    sub = Subscriber(host, port, channel)
    sub.start()
    stop = threading.Event()

    def stop_on_input() -> None:
        sys.stdin.readline()  # the test writes a line (or closes stdin) when the attack is over
        stop.set()

    threading.Thread(target=stop_on_input, daemon=True).start()
    pub = socket.create_connection((host, port), timeout=10)
    published = 0
    errors: list[str] = []
    buf = bytearray()

    def publish() -> None:
        nonlocal published, buf
        body = str(time.monotonic_ns()).encode()
        pub.sendall(
            b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (channel.encode(), auth, len(body), body)
        )
        status, raw = _read_head(pub, buf)
        head, _, rest = raw.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            chunk = pub.recv(65536)
            if not chunk:
                raise EOFError("publish connection closed")
            rest += chunk
        buf = bytearray(rest[length:])
        if status != 200:
            errors.append(f"publish answered {status}")
        published += 1

    publish()  # the first event proves the stream works before the attack starts
    if not sub.received.wait(10):
        raise RuntimeError("the first event never arrived")
    print("ready", flush=True)
    deadline = time.monotonic() + MAX_RUN_S
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            publish()
        except OSError as exc:
            errors.append(f"publish: {exc!r}")
            break
        next_at += PERIOD_S
        time.sleep(max(0.0, next_at - time.monotonic()))
    end = time.monotonic() + 2.0
    while len(sub.delays_ms) < published and time.monotonic() < end:
        time.sleep(0.01)
    delays = sub.delays_ms
    print(
        json.dumps(
            {
                "published": published,
                "received": len(delays),
                "max_ms": round(max(delays), 2) if delays else None,
                "p50_ms": round(statistics.median(delays), 2) if delays else None,
                "errors": errors + ([sub.error] if sub.error else []),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
