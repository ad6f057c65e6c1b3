"""History retention: `history_ttl` and the count bound hold on replay alone, with no later publish.

A channel that goes quiet must still forget its expired events: a client resuming an hour later
is told about the gap instead of being replayed stale events. Every test here moves the clock
past the TTL (tests/_support/clock.py: no waiting, and the age sweep does not run meanwhile) and
then only replays (or subscribes); nothing is published after that, since a publish also trims
history and would hide a replay that forgot to.
"""

from __future__ import annotations

import json

import pytest

from ssehub import GAP_EVENT, EventParser, Hub, MemoryBackend, Message
from ssehub.resume import Position
from tests._support.clock import Clock, frozen_clock

TTL = 60.0  # seconds on the test's clock, which only the test moves


def deliver_nowhere(
    channel: str | tuple[str, ...],
    event_id: str,
    data: bytes,
    position: Position | None = None,
    private: bool = False,
    /,
) -> None:
    """A hub intake that drops every event (these tests read history only)."""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return frozen_clock(monkeypatch)


async def started_backend(*, history: int = 100, ttl: float | None = TTL) -> MemoryBackend:
    backend = MemoryBackend()
    await backend.start(deliver_nowhere, history=history, history_ttl=ttl)
    return backend


async def test_replay_alone_drops_events_older_than_the_ttl(clock: Clock) -> None:
    backend = await started_backend()
    await backend.publish("/a", Message("one"))
    await backend.publish("/a", Message("two"))
    assert len((await backend.replay("/a", "unknown")).events) == 2
    clock.advance(TTL + 1.0)
    replay = await backend.replay("/a", "unknown")
    assert (replay.events, replay.found) == ((), False)
    assert await backend.channels() == []


async def test_replay_keeps_events_younger_than_the_ttl_and_drops_older_ones(
    clock: Clock,
) -> None:
    backend = await started_backend()
    await backend.publish("/a", Message("old"))
    clock.advance(TTL / 2)
    new_id = await backend.publish("/a", Message("new"))
    clock.advance(TTL / 2 + 1.0)
    replay = await backend.replay("/a", "unknown")
    assert [event_id for event_id, _ in replay.events] == [new_id]
    assert not replay.found


async def test_channels_forget_a_channel_whose_history_expired(clock: Clock) -> None:
    backend = await started_backend()
    await backend.publish("/quiet", Message("x"))
    assert await backend.channels() == ["/quiet"]
    clock.advance(TTL + 1.0)
    assert await backend.channels() == []


async def test_without_a_ttl_nothing_expires(clock: Clock) -> None:
    backend = await started_backend(ttl=None)
    first = await backend.publish("/a", Message("one"))
    await backend.publish("/a", Message("two"))
    clock.advance(100 * TTL)
    replay = await backend.replay("/a", first)
    assert replay.found and len(replay.events) == 1


async def test_resume_after_every_event_expired_gets_the_gap_event_and_nothing_stale(
    clock: Clock,
) -> None:
    hub = Hub(history_ttl=TTL)
    first = await hub.publish("/a", "stale one")
    last = await hub.publish("/a", "stale two")
    clock.advance(TTL + 1.0)
    sub = await hub.subscribe("/a", last_event_id=first)
    events = EventParser().feed(sub.take() or b"")
    assert [e.event for e in events] == [GAP_EVENT]
    assert json.loads(events[0].data) == {"last_event_id": first, "replayed": 0}
    # Resuming from the newest event, even expired, has missed nothing: no gap, no replay.
    up_to_date = await hub.subscribe("/a", last_event_id=last)
    assert up_to_date.take() is None
    assert hub.replayed == 0
    await hub.shutdown()


async def test_broadcast_skips_channels_whose_history_expired(clock: Clock) -> None:
    hub = Hub(history_ttl=TTL)
    await hub.publish("/gone", "x")
    clock.advance(TTL + 1.0)
    assert await hub.broadcast("hello") == {}
    await hub.shutdown()
