"""A real ``ssehub serve`` on a machine with no CPU to spare writes several events per write.

Busy processes (twice as many as cores, plus one) keep every core taken. The hub's loop then
waits for a core most of the time, reads that from the kernel (its run delay), and starts each
flush cycle up to ``GATHER_DELAY`` late, so events published meanwhile share a write per
stream. The test counts the hub's write system calls per delivery with and without the busy
processes, on the same hub, and checks that every stream still gets every event, in order.
"""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.server.hub_process import HubFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="the run delay is Linux's schedstat"
    ),
]

STREAMS = 40
EVENTS = 150


class Streams:
    """``STREAMS`` raw SSE connections to one channel, read without blocking."""

    def __init__(self, url: str, channel: str) -> None:
        parts = urlsplit(url)
        self.socks = [
            socket.create_connection((parts.hostname or "", parts.port or 80))
            for _ in range(STREAMS)
        ]
        self.data = [b""] * STREAMS
        self.selector = selectors.DefaultSelector()
        for i, sock in enumerate(self.socks):
            sock.sendall(f"GET {channel} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)

    def read_until(self, count: int, timeout: float = 20.0) -> None:
        """Read until every stream has ``count`` events."""
        deadline = time.monotonic() + timeout
        while min(data.count(b"data: ") for data in self.data) < count:
            assert time.monotonic() < deadline, "the events did not all arrive"
            for key, _ in self.selector.select(0.1):
                chunk = self.socks[key.data].recv(1 << 20)
                assert chunk, "a stream ended early"
                self.data[key.data] += chunk

    def close(self) -> None:
        self.selector.close()
        for sock in self.socks:
            sock.close()


def _publish(client: httpx.Client, first: int) -> None:
    for i in range(first, first + EVENTS):
        client.post("/events/busy", content=str(i)).raise_for_status()


def test_a_hub_without_cpu_to_spare_writes_several_events_per_write(
    start_hub: HubFactory,
) -> None:
    hub = start_hub()
    server = psutil.Process(hub.proc.pid)
    streams = Streams(hub.url, "/events/busy")
    spinners: list[subprocess.Popen[bytes]] = []
    try:
        with httpx.Client(base_url=hub.url, timeout=10) as client:
            deadline = time.monotonic() + 10
            while not any(
                c["channel"] == "/events/busy" and c["clients"] == STREAMS
                for c in client.get("/channels").json()["channels"]
            ):
                assert time.monotonic() < deadline, "the streams did not all connect"
                time.sleep(0.05)
            # Cores to spare: one publish at a time, each written to every stream.
            before = server.io_counters().write_count
            _publish(client, 0)
            streams.read_until(EVENTS)
            idle = (server.io_counters().write_count - before) / (EVENTS * STREAMS)
            # Every core taken: the same publishes share writes.
            spinners = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(2 * (os.cpu_count() or 1) + 1)
            ]
            time.sleep(0.5)  # a few of the hub's readings of its run delay
            before = server.io_counters().write_count
            _publish(client, EVENTS)
            streams.read_until(2 * EVENTS)
            busy = (server.io_counters().write_count - before) / (EVENTS * STREAMS)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        streams.close()
    expected = [f"data: {i}" for i in range(2 * EVENTS)]
    for data in streams.data:
        events = [line for line in data.decode().splitlines() if line.startswith("data: ")]
        assert events == expected
    # About one write per delivery (each event written alone), the answers' writes included;
    # short of CPU, a fraction of that.
    assert idle > 0.9
    assert busy < 0.75 * idle, (idle, busy)
