"""The memory backend through its own interface (start, publish, replay, its counters), the
cases scripts/mutate showed untested: exact bounds, counters after trimming, positions,
tombstones, and many short-lived channels.

In-process and fast: no socket, no timer waited on (no ``history_ttl``).
"""

from __future__ import annotations

import asyncio

import pytest

from ssehub import EventTooLarge, MemoryBackend, Message
from ssehub.backends.base import Position
from ssehub.backends.memory import CHANNEL_OVERHEAD, EVENT_OVERHEAD, TOMBSTONES

Delivered = tuple[str | tuple[str, ...], str, bytes, Position | None]


async def started(**bounds: int | None) -> tuple[MemoryBackend, list[Delivered]]:
    """A started backend (history 1000 unless given) and the list its deliveries go to."""
    delivered: list[Delivered] = []

    def deliver(
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Position | None = None,
        private: bool = False,
        /,
    ) -> None:
        delivered.append((channel, event_id, data, position))

    backend = MemoryBackend()
    history = bounds.get("history")
    await backend.start(
        deliver,
        history=1000 if history is None else history,
        history_ttl=None,
        history_bytes=bounds.get("history_bytes"),
        history_memory=bounds.get("history_memory"),
        max_event=bounds.get("max_event"),
    )
    return backend, delivered


def cost(data: bytes) -> int:
    return len(data) + EVENT_OVERHEAD


def consistent(backend: MemoryBackend, channels: list[str]) -> None:
    """The hub-wide counters are the sums of the channels' own."""
    per_channel = [backend.retained(channel) for channel in channels]
    assert backend.retained_events == sum(events for events, _ in per_channel)
    assert backend.retained_bytes == sum(size for _, size in per_channel)


# -- what is delivered, and positions ----------------------------------------------------


async def test_every_event_is_delivered_with_its_id_and_an_increasing_position() -> None:
    backend, delivered = await started()
    first = await backend.publish("/a", Message("one"))
    await backend.publish("/a", Message("two", id="mine"))
    assert [(c, i, d) for c, i, d, _ in delivered] == [
        ("/a", first, Message("one", id=first).encode()),
        ("/a", "mine", Message("two", id="mine").encode()),
    ]
    positions = [p for *_, p in delivered]
    assert None not in positions
    assert positions[0] is not None and positions[1] is not None
    assert positions[0] < positions[1]
    # A replay's head is the position of the newest event it read.
    assert (await backend.replay("/a", first)).head == positions[1]
    assert (await backend.replay("/a", "unknown")).head == positions[1]


async def test_without_history_events_are_delivered_without_a_position() -> None:
    backend, delivered = await started(history=0)
    event_id = await backend.publish("/a", Message("x"))
    assert delivered == [("/a", event_id, Message("x", id=event_id).encode(), None)]


# -- duplicates --------------------------------------------------------------------------


async def test_a_history_of_one_still_refuses_the_duplicate_of_its_event() -> None:
    backend, delivered = await started(history=1)
    assert not (await backend.publish("/a", Message("x", id="k"))).duplicate
    again = await backend.publish("/a", Message("x", id="k"))
    assert (again, again.duplicate) == ("k", True)
    assert len(delivered) == 1


# -- the size of one event ---------------------------------------------------------------


async def test_an_event_of_exactly_max_event_bytes_is_accepted_one_more_is_refused() -> None:
    size = len(Message("x" * 10, id="e").encode())
    backend, delivered = await started(max_event=size)
    await backend.publish("/a", Message("x" * 10, id="e"))
    with pytest.raises(EventTooLarge) as caught:
        await backend.publish("/a", Message("x" * 11, id="f"))
    assert str(caught.value) == (
        f"the event is {size + 1} bytes once encoded, larger than a client's buffer of {size} "
        "bytes: no subscriber could receive it (raise max_buffer / --max-buffer to send it)"
    )
    assert len(delivered) == 1


# -- exact byte bounds and counters ------------------------------------------------------


async def test_a_channel_exactly_at_history_bytes_keeps_its_event() -> None:
    data = Message("x" * 50, id="1").encode()
    backend, _ = await started(history_bytes=cost(data))
    await backend.publish("/a", Message("x" * 50, id="1"))
    assert backend.retained("/a") == (1, cost(data) + CHANNEL_OVERHEAD)


async def test_a_hub_exactly_at_history_memory_evicts_nothing() -> None:
    data = Message("x" * 50, id="1").encode()
    backend, _ = await started(history_memory=cost(data) + CHANNEL_OVERHEAD)
    await backend.publish("/a", Message("x" * 50, id="1"))
    assert (backend.retained_events, backend.evicted) == (1, 0)
    assert backend.retained_bytes == cost(data) + CHANNEL_OVERHEAD


async def test_counters_follow_trimming_by_count() -> None:
    backend, _ = await started(history=2)
    for n in range(5):
        await backend.publish("/a", Message(f"event {n}", id=str(n)))
    await backend.publish("/b", Message("b", id="b"))
    kept = [Message(f"event {n}", id=str(n)).encode() for n in (3, 4)]
    assert backend.retained("/a") == (2, sum(map(cost, kept)) + CHANNEL_OVERHEAD)
    assert backend.retained_events == 3
    consistent(backend, ["/a", "/b"])


async def test_counters_follow_hub_wide_eviction_across_channels() -> None:
    one = cost(Message("x" * 100, id="a0").encode())
    backend, _ = await started(history_memory=2 * CHANNEL_OVERHEAD + 3 * one)
    for n in range(3):
        await backend.publish("/a", Message("x" * 100, id=f"a{n}"))
    for n in range(3):
        await backend.publish("/b", Message("x" * 100, id=f"b{n}"))
    # /a went first, oldest first, and was freed when it held nothing.
    assert backend.evicted == 3
    assert backend.retained("/a") == (0, 0)
    assert backend.retained("/b") == (3, 3 * one + CHANNEL_OVERHEAD)
    consistent(backend, ["/a", "/b"])
    replay = await backend.replay("/a", "a2")
    assert (replay.events, replay.found) == ((), True)


async def test_a_channel_freed_and_evicted_again_is_counted_once() -> None:
    big = Message("x" * 400, id="big")
    small = cost(Message("s", id="s0").encode())
    forgotten: list[str] = []
    backend = MemoryBackend()
    await backend.start(
        lambda *args: None,
        history=1000,
        history_ttl=None,
        history_bytes=400,
        history_memory=3 * CHANNEL_OVERHEAD + 4 * small,
        forget=forgotten.append,
    )
    # An event over history_bytes retains nothing: the channel is freed at once.
    await backend.publish("/gone", big)
    assert forgotten == ["/gone"]
    assert backend.retained_bytes == 0
    # The hub-wide bound then walks past what /gone left behind.
    for n in range(6):
        await backend.publish("/a" if n % 2 else "/b", Message("s", id=f"s{n}"))
    assert forgotten == ["/gone"]
    consistent(backend, ["/gone", "/a", "/b"])
    assert backend.retained_bytes <= 3 * CHANNEL_OVERHEAD + 4 * small


# -- tombstones: resuming from the last event of a freed channel -------------------------


async def test_a_new_history_after_a_tombstone_replays_all_its_events() -> None:
    backend, _ = await started(history_bytes=500)
    await backend.publish("/a", Message("x" * 400, id="big"))  # over 500 with its overhead
    assert backend.retained("/a") == (0, 0)
    await backend.publish("/a", Message("s", id="s1"))
    await backend.publish("/a", Message("s", id="s2"))
    replay = await backend.replay("/a", "big")
    assert replay.found
    assert [event_id for event_id, _ in replay.events] == ["s1", "s2"]


async def test_the_most_recent_tombstones_are_kept() -> None:
    backend, _ = await started(history_bytes=1)  # every channel is freed at once
    for n in range(TOMBSTONES + 1):
        await backend.publish(f"/c{n}", Message("x", id=f"last{n}"))
    assert not (await backend.replay("/c0", "last0")).found
    assert (await backend.replay("/c1", "last1")).found
    newest = TOMBSTONES
    assert (await backend.replay(f"/c{newest}", f"last{newest}")).found


# -- many short-lived channels -----------------------------------------------------------


async def test_the_hub_wide_bound_holds_after_thousands_of_short_lived_channels() -> None:
    small = cost(Message("s", id="s00").encode())
    # Room for /live's events and the overhead of one short-lived channel at a time.
    bound = 2 * CHANNEL_OVERHEAD + 3 * small
    fits = (bound - CHANNEL_OVERHEAD) // small
    backend, _ = await started(history_bytes=20 * small, history_memory=bound)
    await backend.publish("/live", Message("s", id="s00"))
    for n in range(3000):  # each freed at once (over history_bytes)
        await backend.publish(f"/short{n}", Message("x" * 20 * small))
    assert backend.retained_events == 1
    for n in range(1, fits + 4):
        await backend.publish("/live", Message("s", id=f"s{n:02}"))
    assert backend.retained_bytes <= bound
    assert backend.retained("/live") == (fits, fits * small + CHANNEL_OVERHEAD)
    assert backend.evicted == 4
    consistent(backend, ["/live"])


async def test_the_hub_wide_bound_keeps_every_event_that_fits_exactly() -> None:
    small = cost(Message("s", id="s0").encode())
    backend, _ = await started(history_memory=CHANNEL_OVERHEAD + 2 * small)
    for n in range(3):
        await backend.publish("/a", Message("s", id=f"s{n}"))
    assert backend.retained("/a") == (2, CHANNEL_OVERHEAD + 2 * small)
    assert backend.evicted == 1


async def test_closing_a_backend_with_an_age_sweep_twice_is_harmless() -> None:
    backend = MemoryBackend()
    await backend.start(lambda *args: None, history=10, history_ttl=60.0)
    await backend.close()
    await backend.close()


async def test_the_age_sweep_expires_every_channel_without_new_publishes() -> None:
    forgotten: list[str] = []
    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    backend = MemoryBackend()
    await backend.start(lambda *args: None, history=10, history_ttl=0.02, forget=forgotten.append)
    for channel in ("/a", "/b", "/c"):
        for n in range(3):
            await backend.publish(channel, Message("x", id=f"{channel}-{n}"))
    assert backend.retained_events == 9
    deadline = loop.time() + 5.0
    while backend.retained_events and loop.time() < deadline:
        await asyncio.sleep(0.01)
    assert (backend.retained_events, backend.retained_bytes) == (0, 0)
    assert sorted(forgotten) == ["/a", "/b", "/c"]
    assert await backend.channels() == []
    # The last event of an expired channel is still known: resuming from it misses nothing.
    assert (await backend.replay("/b", "/b-2")).found
    assert not (await backend.replay("/b", "/b-1")).found
    await asyncio.sleep(0.1)  # a few more sweeps, with nothing left to expire
    await backend.close()
    assert errors == []
