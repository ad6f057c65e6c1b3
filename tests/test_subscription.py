"""`Subscription`: the per-client byte bound on both sides, coalescing, and how it ends.

The bound is the promise that keeps a hub's memory flat: a client may fall exactly
``max_buffer`` bytes behind and stay; one byte more and it is dropped (it resumes from history).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from ssehub import CloseReason, Hub, Message, Subscription
from ssehub.subscription import ThreadedSubscription, WriteQueue


def sub_with(max_buffer: int) -> Subscription:
    return Subscription("/a", max_buffer=max_buffer)


def test_exactly_max_buffer_pending_bytes_stay() -> None:
    sub = sub_with(100)
    sub.push(b"x" * 60)
    sub.push(b"y" * 40)
    assert sub.pending_bytes == 100
    assert not sub.closed and sub.close_reason is None
    assert sub.take() == b"x" * 60 + b"y" * 40


def test_one_byte_over_max_buffer_drops_the_client_and_frees_its_buffer() -> None:
    sub = sub_with(100)
    sub.push(b"x" * 100)
    sub.push(b"!")
    assert sub.closed and sub.close_reason == CloseReason.SLOW
    assert sub.pending_bytes == 0
    assert sub.take() is None


@pytest.mark.parametrize(("size", "dropped"), [(100, False), (101, True)])
def test_a_single_event_is_held_to_the_same_bound(size: int, dropped: bool) -> None:
    sub = sub_with(100)
    sub.push(b"z" * size)
    assert sub.closed is dropped
    assert sub.pending_bytes == (0 if dropped else size)


def test_taking_the_pending_bytes_makes_room_again() -> None:
    sub = sub_with(100)
    for _ in range(5):  # 500 bytes in all, never more than 100 pending
        sub.push(b"a" * 100)
        assert sub.take() == b"a" * 100
    assert not sub.closed and sub.pending_bytes == 0


def test_replayed_history_may_exceed_the_bound_but_live_events_may_not_add_to_it() -> None:
    sub = sub_with(100)
    sub.push_replay(b"h" * 250)
    assert not sub.closed and sub.pending_bytes == 250
    sub.push(b"l" * 100)  # live events still get max_buffer on top of the replay
    assert not sub.closed and sub.pending_bytes == 350
    sub.push(b"!")
    assert sub.close_reason == CloseReason.SLOW


def test_after_the_replay_is_taken_the_bound_is_max_buffer_again() -> None:
    sub = sub_with(100)
    sub.push_replay(b"h" * 250)
    assert sub.take() == b"h" * 250
    sub.push(b"l" * 100)
    assert not sub.closed
    sub.push(b"!")
    assert sub.closed


def test_a_closed_subscription_ignores_pushes() -> None:
    sub = sub_with(100)
    sub.close()
    sub.push(b"late")
    assert sub.pending_bytes == 0 and sub.take() is None
    assert sub.close_reason == CloseReason.DISCONNECTED


def test_close_is_idempotent_and_keeps_the_first_reason() -> None:
    closed: list[str | None] = []
    sub = sub_with(100)
    sub.on_close = lambda s: closed.append(s.close_reason)
    sub.close(CloseReason.SHUTDOWN)
    sub.close(CloseReason.SLOW)
    assert closed == [CloseReason.SHUTDOWN]
    assert sub.close_reason == CloseReason.SHUTDOWN


def test_graceful_close_keeps_queued_bytes_for_the_writer() -> None:
    sub = sub_with(100)
    sub.push(b"last words")
    sub.close(CloseReason.RESTART)
    assert sub.pending_bytes == len(b"last words")
    assert sub.take() == b"last words"


async def test_next_chunk_coalesces_everything_pending_into_one_chunk() -> None:
    sub = sub_with(1000)
    for i in range(3):
        sub.push(b"e%d;" % i)
    # Pending bytes are taken at once (a writer that waited here would hang: fail fast).
    assert await asyncio.wait_for(sub.next_chunk(), 1) == b"e0;e1;e2;"
    assert sub.pending_bytes == 0


async def test_next_chunk_waits_for_a_push_and_ends_with_none_after_close() -> None:
    sub = sub_with(1000)
    waiting = asyncio.ensure_future(sub.next_chunk())
    await asyncio.sleep(0)
    assert not waiting.done()
    sub.push(b"x")
    assert await asyncio.wait_for(waiting, 5) == b"x"
    waiting = asyncio.ensure_future(sub.next_chunk())
    await asyncio.sleep(0)
    sub.close(CloseReason.SHUTDOWN)
    assert await asyncio.wait_for(waiting, 5) is None


async def test_slow_drop_discards_queued_bytes_even_for_a_waiting_writer() -> None:
    sub = sub_with(10)
    sub.push(b"12345")
    sub.push(b"678901")  # 11 bytes: dropped
    assert await asyncio.wait_for(sub.next_chunk(), 1) is None


def test_send_queues_one_encoded_message_for_this_client_only() -> None:
    sub = sub_with(1000)
    sub.send(Message("hi", event="welcome"))
    assert sub.take() == b"event: welcome\ndata: hi\n\n"


def test_repr_says_channel_state_and_pending() -> None:
    sub = sub_with(100)
    sub.push(b"abc")
    assert repr(sub) == "<Subscription '/a' open pending=3>"
    sub.close(CloseReason.SLOW)
    assert repr(sub) == "<Subscription '/a' closed:slow pending=0>"


def test_threaded_subscription_hands_bytes_to_a_writer_thread() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    got: list[bytes | None] = []

    def writer() -> None:
        for _ in range(100):
            chunk = sub.next_chunk_blocking(timeout=5)
            got.append(chunk)
            if chunk is None:
                return

    thread = threading.Thread(target=writer)
    thread.start()
    sub.push(b"one")
    sub.close(CloseReason.SHUTDOWN)
    thread.join(10)
    assert not thread.is_alive()
    assert b"".join(c for c in got if c) == b"one"
    assert got[-1] is None


def test_threaded_subscription_timeout_returns_empty_bytes_while_open() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    assert sub.next_chunk_blocking(timeout=0.01) == b""
    sub.push(b"x" * 101)
    assert sub.close_reason == CloseReason.SLOW
    assert sub.next_chunk_blocking(timeout=0.01) is None


async def test_threaded_subscription_cannot_be_awaited() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    with pytest.raises(RuntimeError, match="next_chunk_blocking"):
        await sub.next_chunk()


async def test_hub_drops_at_one_byte_over_max_buffer_and_counts_it() -> None:
    event = Message("x" * 50, id="1").encode()
    hub = Hub(max_buffer=len(event) * 3, keepalive=None)
    sub = await hub.subscribe("/a")
    for i in range(3):
        await hub.publish("/a", Message("x" * 50, id=str(i + 1)))
    assert sub.pending_bytes == len(event) * 3 and not sub.closed
    assert hub.dropped_slow == 0
    await hub.publish("/a", Message("", id=""))  # the smallest event there is
    assert sub.close_reason == CloseReason.SLOW
    assert hub.dropped_slow == 1
    await hub.shutdown()


def test_threaded_subscription_returns_pending_bytes_without_waiting() -> None:
    sub = ThreadedSubscription("/a", max_buffer=100)
    sub.push(b"ready")
    started = time.monotonic()
    assert sub.next_chunk_blocking(timeout=2) == b"ready"
    assert time.monotonic() - started < 1  # at once, not after the 2 s timeout
    sub.push(b"more")
    sub.close(CloseReason.SHUTDOWN)
    started = time.monotonic()
    assert sub.next_chunk_blocking(timeout=2) == b"more"
    assert sub.next_chunk_blocking(timeout=2) is None
    assert time.monotonic() - started < 1


def test_a_new_subscription_gets_the_first_keepalive_ping() -> None:
    # The keep-alive timer pings subscriptions that had no activity in the last interval:
    # a fresh one must get the first ping.
    sub = sub_with(100)
    sub.keepalive(b": ping\n\n")
    assert sub.take() == b": ping\n\n"


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


class Queue(WriteQueue):
    """A writer's queue for the tests: counts kicks; writes straight while ``direct`` > 0."""

    def __init__(self, direct: int = 0) -> None:
        super().__init__()
        self.kicks = 0
        self.direct = direct
        self.written: list[bytes] = []
        self.subs: dict[str, Subscription] = {}

    def kick(self) -> None:
        self.kicks += 1

    def write_now(self, item: Any) -> bool:
        if not self.direct:
            return False
        self.direct -= 1
        chunk = self.subs[item].take()
        assert chunk is not None
        self.written.append(chunk)
        return True

    def drain(self) -> list[tuple[str, bytes | None]]:
        items, self[:] = list(self), []
        return [(item, self.subs[item].take()) for item in items]


def queued(queue: Queue, name: str, *, pending: bytes = b"") -> Subscription:
    sub = Subscription(name, max_buffer=100)
    queue.subs[name] = sub
    if pending:
        sub.push(pending)
    sub.queue_on(queue, name)
    return sub


def test_queue_on_queues_a_stream_once_per_take_with_one_kick_per_burst() -> None:
    queue = Queue()
    a, b = queued(queue, "a"), queued(queue, "b")
    a.push(b"1")
    b.push(b"1")
    a.push(b"2")  # queued already: coalesces, no second entry
    assert list(queue) == ["a", "b"] and queue.kicks == 1
    assert queue.drain() == [("a", b"12"), ("b", b"1")]
    a.push(b"3")  # taken: the next push queues it again, and kicks the empty queue
    assert list(queue) == ["a"] and queue.kicks == 2
    assert queue.drain() == [("a", b"3")]


def test_queue_on_a_stream_with_bytes_pending_or_closed_queues_it_at_once() -> None:
    queue = Queue()
    queued(queue, "a", pending=b"early")
    closed = Subscription("b", max_buffer=100)
    queue.subs["b"] = closed
    closed.close(CloseReason.SHUTDOWN)
    closed.queue_on(queue, "b")
    assert list(queue) == ["a", "b"] and queue.kicks == 1
    assert queue.drain() == [("a", b"early"), ("b", None)]


def test_closing_a_queued_on_stream_tells_the_writer_once() -> None:
    queue = Queue()
    a = queued(queue, "a")
    a.close(CloseReason.CHANNEL_CLOSED)  # nothing pending: queued all the same, to end it
    a.close(CloseReason.SHUTDOWN)
    assert list(queue) == ["a"]
    b = queued(queue, "b")
    b.push(b"x" * 100)
    b.push(b"!")  # over max_buffer while queued: dropped, not queued twice
    assert list(queue) == ["a", "b"] and b.close_reason == CloseReason.SLOW


def test_write_now_takes_a_push_straight_to_the_writer_while_the_queue_is_empty() -> None:
    queue = Queue(direct=1)
    a, b = queued(queue, "a"), queued(queue, "b")
    a.push(b"1")  # written at once: not queued, no kick
    assert queue.written == [b"1"] and list(queue) == [] and queue.kicks == 0
    b.push(b"1")  # the writer declines: queued as usual
    a.push(b"2")  # the queue is not empty: queued behind b, never offered to write_now
    assert list(queue) == ["b", "a"] and queue.kicks == 1
    assert queue.drain() == [("b", b"1"), ("a", b"2")]


def test_arm_replaces_a_queue() -> None:
    queue = Queue()
    wakes: list[int] = []
    a = queued(queue, "a")
    a.arm(lambda: wakes.append(1))
    a.push(b"1")
    a.take()
    a.push(b"2")
    assert list(queue) == [] and wakes == [1]


class RelievingQueue(Queue):
    """A writer that writes everything queued when a queued stream would pass its bound."""

    def relieve(self) -> None:
        for _item, chunk in self.drain():
            if chunk is not None:
                self.written.append(chunk)


def test_a_queued_stream_at_its_bound_asks_its_writer_to_write_before_it_is_dropped() -> None:
    """Bytes queued on the server, not yet written, are not the client's delay: a push that
    would pass ``max_buffer`` first lets the writer write what waits (`WriteQueue.relieve`),
    and the stream is dropped only if that did not make room. The default writer cannot, and
    the stream is dropped as before."""
    queue = RelievingQueue()
    a, b = queued(queue, "a"), queued(queue, "b")
    a.push(b"x" * 60)
    b.push(b"y" * 10)
    a.push(b"z" * 60)  # 120 > 100: the writer writes a's 60 and b's 10, then a holds 60
    assert not a.closed and not b.closed
    assert queue.written == [b"x" * 60, b"y" * 10]
    assert list(queue) == ["a"] and a.pending_bytes == 60
    assert queue.drain() == [("a", b"z" * 60)]
    # A writer that cannot write (the default): dropped, as before.
    plain = Queue()
    c = queued(plain, "c")
    c.push(b"x" * 60)
    c.push(b"z" * 60)
    assert c.close_reason == CloseReason.SLOW and c.pending_bytes == 0


class DroppingQueue(Queue):
    """A writer whose socket is full: writing what is queued drops the stream there."""

    def relieve(self) -> None:
        for item, _ in self.drain():
            self.subs[item].close(CloseReason.SLOW)


def test_a_stream_its_writer_drops_while_relieving_takes_no_more_bytes() -> None:
    """A writer asked to write what is queued may find the socket full and drop the stream
    there: the push that asked then adds nothing to the dropped stream's buffer."""
    queue = DroppingQueue()
    a = queued(queue, "a")
    a.push(b"x" * 60)
    a.push(b"z" * 60)  # the writer drops it (its socket is full): the push adds nothing
    assert a.close_reason == CloseReason.SLOW and a.pending_bytes == 0
    assert a.take() is None
