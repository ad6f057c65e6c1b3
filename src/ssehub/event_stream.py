"""Per-request streams: the items of a generator (or any iterable) sent as SSE to one client.

The most common SSE job that is not a channel: one response streams what one request asked
for (LLM tokens, a job's progress). An `EventStream` reads its source and queues each item,
encoded once by `encode_item` (the wire's encoder), in a `Subscription` of its own, so every
adapter writes it exactly as it writes a channel: coalesced chunks, a bounded buffer, the same
end-of-stream rules. What differs from a channel:

- The producer is the source, not the hub. It is read ahead of the client by at most ``buffer``
  bytes and then waits (back-pressure) instead of the client being dropped as slow. An async
  source is read by a task on the loop; a sync one by a thread of its own (it may block).
- Everything the source yields before it next awaits goes out in one write, so a fast
  generator costs one write per chunk, not one per event.
- When the client leaves, the subscription closes and the source is closed with it (an async
  generator is cancelled or ``aclose()``-d, a sync one ``close()``-d after its current item).
- With ``hub=``, the hub's `Hub.shutdown` and `Hub.restart` end the stream as they end channel
  streams (it is `Hub.attach`-ed). It never counts as a channel's client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Iterable, Iterator, Mapping
from typing import Any

from ssehub.errors import HubClosed
from ssehub.hub import DEFAULT_HEADERS, Hub
from ssehub.subscription import CloseReason, Subscription
from ssehub.wire import Message, encode_comment

__all__ = ["DEFAULT_STREAM_BUFFER", "EventStream", "Source", "encode_item", "iter_encoded"]

log = logging.getLogger("ssehub.stream")

Source = AsyncIterable[Any] | Iterable[Any]
"""What an `EventStream` reads: an async or sync generator or iterable of items, each a
`Message`, a str of data, or any value JSON can encode (sent as compact JSON data)."""

DEFAULT_STREAM_BUFFER = 64 * 1024
"""Bytes a source may run ahead of its client by default before it waits."""

_PING = encode_comment("ping")


def encode_item(item: object) -> bytes:
    """The wire bytes of one item: a `Message` as it encodes, anything else as the data of one
    (a str as it is, other values as compact JSON). Raises `InvalidMessage`."""
    if type(item) is Message:
        return item.encode()
    return Message(item).encode()


def iter_encoded(source: Iterable[Any]) -> Iterator[bytes]:
    """Encode a sync source item by item, for a WSGI response (no keep-alive, no thread).

    Closing the returned iterator (the WSGI server does when the response ends or the client
    leaves) closes ``source`` when it is a generator.
    """
    iterator = iter(source)
    try:
        for item in iterator:
            yield encode_item(item)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class _StreamSubscription(Subscription):
    """A subscription that tells its producer when the writer took the pending bytes."""

    __slots__ = ("on_take",)

    def __init__(self, channel: str, *, max_buffer: int) -> None:
        super().__init__(channel, max_buffer=max_buffer)
        self.on_take: Any = None

    def take(self) -> bytes | None:
        """Take everything pending (as `Subscription.take`) and wake a waiting producer."""
        chunk = Subscription.take(self)
        if chunk is not None and self.on_take is not None:
            self.on_take()
        return chunk


class EventStream:
    """The items of ``source`` as one client's event stream.

    ``source`` is an async or sync generator (or iterable) of `Message` objects, strs, or
    values JSON can encode. ``keepalive`` is the seconds between ``: ping`` comments while the
    stream is idle (None: none). ``buffer`` bounds how far the source runs ahead of the client.
    ``hub``, when given, ends the stream at its shutdown or restart and lends its headers
    (CORS); ``headers`` are added to the response's. An exception in the source is logged
    (logger ``ssehub.stream``) and ends the stream cleanly.

    Framework integrations make and send it (``EventSourceResponse``); to write one yourself,
    call `open` on the event loop and drain the subscription it returns. Single use.
    """

    def __init__(
        self,
        source: Source,
        *,
        hub: Hub | None = None,
        keepalive: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if keepalive is not None and keepalive <= 0:
            raise ValueError(f"keepalive must be positive seconds or None, got {keepalive!r}")
        if buffer <= 0:
            raise ValueError(f"buffer must be a positive number of bytes, got {buffer!r}")
        self.source = source
        self.hub = hub
        self.keepalive = keepalive
        self.buffer = buffer
        base = hub.headers if hub is not None else list(DEFAULT_HEADERS)
        self.headers: list[tuple[str, str]] = [*base, *(headers or {}).items()]
        """The response headers (the stream's own, the hub's, then ``headers``)."""
        self.subscription: Subscription | None = None
        """The subscription the items are queued in, once `open` ran."""
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._taken: asyncio.Future[None] | None = None
        # The thread pump's state, guarded by _cond: bytes handed over and not yet taken.
        self._cond = threading.Condition()
        self._handoff: list[bytes] = []
        self._queued = 0
        self._in_sub = 0
        self._scheduled = False
        self._stopped = False
        self._source_done = False

    def open(self) -> Subscription:
        """Start reading the source; return the subscription its events are queued in.

        Call it once, on the event loop that writes the response. Raises `HubClosed` when the
        hub is shut down (answer 503). Closing the subscription (any reason) stops the source.
        """
        if self.subscription is not None:
            raise RuntimeError("an EventStream is sent once; make a new one per response")
        if self.hub is not None and self.hub.closed:
            raise HubClosed("the hub is shut down")
        loop = asyncio.get_running_loop()
        # Twice the buffer: a keep-alive comment never finds it full and drops the client.
        sub = _StreamSubscription("", max_buffer=2 * self.buffer)
        self.subscription = sub
        sub.on_close = self._closed
        if self.hub is not None:
            self.hub.attach(sub)
        source = self.source
        if isinstance(source, AsyncIterable):
            sub.on_take = self._wake_task
            self._task = loop.create_task(self._pump_async(sub, source))
        else:
            sub.on_take = self._wake_thread
            thread = threading.Thread(
                target=self._pump_thread, args=(sub, source, loop), daemon=True
            )
            thread.start()
        if self.keepalive is not None:
            self._timer = loop.call_later(self.keepalive, self._ping)
        return sub

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        """Open the stream and yield its bytes, coalesced, until it ends (for frameworks whose
        streaming responses take an async iterator and cancel it when the client leaves)."""
        sub = self.open()
        try:
            while True:
                chunk = await sub.next_chunk()
                if chunk is None:
                    return
                yield chunk
        finally:
            sub.close(CloseReason.DISCONNECTED)

    # -- the end ----------------------------------------------------------------------------

    def _closed(self, sub: Subscription) -> None:
        # The subscription's on_close: whoever ended it (client, hub, source), stop the rest.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self.hub is not None:
            self.hub.detach(sub)

    def _ping(self) -> None:
        sub = self.subscription
        if sub is None or sub.closed or self.keepalive is None:
            return
        sub.keepalive(_PING)
        self._timer = asyncio.get_running_loop().call_later(self.keepalive, self._ping)

    # -- an async source: a task on the loop ------------------------------------------------

    def _wake_task(self) -> None:
        taken = self._taken
        if taken is not None and not taken.done():
            taken.set_result(None)

    async def _pump_async(self, sub: Subscription, source: AsyncIterable[Any]) -> None:
        iterator = aiter(source)
        try:
            async for item in iterator:
                data = encode_item(item)
                while sub.pending_bytes and sub.pending_bytes + len(data) > self.buffer:
                    self._taken = asyncio.get_running_loop().create_future()
                    await self._taken
                if sub.closed:
                    break
                _push(sub, data)
        except Exception:
            log.exception("the source of an event stream raised; the stream ends")
        finally:
            self._taken = None
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing the source of an event stream raised")
            self._task = None
            sub.close(CloseReason.ENDED)

    # -- a sync source: a thread of its own (it may block) ----------------------------------

    def _wake_thread(self) -> None:
        with self._cond:
            self._queued -= self._in_sub
            self._in_sub = 0
            self._cond.notify_all()

    def _pump_thread(
        self, sub: Subscription, source: Iterable[Any], loop: asyncio.AbstractEventLoop
    ) -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                data = encode_item(item)
                with self._cond:
                    while (
                        not self._stopped
                        and self._queued
                        and self._queued + len(data) > self.buffer
                    ):
                        self._cond.wait()
                    if self._stopped:
                        break
                    self._handoff.append(data)
                    self._queued += len(data)
                    schedule, self._scheduled = not self._scheduled, True
                if schedule:
                    loop.call_soon_threadsafe(self._transfer, sub)
        except RuntimeError:  # the loop closed under the thread: nobody is left to write to
            pass
        except Exception:
            log.exception("the source of an event stream raised; the stream ends")
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing the source of an event stream raised")
            with self._cond:
                self._source_done = True
                schedule, self._scheduled = not self._scheduled, True
            if schedule:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    loop.call_soon_threadsafe(self._transfer, sub)

    def _transfer(self, sub: Subscription) -> None:
        # On the loop: move what the thread handed over into the subscription.
        with self._cond:
            handoff, self._handoff = self._handoff, []
            self._in_sub += sum(len(data) for data in handoff)
            self._scheduled = False
            done = self._source_done
        for data in handoff:
            _push(sub, data)
        if done:
            sub.close(CloseReason.ENDED)


def _push(sub: Subscription, data: bytes) -> None:
    # One item larger than the whole buffer still goes out (alone: the producer waited for an
    # empty buffer), as a replay larger than a client's buffer does.
    if len(data) > sub.max_buffer:
        sub.push_replay(data)
    else:
        sub.push(data)
