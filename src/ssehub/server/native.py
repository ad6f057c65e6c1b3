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
Publishing costs, per subscriber, one append; each loop iteration, one ``write`` per subscriber
with pending bytes (`_Flusher`); and no task or coroutine per client. A stream's body ends when
the connection closes (no chunk framing), so every subscriber gets the very bytes the hub
encoded once.

What it does not do: TLS, HTTP/2, WebSocket, upgrades, proxy headers; put a proxy in front for
those, or use ``--http uvicorn``. All its state belongs to an `HTTPServer` instance (no module
state, no signal handlers: the caller installs those and calls `HTTPServer.shutdown`).

Request parsing uses httptools (installed with ``ssehub[server]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, cast

import httptools

from ssehub._serving import DIRECT_STREAM, DirectStream
from ssehub.hub import Hub
from ssehub.server.publish import DEFAULT_MAX_BODY
from ssehub.server.routing import decode_path
from ssehub.subscription import CloseReason, Subscription
from ssehub.types import ASGIMessage, Receive, Scope, Send

__all__ = ["HTTPServer"]

log = logging.getLogger("ssehub.server")
access_log = logging.getLogger("ssehub.access")

ASGIApp = Callable[[Scope, Receive, Send], Any]

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_MAX_HEAD = 64 * 1024  # bytes of request line and headers
_MAX_QUEUED = 32  # pipelined requests held before the connection stops being read


class _HeadTooLarge(Exception):
    pass


def _head(status: int, headers: list[tuple[bytes, bytes]] | list[tuple[str, str]]) -> bytearray:
    out = bytearray(b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")))
    for name, value in headers:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        out += name + b": " + value + b"\r\n"
    return out


class _Flusher:
    """Writes every stream that got bytes this loop iteration, once, at the iteration's end."""

    __slots__ = ("dirty", "loop", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.dirty: list[_Connection] = []
        self.scheduled = False

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, []
        self.scheduled = False
        # The fan-out's per-subscriber cost lives here: take the pending bytes, one write, and
        # re-arm the wake-up with a bound method made once per connection.
        for conn in dirty:
            sub = conn.sub
            if sub is None:
                continue
            chunk = sub.take()
            if chunk is not None:
                transport = conn.transport
                assert transport is not None
                transport.write(chunk)
                if transport.get_write_buffer_size() > sub.max_buffer:
                    sub.close(CloseReason.SLOW)
                    transport.abort()
            if sub.closed:
                conn.stream_ended()
            else:
                sub.arm(conn.schedule)


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
        "local",
        "loop",
        "parser",
        "paused",
        "queue",
        "schedule",
        "server",
        "sub",
        "too_large",
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
        self.head_size = 0
        self.too_large = False
        # Requests parsed and waiting (pipelining), and the one running.
        self.queue: deque[tuple[Scope, bytes]] | None = None
        self.cycle: asyncio.Task[None] | None = None
        # Resolved when the client goes away; made only when an app waits for that.
        self.disconnected: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.paused = False
        # Direct stream state.
        self.hub: Hub | None = None
        self.sub: Subscription | None = None
        self.flusher = server.flusher
        self.schedule = self._schedule  # made once: re-armed after every flush

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

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self.disconnected is None:
            self.disconnected = self.loop.create_future()
        if not self.disconnected.done():
            self.disconnected.set_result(None)
        self.resume_writing()
        sub = self.sub
        if sub is not None:
            sub.close(CloseReason.DISCONNECTED)
            self._end_stream()

    def data_received(self, data: bytes) -> None:
        if self.sub is not None:
            return  # a streaming client has nothing more to say
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, b"upgrades are not supported")
        except httptools.HttpParserError:
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
        self.head_size = 0
        self.too_large = False

    def _count_head(self, size: int) -> None:
        self.head_size += size
        if self.head_size > _MAX_HEAD:
            self._reject(431, b"request line and headers larger than 64 KiB")
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        for name, value in self.headers:
            if name == b"expect" and value.lower() == b"100-continue":
                assert self.transport is not None
                self.transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.too_large:
            self._reject(
                413,
                b'{"error": "request body larger than the %d bytes allowed"}'
                % self.server.max_body,
                json=True,
            )
            return
        parsed = httptools.parse_url(self.url)
        raw_path = parsed.path
        try:
            path = decode_path(raw_path)
        except ValueError:
            self._reject(400, b"the request path is not UTF-8 once percent-decoded")
            return
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self.parser.get_http_version(),
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
        if self.queue is None:
            self.queue = deque()
        self.queue.append((scope, b"".join(self.body)))
        self.body = []
        if self.cycle is None:
            self._next_cycle()
        elif len(self.queue) >= _MAX_QUEUED and self.transport is not None:
            self.transport.pause_reading()  # a client pipelining faster than it is answered

    # -- requests -------------------------------------------------------------------------

    def _reject(self, status: int, message: bytes, json: bool = False) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        body = message if json else b'{"error": "%s"}' % message
        head = _head(
            status,
            [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        )
        transport.write(bytes(head + b"\r\n" + body))
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

    async def _run(self, scope: Scope, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        state = _Response()
        body_sent = False

        async def receive() -> ASGIMessage:
            nonlocal body_sent
            if not body_sent:
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
                access_log.info(
                    '%s - "%s %s HTTP/%s" %d',
                    self.client[0] if self.client else "-",
                    scope["method"],
                    scope["path"],
                    scope["http_version"],
                    200 if self.sub is not None else state.status,
                )
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

    async def _send(self, scope: Scope, state: _Response, message: ASGIMessage) -> None:
        transport = self.transport
        assert transport is not None
        kind = message["type"]
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
        # The stream's body ends when the connection closes: no chunk framing, so every
        # subscriber gets the very bytes the hub encoded once.
        head = _head(200, [*stream["headers"], ("connection", "close")])
        transport.write(bytes(head + b"\r\n"))
        if transport.is_closing():
            sub.close(CloseReason.DISCONNECTED)
        if sub.pending_bytes or sub.closed:
            self._schedule()
        else:
            sub.arm(self.schedule)

    def _schedule(self) -> None:
        flusher = self.flusher
        flusher.dirty.append(self)
        if not flusher.scheduled:
            flusher.scheduled = True
            self.loop.call_soon(flusher.flush)

    def stream_ended(self) -> None:
        """The subscription has closed and its bytes are written: end the response."""
        sub = self.sub
        transport = self.transport
        if sub is not None and transport is not None and sub.close_reason != CloseReason.SLOW:
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
    """

    loop: asyncio.AbstractEventLoop
    flusher: _Flusher

    def __init__(
        self, app: ASGIApp, *, max_body: int = DEFAULT_MAX_BODY, access_log: bool = False
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.access_log = access_log
        self.connections: set[_Connection] = set()
        self.closing = False
        self._stop = asyncio.Event()
        self._lifespan: _Lifespan | None = None
        self.started = asyncio.Event()
        """Set once the sockets accept connections."""

    async def serve(self, sockets: list[socket.socket], timeout: float = 5.0) -> None:
        """Run until `shutdown`; see the class docstring."""
        self.loop = asyncio.get_running_loop()
        self.flusher = _Flusher(self.loop)
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()
        servers = [
            await self.loop.create_server(lambda: _Connection(self), sock=sock, backlog=4096)
            for sock in sockets
        ]
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            self.closing = True
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
