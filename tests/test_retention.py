"""History retention: `history_ttl` and the count bound hold on replay alone, with no later publish.

A channel that goes quiet must still forget its expired events: a client resuming an hour later
is told about the gap instead of being replayed stale events. Every test here waits for the TTL
to pass and then only replays (or subscribes); nothing is published after the wait, since a
publish also trims history and would hide a replay that forgot to.
"""

from __future__ import annotations

import asyncio
import json
import time

from ssehub import GAP_EVENT, EventParser, Hub, MemoryBackend, Message
from ssehub.resume import Position

TTL = 0.2


def deliver_nowhere(
    channel: str | tuple[str, ...],
    event_id: str,
    data: bytes,
    position: Position | None = None,
    private: bool = False,
    /,
) -> None:
    """A hub intake that drops every event (these tests read history only)."""


async def wait_past(moment: float) -> None:
    """Sleep until ``time.monotonic()`` is past ``moment`` (the clock the backend stamps with)."""
    while (left := moment - time.monotonic()) > 0:
        await asyncio.sleep(left + 0.01)


async def started_backend(*, history: int = 100, ttl: float | None = TTL) -> MemoryBackend:
    backend = MemoryBackend()
    await backend.start(deliver_nowhere, history=history, history_ttl=ttl)
    return backend


async def test_replay_alone_drops_events_older_than_the_ttl() -> None:
    backend = await started_backend()
    published_before = time.monotonic()
    await backend.publish("/a", Message("one"))
    await backend.publish("/a", Message("two"))
    assert len((await backend.replay("/a", "unknown")).events) == 2
    await wait_past(published_before + TTL * 1.5)
    # Whether the age sweep or this replay expires them first (a loaded machine delays the
    # sweep), nothing is replayed and the id is not found; `head` may still name the newest.
    replay = await backend.replay("/a", "unknown")
    assert (replay.events, replay.found) == ((), False)
    assert await backend.channels() == []


async def test_replay_keeps_events_younger_than_the_ttl_and_drops_older_ones() -> None:
    backend = await started_backend(ttl=1.0)
    old_at = time.monotonic()
    await backend.publish("/a", Message("old"))
    await wait_past(old_at + 0.5)
    new_at = time.monotonic()
    new_id = await backend.publish("/a", Message("new"))
    await wait_past(old_at + 1.0 + 0.02)
    replay = await backend.replay("/a", "unknown")
    replayed_at = time.monotonic()
    expected = []
    # On a machine stalled past the new event's TTL as well, it is rightly gone too: the
    # expectation follows the clock; the old event must be gone either way.
    if replayed_at - new_at < 1.0:
        expected = [new_id]
    assert [event_id for event_id, _ in replay.events] == expected
    assert not replay.found


async def test_channels_forget_a_channel_whose_history_expired() -> None:
    backend = await started_backend()
    at = time.monotonic()
    await backend.publish("/quiet", Message("x"))
    assert await backend.channels() == ["/quiet"]
    await wait_past(at + TTL * 1.5)
    assert await backend.channels() == []


async def test_without_a_ttl_nothing_expires() -> None:
    backend = await started_backend(ttl=None)
    at = time.monotonic()
    first = await backend.publish("/a", Message("one"))
    await backend.publish("/a", Message("two"))
    await wait_past(at + TTL * 1.5)
    replay = await backend.replay("/a", first)
    assert replay.found and len(replay.events) == 1


async def test_resume_after_every_event_expired_gets_the_gap_event_and_nothing_stale() -> None:
    hub = Hub(history_ttl=TTL)
    at = time.monotonic()
    first = await hub.publish("/a", "stale one")
    last = await hub.publish("/a", "stale two")
    await wait_past(at + TTL * 1.5)
    sub = await hub.subscribe("/a", last_event_id=first)
    events = EventParser().feed(sub.take() or b"")
    assert [e.event for e in events] == [GAP_EVENT]
    assert json.loads(events[0].data) == {"last_event_id": first, "replayed": 0}
    # Resuming from the newest event, even expired, has missed nothing: no gap, no replay.
    up_to_date = await hub.subscribe("/a", last_event_id=last)
    assert up_to_date.take() is None
    assert hub.replayed == 0
    await hub.shutdown()


async def test_broadcast_skips_channels_whose_history_expired() -> None:
    hub = Hub(history_ttl=TTL)
    at = time.monotonic()
    await hub.publish("/gone", "x")
    await wait_past(at + TTL * 1.5)
    assert await hub.broadcast("hello") == {}
    await hub.shutdown()
