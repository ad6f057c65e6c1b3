"""The local bus: several hub processes on one machine sharing channels without Redis.

``ssehub serve --workers N`` (no ``--redis``) runs N worker processes on one port and, in the
supervisor, one `Sequencer`. Every worker's backend is a `LocalBusBackend` joined to the
sequencer by a Unix socket pair made for it. The sequencer holds the only history (a
`MemoryBackend`: ids, order, retention, duplicates, replay, exactly as one process has them)
and sends each event, in one order, to every worker with subscribers on one of its channels
(a worker says which as the hub calls `Backend.watch`; its watch reaches the sequencer before
its replay request, on one ordered socket, so a resuming client misses nothing between the
two); each worker hands it to its own subscribers. A resume, on any worker, reads the
sequencer's history: ids are the sequencer's, so a client resumes exactly wherever the kernel
sends its reconnection.

A publish is answered without waiting for the sequencer (`LocalBusBackend.publish_now`): the
worker takes the next number of the one counter behind every id and appends the event to a
ring in memory shared with the sequencer (`_Ring`, under a lock it only tries to take), and
tells it at the end of its loop's turn. The sequencer reads the ring before anything else it
reads, so the ids keep one order across workers, and a request sent after a publish returned
(a resume, a replay, a publish of the same client on another worker) finds the event stored.
The publishing worker's own subscribers get it back from the sequencer like everyone else's.
A publish takes the round trip instead (the sequencer gives the id, and the publishing worker
has the event before the answer) when its message has an id of its own (the history is where
duplicates are found), while a watch of its worker is not answered yet (so no event of the
worker's own overtakes it), or when the ring is busy or full; and in a pipelined batch
(`in_order`), every publish after the first that took it, so the batch keeps its order.

Why a sequencer over Unix sockets rather than a replica of history in every worker: one
writer stores every channel with no agreement protocol; the history is held once
(``--history-memory`` bounds the machine, not each worker); a restarted worker needs no copy
of anything (it connects and serves); and a Unix socket is a kernel-buffered, ordered,
flow-controlled pipe that asyncio already drives. The price is one hop per event to every
worker (batched: every message of one turn of a loop goes out in one write, one frame) and one
per resume. The ring takes the hop out of the publisher's wait: with it, a worker answers a
publish in the turn of the loop that read it, as one process does.

The frames are a 4-byte length and a `marshal` list of tuples (str, bytes, int, float, None,
tuples): the two ends are the same program on one machine, over a socket pair no other process
can reach, so marshal's lack of a stable format across Python versions does not matter, and it
is the fastest encoder the standard library has. The ring's records are marshal tuples too.

What a lost sequencer means: a worker whose bus closes (the supervisor died) fails every
request waiting on it with `ssehub.BackendUnavailable`, logs ``event=bus_lost`` and calls its
``on_lost`` hook (``ssehub serve`` then shuts the worker down: without the sequencer no worker
can publish, and the history is gone with it). A worker that dies is only a closed link to the
sequencer: its reports and presence are dropped at once, and what it put in the ring is stored
and sent then (a worker killed while it holds the ring's lock leaves it free: the kernel drops
a dead process's locks).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import itertools
import logging
import marshal
import mmap
import os
import socket
import struct
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Mapping
from typing import Any

from ssehub.backends.base import (
    Backend,
    Deliver,
    Forget,
    PublishResult,
    Replay,
    encode_event,
    too_large,
)
from ssehub.backends.memory import Admitted, MemoryBackend
from ssehub.errors import BackendUnavailable, EventTooLarge, InvalidMessage
from ssehub.selectors import Selectors
from ssehub.wire import Message

__all__ = [
    "MAX_BEHIND",
    "RING_BYTES",
    "RING_RETRY",
    "RING_WAIT",
    "LocalBusBackend",
    "Sequencer",
    "in_order",
]

log = logging.getLogger("ssehub.server")

_HEADER = struct.Struct("!I")
_MAX_FRAME = 1 << 30  # a frame larger than this is a broken peer, not a message
MAX_BEHIND = 64 * 1024 * 1024
"""Bytes the sequencer may hold for a worker that does not read them (stopped, or starved of
CPU); past this the worker is cut off the bus, like a slow subscriber: it stops (its link
closed), the supervisor starts another, and its clients resume elsewhere."""

RING_BYTES = 4 * 1024 * 1024
"""The size of the ring in which workers put the events they publish without waiting (see
`_Ring`); a publish whose event does not fit in what is free goes the round trip instead."""

RING_WAIT = 0.1
"""The longest the sequencer waits for the ring's lock (held by a worker) before it gives up:
past it, publishes are refused until the worker lets go (``event=bus_ring_stuck``)."""
RING_RETRY = 0.01
"""How soon the sequencer tries the ring's lock again after it could not take it."""

_RING_HEAD = struct.Struct("=QQ")  # the last order given, then the bytes of records waiting
_RING_PREFIX = 16  # one byte of length, then the id prefix
_RING_DATA = 64  # where the records start: each a 4-byte length and a marshal tuple
_RECORD = struct.Struct("=I")
_COUNT = struct.Struct("=Q")  # each half of the head, written apart: the counter first

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
_RING = 12  # no request: "read the ring" (a worker appended to it this turn of its loop)
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


class _Ring:
    """Shared memory in which a worker gives a publish its id and place in the order itself,
    without the round trip to the sequencer.

    One memory file (``memfd``), made by the sequencer and sent to each worker over its bus
    socket when it attaches. The head holds the last order given (the counter behind every id
    ``prefix + n``) and the bytes of the records waiting; a worker appends a record (the order,
    the channel(s), the encoded event, private) and moves both on, under a POSIX lock on the
    file, which it only tries to take (`try_lock`: a worker's loop never blocks; when the lock
    is busy or the event does not fit, the publish takes the round trip). The sequencer takes
    every waiting record at once (`take`, which empties the ring) and stores and sends them in
    that order before anything else it reads, so ids keep one order across workers, and
    anything a worker asks after a publish returned (a resume, a replay) sees the event. The
    counter moves before the records' length, so a worker killed in between leaves at most an
    order no event has, never two events with one.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.map = mmap.mmap(fd, self.size)
        length = self.map[_RING_PREFIX]
        self.prefix = bytes(self.map[_RING_PREFIX + 1 : _RING_PREFIX + 1 + length]).decode()

    @classmethod
    def create(cls, prefix: str, size: int) -> _Ring | None:
        """A new ring of ``size`` bytes for ids ``prefix + n``; None without ``memfd``."""
        make = getattr(os, "memfd_create", None)
        encoded = prefix.encode()
        if make is None or len(encoded) > _RING_DATA - _RING_PREFIX - 1:
            return None
        fd = make("ssehub-bus", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            with mmap.mmap(fd, size) as memory:
                memory[_RING_PREFIX] = len(encoded)
                memory[_RING_PREFIX + 1 : _RING_PREFIX + 1 + len(encoded)] = encoded
        except BaseException:
            os.close(fd)
            raise
        return cls(fd)

    def close(self) -> None:
        """Unmap and close this process's handle."""
        self.map.close()
        os.close(self.fd)

    def try_lock(self) -> bool:
        """Take the lock if no other process holds it."""
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def unlock(self) -> None:
        """Release the lock."""
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def waiting(self) -> bool:
        """Whether records wait (read without the lock: a hint, `take` is exact)."""
        used: int = _COUNT.unpack_from(self.map, _COUNT.size)[0]
        return used > 0

    def set_counter(self, order: int) -> None:
        """The sequencer gave ``order`` itself (hold the lock, with the ring taken)."""
        _RING_HEAD.pack_into(self.map, 0, order, 0)

    def append(
        self,
        channel: str | tuple[str, ...],
        message: Message,
        private: bool,
        max_event: int | None,
    ) -> PublishResult | None:
        """Publish ``message`` (which has no id of its own) through the ring: its id, or None
        when the lock is busy or the ring too full (nothing was appended). Raises
        `ssehub.EventTooLarge` as `MemoryBackend.publish` does."""
        if not self.try_lock():
            return None
        try:
            memory = self.map
            order, used = _RING_HEAD.unpack_from(memory, 0)
            order += 1
            event_id = self.prefix + str(order)
            data = encode_event(message, event_id)
            if max_event is not None and len(data) > max_event:
                raise too_large(len(data), max_event)
            record = marshal.dumps((order, channel, data, private))
            start = _RING_DATA + used
            end = start + _RECORD.size + len(record)
            if end > self.size:
                return None
            _RECORD.pack_into(memory, start, len(record))
            memory[start + _RECORD.size : end] = record
            _COUNT.pack_into(memory, 0, order)
            _COUNT.pack_into(memory, _COUNT.size, end - _RING_DATA)
        finally:
            self.unlock()
        return PublishResult(event_id)

    def take(self) -> tuple[list[tuple[Any, ...]], int]:
        """Every waiting record, oldest first, and the counter; the ring is then empty (hold
        the lock)."""
        memory = self.map
        order, used = _RING_HEAD.unpack_from(memory, 0)
        if not used:
            return [], order
        raw = memory[_RING_DATA : _RING_DATA + used]
        _RING_HEAD.pack_into(memory, 0, order, 0)
        records = []
        start = 0
        while start < used:
            (length,) = _RECORD.unpack_from(raw, start)
            start += _RECORD.size
            records.append(marshal.loads(raw[start : start + length]))
            start += length
        return records, order


_IN_ORDER: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "ssehub_bus_in_order", default=None
)


@contextlib.contextmanager
def in_order() -> Iterator[None]:
    """Publishes started inside (by this task, or by tasks made inside, as `asyncio.gather`
    makes them) keep the order they were started in, though they are awaited together.

    Through the ring each gets its place at once; from the first one that takes the round
    trip to the sequencer (an id of its own, a busy or full ring), the later ones follow it on
    the socket instead, in order. For one publisher's pipelined batch (the streaming publish);
    publishes of different publishers need no order between them, so it is not the default."""
    token = _IN_ORDER.set([False])
    try:
        yield
    finally:
        _IN_ORDER.reset(token)


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
        sequencer.drain()  # a worker that died may have appended without saying so
        sequencer.links.discard(self)
        sequencer.everything.discard(self)
        for channel in self.watched:
            sequencer.unwatch(self, channel)
        for name in self.workers:
            sequencer.reports.pop(name, None)
            sequencer.presence.pop(name, None)

    def data_received(self, data: bytes) -> None:
        # What workers put in the ring comes first: a request sent after a publish returned
        # sees its event. (A worker's watch is answered before that worker appends again, so
        # no event of its own overtakes its watch this way.)
        self.sequencer.drain()
        super().data_received(data)

    def handle(self, message: tuple[Any, ...]) -> None:
        kind, request = message[0], message[1]
        sequencer = self.sequencer
        try:
            result = sequencer.answer(self, kind, message)
        except EventTooLarge as exc:
            self.out.append((_FAILED, request, "too_large", str(exc)))
        except InvalidMessage as exc:
            self.out.append((_FAILED, request, "invalid", str(exc)))
        except BackendUnavailable as exc:  # said once in the log where it is raised
            self.out.append((_FAILED, request, "unavailable", str(exc)))
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
        self.ring: _Ring | None = None
        """Where workers publish without the round trip (None where ``memfd`` is missing)."""
        self._stuck = False  # a worker held the ring's lock past RING_WAIT, and still does
        self._retrying = False

    async def start(self) -> None:
        """Start the history (on the running loop, which the sequencer then stays on)."""
        self._loop = asyncio.get_running_loop()
        await self.backend.start(self._fan_out, **self._settings)
        self.ring = _Ring.create(self.backend.id_prefix, RING_BYTES)

    async def attach(self, sock: socket.socket) -> None:
        """Serve the worker at the other end of ``sock`` (a connected Unix stream socket).

        The first byte on it is the ring's (with its file, `socket.send_fds`), or ``-`` when
        there is none; `LocalBusBackend.start` reads it before the bus's frames."""
        if self.ring is not None:
            socket.send_fds(sock, [b"R"], [self.ring.fd])
        else:
            sock.sendall(b"-")
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: _SequencerLink(self), sock)

    async def close(self) -> None:
        """Close every link and stop the history's sweep."""
        for link in list(self.links):
            if link.transport is not None:
                link.transport.close()
        await self.backend.close()
        if self.ring is not None:  # what it still holds would go into a history that is gone
            self.ring.close()
            self.ring = None

    def drain(self) -> None:
        """Store and send, in their order, the events workers put in the ring."""
        ring = self.ring
        if ring is None or not ring.waiting():
            return
        if not self._lock_ring(ring):
            # A worker holds the lock and does not let go: read again soon (the events wait,
            # none is lost), meanwhile the rest of the bus goes on.
            if not self._retrying:
                self._retrying = True
                assert self._loop is not None
                self._loop.call_later(RING_RETRY, self._retry)
            return
        try:
            records, counter = ring.take()
        finally:
            ring.unlock()
        self._accept(records, counter)

    def _retry(self) -> None:
        self._retrying = False
        self.drain()

    def _lock_ring(self, ring: _Ring) -> bool:
        # A worker holds the lock for microseconds, or a scheduler's time slice when it is
        # preempted in between; one stopped (SIGSTOP) in between holds it until it goes on.
        # So wait up to RING_WAIT, once: while the holder does not let go, publishes through
        # the bus are refused (503) rather than hung, and the sequencer serves everything else.
        if ring.try_lock():
            if self._stuck:
                self._stuck = False
                log.warning("event=bus_ring_free: the ring's lock was let go; publishing again")
            return True
        if self._stuck:
            return False
        for _ in range(100):  # the usual case: a worker is in the middle of an append
            time.sleep(0)
            if ring.try_lock():
                return True
        deadline = time.monotonic() + RING_WAIT
        while time.monotonic() < deadline:
            time.sleep(RING_WAIT / 1000)
            if ring.try_lock():
                return True
        self._stuck = True
        log.error(
            "event=bus_ring_stuck: a worker has held the ring's lock for over %d ms (stopped?); "
            "publishes are refused until it lets go",
            RING_WAIT * 1000,
        )
        return False

    def _accept(self, records: list[tuple[Any, ...]], counter: int) -> None:
        backend = self.backend
        prefix = backend.id_prefix
        for order, channel, data, private in records:
            try:
                backend.accept(Admitted(channel, prefix + str(order), data, order, private))
            except Exception:  # a bug: never silent, and the other events still go
                log.exception("event=bus_ring_failed order=%d", order)
        # Ids ``prefix + n`` up to the counter are known (a resume from one is placed).
        backend.restore_counter(prefix, counter)

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
            ring = self.ring
            if ring is None:
                result = _run_now(backend.publish(channel, msg, private=private))
                return (str(result), result.duplicate)
            # The order is given here, after every event the workers gave one to.
            if not self._lock_ring(ring):
                raise BackendUnavailable(
                    "a worker holds the ring's lock and does not let go (stopped?)"
                )
            try:
                self._accept(*ring.take())
                admitted = backend.admit(channel, msg, private=private)
                if isinstance(admitted, Admitted):
                    ring.set_counter(admitted.order)
            finally:
                ring.unlock()
            if isinstance(admitted, PublishResult):
                return (str(admitted), True)
            return (str(backend.accept(admitted)), False)
        if kind == _RING:
            return None  # read already, as every frame begins
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
        self.poked = False

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

    def poke(self) -> None:
        """Tell the sequencer, at the end of this turn, that the ring holds events."""
        if not self.poked:
            self.poked = True
            self.send((_RING, None))

    def flush(self) -> None:
        self.scheduled = False
        self.poked = False
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
        self._ring: _Ring | None = None
        self._max_event: int | None = None
        self._fences = 0  # watches sent and not answered yet

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
        self._max_event = max_event
        self._ring = self._join_ring()
        loop = asyncio.get_running_loop()
        _, link = await loop.connect_accepted_socket(lambda: _WorkerLink(self), self._sock)
        self._link = link
        for channel in self._watched:
            self._fenced(_WATCH, channel)
        if self._everything:
            self._fenced(_WATCH_ALL, True)

    def _join_ring(self) -> _Ring | None:
        # The sequencer's first byte: the ring's file with it, or "-" for none.
        sock = self._sock
        timeout = sock.gettimeout()
        sock.settimeout(10)
        try:
            first, fds, _, _ = socket.recv_fds(sock, 1, 1)
        except OSError as exc:
            raise BackendUnavailable(f"the local bus did not answer: {exc}") from None
        finally:
            sock.settimeout(timeout)
        if first == b"R" and len(fds) == 1:
            return _Ring(fds[0])
        for fd in fds:
            os.close(fd)
        if first != b"-":
            raise BackendUnavailable(f"the local bus began with {first!r}, not its ring")
        return None

    def watch(self, channel: str) -> None:
        """Ask the sequencer for ``channel``'s events (this process has subscribers on it)."""
        self._watched.add(channel)
        if self._link is not None:
            self._fenced(_WATCH, channel)

    def unwatch(self, channel: str) -> None:
        """Stop ``channel``'s events (its last local subscriber left)."""
        self._watched.discard(channel)
        if self._link is not None:
            self._link.send((_UNWATCH, None, channel))

    def watch_all(self, on: bool) -> None:
        """Ask for every channel's events (``*`` or template subscribers here), or not."""
        self._everything = on
        if self._link is not None:
            if on:
                self._fenced(_WATCH_ALL, True)
            else:
                self._link.send((_WATCH_ALL, None, False))

    def _fenced(self, kind: int, value: Any) -> None:
        # A watch is answered; until it is, publishes take the round trip behind it on the
        # socket, so none of this process's events reaches the sequencer before its watch.
        link = self._link
        assert link is not None
        request = next(self._requests)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[request] = future
        self._fences += 1
        future.add_done_callback(self._unfence)
        link.send((kind, request, value))

    def _unfence(self, future: asyncio.Future[Any]) -> None:
        self._fences -= 1
        if not future.cancelled():
            future.exception()  # retrieved: a lost bus is reported by `lost`

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

    def publish_now(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult | None:
        """Publish through the ring, without waiting: the event's id, or None (nothing
        published; await `publish`) for a message with an id of its own (the sequencer looks
        for it in the history), while a watch of this process is not answered yet, while
        another process holds the ring, or when it is full.

        The event has its id and its place in the one order of every worker; the sequencer
        stores and sends it before it reads anything sent after this returned, so a resume or
        a replay asked for later, on any worker, has it. This process's subscribers get it
        back from the sequencer, as every worker's do. Raises `ssehub.EventTooLarge` as
        `publish` does."""
        ring = self._ring
        link = self._link
        if (
            ring is None
            or link is None
            or self._fences
            or self._lost is not None
            or message.id is not None
        ):
            return None
        result = ring.append(channel, message, private, self._max_event)
        if result is not None:
            link.poke()
        return result

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        """Publish: through the ring where `publish_now` can, else through the sequencer,
        returning once it stored the event (and this process delivered it to its own
        subscribers). Inside `in_order`, once one publish took the sequencer's way, the later
        ones do too."""
        batch = _IN_ORDER.get()
        if batch is None or not batch[0]:
            result = self.publish_now(channel, message, private=private)
            if result is not None:
                return result
        if batch is not None:
            batch[0] = True  # the rest of the batch goes behind this one on the socket
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
        if self._ring is not None:
            self._ring.close()
            self._ring = None
