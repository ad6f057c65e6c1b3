"""A real ``python -m ssehub serve`` whose core is taken writes several events per write.

Four busy processes share the hub's core (all pinned to one CPU). The hub's loop then
waits for a core most of the time, reads that from the kernel (its run delay), and starts each
flush cycle up to ``GATHER_DELAY`` late, so events published meanwhile share a write per
stream. The publisher runs on another CPU, at the same pace in both phases. The test counts the
hub's write system calls per delivery without and with the busy processes, on the same hub, and
checks that every stream still gets every event, in order.
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
    pytest.mark.skipif(
        sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) < 2,
        reason="the publisher needs a CPU of its own",
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


# The publisher: a process of its own, with raw sockets and without coverage's tracing, so it
# keeps its pace with every core taken. It waits PAUSE after each answer: with cores to spare,
# each event is then written alone (a flush of 40 streams takes far less).
PAUSE = 0.002
PUBLISHER = r"""
import os, socket, sys, time
host, port, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pause, cpu = float(sys.argv[5]), int(sys.argv[6])
os.sched_setaffinity(0, {cpu})
sock = socket.create_connection((host, port))
buffered = b""
for i in range(first, first + count):
    body = str(i).encode()
    head = b"POST /events/busy HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    sock.sendall(head % len(body) + body)
    while b"\r\n\r\n" not in buffered:
        buffered += sock.recv(65536)
    head, _, buffered = buffered.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(buffered) < length:
        buffered += sock.recv(65536)
    buffered = buffered[length:]
    time.sleep(pause)
"""


def _publish(url: str, first: int, cpu: int) -> None:
    parts = urlsplit(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
    subprocess.run(
        [sys.executable, "-c", PUBLISHER, parts.hostname or "", str(parts.port), str(first),
         str(EVENTS), str(PAUSE), str(cpu)],
        env=env,
        check=True,
        timeout=30,
    )  # fmt: skip


def test_a_hub_without_cpu_to_spare_writes_several_events_per_write(
    start_hub: HubFactory,
) -> None:
    hub_cpu, other_cpu = sorted(os.sched_getaffinity(0))[:2]
    hub = start_hub()
    server = psutil.Process(hub.proc.pid)
    server.cpu_affinity([hub_cpu])  # its loop's thread
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
            # Its core to itself: each event is written to every stream as it comes.
            before = server.io_counters().write_count
            _publish(hub.url, 0, other_cpu)
            streams.read_until(EVENTS)
            idle = (server.io_counters().write_count - before) / (EVENTS * STREAMS)
            # Its core shared with four busy processes: the same publishes share writes.
            spin = f"import os; os.sched_setaffinity(0, {{{hub_cpu}}})\nwhile True: pass"
            spinners = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(4)]
            time.sleep(0.5)  # a few of the hub's readings of its run delay
            before = server.io_counters().write_count
            _publish(hub.url, EVENTS, other_cpu)
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
