"""One client's buffer: coalescing, the byte bound, the writer's wake-ups, keep-alive, threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from ssehub import CloseReason, Subscription, ThreadedSubscription


def test_take_returns_everything_pending_as_one_chunk() -> None:
    sub = Subscription("/a", max_buffer=100)
    assert sub.take() is None
    sub.push(b"one\n\n")
    sub.push(b"two\n\n")
    assert sub.pending_bytes == 10
    assert sub.take() == b"one\n\ntwo\n\n"
    assert sub.take() is None
    assert sub.pending_bytes == 0


def test_a_buffer_of_exactly_max_buffer_stays_and_one_byte_more_drops_the_client() -> None:
    closed: list[str | None] = []
    sub = Subscription("/a", max_buffer=10)
    sub.on_close = lambda s: closed.append(s.close_reason)
    sub.push(b"x" * 6)
    sub.push(b"y" * 4)
    assert not sub.closed and sub.pending_bytes == 10
    sub.push(b"z")
    assert sub.closed and sub.close_reason == CloseReason.SLOW
    assert sub.pending_bytes == 0 and sub.take() is None  # freed at once
    assert closed == [CloseReason.SLOW]
    sub.push(b"more")  # ignored once closed
    assert sub.take() is None and closed == [CloseReason.SLOW]


def test_the_bound_counts_from_the_last_take() -> None:
    sub = Subscription("/a", max_buffer=10)
    for _ in range(5):
        sub.push(b"x" * 10)
        assert sub.take() == b"x" * 10
    assert not sub.closed


def test_replayed_history_may_exceed_the_bound_until_the_next_take() -> None:
    sub = Subscription("/a", max_buffer=10)
    for _ in range(5):
        sub.push_replay(b"r" * 8)
    sub.push(b"live12345")  # 9 bytes of live events on top of 40 replayed: allowed
    assert not sub.closed and sub.pending_bytes == 49
    assert sub.take() is not None
    sub.push(b"x" * 11)  # the bound is max_buffer again
    assert sub.closed and sub.close_reason == CloseReason.SLOW


def test_arm_wakes_the_writer_once_per_arming() -> None:
    wakes: list[int] = []
    sub = Subscription("/a", max_buffer=100)
    sub.arm(lambda: wakes.append(1))
    sub.push(b"a")
    sub.push(b"b")
    assert wakes == [1]
    sub.arm(lambda: wakes.append(2))
    sub.close(CloseReason.RESTART)
    assert wakes == [1, 2]
    assert sub.take() == b"ab"  # a graceful close keeps what is queued


def test_disarmed_writer_is_not_woken() -> None:
    wakes: list[int] = []
    sub = Subscription("/a", max_buffer=100)
    sub.arm(lambda: wakes.append(1))
    sub.arm(None)
    sub.push(b"a")
    assert wakes == []


def test_keepalive_pings_only_a_subscription_that_got_nothing_since_the_last_tick() -> None:
    sub = Subscription("/a", max_buffer=100)
    sub.keepalive(b": ping\n\n")
    assert sub.take() == b": ping\n\n"
    sub.push(b"data: x\n\n")
    sub.keepalive(b": ping\n\n")  # busy since the last tick: no ping
    assert sub.take() == b"data: x\n\n"
    sub.keepalive(b": ping\n\n")  # idle for a whole tick: ping
    assert sub.take() == b": ping\n\n"


async def test_next_chunk_waits_for_bytes_and_ends_after_a_graceful_close() -> None:
    sub = Subscription("/a", max_buffer=100)
    waiter = asyncio.ensure_future(sub.next_chunk())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.push(b"a")
    sub.push(b"b")
    assert await asyncio.wait_for(waiter, 5) == b"ab"
    sub.push(b"last")
    sub.close(CloseReason.SHUTDOWN)
    assert await sub.next_chunk() == b"last"
    assert await sub.next_chunk() is None


async def test_next_chunk_after_a_slow_drop_ends_without_the_queued_bytes() -> None:
    sub = Subscription("/a", max_buffer=4)
    sub.push(b"1234")
    sub.push(b"5")
    assert await sub.next_chunk() is None


def test_close_is_idempotent_and_keeps_the_first_reason() -> None:
    calls: list[str | None] = []
    sub = Subscription("/a", max_buffer=4)
    sub.on_close = lambda s: calls.append(s.close_reason)
    sub.close(CloseReason.CHANNEL_CLOSED)
    sub.close(CloseReason.DISCONNECTED)
    assert calls == [CloseReason.CHANNEL_CLOSED]
    assert sub.close_reason == CloseReason.CHANNEL_CLOSED


def test_threaded_writer_blocks_until_bytes_arrive_from_another_thread() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    assert sub.next_chunk_blocking(0) == b""  # nothing yet: the caller may check its client
    timer = threading.Timer(0.05, sub.push, args=(b"data: x\n\n",))
    timer.start()
    try:
        assert sub.next_chunk_blocking(10) == b"data: x\n\n"
    finally:
        timer.cancel()
    threading.Timer(0.05, sub.close, args=(CloseReason.SHUTDOWN,)).start()
    assert sub.next_chunk_blocking(10) is None


async def test_threaded_subscription_cannot_be_drained_from_async_code() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    with pytest.raises(RuntimeError, match="next_chunk_blocking"):
        await sub.next_chunk()
