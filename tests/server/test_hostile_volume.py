"""Hostile volume against a real ``ssehub serve``: many channels, big histories, big scrapes.

Each attack is bounded (the hub's answer, its memory, the time a request holds the event loop),
and a healthy subscriber keeps getting its events within 100 ms while it runs (issue 10,
points 4, 5 and 6).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.server.hostile import (
    HealthyProbe,
    exchange,
    fill_channels,
    metric,
    pipelined,
    repeat_for,
    request_bytes,
    rss,
)
from tests.server.hub_process import HubFactory, HubProcess


@pytest.fixture(autouse=True)
def untraced_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the attacked hub as in production: not under coverage's tracer, which slows every
    line of the server several times and would stretch the delays these tests bound."""
    monkeypatch.delenv("COVERAGE_PROCESS_CONFIG", raising=False)
    monkeypatch.delenv("COVERAGE_PROCESS_START", raising=False)


pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MiB = 1024 * 1024
JSON = [("Content-Type", "application/json")]


def _wait_metric(hub: HubProcess, name: str, value: float, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    seen = metric(hub, name)
    while seen != value and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = metric(hub, name)
    assert seen == value, f"{name} is {seen}, expected {value}"


def _resume(hub: HubProcess, channel: str, last_id: str, until: bytes) -> bytes:
    """The bytes a client resuming ``channel`` after ``last_id`` receives, up to ``until``."""
    from tests.server.hostile import connect

    with connect(hub, timeout=5) as sock:
        sock.sendall(request_bytes("GET", channel, headers=[("Last-Event-ID", last_id)]))
        got = b""
        while until not in got:
            chunk = sock.recv(1 << 20)
            assert chunk, got[-300:]
            got += chunk
    return got


# -- point 4: a broadcast over many channels yields --------------------------------------------


def test_a_broadcast_over_20k_channels_never_holds_the_loop(start_hub: HubFactory) -> None:
    hub = start_hub()
    fill_channels(hub, 20_000, "bc-")
    batch = json.dumps([{"data": f"all {i}"} for i in range(5)]).encode()
    with HealthyProbe(hub, "broadcast 5 events x 20k channels") as probe:
        started = time.monotonic()
        status, _, body = exchange(hub, request_bytes("POST", "/broadcast", batch, JSON))
        took = time.monotonic() - started
    probe.check()
    assert status == 200, body
    ids = json.loads(body)["ids"]
    assert len(ids) == 5
    assert all(len(by_channel) >= 20_000 for by_channel in ids)
    print(f"broadcast of 100k publishes took {took * 1000:.0f} ms")


# -- point 5: history bounded in bytes, per channel and for the hub ----------------------------


def test_history_bytes_bounds_one_channel(start_hub: HubFactory) -> None:
    hub = start_hub("--history-bytes", "1MiB")
    channel = f"/events/big-{uuid.uuid4().hex[:6]}"
    before = rss(hub)
    event = b"e" * 200_000
    with HealthyProbe(hub, "40 MB into one channel (--history-bytes 1MiB)") as probe:
        first = exchange(hub, request_bytes("POST", channel, event))
        assert first[0] == 200
        statuses = pipelined(hub, [request_bytes("POST", channel, event)] * 200, window=20)
    probe.check()
    assert statuses == [200] * 200
    retained = metric(hub, "ssehub_history_bytes")
    assert retained <= 1 * MiB + 2048  # the probe's channel holds a few small events
    grown = rss(hub) - before
    print(f"RSS grew {grown / MiB:.1f} MiB for 40 MB published into one channel")
    assert grown < 16 * MiB
    # The first event is gone: a client resuming from it is told, then gets what is left.
    first_id = json.loads(first[2])["id"]
    got = _resume(hub, channel, first_id, b"e" * 200_000 + b"\n\n")
    assert got.split(b"\r\n\r\n", 1)[1].startswith(b"event: ssehub.gap\n")


def test_history_memory_bounds_the_hub_oldest_events_first(start_hub: HubFactory) -> None:
    hub = start_hub("--history-memory", "8MiB")
    prefix = f"/events/mem-{uuid.uuid4().hex[:6]}-"
    before = rss(hub)
    event = b"m" * 64_000
    first: dict[int, str] = {}
    last: dict[int, str] = {}
    with HealthyProbe(hub, "64 MB over 64 channels (--history-memory 8MiB)") as probe:
        for round_ in range(16):
            requests = [request_bytes("POST", f"{prefix}{ch}", event) for ch in range(64)]
            if round_ in (0, 15):
                for ch, req in enumerate(requests):
                    ids = first if round_ == 0 else last
                    ids[ch] = json.loads(exchange(hub, req)[2])["id"]
            else:
                assert pipelined(hub, requests, window=16) == [200] * 64
    probe.check()
    retained = metric(hub, "ssehub_history_bytes")
    assert 6 * MiB < retained <= 8 * MiB
    assert metric(hub, "ssehub_history_evicted_total") > 0
    grown = rss(hub) - before
    print(f"RSS grew {grown / MiB:.1f} MiB for 64 MB published (bound 8 MiB)")
    assert grown < 32 * MiB
    # The oldest events went first, whichever channel: resuming from round 0 is a gap...
    for ch in (0, 63):
        got = _resume(hub, f"{prefix}{ch}", first[ch], b"\n\n")
        assert got.split(b"\r\n\r\n", 1)[1].startswith(b"event: ssehub.gap\n")
    # ...while the last round is still held, in every channel.
    statuses = pipelined(hub, [request_bytes("POST", f"{prefix}{ch}", b"last") for ch in (0, 63)])
    assert statuses == [200, 200]
    for ch in (0, 63):
        got = _resume(hub, f"{prefix}{ch}", last[ch], b"data: last\n")
        assert b"ssehub.gap" not in got


def test_channel_state_is_freed_after_ttl_expiry(start_hub: HubFactory) -> None:
    hub = start_hub("--history-ttl", "1")
    with HealthyProbe(hub, "2 x 30k one-event channels expiring (--history-ttl 1)") as probe:
        # The probe's own channel keeps one history while it publishes.
        fill_channels(hub, 30_000, "w1-")
        _wait_metric(hub, "ssehub_history_channels", 1)
        after_first = rss(hub)
        fill_channels(hub, 30_000, "w2-")
        assert metric(hub, "ssehub_history_channels") > 1000
        _wait_metric(hub, "ssehub_history_channels", 1)
        after_second = rss(hub)
    probe.check()
    _wait_metric(hub, "ssehub_history_channels", 0)
    assert metric(hub, "ssehub_history_bytes") == 0
    grown = after_second - after_first
    print(f"RSS grew {grown / MiB:.1f} MiB for a second wave of 30k channels")
    # Without freeing, each wave of 30k channels keeps ~40 MiB for good.
    assert grown < 8 * MiB


# -- point 6: metrics stay cheap -----------------------------------------------------------------


def test_metrics_at_50k_channels_are_small_and_quick(start_hub: HubFactory) -> None:
    hub = start_hub()
    fill_channels(hub, 50_000, "mx-")

    def scrape() -> tuple[float, int, bytes]:
        started = time.monotonic()
        status, _, body = exchange(hub, request_bytes("GET", "/metrics"))
        return time.monotonic() - started, status, body

    with HealthyProbe(hub, "/metrics scraped at 50k channels, 1 s") as probe:
        scrapes = repeat_for(1.0, scrape, most=100)
    probe.check()
    for took, status, body in scrapes:
        assert status == 200
        assert len(body) < 64 * 1024, len(body)
        assert took < 0.1, took
    text = scrapes[-1][2].decode()
    series = [line for line in text.splitlines() if line.startswith("ssehub_events_published")]
    assert 2 <= len(series) <= 52  # the top 50 and (other)
    other = [line for line in series if 'channel="(other)"' in line]
    assert other and float(other[0].split()[-1]) >= 49_950
    print(
        f"{len(scrapes)} scrapes, worst {max(s[0] for s in scrapes) * 1000:.1f} ms, "
        f"{len(scrapes[-1][2])} bytes"
    )
