"""ssehub's own HTTP/1.1 server: ASGI for the hub's API, sockets written directly for streams.

Intentional divergence: ``ssehub serve`` runs on this server by default (``--http native``),
not on uvicorn, although the hub's API is a plain ASGI app (`ssehub.server.app.HubServer`)
that any ASGI server runs (``--http uvicorn`` keeps that path). The reason is fan-out cost.
uvicorn runs a task per streaming response and takes every chunk through ``send()``, its
protocol's checks and then ``transport.write``: about 2.5x the server CPU per delivery. Same
app, same run (BENCHMARKS.md, "Why the standalone hub runs on its own server"):

    workload                               native             uvicorn
    W1, 1,000 subscribers, 1 publisher     237,570 events/s   105,272 events/s
    W1, 1,000 subscribers, 4 publishers    582,263 events/s   214,941 events/s
    W2, memory per idle connection (10k)   6.34 KiB           14.0 KiB
    W3 latency, p50 / p99 / max            3.37 / 8.89 / 14.0 ms   13.3 / 30.1 / 40.6 ms

On uvicorn the hub misses the W1 target (at least 0.8x the bare asyncio baseline: 0.60x) and
the W3 one (p99 under 10 ms).

What this server does instead: it speaks just enough ASGI to run the hub's API app (one request
at a time per connection, keep-alive, fixed and streamed bodies, lifespan), and offers the
`ssehub._serving.DIRECT_STREAM` extension. An app that sees it in ``scope["extensions"]``
hands a subscription over with one `ssehub._serving.DirectStream` message (as
`ssehub.asgi.stream_subscription` does); the server then writes it straight to the client's
transport, through the subscription's writer API (`Subscription.take`, `Subscription.arm`).
A publish can skip ASGI too (``answer_now``: `ssehub.server.app.HubServer.answer_now`): the
app answers it from the scope and the whole body, at once, inside ``data_received`` (one event
on the in-memory hub: no task) or through an awaitable run as the request's task.
Publishing costs, per subscriber, one append; then one ``write`` per subscriber with pending
bytes, in slices spread over a few loop iterations (`_Flusher`), so that events published while
a flush is under way join the writes still to come (adaptive coalescing: idle, each event is
written at once; under load, one write carries several; on a machine short of CPU, each flush
also waits up to `GATHER_DELAY` for more); and no task or coroutine per client. A
stream's body ends when the connection closes (no chunk framing), so every subscriber gets the
very bytes the hub encoded once.

What a hostile client cannot do (the limits of `HTTPServer`): send a request head over
``max_head`` bytes (counted as bytes arrive, before the parser buffers them: 431), a body over
``max_body`` (413 from the declared length, or as soon as the count passes it), take longer than
``head_timeout`` to send a head or ``body_timeout`` to send its body (408), or hold an idle
keep-alive connection past ``idle_timeout`` (closed). The timeouts run on one timer for the whole
server (`HTTPServer` sweeps the connections that are not streams, a few times per shortest
timeout), so an idle stream costs no timer and no work; streams are exempt (the hub's keep-alive
comments keep them busy). An app may refuse a request from its head alone (``refuse_head``:
`ssehub.server.app.HubServer.refuse_head`), before a body byte is buffered and before
``100 Continue``. A refused connection is half-closed and drained for a moment ("lingering
close"), so the client reads the answer rather than a reset.

What it does not do: TLS, HTTP/2 (a request line with ``HTTP/2.0`` gets 505), WebSocket,
upgrades, proxy headers; put a proxy in front for those, or use ``--http uvicorn``. All its
state belongs to an `HTTPServer` instance (no module state, no signal handlers: the caller
installs those and calls `HTTPServer.shutdown`).

Request parsing uses httptools (installed with ``ssehub[server]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any, cast

import httptools

from ssehub._serving import DIRECT_STREAM, Answer, DirectStream, Reply
from ssehub.hub import Hub
from ssehub.server.config import DEFAULT_BODY_TIMEOUT, DEFAULT_HEAD_TIMEOUT, DEFAULT_IDLE_TIMEOUT
from ssehub.server.publish import DEFAULT_MAX_BODY
from ssehub.server.routing import decode_path
from ssehub.subscription import CloseReason, Subscription, WriteQueue
from ssehub.types import ASGIMessage, Receive, Scope, Send

__all__ = [
    "DEFAULT_MAX_HEAD",
    "HTTPServer",
    "log_accept_errors",
]

log = logging.getLogger("ssehub.server")
access_log = logging.getLogger("ssehub.access")

ASGIApp = Callable[[Scope, Receive, Send], Any]
HeadCheck = Callable[[Scope], "Answer | None"]
"""An app's decision from a request's head alone: the answer refusing it, or None."""
AnswerNow = Callable[[Scope, bytes], "Reply | Awaitable[Reply] | None"]
"""An app's complete answer to a request and its body, at once or awaitable; None: run it."""

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
DEFAULT_MAX_HEAD = 64 * 1024
"""The largest request head (request line and headers) in bytes, by default."""
_LINGER = 2.0  # seconds a refused connection is drained before it is closed
_LINGER_BYTES = 1024 * 1024  # and the most it reads of what the client still sends
_MAX_QUEUED = 32  # pipelined requests held before the connection stops being read

# Where a connection is: what its next bytes are, and which timeout applies.
_IDLE = 0  # between requests (the idle timeout, once the last response is out)
_HEAD = 1  # a request head is arriving (or awaited on a new connection): the head timeout
_BODY = 2  # a request body is arriving: the body timeout
_BODY_STREAM = 3  # a streamed request body (streaming publish): the app times it, not the server
_LINGER_PHASE = 4  # answered and half-closed; input is discarded until the linger ends
_STREAM = 5  # a direct stream: no timeout, input ignored
_INBOX_BYTES = 256 * 1024  # streamed body bytes buffered before the connection stops being read


class _Inbox:
    """A streamed request body, between the parser (`feed`, `end`) and the app (`get`).

    Bounded: past `_INBOX_BYTES` unread bytes the connection's reading is paused, and resumed
    once the app took them; so a publisher faster than the hub waits in its kernel buffers.
    """

    __slots__ = ("chunks", "ended", "gone", "size", "transport", "waiter")

    def __init__(self, transport: asyncio.Transport | None) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.ended = False
        self.gone = False
        self.transport = transport
        self.waiter: asyncio.Future[None] | None = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > _INBOX_BYTES and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def end(self, gone: bool = False) -> None:
        self.ended = True
        self.gone = self.gone or gone
        self._wake()

    async def get(self) -> ASGIMessage:
        """The next ASGI message of the body: what arrived (joined), or a disconnect."""
        while not self.chunks and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter  # cancelling here loses nothing: no chunk was taken yet
        if self.gone and not self.chunks:
            return {"type": "http.disconnect"}
        body = b"".join(self.chunks)
        self.chunks = []
        self.size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing() and not transport.is_reading():
            transport.resume_reading()
        return {"type": "http.request", "body": body, "more_body": not self.ended}


class _Refused(Exception):
    """Raised from a parser callback after the request was answered, to stop parsing."""


def _head(
    status: int, headers: Iterable[tuple[bytes, bytes]] | Iterable[tuple[str, str]]
) -> bytearray:
    out = bytearray(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")))
    for name, value in headers:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        out += name + b": " + value + b"\r\n"
    return out


_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE)


def log_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Make ``loop`` report accept() failing for want of file descriptors as one warning line.

    asyncio reports each failed accept (every second while it lasts) with a traceback; this
    logs one ``event=accept_failed`` warning per minute instead, and hands every other error to
    the handler that was there. (uvloop never reports these: libuv closes the connections it
    cannot accept; `HTTPServer` watches its own count of connections for that case.)
    """
    previous = loop.get_exception_handler()
    last = [-60.0]

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS:
            now = loop.time()
            if now - last[0] >= 60.0:
                last[0] = now
                log.warning(
                    "event=accept_failed error=%r: out of file descriptors, new connections "
                    "wait in the backlog; raise the open-file limit (ulimit -n) or lower "
                    "--max-clients",
                    exc.strerror,
                )
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _open_fds() -> int:
    """File descriptors this process has open (Linux; a guess of 16 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own
    except OSError:
        return 16


def _out_of_fds(limit: int) -> bool:
    """Whether this process has (about) ``limit`` file descriptors open."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1 >= limit - 2
    except OSError as exc:
        return exc.errno in _OUT_OF_FDS  # listing them needs one more


FLUSH_PARTS = 16
"""A flush that finds many streams pending writes them in about this many slices, one per loop
iteration (see `_Flusher`)."""
FLUSH_MIN_SLICE = 16
"""The fewest streams a slice writes: below ``FLUSH_PARTS * FLUSH_MIN_SLICE`` pending streams
a flush takes fewer, larger slices, and up to this many it is one slice, as an idle server's."""
FLUSH_MAX_SLICE = 64
"""The most streams a slice writes: past ``FLUSH_PARTS * FLUSH_MAX_SLICE`` pending streams a
flush takes more slices, so the loop reads its sockets (a publish, the next request, the bus)
at least every this many writes, however many streams wait."""
FLUSH_BACKLOG_SHIFT = 2
"""A flush writes every queued stream at once, not a slice, when the first queued holds more
than ``max_buffer >> FLUSH_BACKLOG_SHIFT`` bytes (a quarter of what it may fall behind)."""
GATHER_DELAY = 0.008
"""The longest a flush cycle waits before it starts while the server is short of CPU (see
`_Flusher`): the events published meanwhile share each stream's write."""
UNCONTENDED = 0.1
"""Not short of CPU: over the last `CONTENTION_WINDOW`, the loop's thread spent at most this
share of the time ready to run but waiting for a core (the kernel's run delay). Cycles start at
once."""
CONTENDED = 0.3
"""From this share of the time waiting for a core on, cycles wait the whole `GATHER_DELAY`;
between `UNCONTENDED` and this, a part of it in proportion."""
CONTENTION_WINDOW = 0.1
"""Seconds over which the share is measured; it is read again at most this often."""


class RunDelay:
    """The time the calling thread has spent ready to run but waiting for a CPU, in seconds:
    the second field of Linux's ``/proc/thread-self/schedstat``.

    Made on the thread to measure (the event loop's). Calling it reads the file again (one
    ``pread``, well under a microsecond). Where the file is missing (not Linux, or a kernel
    without scheduler statistics) `available` is False and the delay reads 0.
    """

    __slots__ = ("_fd",)

    def __init__(self, path: str = "/proc/thread-self/schedstat") -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY)
            int(os.pread(self._fd, 64, 0).split()[1])  # readable as `__call__` reads it
        except (OSError, ValueError, IndexError):
            self.close()

    @property
    def available(self) -> bool:
        """Whether the run delay can be read here."""
        return self._fd >= 0

    def __call__(self) -> float:
        if self._fd < 0:
            return 0.0
        try:
            return int(os.pread(self._fd, 64, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            self.close()
            return 0.0

    def close(self) -> None:
        """Stop reading (closes the file)."""
        fd = getattr(self, "_fd", -1)
        self._fd = -1
        if fd >= 0:
            os.close(fd)


class _Flusher(WriteQueue):
    """Writes every stream that got bytes: one write per stream, in slices, one per iteration.

    The queue of the streams with bytes pending: a publish appends the event to each
    subscriber's buffer, and the buffer puts its connection here on its first push since its
    last write (`Subscription.queue_on`: no call per delivery). ``flush`` then writes the
    queued streams in first-queued order, ``queued // FLUSH_PARTS`` of them per loop iteration
    (at least `FLUSH_MIN_SLICE`, at most `FLUSH_MAX_SLICE`), and schedules itself again while
    any remain. Between two slices the loop reads its sockets, so a publish that arrives while a
    flush is under way lands in the buffers of the streams not yet written, and they write both
    events with one ``write``.

    That is the adaptive coalescing. An idle server writes each event at once: while the queue
    is empty, the first ``FLUSH_MIN_SLICE`` streams pushed to in a loop iteration are written
    straight from the push (`write_now`), so a small fan-out goes out before the publisher's
    answer and without a loop turn, and a larger one queues the rest. Under load a stream's
    write carries every event published since its last write, so one publisher's events cost one
    write per client per flush cycle instead of one per event. With CPU to spare no timer
    delays anything: a stream waits at most one cycle through the queue, which a flush of
    every stream at once would have taken too. The slice grows with the queue, so a cycle is
    about ``FLUSH_PARTS`` iterations up to ``FLUSH_PARTS * FLUSH_MAX_SLICE`` streams, and more
    past that: with 10,000 streams a slice of 625 writes would keep a publisher's answer (and
    so its next event) waiting behind each one, where 64 let it in sooner, and more events
    share each cycle. A stream's buffer holds at most the events of one cycle: when the first
    queued stream (which holds the most) has a quarter of its ``max_buffer`` pending, the flush
    writes every queued stream at once. And a push that would take a queued stream past its
    bound before its turn writes every queued stream first (`relieve`), so publishes that
    outrun the slices, or a cycle that waits (below), never drop a reader that keeps up.

    When the machine is short of CPU, cycles also wait. The loop's thread reads how long it
    waited for a core, ready to run, over the last `CONTENTION_WINDOW` (the kernel's run delay:
    more processes ready than cores, as with several ``--workers`` and their clients on a small
    machine, or other work). Past `UNCONTENDED` of the time, each cycle starts a while after the
    push that queued its first stream, up to `GATHER_DELAY` at `CONTENDED`, and nothing is
    written straight from a push. A saturated process gathers by itself, because its cycles take
    longer; processes that each have spare time, on a machine that has none, would otherwise
    write every event alone and spend on it the CPU they all lack. Below `UNCONTENDED` nothing
    waits. The share is read again at the end of a cycle, and when a push finds the last reading
    older than the window (so a server that went idle writes at once again).
    """

    __slots__ = ("direct", "gather", "loop", "read_at", "run_delay", "scheduled", "waited")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, run_delay: Callable[[], float] | None = None
    ) -> None:
        super().__init__()
        self.loop = loop
        self.scheduled = False
        self.direct = FLUSH_MIN_SLICE  # straight writes left in this loop iteration
        self.gather = 0.0  # how long a cycle waits before it starts (0: not short of CPU)
        self.run_delay = run_delay  # the loop thread's run delay so far (None: not measured)
        self.read_at = loop.time()
        self.waited = run_delay() if run_delay is not None else 0.0

    def contention(self) -> None:
        """Read the run delay if the last reading is a window old, and gather or not."""
        run_delay = self.run_delay
        if run_delay is None:
            return
        now = self.loop.time()
        elapsed = now - self.read_at
        if elapsed < CONTENTION_WINDOW:
            return
        waited = run_delay()
        share = (waited - self.waited) / elapsed
        self.read_at, self.waited = now, waited
        excess = (share - UNCONTENDED) / (CONTENDED - UNCONTENDED)
        self.gather = GATHER_DELAY * min(1.0, excess) if excess > 0 else 0.0

    def kick(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            if self.gather:
                self.contention()  # the last reading may be from before an idle spell
            if self.gather:
                self.loop.call_later(self.gather, self.flush)
            else:
                self.loop.call_soon(self.flush)

    def write_now(self, item: Any) -> bool:
        # Only reached while nothing is queued. A slice's worth per iteration: a big fan-out
        # queues the rest, so the slices (and the coalescing between them) stay as they were.
        direct = self.direct
        if not direct or self.scheduled or self.gather:
            return False
        if direct == FLUSH_MIN_SLICE:
            self.loop.call_soon(self._refill)
        self.direct = direct - 1
        conn: _Connection = item
        sub = conn.sub
        transport = conn.transport
        if sub is None or transport is None:
            return False
        chunk = sub.take()  # and the next push queues the connection again
        if chunk is not None:
            transport.write(chunk)
            if transport.get_write_buffer_size() > sub.max_buffer:
                sub.close(CloseReason.SLOW)  # queues the connection: the flush ends the stream
                transport.abort()
        return True

    def _refill(self) -> None:
        self.direct = FLUSH_MIN_SLICE

    def flush(self) -> None:
        n = min(max(FLUSH_MIN_SLICE, len(self) // FLUSH_PARTS), FLUSH_MAX_SLICE)
        # The first queued has waited longest and holds the most: when publishes come in
        # faster than slices drain it, write everything now rather than let buffers near
        # max_buffer, where a reader keeping up would be dropped for the server's backlog.
        first = self[0].sub if self else None
        if first is not None and first.pending_bytes > first.max_buffer >> FLUSH_BACKLOG_SHIFT:
            n = len(self)
        batch = self[:n]
        del self[:n]
        if self:
            self.loop.call_soon(self.flush)  # the rest after the loop has read its sockets
        else:
            self.scheduled = False
            self.contention()
        self._write(batch)

    def relieve(self) -> None:
        # A queued stream's next event would pass its bound before its turn (publishes that
        # outrun the slices, or a cycle that waits): write every queued stream now. This runs
        # from a push, while the hub goes through a channel's subscribers: a stream that has
        # ended is queued again for the flush already scheduled, which ends it (ending it here
        # would take it off the channel mid-delivery).
        batch = self[:]
        del self[:]
        self.extend(self._write(batch, end=False))

    def _write(self, batch: list[Any], end: bool = True) -> list[Any]:
        """Write each connection's pending bytes; end the streams that have closed (or, with
        ``end`` False, return their connections)."""
        ended = []
        conn: _Connection
        for conn in batch:
            sub = conn.sub
            if sub is None:
                continue
            chunk = sub.take()  # and the next push queues the connection again
            if chunk is not None:
                transport = conn.transport
                assert transport is not None
                transport.write(chunk)
                if transport.get_write_buffer_size() > sub.max_buffer:
                    sub.close(CloseReason.SLOW)
                    transport.abort()
            if sub.closed:
                if end:
                    conn.stream_ended()
                else:
                    ended.append(conn)
        return ended


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the ASGI app, or streams a subscription."""

    # Slots and lazily made futures keep an idle stream's connection small (see W2).
    __slots__ = (
        "body",
        "body_size",
        "client",
        "cycle",
        "disconnected",
        "drained",
        "flusher",
        "head_size",
        "headers",
        "hub",
        "inbox",
        "local",
        "loop",
        "parser",
        "paused",
        "phase",
        "queue",
        "scope",
        "server",
        "since",
        "sub",
        "transport",
        "url",
    )

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        # Request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        self.head_size = 0  # bytes received since the head began (bounded by max_head)
        self.scope: Scope | None = None
        # Which timeout applies, and since when (the server's one timer reads both).
        self.phase = _HEAD
        self.since = server.loop.time()
        # Requests parsed and waiting (pipelining), and the one running.
        self.queue: deque[tuple[Scope, bytes | _Inbox]] | None = None
        # The body of the request being read, when the app streams it (`HTTPServer.stream_body`).
        self.inbox: _Inbox | None = None
        self.cycle: asyncio.Task[None] | None = None
        # Resolved when the client goes away; made only when an app waits for that.
        self.disconnected: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.paused = False
        # Direct stream state.
        self.hub: Hub | None = None
        self.sub: Subscription | None = None
        self.flusher = server.flusher

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        local = transport.get_extra_info("sockname")
        self.local = (local[0], local[1]) if isinstance(local, tuple) else None
        self.server.connections.add(self)
        self.server.timed.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.server.timed.discard(self)
        if self.disconnected is None:
            self.disconnected = self.loop.create_future()
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        self.resume_writing()
        if self.inbox is not None:
            self.inbox.end(gone=True)
            self.inbox = None
        sub = self.sub
        if sub is not None:
            sub.close(CloseReason.DISCONNECTED)
            self._end_stream()

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        if phase >= _LINGER_PHASE:
            # A streaming client has nothing more to say; a refused one is drained, up to a
            # bound (then the kernel's buffers fill and its sends block until the close).
            if phase == _LINGER_PHASE:
                self.body_size += len(data)
                if self.body_size > _LINGER_BYTES and self.transport is not None:
                    self.transport.pause_reading()
            return
        if phase != _BODY and phase != _BODY_STREAM:
            # A head is arriving: count its bytes before the parser sees (and buffers) them,
            # so an endless header line costs 64 KiB, not the parser's quadratic appends.
            room = self.server.max_head - self.head_size
            if len(data) > room:
                self._feed_past_head(data, room)
                return
            self.head_size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._parse_error(exc)

    def _feed_past_head(self, data: bytes, room: int) -> None:
        # Feed what the head may still use; the rest only once that completed the head (the
        # rest is then body, or the next pipelined request, counted afresh).
        self.head_size += room
        try:
            self.parser.feed_data(data[:room])
        except httptools.HttpParserError as exc:
            self._parse_error(exc)
            return
        if self.phase == _HEAD and self.head_size >= self.server.max_head:
            self._reject(
                431, b"request line and headers larger than %d bytes" % self.server.max_head
            )
        elif self.phase < _LINGER_PHASE:
            self.data_received(data[room:])

    def _parse_error(self, exc: httptools.HttpParserError) -> None:
        if self.phase >= _LINGER_PHASE:
            return  # a callback answered and stopped the parser (_Refused)
        if isinstance(exc, httptools.HttpParserUpgrade):
            self._reject(400, b"upgrades are not supported")
        elif "version" in str(exc) or "PRI" in str(exc):
            self._reject(505, b"only HTTP/1.0 and HTTP/1.1 are supported")
        else:
            self._reject(400, b"malformed HTTP request")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = []
        self.body_size = 0
        if self.phase == _IDLE:  # a new connection's first head is timed from its start
            self.phase = _HEAD
            self.since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.phase = _BODY
        self.since = self.loop.time()
        version = self.parser.get_http_version()
        if version != "1.1" and version != "1.0":
            self._reject(505, b"only HTTP/1.0 and HTTP/1.1 are supported")
            raise _Refused
        self.scope = scope = self._scope(version)
        # Decide from the head alone, before a byte of the body is buffered, and only then
        # invite it with 100 Continue. A request without a body goes straight to the app.
        length = -1
        chunked = expect = False
        for name, value in self.headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect":
                expect = value.lower() == b"100-continue"
        if length <= 0 and not chunked:
            return
        refuse = self.server.refuse_head
        if refuse is not None:
            try:
                answer = refuse(scope)
            except Exception:
                log.exception("error in the app's head check")
                self._reject(500, b"internal server error")
                raise _Refused from None
            if answer is not None:
                self._answer(answer.status, answer.headers, answer.body)
                raise _Refused
        stream_body = self.server.stream_body
        if stream_body is not None and stream_body(scope):
            # The app reads this body as it arrives, without --max-body (it bounds each line);
            # the server's timer leaves it alone: the app times the lines.
            self.phase = _BODY_STREAM
            self.server.timed.discard(self)
            self.inbox = _Inbox(self.transport)
            self._enqueue(scope, self.inbox)
        elif length > self.server.max_body:
            self._too_large()
        if expect:
            assert self.transport is not None
            self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self.inbox is not None:
            self.inbox.feed(body)
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.body = []
            self._too_large()
        self.body.append(body)

    def _too_large(self) -> None:
        self._reject(
            413,
            b'{"error": "request body larger than the %d bytes allowed"}' % self.server.max_body,
            json=True,
        )
        raise _Refused

    def _scope(self, version: str) -> Scope:
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        try:
            path = decode_path(raw_path)
        except ValueError:
            self._reject(400, b"the request path is not UTF-8 once percent-decoded")
            raise _Refused from None
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "method": self.parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "root_path": "",
            "query_string": parsed.query or b"",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
            "extensions": {DIRECT_STREAM: {}},
            "keep_alive": self.parser.should_keep_alive(),
        }
        return scope

    def on_message_complete(self) -> None:
        if self.phase == _BODY_STREAM:
            self.server.timed.add(self)
        self.phase = _IDLE
        self.head_size = 0
        scope, self.scope = self.scope, None
        assert scope is not None
        inbox, self.inbox = self.inbox, None
        if inbox is not None:
            inbox.end()
            return
        body = b"".join(self.body)
        self.body = []
        answer_now = self.server.answer_now
        if (
            answer_now is not None
            and self.cycle is None
            and not self.queue
            and not self.server.closing
        ):
            try:
                reply = answer_now(scope, body)
            except Exception:
                log.exception("error in the hub's HTTP app")
                self._reject(500, b"internal server error")
                raise _Refused from None
            if isinstance(reply, tuple):
                self._reply(scope, reply)
                return
            if reply is not None:
                # The request's cycle: what is pipelined behind it waits in the queue.
                self.cycle = self.loop.create_task(self._reply_later(scope, reply))
                return
        self._enqueue(scope, body)

    async def _reply_later(self, scope: Scope, pending: Awaitable[Reply]) -> None:
        try:
            reply = await pending
        except Exception:
            log.exception("error in the hub's HTTP app")
            self._reject(500, b"internal server error")
            return
        transport = self.transport
        if self.phase == _LINGER_PHASE or transport is None or transport.is_closing():
            return  # answered already (a request pipelined behind it was refused), or gone
        if self._reply(scope, reply):
            self._next_cycle()

    def _reply(self, scope: Scope, reply: Reply) -> bool:
        """Write ``answer_now``'s complete answer to the request of ``scope``; whether the
        connection is kept for the next request."""
        transport = self.transport
        assert transport is not None
        status, headers, body = reply
        head = _head(status, headers)
        keep = bool(scope["keep_alive"]) and not self.server.closing
        head += b"\r\n" if keep else b"connection: close\r\n\r\n"
        transport.write(bytes(head + body))
        if self.server.access_log:
            self._log_access(scope, status)
        if keep:
            self.since = self.loop.time()  # idle from the last response on
        else:
            transport.close()
        return keep

    def _enqueue(self, scope: Scope, body: bytes | _Inbox) -> None:
        if self.queue is None:
            self.queue = deque()
        self.queue.append((scope, body))
        if self.cycle is None:
            self._next_cycle()
        elif len(self.queue) >= _MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining faster than it is answered

    # -- requests -------------------------------------------------------------------------

    def _reject(self, status: int, message: bytes, json: bool = False) -> None:
        body = message if json else b'{"error": "%s"}' % message
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        self._answer(status, headers, body)

    def _answer(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]] | tuple[tuple[str, str], ...],
        body: bytes,
    ) -> None:
        """Answer ``status`` and end the connection: no more of its input is read."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.phase >= _LINGER_PHASE:
            return
        head = _head(status, headers)
        transport.write(bytes(head + b"connection: close\r\n\r\n" + body))
        self.linger()

    def linger(self) -> None:
        """Half-close: send what is written and an end of stream, then drain the client's
        input for a moment (closing at once with input unread would reset the connection, and
        the client could lose the answer). The server's timer closes it after `_LINGER`."""
        transport = self.transport
        self.phase = _LINGER_PHASE
        self.since = self.loop.time()
        self.body = []
        self.body_size = 0
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
            if not transport.is_reading():
                transport.resume_reading()
        else:
            transport.close()

    def expire(self) -> None:
        """Its timeout passed: answer 408 to a request half-sent, then close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        phase = self.phase
        if phase == _BODY or (phase == _HEAD and self.head_size):
            body = b'{"error": "the request took too long to arrive"}'
            head = _head(
                408,
                [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
            )
            transport.write(bytes(head + b"connection: close\r\n\r\n" + body))
        if phase == _LINGER_PHASE:
            transport.abort()
        else:
            transport.close()

    def _next_cycle(self) -> None:
        if self.queue and self.sub is None and not self.server.closing:
            scope, body = self.queue.popleft()
            self.cycle = self.loop.create_task(self._run(scope, body))
            transport = self.transport
            if transport is not None and not transport.is_reading() and not transport.is_closing():
                transport.resume_reading()
        else:
            self.cycle = None
            if self.phase == _IDLE:
                self.since = self.loop.time()  # idle from the last response on

    async def _run(self, scope: Scope, body: bytes | _Inbox) -> None:
        transport = self.transport
        assert transport is not None
        state = _Response()
        body_sent = False

        async def receive() -> ASGIMessage:
            nonlocal body_sent
            if not body_sent:
                if isinstance(body, _Inbox):
                    message = await body.get()
                    body_sent = message["type"] != "http.request" or not message["more_body"]
                    return message
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            if self.disconnected is None:
                self.disconnected = self.loop.create_future()
            await self.disconnected
            return {"type": "http.disconnect"}

        async def send(message: ASGIMessage) -> None:
            await self._send(scope, state, message)

        try:
            await self.server.app(scope, receive, send)
            if self.server.access_log:
                self._log_access(scope, 200 if self.sub is not None else state.status)
        except Exception:
            log.exception("error in the hub's HTTP app")
            if not state.started:
                self._reject(500, b"internal server error")
                return
            transport.close()
            return
        if self.sub is not None:
            self.cycle = None
            return  # the connection now belongs to the stream
        if isinstance(body, _Inbox) and not body.ended:
            # Answered before its streamed body ended: the rest of it is drained, not parsed.
            self.inbox = None
            self.server.timed.add(self)
            self.cycle = None
            self.linger()
            return
        if not state.complete:
            if not state.started:
                self._reject(500, b"the app sent no response")
            else:
                transport.close()
            return
        if not state.keep_alive:
            transport.close()
            return
        self._next_cycle()

    def _log_access(self, scope: Scope, status: int) -> None:
        access_log.info(
            '%s - "%s %s HTTP/%s" %d',
            self.client[0] if self.client else "-",
            scope["method"],
            scope["path"],
            scope["http_version"],
            status,
        )

    async def _send(self, scope: Scope, state: _Response, message: ASGIMessage) -> None:
        transport = self.transport
        assert transport is not None
        kind = message["type"]
        if self.phase == _LINGER_PHASE:
            # The connection was answered already (a pipelined request was refused): the
            # app's answer has nowhere to go, and a stream handed over ends at once.
            if kind == DIRECT_STREAM:
                stream = cast(DirectStream, message)
                stream["hub"].unsubscribe(stream["subscription"])
            return
        if kind == "http.response.start":
            state.started = True
            state.status = message["status"]
            state.headers = list(message.get("headers", ()))
            return
        if kind == "http.response.body":
            if transport.is_closing():
                return
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if not state.head_sent:
                state.head_sent = True
                headers = state.headers
                names = {name.lower() for name, _ in headers}
                keep = bool(scope["keep_alive"]) and not self.server.closing
                if b"content-length" not in names:
                    if more:
                        headers.append((b"transfer-encoding", b"chunked"))
                        state.chunked = True
                    else:
                        headers.append((b"content-length", str(len(chunk)).encode()))
                if not keep:
                    headers.append((b"connection", b"close"))
                state.keep_alive = keep
                head = _head(state.status, headers)
                head += b"\r\n"
                if scope["method"] != "HEAD":
                    head += self._frame(state, chunk)
                transport.write(bytes(head))
            elif scope["method"] != "HEAD":
                transport.write(self._frame(state, chunk))
            if not more:
                if state.chunked:
                    transport.write(b"0\r\n\r\n")
                state.complete = True
            elif self.paused:
                self.drained = self.loop.create_future()
                await self.drained
            return
        if kind == DIRECT_STREAM:
            self._start_stream(cast(DirectStream, message))
            return
        raise RuntimeError(f"unexpected ASGI message {kind!r}")

    @staticmethod
    def _frame(state: _Response, chunk: bytes) -> bytes:
        if state.chunked and chunk:
            return b"%x\r\n%b\r\n" % (len(chunk), chunk)
        return b"" if state.chunked else chunk

    # -- direct streams -------------------------------------------------------------------

    def _start_stream(self, stream: DirectStream) -> None:
        transport = self.transport
        assert transport is not None
        self.hub = stream["hub"]
        self.sub = sub = stream["subscription"]
        self.phase = _STREAM
        self.since = 0.0
        self.server.timed.discard(self)
        # The stream's body ends when the connection closes: no chunk framing, so every
        # subscriber gets the very bytes the hub encoded once.
        head = _head(200, [*stream["headers"], ("connection", "close")])
        transport.write(bytes(head + b"\r\n"))
        if transport.is_closing():
            sub.close(CloseReason.DISCONNECTED)
        sub.queue_on(self.flusher, self)  # queued at once when bytes wait or it has closed

    def stream_ended(self) -> None:
        """The subscription has closed and its bytes are written: end the response."""
        sub = self.sub
        transport = self.transport
        if sub is not None and transport is not None:
            if sub.close_reason == CloseReason.SLOW:
                transport.abort()  # dropped: what is buffered is not worth sending
            else:
                transport.close()  # after what is buffered: a clean end of the stream
        self._end_stream()

    def _end_stream(self) -> None:
        sub, self.sub = self.sub, None
        if sub is not None and self.hub is not None:
            self.hub.unsubscribe(sub)


class _Response:
    __slots__ = ("chunked", "complete", "head_sent", "headers", "keep_alive", "started", "status")

    def __init__(self) -> None:
        self.started = False
        self.head_sent = False
        self.complete = False
        self.chunked = False
        self.keep_alive = True
        self.status = 200
        self.headers: list[tuple[bytes, bytes]] = []


class HTTPServer:
    """Serve an ASGI app (the hub's API) on sockets, with direct streams for subscriptions.

    ``await serve(sockets)`` runs the app's lifespan startup, accepts connections until
    `shutdown` is called, then stops accepting, runs the lifespan shutdown (the app shuts its
    hub down, which ends every stream cleanly) and waits up to ``timeout`` seconds for requests
    in flight.

    Limits (see the module docstring): ``max_head`` and ``max_body`` in bytes; the
    ``head_timeout``, ``body_timeout`` and ``idle_timeout`` in seconds (0 turns one off).
    ``refuse_head``, when given, decides from each request's head alone (before its body is
    read) whether to refuse it: it returns the answer, or None. ``stream_body``, when given,
    says from an accepted head whether the app reads that request's body as it arrives
    (``receive()`` gives each piece with ``more_body``; no ``max_body``, no body timeout: the
    app bounds it, as the streaming publish does per line) rather than whole. ``answer_now``,
    when given, is offered each request whose whole body is in and whose turn it is (nothing
    before it on the connection is still being answered): it returns the complete answer
    (status, headers with ``content-length``, body) without the ASGI cycle, or an awaitable of
    it (run as the request's task), or None to run the app
    (`ssehub.server.app.HubServer.answer_now` answers a publish to a channel).
    """

    loop: asyncio.AbstractEventLoop
    flusher: _Flusher

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        access_log: bool = False,
        max_head: int = DEFAULT_MAX_HEAD,
        head_timeout: float = DEFAULT_HEAD_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        refuse_head: HeadCheck | None = None,
        stream_body: Callable[[Scope], bool] | None = None,
        answer_now: AnswerNow | None = None,
    ) -> None:
        if max_head <= 0 or max_body <= 0:
            raise ValueError("max_head and max_body must be positive numbers of bytes")
        if min(head_timeout, body_timeout, idle_timeout) < 0:
            raise ValueError("timeouts are seconds, 0 or more (0 turns one off)")
        self.app = app
        self.max_body = max_body
        self.max_head = max_head
        self.access_log = access_log
        self.refuse_head = refuse_head
        self.stream_body = stream_body
        self.answer_now = answer_now
        # The timeout of each phase, indexed by it (0: none).
        self._limits = (idle_timeout, head_timeout, body_timeout, 0.0, _LINGER)
        active = [t for t in (idle_timeout, head_timeout, body_timeout) if t > 0]
        # The one timer's period: a quarter of the shortest timeout (a timeout fires within
        # a quarter of itself), at most one second and at least 20 ms.
        self._tick = min(1.0, max(0.02, min([*active, _LINGER]) / 4))
        self._sweeper: asyncio.TimerHandle | None = None
        self.connections: set[_Connection] = set()
        self.timed: set[_Connection] = set()
        """The connections that are not streams: what the timer sweeps."""
        self.closing = False
        self._stop = asyncio.Event()
        self._lifespan: _Lifespan | None = None
        self.started = asyncio.Event()
        """Set once the sockets accept connections."""
        self._fd_limit = 0  # the open-file limit, watched under uvloop (0: not watched)
        self._fd_base = 0  # descriptors open before the first connection
        self._fd_warned = False

    async def serve(self, sockets: list[socket.socket], timeout: float = 5.0) -> None:
        """Run until `shutdown`; see the class docstring."""
        self.loop = asyncio.get_running_loop()
        run_delay = RunDelay()  # of this thread, the loop's
        self.flusher = _Flusher(self.loop, run_delay if run_delay.available else None)
        try:
            await self._serve(sockets, timeout)
        finally:
            self.flusher.run_delay = None
            run_delay.close()

    async def _serve(self, sockets: list[socket.socket], timeout: float) -> None:
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()
        servers = [
            await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=4096)
            for sock in sockets
        ]
        previous_handler = self.loop.get_exception_handler()
        if isinstance(self.loop, asyncio.BaseEventLoop):
            log_accept_errors(self.loop)  # asyncio reports failed accepts
        else:
            # uvloop does not: watch the connections against the open-file limit instead.
            with contextlib.suppress(ImportError, OSError, ValueError):
                import resource

                soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
                if soft != resource.RLIM_INFINITY:
                    self._fd_limit = soft
                    self._fd_base = _open_fds() - len(self.connections)
        self._sweeper = self.loop.call_later(self._tick, self._sweep)
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            self.closing = True
            if self._sweeper is not None:
                self._sweeper.cancel()
            self.loop.set_exception_handler(previous_handler)
            for server in servers:
                server.close()
            await self._lifespan.shutdown()
            deadline = self.loop.time() + timeout
            while self.loop.time() < deadline and any(
                conn.cycle is not None or conn.sub is not None for conn in self.connections
            ):
                await asyncio.sleep(0.02)
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            for server in servers:
                await server.wait_closed()

    def shutdown(self) -> None:
        """Ask `serve` to stop (safe to call from a signal handler on the loop)."""
        self._stop.set()

    def _sweep(self) -> None:
        # The one timer of every request timeout: streams are not in `timed`, so an idle
        # stream costs nothing here.
        now = self.loop.time()
        limits = self._limits
        expired = [
            conn
            for conn in self.timed
            if limits[conn.phase]
            and now - conn.since > limits[conn.phase]
            and not (conn.phase == _IDLE and (conn.cycle is not None or conn.queue))
        ]
        for conn in expired:
            conn.expire()
        limit = self._fd_limit
        if limit:
            # uvloop closes the connections it cannot accept without a word: say it once when
            # the descriptors run out, and again only after they were back under 90%. Counted
            # from the connections; the descriptors themselves only when that is close.
            count = len(self.connections)
            if count + self._fd_base >= limit * 0.9:
                if not self._fd_warned and _out_of_fds(limit):
                    self._fd_warned = True
                    log.warning(
                        "event=accept_failed connections=%d error='Too many open files': out "
                        "of file descriptors, new connections are refused; raise the "
                        "open-file limit (ulimit -n) or lower --max-clients",
                        count,
                    )
            else:
                self._fd_warned = False
        self._sweeper = self.loop.call_later(self._tick, self._sweep)


class _Lifespan:
    """Drives the ASGI lifespan protocol of the app, if it speaks it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        self.outbox: asyncio.Queue[ASGIMessage] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def _run(self) -> None:
        scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}}
        try:
            await self.app(scope, self.inbox.get, self.outbox.put)
        except Exception:
            log.debug("the app does not speak the lifespan protocol", exc_info=True)
        # An app that returns (or fails) without answering does not speak lifespan.
        await self.outbox.put({"type": "lifespan.unsupported"})

    async def _exchange(self, message: str) -> None:
        if not self.supported:
            return
        await self.inbox.put({"type": message})
        reply = await self.outbox.get()
        if reply["type"] == "lifespan.unsupported":
            self.supported = False
        elif reply["type"].endswith(".failed"):
            raise RuntimeError(f"the app's {message} failed: {reply.get('message', '')}")

    async def startup(self) -> None:
        self.task = asyncio.ensure_future(self._run())
        await self._exchange("lifespan.startup")

    async def shutdown(self) -> None:
        await self._exchange("lifespan.shutdown")
        if self.task is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.task, 5)
