"""A dashboard viewer on a hub of 100k channels never stalls the other streams (real process)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.server.hostile import (
    HealthyProbe,
    connect,
    fill_channels,
    pipelined,
    request_bytes,
)
from tests.server.hub_process import HubFactory, HubProcess


@pytest.fixture(autouse=True)
def untraced_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the attacked hub as in production: not under coverage's tracer, which slows every
    line of the server several times and would stretch the delays these tests bound."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHANNELS = 100_000


def _open_stats(hub: HubProcess) -> tuple[socket.socket, bytes]:
    """A dashboard viewer: the statistics stream, open; its socket and the bytes after its head."""
    sock = connect(hub)
    sock.sendall(request_bytes("GET", "/dashboard/stats"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        assert chunk, "the statistics stream was refused"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock, head.partition(b"\r\n\r\n")[2]


def _snapshots(
    sock: socket.socket, buf: bytes, count: int, timeout: float, since: float = 0.0
) -> list[dict[str, Any]]:
    """The next ``count`` snapshots made after ``since`` (Unix time) on a statistics stream
    (bounded by ``timeout``)."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    while len(found) < count and time.monotonic() < deadline:
        while b"\n\n" in buf and len(found) < count:
            event, _, buf = buf.partition(b"\n\n")
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    snapshot = json.loads(line[6:])
                    if snapshot["time"] >= since:
                        found.append(snapshot)
        if len(found) < count:
            buf += sock.recv(1 << 20)
    return found


def test_dashboard_viewers_on_100k_changing_channels_never_hold_streams_back(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--history", "2")
    fill_channels(hub, CHANNELS, "many-")
    viewers = [_open_stats(hub) for _ in range(3)]
    try:
        # Every channel changes after the viewers' last snapshot: the next ones compute a rate
        # for each of the 100k (published again) and pick the rows among all of them.
        statuses = pipelined(
            hub, (request_bytes("POST", f"/events/many-{i}", b"y") for i in range(CHANNELS))
        )
        assert set(statuses) == {200}
        sock, buf = viewers[0]
        with HealthyProbe(hub, "3 dashboard viewers, 100k channels") as probe:
            snapshots = _snapshots(sock, buf, 4, timeout=30, since=time.time())
        probe.check()
    finally:
        for sock, _ in viewers:
            sock.close()
    assert len(snapshots) == 4
    last = snapshots[-1]
    # The snapshots really covered every channel (each holds history; none has a subscriber
    # but the probe's), and listed the bounded top rows with their history.
    assert last["total_channels"] == CHANNELS + 1
    rows = last["channels"]
    assert isinstance(rows, list) and len(rows) == 500
    assert all(row["retained_events"] == 2 for row in rows if row["clients"] == 0)
    print(
        f"\nFIGURES dashboard at 100k channels: worst healthy delay {probe.worst * 1000:.1f} ms, "
        f"snapshot work {[s['snapshot_ms'] for s in snapshots]} ms"
    )


def test_opening_the_dashboard_again_and_again_costs_no_snapshot(start_hub: HubFactory) -> None:
    hub = start_hub()
    fill_channels(hub, CHANNELS, "reopen-")
    keep, _ = _open_stats(hub)  # the feed runs: later viewers get its last snapshot
    try:
        time.sleep(1.5)
        with HealthyProbe(hub, "dashboard opened 200 times, 100k channels") as probe:
            for _ in range(200):
                sock, buf = _open_stats(hub)
                with sock:
                    first = _snapshots(sock, buf, 1, timeout=10)
                assert first and first[0]["total_channels"] >= CHANNELS
        probe.check()
    finally:
        keep.close()
