"""The local bus: several hub processes on one machine sharing channels without Redis.

``ssehub serve --workers N`` (no ``--redis``) runs N worker processes on one port and, in the
supervisor, one `Sequencer`. Every worker's backend is a `LocalBusBackend` joined to the
sequencer by a Unix socket pair made for it. A publish goes to the sequencer, which holds the
only history (a `MemoryBackend`: ids, order, retention, duplicates, replay, exactly as one
process has them) and sends each event, in one order, to every worker with subscribers on one
of its channels (a worker says which as the hub calls `Backend.watch`; its watch reaches the
sequencer before its replay request, on one ordered socket, so a resuming client misses nothing
between the two); each worker hands it to its own subscribers. The publishing worker gets the
event before the answer to its publish, so its own subscribers have the event when the publish
returns. A resume, on any worker, reads the sequencer's history: ids are the sequencer's, so a
client resumes exactly wherever the kernel sends its reconnection.

Why a sequencer over Unix sockets rather than shared memory, or a replica of history in every
worker: one writer orders every channel with no lock and no consensus; the history is held
once (``--history-memory`` bounds the machine, not each worker); a restarted worker needs no
copy of anything (it connects and serves); and a Unix socket is a kernel-buffered, ordered,
flow-controlled pipe that asyncio already drives. The price is one hop per publish (batched:
every message of one turn of a loop goes out in one write, one frame) and one per resume.

The frames are a 4-byte length and a `marshal` list of tuples (str, bytes, int, float, None,
tuples): the two ends are the same program on one machine, over a socket pair no other process
can reach, so marshal's lack of a stable format across Python versions does not matter, and it
is the fastest encoder the standard library has.

What a lost sequencer means: a worker whose bus closes (the supervisor died) fails every
request waiting on it with `ssehub.BackendUnavailable`, logs ``event=bus_lost`` and calls its
``on_lost`` hook (``ssehub serve`` then shuts the worker down: without the sequencer no worker
can publish, and the history is gone with it). A worker that dies is only a closed link to the
sequencer: its reports and presence are dropped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import marshal
import socket
import struct
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Mapping
from typing import Any

from ssehub.backends.base import Backend, Deliver, Forget, PublishResult, Replay
from ssehub.backends.memory import MemoryBackend
from ssehub.errors import BackendUnavailable, EventTooLarge, InvalidMessage
from ssehub.selectors import Selectors
from ssehub.wire import Message

__all__ = ["MAX_BEHIND", "LocalBusBackend", "Sequencer"]

log = logging.getLogger("ssehub.server")

_HEADER = struct.Struct("!I")
_MAX_FRAME = 1 << 30  # a frame larger than this is a broken peer, not a message
MAX_BEHIND = 64 * 1024 * 1024
"""Bytes the sequencer may hold for a worker that does not read them (stopped, or starved of
CPU); past this the worker is cut off the bus, like a slow subscriber: it stops (its link
closed), the supervisor starts another, and its clients resume elsewhere."""

# Request kinds (worker to sequencer) and answer/feed kinds (sequencer to worker).
_PUBLISH = 0
_REPLAY = 1
_REPLAY_SELECTED = 2
_CHANNELS = 3
_REPORT = 4
_RETIRE = 5
_SHARE_PRESENCE = 6
_PRESENCE = 7
_RETIRE_PRESENCE = 8
_WATCH = 9
_UNWATCH = 10
_WATCH_ALL = 11
_EVENT = 100
_ANSWER = 101
_FAILED = 102


def _run_now(coro: Coroutine[Any, Any, Any]) -> Any:
    """The value of a coroutine that never suspends (the memory backend's methods), run to its
    end in place: no task, and requests keep their order exactly."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("the memory backend suspended; the sequencer cannot run it in place")


class _Link(asyncio.Protocol):
    """One end of a bus socket: frames in (`handle` per message), messages out in batches."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self.out: list[tuple[Any, ...]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        size = len(buffer)
        while size - start >= 4:
            (length,) = _HEADER.unpack_from(buffer, start)
            if length > _MAX_FRAME:
                self.broken(f"a frame of {length} bytes")
                return
            end = start + 4 + length
            if end > size:
                break
            messages = marshal.loads(buffer[start + 4 : end])
            start = end
            for message in messages:
                self.handle(message)
        if start:
            del buffer[:start]

    def handle(self, message: tuple[Any, ...]) -> None:
        raise NotImplementedError

    def broken(self, why: str) -> None:
        log.error("event=bus_broken error=%r", why)
        if self.transport is not None:
            self.transport.abort()

    def write(self, messages: list[tuple[Any, ...]]) -> None:
        frame = marshal.dumps(messages)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_HEADER.pack(len(frame)) + frame)


# -- the sequencer (in the supervisor) -------------------------------------------------------


class _SequencerLink(_Link):
    def __init__(self, sequencer: Sequencer) -> None:
        super().__init__()
        self.sequencer = sequencer
        self.workers: set[str] = set()  # the names this worker reported under
        self.watched: set[str] = set()  # the channels it has subscribers on

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.sequencer.links.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        sequencer = self.sequencer
        sequencer.links.discard(self)
        sequencer.everything.discard(self)
        for channel in self.watched:
            sequencer.unwatch(self, channel)
        for name in self.workers:
            sequencer.reports.pop(name, None)
            sequencer.presence.pop(name, None)

    def handle(self, message: tuple[Any, ...]) -> None:
        kind, request = message[0], message[1]
        sequencer = self.sequencer
        try:
            result = sequencer.answer(self, kind, message)
        except EventTooLarge as exc:
            self.out.append((_FAILED, request, "too_large", str(exc)))
        except InvalidMessage as exc:
            self.out.append((_FAILED, request, "invalid", str(exc)))
        except Exception as exc:
            log.exception("event=bus_request_failed kind=%s", kind)
            self.out.append((_FAILED, request, "unavailable", f"{type(exc).__name__}: {exc}"))
        else:
            if request is not None:
                self.out.append((_ANSWER, request, result))
        sequencer.schedule()


class Sequencer:
    """The bus's one writer: orders and stores every event, and sends it to every worker.

    Runs on one event loop (the supervisor's bus thread); `attach` each worker's end of a
    socket pair. The retention settings are those of `MemoryBackend` (and of ``ssehub
    serve``'s flags); ``max_event`` refuses an event larger than a client's buffer.
    """

    def __init__(
        self,
        *,
        history: int,
        history_ttl: float | None = None,
        history_bytes: int | None = None,
        history_memory: int | None = None,
        max_event: int | None = None,
    ) -> None:
        self.backend = MemoryBackend()
        self._settings: dict[str, Any] = {
            "history": history,
            "history_ttl": history_ttl,
            "history_bytes": history_bytes,
            "history_memory": history_memory,
            "max_event": max_event,
        }
        self.links: set[_SequencerLink] = set()
        self.reports: dict[str, tuple[float, Any]] = {}
        """Each hub process's last report (`Backend.report`): when, and what."""
        self.presence: dict[str, tuple[float, dict[str, str]]] = {}
        """Each hub process's shared subscriptions: when refreshed, and id to JSON text."""
        self.published = 0
        self.watchers: dict[str, set[_SequencerLink]] = {}
        """The links with subscribers on each channel."""
        self.everything: set[_SequencerLink] = set()
        """The links with subscribers that may read any channel (``*``, templates)."""
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the history (on the running loop, which the sequencer then stays on)."""
        self._loop = asyncio.get_running_loop()
        await self.backend.start(self._fan_out, **self._settings)

    async def attach(self, sock: socket.socket) -> None:
        """Serve the worker at the other end of ``sock`` (a connected Unix stream socket)."""
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _SequencerLink(self), sock)

    async def close(self) -> None:
        """Close every link and stop the history's sweep."""
        for link in list(self.links):
            if link.transport is not None:
                link.transport.close()
        await self.backend.close()

    def _fan_out(
        self,
        channel: str | tuple[str, ...],
        event_id: str,
        data: bytes,
        position: Any = None,
        private: bool = False,
        /,
    ) -> None:
        self.published += 1
        message = (_EVENT, channel, event_id, data, position, private)
        watchers = self.watchers
        if type(channel) is str:
            found = watchers.get(channel)
            targets = set(found) if found else set()
        else:
            targets = set()
            for name in channel:
                found = watchers.get(name)
                if found:
                    targets |= found
        targets |= self.everything
        for link in targets:
            link.out.append(message)
        if targets:
            self.schedule()

    def unwatch(self, link: _SequencerLink, channel: str) -> None:
        """``link``'s worker has no subscriber on ``channel`` any more."""
        found = self.watchers.get(channel)
        if found is not None:
            found.discard(link)
            if not found:
                del self.watchers[channel]

    def schedule(self) -> None:
        """Flush at the end of this turn of the loop (once however many messages wait)."""
        if not self._scheduled:
            self._scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        # Each link's events and answers in the order they were made: a publisher's own worker
        # has its event before the answer to its publish.
        self._scheduled = False
        for link in self.links:
            transport = link.transport
            if transport is None or transport.is_closing():
                link.out.clear()
                continue
            if link.out:
                out, link.out = link.out, []
                link.write(out)
            if transport.get_write_buffer_size() > MAX_BEHIND:
                log.error(
                    "event=bus_worker_behind bytes=%d: a worker stopped reading the bus; cut off",
                    transport.get_write_buffer_size(),
                )
                transport.abort()

    def answer(self, link: _SequencerLink, kind: int, message: tuple[Any, ...]) -> Any:
        """Do one request; its answer (for the requests that have one)."""
        backend = self.backend
        if kind == _PUBLISH:
            _, _, channel, data, event, event_id, retry, comment, private = message
            msg = Message(data, id=event_id, event=event, retry=retry, comment=comment)
            result = _run_now(backend.publish(channel, msg, private=private))
            return (str(result), result.duplicate)
        if kind == _REPLAY:
            _, _, channel, last_event_id, private = message
            replay = _run_now(backend.replay(channel, last_event_id, private=private))
            return (tuple(replay.events), replay.found, replay.head)
        if kind == _REPLAY_SELECTED:
            _, _, texts, last_event_id, private_texts = message
            private = Selectors(private_texts) if private_texts is not None else None
            replay = _run_now(
                backend.replay_selected(Selectors(texts), last_event_id, private=private)
            )
            return (tuple(replay.events), replay.found, replay.head)
        if kind == _WATCH:
            channel = message[2]
            link.watched.add(channel)
            self.watchers.setdefault(channel, set()).add(link)
            return None
        if kind == _UNWATCH:
            channel = message[2]
            link.watched.discard(channel)
            self.unwatch(link, channel)
            return None
        if kind == _WATCH_ALL:
            if message[2]:
                self.everything.add(link)
            else:
                self.everything.discard(link)
            return None
        if kind == _CHANNELS:
            return tuple(_run_now(backend.channels()))
        now = time.monotonic()
        if kind == _REPORT:
            _, _, worker, state, ttl = message
            link.workers.add(worker)
            self.reports[worker] = (now, state)
            live = [s for stamp, s in self.reports.values() if now - stamp <= ttl]
            return tuple(live)
        if kind == _RETIRE:
            self.reports.pop(message[2], None)
            return None
        if kind == _SHARE_PRESENCE:
            _, _, worker, changes, ttl, reset = message
            link.workers.add(worker)
            found = self.presence.get(worker)
            entries = {} if reset or found is None else found[1]
            for key, text in changes.items():
                if text is None:
                    entries.pop(key, None)
                else:
                    entries[key] = text
            self.presence[worker] = (now, entries)
            return None
        if kind == _PRESENCE:
            _, _, exclude, ttl = message
            return tuple(
                text
                for name, (stamp, entries) in self.presence.items()
                if name != exclude and now - stamp <= ttl
                for text in entries.values()
            )
        if kind == _RETIRE_PRESENCE:
            self.presence.pop(message[2], None)
            return None
        raise ValueError(f"unknown bus request {kind!r}")


# -- a worker's end --------------------------------------------------------------------------


class _WorkerLink(_Link):
    def __init__(self, backend: LocalBusBackend) -> None:
        super().__init__()
        self.backend = backend
        self.scheduled = False

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == _EVENT:
            deliver = self.backend.deliver
            if deliver is not None:
                _, channel, event_id, data, position, private = message
                if private:
                    deliver(channel, event_id, data, position, True)
                else:
                    deliver(channel, event_id, data, position)
            return
        future = self.backend.waiting.pop(message[1], None)
        if future is None or future.done():
            return
        if kind == _ANSWER:
            future.set_result(message[2])
        else:
            _, _, reason, text = message
            error: Exception
            if reason == "too_large":
                error = EventTooLarge(text)
            elif reason == "invalid":
                error = InvalidMessage(text)
            else:
                error = BackendUnavailable(f"the bus could not do it: {text}")
            future.set_exception(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.backend.lost(exc)

    def send(self, message: tuple[Any, ...]) -> None:
        self.out.append(message)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        if self.out:
            out, self.out = self.out, []
            try:
                self.write(out)
            except ValueError:  # a value marshal cannot carry: fail its request, send the rest
                self.write([message for message in out if self._encodable(message)])

    def _encodable(self, message: tuple[Any, ...]) -> bool:
        try:
            marshal.dumps(message)
        except ValueError as exc:
            future = self.backend.waiting.pop(message[1], None)
            if future is not None and not future.done():
                future.set_exception(InvalidMessage(f"cannot send this over the bus: {exc}"))
            return False
        return True


class LocalBusBackend(Backend):
    """A worker's backend on the local bus: the `Sequencer` at the other end of ``sock``
    stores and orders every event; this process delivers them to its own subscribers.

    ``on_lost`` is called once if the bus closes (the sequencer is gone): requests then raise
    `ssehub.BackendUnavailable`.
    """

    def __init__(self, sock: socket.socket, *, on_lost: Callable[[], None] | None = None) -> None:
        self._sock = sock
        self.on_lost = on_lost
        self.deliver: Deliver | None = None
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self._link: _WorkerLink | None = None
        self._requests = itertools.count(1)
        self._closed = False
        self._lost: str | None = None
        self._watched: set[str] = set()
        self._everything = False

    async def start(
        self,
        deliver: Deliver,
        *,
        history: int,
        history_ttl: float | None,
        history_bytes: int | None = None,
        history_memory: int | None = None,
        max_event: int | None = None,
        forget: Forget | None = None,
    ) -> None:
        """Join the bus (the retention settings are the sequencer's, from the same config)."""
        self.deliver = deliver
        loop = asyncio.get_running_loop()
        _, link = await loop.connect_accepted_socket(lambda: _WorkerLink(self), self._sock)
        self._link = link
        for channel in self._watched:
            link.send((_WATCH, None, channel))
        if self._everything:
            link.send((_WATCH_ALL, None, True))

    def watch(self, channel: str) -> None:
        """Ask the sequencer for ``channel``'s events (this process has subscribers on it)."""
        self._watched.add(channel)
        if self._link is not None:
            self._link.send((_WATCH, None, channel))

    def unwatch(self, channel: str) -> None:
        """Stop ``channel``'s events (its last local subscriber left)."""
        self._watched.discard(channel)
        if self._link is not None:
            self._link.send((_UNWATCH, None, channel))

    def watch_all(self, on: bool) -> None:
        """Ask for every channel's events (``*`` or template subscribers here), or not."""
        self._everything = on
        if self._link is not None:
            self._link.send((_WATCH_ALL, None, on))

    def lost(self, exc: Exception | None) -> None:
        """The bus closed: fail what waits, and say so (once)."""
        if self._lost is not None:
            return
        self._lost = "the local bus closed" + (f": {exc}" if exc else "")
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(BackendUnavailable(self._lost))
        if not self._closed:
            log.error(
                "event=bus_lost error=%r: the --workers supervisor (its sequencer) is gone; "
                "this worker cannot publish or resume any more and stops",
                self._lost,
            )
            if self.on_lost is not None:
                self.on_lost()

    async def _ask(self, message: tuple[Any, ...]) -> Any:
        link = self._link
        if link is None or self._lost is not None:
            raise BackendUnavailable(self._lost or "the local bus is not started")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[message[1]] = future
        link.send(message)
        return await future

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        """Publish through the sequencer; returns once it stored the event (and this process
        delivered it to its own subscribers)."""
        event_id, duplicate = await self._ask(
            (
                _PUBLISH,
                next(self._requests),
                channel,
                message.data,
                message.event,
                None if message.id is None else str(message.id),
                message.retry,
                message.comment,
                private,
            )
        )
        return PublishResult(event_id, duplicate=duplicate)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        """The sequencer's retained events of ``channel`` after ``last_event_id``."""
        events, found, head = await self._ask(
            (_REPLAY, next(self._requests), channel, str(last_event_id), private)
        )
        return Replay(events, found=found, head=head)

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        """The sequencer's retained events of the matched channels (see `Backend`)."""
        texts = tuple(selector.text for selector in selectors)
        private_texts = None if private is None else tuple(s.text for s in private)
        events, found, head = await self._ask(
            (_REPLAY_SELECTED, next(self._requests), texts, str(last_event_id), private_texts)
        )
        return Replay(events, found=found, head=head)

    async def channels(self) -> list[str]:
        """Every channel with retained history (in the sequencer)."""
        return list(await self._ask((_CHANNELS, next(self._requests))))

    @property
    def shared(self) -> bool:
        """True: every worker on the bus serves the same channels."""
        return True

    async def report(self, worker: str, state: Mapping[str, Any], ttl: float) -> list[Any]:
        """Share ``state`` through the sequencer; every live worker's report."""
        return list(await self._ask((_REPORT, next(self._requests), worker, dict(state), ttl)))

    async def retire(self, worker: str) -> None:
        """Withdraw ``worker``'s report (never raises)."""
        with contextlib.suppress(BackendUnavailable):
            await self._ask((_RETIRE, next(self._requests), worker))

    async def share_presence(
        self,
        worker: str,
        changes: Mapping[str, str | None],
        ttl: float,
        *,
        reset: bool = False,
    ) -> None:
        """Keep ``worker``'s subscriptions in the sequencer (see `Backend.share_presence`)."""
        await self._ask((_SHARE_PRESENCE, next(self._requests), worker, dict(changes), ttl, reset))

    async def presence(
        self, exclude: str, ttl: float, *, page: int = 1000
    ) -> AsyncGenerator[list[str], None]:
        """Every other worker's shared subscriptions, in pages of ``page``."""
        texts = await self._ask((_PRESENCE, next(self._requests), exclude, ttl))
        for start in range(0, len(texts), page):
            yield list(texts[start : start + page])

    async def retire_presence(self, worker: str) -> None:
        """Withdraw ``worker``'s subscriptions (never raises)."""
        with contextlib.suppress(BackendUnavailable):
            await self._ask((_RETIRE_PRESENCE, next(self._requests), worker))

    async def health(self) -> dict[str, Any]:
        """``ok`` while the bus is open."""
        report: dict[str, Any] = {"ok": self._lost is None, "backend": "memory", "bus": "local"}
        if self._lost is not None:
            report["error"] = self._lost
        return report

    async def close(self) -> None:
        """Leave the bus."""
        self._closed = True
        link = self._link
        if link is not None:
            link.flush()
            if link.transport is not None:
                link.transport.close()
