"""The memory backend through its own interface (start, publish, replay, its counters), the
cases scripts/mutate showed untested: exact bounds, counters after trimming, positions,
tombstones, and many short-lived channels.

In-process and fast: no socket, no timer waited on (no ``history_ttl``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ssehub import GAP_EVENT, EventParser, EventTooLarge, Hub, MemoryBackend, Message, Replay
from ssehub.backends import memory
from ssehub.backends.base import Position
from ssehub.backends.memory import _SWEEP_BATCH, CHANNEL_OVERHEAD, EVENT_OVERHEAD
from ssehub.selectors import Selectors
from tests._support.clock import Clock, frozen_clock

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


async def test_an_event_admitted_then_accepted_is_public_unless_said_private() -> None:
    # `admit` and `accept`: the two halves of publish, for a backend that stores the event
    # elsewhere in between (SqliteBackend); by default the event is public, as with publish.
    backend, delivered = await started()
    start = await backend.publish("/a", Message("start"))
    admitted = backend.admit("/a", Message("x"))
    assert isinstance(admitted, memory.Admitted) and not admitted.private
    assert delivered[-1][1] == start  # nothing delivered before accept
    event_id = backend.accept(admitted)
    assert delivered[-1] == ("/a", event_id, Message("x", id=event_id).encode(), (2,))
    assert [e for e, _ in (await backend.replay("/a", start)).events] == [event_id]
    secret = backend.admit("/a", Message("s"), private=True)
    assert isinstance(secret, memory.Admitted) and secret.private
    secret_id = backend.accept(secret)
    assert [e for e, _ in (await backend.replay("/a", start)).events] == [event_id]
    assert [e for e, _ in (await backend.replay("/a", start, private=True)).events] == [
        event_id,
        secret_id,
    ]


async def test_a_stream_resuming_several_channels_on_a_fresh_hub_gets_the_first_event() -> None:
    # The id is unknown (another hub's): a gap, then every live event, the very first included.
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    try:
        wild = await hub.subscribe(["/r/{id}"], last_event_id="from-another-hub")
        both = await hub.subscribe(["/a", "/b"], last_event_id="from-another-hub")
        first = await hub.publish(("/r/1", "/a"), "first")
        for sub in (wild, both):
            received = EventParser().feed(sub.take() or b"")
            assert received[0].event == GAP_EVENT
            assert [(m.id, m.data) for m in received[1:]] == [(first, "first")]
    finally:
        await hub.shutdown(timeout=0.1)


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


@pytest.fixture
def tombstones(monkeypatch: pytest.MonkeyPatch) -> int:
    """`TOMBSTONES`, made small: the rule is the same for 10 as for 10 000, and 10 are quick."""
    monkeypatch.setattr(memory, "TOMBSTONES", 10)
    return 10


async def test_the_most_recent_tombstones_are_kept(tombstones: int) -> None:
    backend, _ = await started(history_bytes=1)  # every channel is freed at once
    for n in range(tombstones + 1):
        await backend.publish(f"/c{n}", Message("x", id=f"last{n}"))
    assert not (await backend.replay("/c0", "last0")).found
    assert (await backend.replay("/c1", "last1")).found
    newest = tombstones
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


# -- age: exact bounds and the sweep, on a clock the test moves --------------------------
# The sweep's timer fires every min(history_ttl, 1 s): with a TTL of a minute it does not fire
# during these tests, which run it themselves (`_sweep`, what the timer calls) to see each
# slice of its work.

TTL = 60.0


async def aged(clock: Clock, **settings: Any) -> tuple[MemoryBackend, list[str]]:
    """A started backend with ``history_ttl=TTL`` on ``clock``, and the channels it forgets."""
    forgotten: list[str] = []
    backend = MemoryBackend()
    await backend.start(
        lambda *args: None,
        history=settings.get("history", 1000),
        history_ttl=TTL,
        history_bytes=settings.get("history_bytes"),
        history_memory=settings.get("history_memory"),
        forget=forgotten.append,
    )
    return backend, forgotten


def ids(replay: Replay) -> list[str]:
    return [event_id for event_id, _ in replay.events]


async def test_an_event_exactly_history_ttl_old_is_kept_and_older_is_gone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, _ = await aged(clock)
    await backend.publish("/a", Message("x", id="old"))
    clock.advance(1.0)
    await backend.publish("/a", Message("x", id="new"))
    clock.advance(TTL - 1.0)  # "old" is exactly TTL old
    assert await backend.channels() == ["/a"]
    assert ids(await backend.replay("/a", "unknown")) == ["old", "new"]
    assert backend._sweep()
    assert backend.retained("/a")[0] == 2
    clock.advance(0.5)
    # Replay alone (no sweep, no publish) drops the expired event, and says it is gone.
    replay = await backend.replay("/a", "old")
    assert (ids(replay), replay.found) == (["new"], True)
    assert backend.retained("/a")[0] == 1
    clock.advance(0.5)  # "new" is exactly TTL old: still listed
    assert await backend.channels() == ["/a"]
    clock.advance(0.5)
    assert await backend.channels() == []
    await backend.close()


async def test_a_publish_of_a_retained_id_after_it_expired_is_not_a_duplicate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, _ = await aged(clock)
    await backend.publish("/a", Message("x", id="k"))
    clock.advance(TTL + 1.0)
    again = await backend.publish("/a", Message("y", id="k"))
    assert not again.duplicate
    assert ids(await backend.replay("/a", "unknown")) == ["k"]
    assert backend.retained_events == 1
    await backend.close()


async def test_the_sweep_expires_the_oldest_events_of_every_channel_and_keeps_younger_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock)
    for channel, at in (("/a", 0), ("/b", 5), ("/a", 10), ("/c", 30), ("/a", 20)):
        clock.now = 1000.0 + at
        await backend.publish(channel, Message("x", id=f"{channel}@{at}"))
    clock.now = 1000.0 + 15 + TTL  # everything published before t=15 has expired
    assert backend._sweep()
    assert forgotten == ["/b"]
    assert backend.retained("/a")[0] == 1
    assert backend.retained("/c")[0] == 1
    consistent(backend, ["/a", "/b", "/c"])
    # The last event of a channel the sweep freed is still known: resuming from it is no gap.
    assert (await backend.replay("/b", "/b@5")).found
    await backend.close()


async def test_the_sweep_sees_past_a_channel_that_trimmed_its_oldest_events_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /a's place in the age order is still its first event's, trimmed by the count bound: the
    # sweep must find /a's real oldest event (young) and go on to /b (expired).
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock, history=2)
    for channel, at in (("/a", 0), ("/b", 5), ("/a", 20), ("/a", 30)):
        clock.now = 1000.0 + at
        await backend.publish(channel, Message("x", id=f"{channel}@{at}"))
    clock.now = 1000.0 + 15 + TTL
    assert backend._sweep()
    assert forgotten == ["/b"]
    assert ids(await backend.replay("/a", "unknown")) == ["/a@20", "/a@30"]
    await backend.close()


async def test_the_sweep_steps_over_channels_freed_before_it_and_counts_them_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock, history_bytes=300)
    await backend.publish("/gone", Message("x" * 400))  # over history_bytes: freed at once
    clock.advance(1.0)
    await backend.publish("/b", Message("x", id="b"))
    assert forgotten == ["/gone"]
    clock.advance(TTL + 1.0)
    assert backend._sweep()
    assert forgotten == ["/gone", "/b"]
    assert (backend.retained_events, backend.retained_bytes) == (0, 0)
    await backend.close()


async def test_the_sweep_works_in_slices_and_reports_when_it_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock)
    channels = [f"/c{n}" for n in range(30)]
    for channel in channels:
        await backend.publish(channel, Message("x"))
    clock.advance(TTL + 1.0)
    # Each expired event costs two steps of the budget: finding it, and evicting it.
    assert not backend._sweep(10)
    assert forgotten == channels[:5]
    assert not backend._sweep(11)  # the last step finds an event: it is evicted too
    assert forgotten == channels[:11]
    assert not backend._sweep(1)
    assert forgotten == channels[:12]
    assert backend._sweep()
    assert forgotten == channels
    consistent(backend, channels)
    assert backend.retained_bytes == 0
    await backend.close()


async def test_a_sweep_whose_budget_went_on_stale_keys_is_not_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Channels that trimmed their oldest events themselves leave keys to correct first; a
    # slice spent on them must continue at once, not a second later.
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock, history=1)
    live = [f"/live{n}" for n in range(5)]
    for channel in live:
        await backend.publish(channel, Message("x"))
    clock.advance(1.0)
    await backend.publish("/old", Message("x"))
    clock.advance(19.0)
    for channel in live:
        await backend.publish(channel, Message("y"))  # /live*'s keys (older than /old's) are stale
    clock.advance(TTL - 15.0)  # /old has expired, /live*'s events have not
    assert not backend._sweep(5)  # the budget of a step per stale key, and no more
    assert forgotten == []
    assert backend._sweep()
    assert forgotten == ["/old"]
    await backend.close()


def _delay(backend: MemoryBackend) -> float:
    # When the sweep runs next, from now (the timer is private: only its timing is checked).
    sweeper = backend._sweeper
    assert sweeper is not None
    return sweeper.when() - asyncio.get_running_loop().time()


@pytest.mark.parametrize(("ttl", "every"), [(TTL, 1.0), (0.5, 0.5)])
async def test_the_sweep_runs_every_second_or_every_ttl_when_shorter(
    monkeypatch: pytest.MonkeyPatch, ttl: float, every: float
) -> None:
    clock = frozen_clock(monkeypatch)
    backend = MemoryBackend()
    await backend.start(lambda *args: None, history=10, history_ttl=ttl)
    assert _delay(backend) == pytest.approx(every, abs=0.2)
    await backend.publish("/a", Message("x"))
    clock.advance(ttl / 2)
    assert backend._sweep()
    assert _delay(backend) == pytest.approx(every, abs=0.2)
    await backend.close()
    assert backend._sweeper is None


async def test_a_sweep_with_more_to_do_continues_at_the_next_turn_of_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock)
    for n in range(3):
        await backend.publish(f"/c{n}", Message("x"))
    clock.advance(TTL + 1.0)
    assert not backend._sweep(2)
    assert _delay(backend) == pytest.approx(0.0, abs=0.2)
    for _ in range(3):
        await asyncio.sleep(0)  # the loop runs the rest of the sweep in its next turns
    assert forgotten == ["/c0", "/c1", "/c2"]
    assert _delay(backend) == pytest.approx(1.0, abs=0.2)
    await backend.close()


async def test_one_publish_evicts_at_most_a_batch_and_later_publishes_catch_up() -> None:
    # The hub-wide bound costs a bounded amount of work per publish, even when one large event
    # needs thousands of small ones gone.
    small = cost(Message("s", id="s0000").encode())
    bound = 2 * CHANNEL_OVERHEAD + (_SWEEP_BATCH + 100) * small
    backend, _ = await started(history=10 * _SWEEP_BATCH, history_memory=bound)
    for n in range(_SWEEP_BATCH + 100):
        await backend.publish("/small", Message("s", id=f"s{n:04}"))
    assert backend.evicted == 0
    await backend.publish("/large", Message("x" * ((_SWEEP_BATCH + 50) * small)))
    assert backend.evicted == _SWEEP_BATCH
    assert backend.retained_bytes > bound
    await backend.publish("/large", Message("y"))
    assert backend.retained_bytes <= bound
    assert backend.evicted > _SWEEP_BATCH
    consistent(backend, ["/small", "/large"])


# -- resuming several channels: replay_selected ------------------------------------------


def sel(*selectors: str) -> Selectors:
    return Selectors(list(selectors))


async def test_a_selection_resume_gives_ids_and_bytes_in_publish_order() -> None:
    backend, _ = await started()
    start = await backend.publish("/a", Message("a0"))
    one = await backend.publish("/b", Message("b1"))
    two = await backend.publish(("/a", "/b"), Message("both"))
    replay = await backend.replay_selected(sel("/a", "/b"), start)
    assert replay.events == (
        (one, Message("b1", id=one).encode()),
        (two, Message("both", id=two).encode()),
    )
    assert replay.found
    assert replay.head == (3,)


async def test_a_selection_resume_from_the_last_event_of_a_freed_channel_misses_nothing() -> None:
    # An event over history_bytes is delivered and freed at once: its channel keeps a tombstone.
    backend, _ = await started(history_bytes=300)
    last = await backend.publish("/gone", Message("x" * 400))
    replay = await backend.replay_selected(sel("/gone", "/b"), last)
    assert (replay.events, replay.found) == ((), True)
    # A channel matched by a template, freed after the id: the client may have missed it.
    start = await backend.publish("/r/1", Message("kept"))
    await backend.publish("/r/2", Message("x" * 400))
    assert not (await backend.replay_selected(sel("/r/{id}"), start)).found
    # ...but not a channel the selection does not match.
    await backend.publish("/other", Message("x" * 400))
    fresh = await backend.publish("/r/1", Message("kept too"))
    await backend.publish("/elsewhere", Message("x" * 400))
    assert (await backend.replay_selected(sel("/r/{id}"), fresh)).found
    assert (await backend.replay_selected(sel("/r/{id}", "/x"), fresh)).found


async def test_a_selection_resume_from_the_newest_trimmed_event_misses_nothing() -> None:
    backend, _ = await started(history=1)
    first = await backend.publish("/a", Message("a1"))
    await backend.publish("/a", Message("a2"))  # a1 is trimmed: the newest trimmed event
    replay = await backend.replay_selected(sel("/a", "/b"), first)
    assert (len(replay.events), replay.found) == (1, True)


async def test_a_selection_resume_from_the_newest_event_whose_channel_is_gone() -> None:
    backend, _ = await started(history_bytes=300)
    await backend.publish("/b", Message("b"))
    newest = await backend.publish("/gone", Message("x" * 400))  # the last id assigned
    replay = await backend.replay_selected(sel("/b"), newest)
    assert (replay.events, replay.found) == ((), True)
    assert not (await backend.replay_selected(sel("/b"), newest[:-1] + "x")).found
    assert not (await backend.replay_selected(sel("/b"), newest + "0")).found


async def test_a_recreated_channel_remembers_what_it_lost_before() -> None:
    backend, _ = await started(history_bytes=300)
    start = await backend.publish("/b", Message("b"))
    await backend.publish("/a", Message("x" * 400))  # freed: a tombstone
    await backend.publish("/a", Message("small"))  # the history made anew
    replay = await backend.replay_selected(sel("/a", "/b"), start)
    assert not replay.found  # the big event was published after `start`, and is gone
    assert [Message("small", id=event_id).encode() for event_id, _ in replay.events] == [
        data for _, data in replay.events
    ]


async def test_forgotten_tombstones_make_older_selection_resumes_a_gap(tombstones: int) -> None:
    backend, _ = await started(history_bytes=1)  # every channel is freed at once
    start = await backend.publish("/z", Message("z"))
    first = await backend.publish("/c0", Message("x"))
    for n in range(1, tombstones + 1):
        await backend.publish(f"/c{n}", Message("x"))
    # /c0's tombstone is forgotten: an id before its last event may have missed it...
    assert not (await backend.replay_selected(sel("/z", "/c0"), start)).found
    # ...and its last event's own id missed nothing.
    replay = await backend.replay_selected(sel("/c0"), first)
    assert (replay.events, replay.found) == ((), True)


async def test_a_selection_resume_expires_and_frees_what_is_too_old(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock)
    start = await backend.publish("/a", Message("a"))
    await backend.publish("/b", Message("b"))
    clock.advance(TTL / 2)
    young = await backend.publish("/c", Message("c"))
    clock.advance(TTL / 2 + 1.0)
    replay = await backend.replay_selected(sel("/a", "/b", "/c"), start)
    assert [event_id for event_id, _ in replay.events] == [young]
    assert not replay.found  # /b's event, published after `start`, expired
    assert sorted(forgotten) == ["/a", "/b"]
    assert backend.retained_channels == 1
    await backend.close()


async def test_a_replay_of_a_fully_expired_channel_frees_it_and_knows_its_last_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = frozen_clock(monkeypatch)
    backend, forgotten = await aged(clock)
    await backend.publish("/a", Message("x", id="first"))
    await backend.publish("/a", Message("x", id="last"))
    clock.advance(TTL + 1.0)
    replay = await backend.replay("/a", "last")
    assert (replay.events, replay.found) == ((), True)
    assert forgotten == ["/a"]
    assert backend.retained_channels == 0
    assert not (await backend.replay("/a", "first")).found
    await backend.close()


async def test_eviction_takes_the_oldest_event_of_the_hub_each_time() -> None:
    one = cost(Message("x", id="a0").encode())
    backend, _ = await started(history_memory=3 * CHANNEL_OVERHEAD + 4 * one)
    for channel, event_id in (("/a", "a0"), ("/b", "b1"), ("/a", "a2"), ("/c", "c3")):
        await backend.publish(channel, Message("x", id=event_id))
    assert backend.evicted == 0
    await backend.publish("/c", Message("x", id="c4"))  # one over: a0 goes
    assert ids(await backend.replay("/a", "none")) == ["a2"]
    await backend.publish("/c", Message("x", id="c5"))  # one over again: b1, the oldest, goes
    assert backend.retained("/b") == (0, 0)
    assert ids(await backend.replay("/a", "none")) == ["a2"]
    assert backend.evicted == 2


async def test_a_multi_channel_publish_past_the_hub_wide_bound_after_an_expiry_counts_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Publishing to /a and /b with an id first expires what each holds (to look for the id):
    # /b is left empty, not yet freed, and the hub-wide bound may reach it before /b retains
    # the new event.
    clock = frozen_clock(monkeypatch)
    one = cost(Message("x", id="k").encode())
    backend, forgotten = await aged(clock, history_memory=2 * CHANNEL_OVERHEAD + one - 1)
    await backend.publish("/b", Message("x", id="j"))
    clock.advance(TTL + 1.0)
    await backend.publish(("/a", "/b"), Message("x", id="k"))
    assert forgotten == ["/b", "/a"]  # /b emptied by its age, /a by the bound
    assert backend.retained("/b") == (1, one + CHANNEL_OVERHEAD)
    assert (backend.retained_events, backend.evicted) == (1, 1)
    consistent(backend, ["/a", "/b"])
    await backend.close()
