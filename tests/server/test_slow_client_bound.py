"""A client that never reads is dropped when the hub holds ``--max-buffer`` bytes for it, not later.

The bound is what keeps a hub's memory flat under slow clients. The kernel absorbs some bytes
before the hub's own buffer grows (the client's receive buffer and the server's send buffer), so
the test measures that part from ``/proc/net/tcp`` after each batch of events, and checks what
the hub itself holds: at most ``--max-buffer`` (plus the ASGI server's write buffer on uvicorn)
while the client is still connected, and close to it when the client is dropped.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.hub_process import HubFactory

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="reads socket queues from /proc/net/tcp"
    ),
]

MAX_BUFFER = 256 * 1024
DATA = "x" * 4000
BATCH = 8
EVENT_BYTES = len(f"id: 00000000\ndata: {DATA}\n\n")
BATCH_BYTES = BATCH * EVENT_BYTES
# uvicorn keeps up to its write buffer's high-water mark (64 KiB) plus the chunk being written
# in the transport, on top of what the subscription holds; ssehub's own server bounds the
# transport buffer itself.
SLACK = {"native": 4096, "uvicorn": 64 * 1024 + 4 * BATCH_BYTES}


def kernel_queued(server_port: int, client_port: int) -> int:
    """Bytes the kernel holds between the two ends: the server's send queue (unacknowledged and
    unsent) plus the client's receive queue (received, not read)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        lport, rport = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
        tx, rx = (int(q, 16) for q in queues.split(":"))
        if (lport, rport) == (server_port, client_port):
            total += tx
        elif (lport, rport) == (client_port, server_port):
            total += rx
    return total


@pytest.mark.parametrize("http", ["native", "uvicorn"])
async def test_stuck_client_is_dropped_at_max_buffer_not_later(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub(
        "--max-buffer", str(MAX_BUFFER), "--keepalive", "0", "--max-body", "1MiB", "--http", http
    )
    host, port = hub.url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    client_port = sock.getsockname()[1]
    sock.sendall(b"GET /events/stuck HTTP/1.1\r\nHost: hub\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 10_000:  # read the head, then never again
        part = sock.recv(1)
        assert part, "the hub closed the stream before its head"
        head += part
    held: list[int] = []  # what the hub itself holds for the client, after each batch
    produced = 0  # every body byte the hub was asked to send (chunk framing counted as sent)
    framing = 8 if http == "uvicorn" else 0  # per chunk at most "fa5\r\n" + "\r\n" + slack
    try:
        async with httpx.AsyncClient(base_url=hub.url, timeout=10) as client:
            for _ in range(200):
                if (await client.get("/healthz")).json()["clients"] == 1:
                    break
            n = 0
            for _ in range(500):  # at most 500 batches (16 MB): more than any kernel buffers
                batch = [{"data": DATA, "id": f"{n + i:08d}"} for i in range(BATCH)]
                n += BATCH
                answer = await client.post("/events/stuck", json=batch)
                assert answer.status_code == 200, answer.text
                produced += BATCH * (EVENT_BYTES + framing)
                if (await client.get("/healthz")).json()["clients"] == 0:
                    break
                held.append(produced - kernel_queued(int(port), client_port))
            else:
                pytest.fail(f"never dropped; the hub held {held[-1]} bytes for the client")
            metrics = (await client.get("/metrics")).text
    finally:
        sock.close()
    assert "ssehub_clients_dropped_slow_total 1.0" in metrics
    assert held, "dropped before the first batch was measured"
    # Never more than the bound while connected (a drop only at 4x max_buffer fails here)...
    assert max(held) <= MAX_BUFFER + SLACK[http], (max(held), held[-5:])
    # ...and the drop came when the next batch would cross it, not earlier.
    assert held[-1] + BATCH_BYTES > MAX_BUFFER - BATCH_BYTES, (held[-1], held[-5:])
