"""History bounded in bytes (per channel and per hub), channel state freed, events that fit a
client's buffer, and text that cannot be encoded: the hub and the wire format as a library."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ssehub import (
    GAP_EVENT,
    EventParser,
    EventTooLarge,
    Hub,
    InvalidMessage,
    MemoryBackend,
    Message,
    Subscription,
)
from ssehub.backends.memory import CHANNEL_OVERHEAD, EVENT_OVERHEAD


def _events(sub: Subscription) -> list[Message]:
    chunk = sub.take()
    return EventParser().feed(chunk) if chunk else []


def _backend(hub: Hub) -> MemoryBackend:
    assert isinstance(hub.backend, MemoryBackend)
    return hub.backend


# -- bytes per channel -------------------------------------------------------------------------


async def test_history_bytes_keeps_the_newest_events_that_fit() -> None:
    hub = Hub(history_bytes=10_000)
    ids = [await hub.publish("/a", "x" * 1000) for _ in range(50)]
    backend = _backend(hub)
    assert backend.retained_bytes <= 10_000 + CHANNEL_OVERHEAD
    sub = await hub.subscribe("/a", last_event_id=ids[0])
    events = _events(sub)
    assert events[0].event == GAP_EVENT
    kept = [e.id for e in events[1:]]
    assert kept == ids[-len(kept) :] and 5 <= len(kept) < 10


async def test_an_event_over_history_bytes_is_delivered_but_not_kept() -> None:
    hub = Hub(history_bytes=1000)
    live = await hub.subscribe("/a")
    await hub.publish("/a", "y" * 5000)
    assert [e.data for e in _events(live)] == ["y" * 5000]
    assert _backend(hub).retained_bytes == 0 and not hub.backend.retains("/a")


# -- bytes for the hub -------------------------------------------------------------------------


async def test_history_memory_evicts_the_hubs_oldest_events_first() -> None:
    cost = 1000 + EVENT_OVERHEAD
    # Room for about 12 of the 30 events (each ~1,040 bytes encoded plus the overhead).
    hub = Hub(history_memory=12 * (cost + 40) + 3 * CHANNEL_OVERHEAD)
    ids: dict[str, list[str]] = {name: [] for name in ("/a", "/b", "/c")}
    for _ in range(10):
        for name, channel_ids in ids.items():
            channel_ids.append(await hub.publish(name, "z" * 1000))
    backend = _backend(hub)
    assert backend.retained_bytes <= hub.history_memory  # type: ignore[operator]
    assert backend.evicted > 0
    # Whatever was evicted was older than whatever is kept, across channels.
    kept = []
    for name, channel_ids in ids.items():
        sub = await hub.subscribe(name, last_event_id=channel_ids[0])
        events = _events(sub)
        assert events[0].event == GAP_EVENT
        kept += [channel_ids.index(e.id) for e in events[1:]]  # type: ignore[arg-type]
    # Rounds 0-5 went first; the newest rounds stay, in every channel.
    assert min(kept) >= 6 and max(kept) == 9 and len(kept) >= 9


async def test_a_channel_evicted_entirely_is_freed_and_resuming_from_it_is_a_gap() -> None:
    hub = Hub(history_memory=3 * (2000 + EVENT_OVERHEAD) + 2 * CHANNEL_OVERHEAD)
    old = await hub.publish("/old", "o" * 2000)
    newest = await hub.publish("/old", "o" * 2000)
    for _ in range(5):
        await hub.publish("/new", "n" * 2000)
    assert not hub.backend.retains("/old")
    assert hub.published_count("/old") == 0  # its counter went with it
    sub = await hub.subscribe("/old", last_event_id=old)
    assert [e.event for e in _events(sub)] == [GAP_EVENT]
    # Resuming from its very last event is not a gap: nothing after it was lost.
    last = await hub.subscribe("/old", last_event_id=newest)
    assert _events(last) == []


# -- state freed ------------------------------------------------------------------------------


async def test_channel_state_is_freed_after_ttl_expiry_without_a_publish() -> None:
    hub = Hub(history_ttl=0.05)
    for i in range(1000):
        await hub.publish(f"/c{i}", "x")
    assert _backend(hub).retained_channels == 1000
    assert len(hub.published_counts()) == 1000
    for _ in range(100):  # the hub-wide sweep runs on its own
        if not _backend(hub).retained_channels:
            break
        await asyncio.sleep(0.02)
    assert _backend(hub).retained_channels == 0
    assert _backend(hub).retained_bytes == 0
    assert hub.published_counts() == {}
    assert hub.published_total == 1000
    await hub.shutdown()


async def test_resuming_from_the_last_event_of_an_expired_channel_is_not_a_gap() -> None:
    hub = Hub(history_ttl=0.05)
    last = await hub.publish("/t", "old")
    await asyncio.sleep(0.15)
    assert not hub.backend.retains("/t")
    quiet = await hub.subscribe("/t", last_event_id=last)
    assert _events(quiet) == []
    await hub.publish("/t", "new")
    again = await hub.subscribe("/t", last_event_id=last)
    assert [e.data for e in _events(again)] == ["new"]
    await hub.shutdown(0.1)


async def test_a_resumed_subscriber_gets_live_events_after_its_channels_history_was_freed() -> None:
    # Positions order a channel's events for the replay/live seam: a history freed and made anew
    # must keep counting up, or the resumed subscriber would skip the new history's first events.
    hub = Hub(history_ttl=0.1)
    ids = [await hub.publish("/p", f"e{i}") for i in range(5)]
    sub = await hub.subscribe("/p", last_event_id=ids[0])
    assert [e.data for e in _events(sub)] == ["e1", "e2", "e3", "e4"]
    for _ in range(100):  # the hub-wide sweep frees the expired history on its own
        if not hub.backend.retains("/p"):
            break
        await asyncio.sleep(0.02)
    assert not hub.backend.retains("/p")
    await hub.publish("/p", "fresh")
    assert [e.data for e in _events(sub)] == ["fresh"]
    await hub.shutdown(0.1)


async def test_a_channel_counter_lives_while_it_has_subscribers_or_history() -> None:
    hub = Hub(history=0)
    await hub.publish("/nobody", "x")
    assert hub.published_count("/nobody") == 0 and hub.published_total == 1
    sub = await hub.subscribe("/watched")
    await hub.publish("/watched", "x")
    assert hub.published_count("/watched") == 1
    hub.unsubscribe(sub)
    assert hub.published_counts() == {}


def test_byte_bounds_are_validated() -> None:
    for bad in (0, -1, 1.5, True):
        for name in ("history_bytes", "history_memory"):
            settings: dict[str, Any] = {name: bad}
            with pytest.raises(ValueError) as caught:
                Hub(**settings)
            assert str(caught.value) == (
                f"{name} must be a positive number of bytes or None, got {bad!r}"
            )
    assert Hub(history_bytes=None, history_memory=None).history_memory is None


# -- events and client buffers ----------------------------------------------------------------


async def test_an_event_larger_than_max_buffer_is_refused_before_anyone_gets_it() -> None:
    hub = Hub(max_buffer=1000)
    sub = await hub.subscribe("/a")
    with pytest.raises(EventTooLarge, match="larger than a client's buffer of 1000"):
        await hub.publish("/a", "x" * 1000)
    with pytest.raises(EventTooLarge):
        await hub.publish("/a", "\n" * 200)  # 200 line breaks encode to ~1400 bytes
    with pytest.raises(EventTooLarge):
        await hub.broadcast("x" * 2000)
    assert hub.published_total == 0 and not sub.closed
    await hub.publish("/a", "fits")
    assert [e.data for e in _events(sub)] == ["fits"]


# -- text that cannot be encoded ---------------------------------------------------------------


@pytest.mark.parametrize("field", ["data", "id", "event", "comment"])
def test_message_refuses_a_lone_surrogate_in_any_field(field: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        Message(**{field: "ok \ud800 no"})  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"{field} is not encodable as UTF-8: a lone surrogate at index 3 "
        "(text must be valid Unicode)"
    )
    assert Message(**{field: "ok \U0001f600 é"}).encode()  # type: ignore[arg-type]
