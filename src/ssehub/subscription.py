"""One client's stream: a bounded byte buffer that a single writer drains in coalesced chunks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from ssehub.wire import Message

if TYPE_CHECKING:
    from ssehub.request import Request
    from ssehub.selectors import Selectors

__all__ = ["CloseReason", "Subscription", "ThreadedSubscription", "WriteQueue"]


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WriteQueue(list[Any]):
    """The queue of a writer that drains many subscriptions from loop callbacks (`queue_on`).

    A subscription appends its item here, with no call in between, on its first push after each
    `Subscription.take`. When the queue is empty, the push first offers the item to
    `write_now`, and when that declines, calls `kick` and appends it: the writer schedules one
    drain for a burst of pushes. Subclass it and implement `kick` (and `write_now`, to write
    straight to an idle client).
    """

    __slots__ = ()

    def kick(self) -> None:
        """Called when the first item is appended: schedule the drain (not the drain itself)."""
        raise NotImplementedError

    def write_now(self, item: Any) -> bool:
        """Offered a push's item while the queue is empty: take the subscription's bytes and
        write them now (True), or decline (False, the default) to have the item queued."""
        return False

    def relieve(self) -> None:
        """Called by a queued subscription whose next push would pass its bound before the
        drain reached it: the bytes wait on the server, not on a client that does not read.
        Write what is queued now if the writer can; the default does nothing, and the
        subscription is then dropped as slow."""


class CloseReason:
    """Why a subscription ended (the values of `Subscription.close_reason`)."""

    DISCONNECTED = "disconnected"
    """The client went away."""
    SLOW = "slow"
    """The client fell more than ``max_buffer`` bytes behind and was dropped."""
    CHANNEL_CLOSED = "channel-closed"
    """`Hub.close_channel` ended the channel's streams."""
    RESTART = "restart"
    """`Hub.restart` ended every stream; clients reconnect and resume."""
    SHUTDOWN = "shutdown"
    """`Hub.shutdown` ended every stream."""
    ENDED = "ended"
    """The source of a per-request stream (`ssehub.EventStream`) had nothing more to send."""
    EXPIRED = "expired"
    """The authorization the stream was opened with expired (its token's ``exp``); the client
    reconnects with a fresh one and resumes."""


class Subscription:
    """One subscriber of one channel.

    The hub appends encoded events to it (`push`, never blocking, never copying); the writer
    that owns the client's connection takes everything pending in one chunk and writes it:
    `next_chunk` from async code, `next_chunk_blocking` from a thread, or `take` plus `arm` (or
    `queue_on`, for a writer of many streams) for a writer driven by its own event loop
    callbacks (ssehub's native server). When more than ``max_buffer`` bytes are pending the
    subscription is closed as `CloseReason.SLOW` and its buffer freed: the client reconnects
    with ``Last-Event-ID`` and is replayed from history. (A writer of many streams is first
    asked to write what it has queued, `WriteQueue.relieve`: bytes it has not written yet wait
    on the server, not on the client.)

    `send` writes a message to this client only (a welcome from ``on_connect``, say). Every
    method must be called on the hub's event loop; a thread-based server uses
    `ThreadedSubscription`.
    """

    __slots__ = (
        "_active",
        "_home",
        "_item",
        "_limit",
        "_pending",
        "_queue",
        "_size",
        "_wake",
        "channel",
        "close_reason",
        "closed",
        "last_event_id",
        "max_buffer",
        "on_close",
        "payload",
        "private",
        "request",
        "resumed",
        "selectors",
        "writing",
    )

    def __init__(
        self,
        channel: str,
        *,
        max_buffer: int,
        last_event_id: str | None = None,
        request: Request | None = None,
        selectors: Selectors | None = None,
        private: Selectors | None = None,
    ) -> None:
        self.channel = channel
        """The channel this subscription reads (for one that reads several, its selectors as
        text, joined by spaces)."""
        self.selectors = selectors
        """The channel selectors of a subscription that reads several channels (None when it
        reads the one ``channel``)."""
        self.private = private
        """Selectors of the channels whose private events this subscriber may read (None:
        public events only)."""
        self.last_event_id = last_event_id
        """The ``Last-Event-ID`` the client resumed from, if any."""
        self.request = request
        """The request that opened the stream (None when subscribed from code)."""
        self.resumed: bool | None = None
        """Once the hub replayed history to it: True when history held ``last_event_id`` (or
        it was `ssehub.resume.EARLIEST`), so every retained event since was replayed; False
        when the ``ssehub.gap`` notice was sent. None when it did not resume."""
        self.payload: Any = None
        """What the app attached to the stream (`Hub.subscribe`'s ``payload``; with a JWT, the
        token's ``payload`` claim): any value, None when nothing was."""
        self.close_reason: str | None = None
        """Why the subscription ended (a `CloseReason` value), or None while open."""
        self.writing = False
        """True while the adapter is writing a chunk to the client (set by the adapter)."""
        self.on_close: Callable[[Subscription], Any] | None = None
        """Called once when the subscription closes (the hub counts slow drops with it; a
        writer that chains its own hook calls the previous one first)."""
        self.closed = False
        """True once the hub or the client has ended this subscription (read-only)."""
        self.max_buffer = max_buffer
        """Bytes the client may fall behind before it is dropped as `CloseReason.SLOW`."""
        # What waits to be written: one event's bytes as they are (no list for the usual
        # case, one event between two writes), or a list once a second one arrives.
        self._pending: bytes | list[bytes] | None = None
        self._size = 0
        # The bound in force: max_buffer, plus what a replay added since the last take.
        self._limit = max_buffer
        # Called (once, then cleared) when bytes arrive or the subscription closes: see `arm`.
        self._wake: Callable[[], object] | None = None
        # A writer's queue (see `queue_on`): ``_item`` goes into ``_queue`` on the next push;
        # ``_queue`` is None while the item is queued, and ``take`` sets it back from ``_home``.
        self._queue: WriteQueue | None = None
        self._home: WriteQueue | None = None
        self._item: object = None
        # Whether anything was pushed since the last keep-alive tick.
        self._active = False

    @property
    def pending_bytes(self) -> int:
        """How many bytes wait to be written to the client."""
        return self._size

    def send(self, message: Message) -> None:
        """Queue ``message`` for this client only; it is not stored in the channel's history."""
        self.push(message.encode())

    def push(self, data: bytes) -> None:
        """Append encoded bytes for the writer; drop the client if it is too far behind
        (past ``max_buffer``, once a queue writer had the chance to write what it holds)."""
        if self.closed:
            return
        size = self._size + len(data)
        if size > self._limit:
            home = self._home
            if home is not None and self._queue is None:  # queued, not yet written
                home.relieve()
                if self.closed:  # its socket was full: dropped there
                    return
                size = self._size + len(data)
            if size > self._limit:
                self.close(CloseReason.SLOW)
                return
        pending = self._pending
        if pending is None:
            self._pending = data
        elif isinstance(pending, list):
            pending.append(data)
        else:
            self._pending = [pending, data]
        self._size = size
        self._active = True
        queue = self._queue
        if queue is not None:  # `_enqueue`, inline (this runs once per delivery)
            self._queue = None
            if not queue:
                if queue.write_now(self._item):
                    return
                queue.kick()
            queue.append(self._item)
            return
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake()

    def push_replay(self, data: bytes) -> None:
        """Append a replayed event: history may exceed ``max_buffer`` by itself, so the bound
        grows by its size until the writer next takes the buffer."""
        self._limit += len(data)
        self.push(data)

    def keepalive(self, ping: bytes) -> None:
        """Push ``ping`` unless something was pushed since the previous call (the hub's timer)."""
        if not self._active:
            self.push(ping)
        self._active = False

    def take(self) -> bytes | None:
        """Take everything pending as one chunk (None when nothing is pending); never waits.

        With a queue (`queue_on`), the next push after this queues the item again (or offers
        it to `WriteQueue.write_now`).
        """
        self._queue = self._home
        pending = self._pending
        if pending is None:
            return None
        self._pending = None
        self._size = 0
        self._limit = self.max_buffer
        return pending if isinstance(pending, bytes) else b"".join(pending)

    def arm(self, wake: Callable[[], object] | None) -> None:
        """Have ``wake()`` called once, on the hub's loop, when bytes arrive or the subscription
        closes; the writer re-arms it after each wake-up (None disarms). Replaces any
        `queue_on` queue."""
        self._queue = self._home = None
        self._wake = wake

    def queue_on(self, queue: WriteQueue, item: object) -> None:
        """Put ``item`` into ``queue`` on the next push (or the close), and again on the first
        push after each `take`: `arm` for a writer that drains many subscriptions.

        It costs a push no call once the queue holds items (the writer's `arm` callback would be
        one per delivery; `WriteQueue.write_now` is offered only the pushes that find it
        empty): the writer drains the queue, calling `take` for each item's subscription, and
        writes what it returns. When bytes are pending already, or the subscription is closed,
        ``item`` is queued at once. Replaces any `arm` callback; a subscription has one writer.
        """
        self._wake = None
        self._home = queue
        self._item = item
        self._queue = queue
        if self._pending is not None or self.closed:
            self._enqueue()

    def _enqueue(self) -> None:
        queue = self._queue
        if queue is not None:
            self._queue = None
            if not queue:
                queue.kick()
            queue.append(self._item)

    async def next_chunk(self) -> bytes | None:
        """Wait for pending bytes and take them all at once; None when the stream has ended.

        After a graceful close (restart, shutdown, channel closed) the bytes already queued are
        still returned before None; after a drop for slowness they are discarded.
        """
        while True:
            chunk = self.take()
            if chunk is not None:
                return chunk
            if self.closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self._wake = partial(_resolve, waiter)
            try:
                await waiter
            finally:
                self._wake = None

    def close(self, reason: str = CloseReason.DISCONNECTED) -> None:
        """End the subscription; the writer sees the end after what is already queued.

        A subscription dropped as `CloseReason.SLOW` loses its queued bytes at once, so memory
        is freed even if the client never reads again. Idempotent.
        """
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if reason == CloseReason.SLOW:
            self._pending = None
            self._size = 0
        self._enqueue()
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake()
        if self.on_close is not None:
            self.on_close(self)

    def __repr__(self) -> str:
        state = f"closed:{self.close_reason}" if self.closed else "open"
        return f"<Subscription {self.channel!r} {state} pending={self._size}>"


class ThreadedSubscription(Subscription):
    """A subscription whose writer is a plain thread (a WSGI worker), not an async task.

    The hub still pushes on its loop; the writer thread takes chunks with `next_chunk_blocking`.
    A lock guards the buffer between the two threads.
    """

    __slots__ = ("_cond",)

    def __init__(
        self,
        channel: str,
        *,
        max_buffer: int,
        last_event_id: str | None = None,
        request: Request | None = None,
        selectors: Selectors | None = None,
        private: Selectors | None = None,
    ) -> None:
        super().__init__(
            channel,
            max_buffer=max_buffer,
            last_event_id=last_event_id,
            request=request,
            selectors=selectors,
            private=private,
        )
        self._cond = threading.Condition()

    def push(self, data: bytes) -> None:
        """Append encoded bytes and wake the writer thread (called on the hub's loop)."""
        with self._cond:
            super().push(data)
            self._cond.notify()

    def close(self, reason: str = CloseReason.DISCONNECTED) -> None:
        """End the subscription and wake the writer thread. Thread-safe and idempotent."""
        with self._cond:
            super().close(reason)
            self._cond.notify_all()

    async def next_chunk(self) -> bytes | None:
        """Not available: a threaded subscription is drained with `next_chunk_blocking`."""
        raise RuntimeError("a ThreadedSubscription is drained with next_chunk_blocking()")

    def next_chunk_blocking(self, timeout: float | None = None) -> bytes | None:
        """Wait up to ``timeout`` seconds for pending bytes and take them all at once.

        Returns b"" when the timeout passes with nothing to send (so the caller can check its
        connection), and None when the stream has ended.
        """
        with self._cond:
            chunk = self.take()
            if chunk is None and not self.closed:
                self._cond.wait(timeout)
                chunk = self.take()
            if chunk is not None:
                return chunk
            return None if self.closed else b""
