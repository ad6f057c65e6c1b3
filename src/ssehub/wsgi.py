"""The WSGI adapter: `Hub.wsgi` streams a channel per request from a thread-based server.

Each open stream holds one worker thread of the WSGI server for its whole life (the thread
sleeps on a condition variable between events; it never spins). Run it under a server with
many threads: ``gunicorn --worker-class gthread --threads 200 app:app`` (one worker process,
or a shared Redis backend for several) or ``waitress-serve --threads 200
--channel-request-lookahead 1 app:app``. The hub's event loop runs in a daemon thread of its
own, started on first use.

A WSGI app cannot see a client leave until it writes to it, so the stream checks the
connection every ``disconnect_check`` seconds while idle: through gunicorn's socket (a
non-blocking peek) or waitress's ``waitress.client_disconnected`` (which needs
``channel_request_lookahead`` of 1 or more). Under any other server, the hub's keep-alive
comments are the writes that reveal a dead client. When the server closes the response
iterator, the subscription is ended and forgotten on the hub's loop.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

from ssehub._serving import REFUSED, Answer, answer_before_stream, error_answer, refusal
from ssehub.errors import UnsupportedServer
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, encode_item
from ssehub.hub import ADAPTERS, Hub, Selection
from ssehub.request import Request, utf8_from_latin1
from ssehub.subscription import CloseReason, ThreadedSubscription
from ssehub.types import StartResponse, WSGIEnviron
from ssehub.wire import encode_comment

__all__ = [
    "WSGIApp",
    "WSGIEventStream",
    "WSGIStream",
    "client_disconnected",
    "open_threaded_stream",
    "request_from_environ",
    "start_answer",
    "unsupported",
]

_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
_OPENING = encode_comment("")
_PING = encode_comment("ping")
log = logging.getLogger("ssehub.stream")


def request_from_environ(environ: WSGIEnviron, native: Any = None) -> Request:
    """Build a `Request` from a WSGI environ (the full path, ``SCRIPT_NAME`` included)."""
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    last_event_id = headers.get("last-event-id")
    if last_event_id is not None:  # PEP 3333: latin-1 text of the bytes browsers sent as UTF-8
        headers["last-event-id"] = utf8_from_latin1(last_event_id)
    query: dict[str, str] = {}
    raw_query = environ.get("QUERY_STRING", "")
    params = tuple(parse_qsl(utf8_from_latin1(raw_query)))
    for key, value in params:
        query.setdefault(key, value)
    client: tuple[str, int] | None = None
    addr = environ.get("REMOTE_ADDR")
    if addr:
        try:
            client = (addr, int(environ.get("REMOTE_PORT") or 0))
        except ValueError:
            client = (addr, 0)
    return Request(
        method=environ.get("REQUEST_METHOD", "GET"),
        path=path or "/",
        headers=headers,
        query=query,
        params=params,
        client=client,
        native=environ if native is None else native,
    )


def client_disconnected(environ: WSGIEnviron) -> bool:
    """Whether the server says the client of this request has gone (without writing to it).

    Knows gunicorn (a non-blocking peek at ``gunicorn.socket``: end of file means the client
    closed) and waitress (``waitress.client_disconnected``). False when it cannot tell.
    """
    check = environ.get("waitress.client_disconnected")
    if callable(check):
        return bool(check())
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, socket.socket):
        try:
            if _DONTWAIT:
                return sock.recv(1, socket.MSG_PEEK | _DONTWAIT) == b""
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False  # nothing to read and no end of file: still there
        except ValueError:
            return False  # a TLS socket cannot be peeked: rely on keep-alive writes
        except OSError:
            return True  # reset or closed
    return False


class WSGIStream:
    """A WSGI response body that writes a `ThreadedSubscription` until either side ends it.

    Iterating blocks the server's worker thread between events. Each item is everything
    pending, coalesced. ``close()`` (which every WSGI server calls) ends the subscription and
    has the hub forget it; it is safe to call more than once.
    """

    def __init__(
        self,
        hub: Hub,
        sub: ThreadedSubscription,
        environ: WSGIEnviron | None = None,
        *,
        disconnect_check: float = 1.0,
    ) -> None:
        self.hub = hub
        self.subscription = sub
        self._environ = environ or {}
        self._check = disconnect_check
        self._closed = False
        self._opened = False
        self._exit: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return self._next()
        except (SystemExit, KeyboardInterrupt) as exc:
            # The server's thread was told to exit while it waited here (gunicorn's sync
            # worker on Ctrl+C): end the body cleanly, and raise it again from close(), once
            # the server has ended the response.
            self._exit = exc
            self.subscription.close(CloseReason.SHUTDOWN)
            raise StopIteration from None

    def _next(self) -> bytes:
        sub = self.subscription
        sub.writing = False  # the server has written the previous chunk
        if not self._opened:
            self._opened = True
            # WSGI servers send the headers with the first body bytes: send them now, so the
            # client sees the stream open (EventSource's onopen) before the first event.
            first = sub.next_chunk_blocking(0)
            if first is None:
                raise StopIteration
            return first or _OPENING
        while True:
            chunk = sub.next_chunk_blocking(self._check)
            if chunk is None:
                raise StopIteration
            if chunk:
                sub.writing = True
                return chunk
            if client_disconnected(self._environ):
                sub.close(CloseReason.DISCONNECTED)

    def close(self) -> None:
        """End the subscription (called by the server when the response is done or broken).

        Raises the `SystemExit` or `KeyboardInterrupt` that interrupted the body's wait, if one
        did: the response has ended by then, and the server exits as it was told to."""
        if self._closed:
            return
        self._closed = True
        sub = self.subscription
        sub.close(CloseReason.DISCONNECTED)
        loop = self.hub.loop
        if loop is not None and not loop.is_closed():
            # unsubscribe must run on the hub's loop; do not wait for it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.hub.unsubscribe, sub)
        exit_, self._exit = self._exit, None
        if exit_ is not None:
            raise exit_


class WSGIEventStream:
    """A sync generator's (or iterable's) items as a WSGI response body: a per-request stream.

    Each item is encoded as `ssehub.EventStream` encodes it (`encode_item`). With
    ``keepalive`` (seconds), the source runs in a thread of its own (it may block) at most
    ``buffer`` bytes ahead of the client, and the server's thread sends a ``: ping`` comment
    whenever the source has been idle that long; with ``keepalive=None`` the server's thread
    iterates the source itself (no thread, no keep-alive). With ``environ``, the client is also
    checked every ``disconnect_check`` seconds while idle (see `client_disconnected`).

    The body ends when the source does. ``close()`` (which every WSGI server calls when the
    response ends or the client leaves) closes the source: at once when the server's thread
    iterates it, else after the item it is producing. With ``hub``, the body also ends within
    ``disconnect_check`` seconds of ``hub.shutdown()``. An exception in the source is logged
    (logger ``ssehub.stream``) and ends the body after what it yielded. A WSGI body is sync:
    an async generator is refused (TypeError).
    """

    def __init__(
        self,
        source: Iterable[Any],
        *,
        hub: Hub | None = None,
        keepalive: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
        environ: WSGIEnviron | None = None,
        disconnect_check: float = 1.0,
    ) -> None:
        if isinstance(source, AsyncIterable) or not isinstance(source, Iterable):
            raise TypeError(
                "a WSGI response streams a sync generator or iterable, not "
                f"{type(source).__name__} (async generators need an ASGI server)"
            )
        if keepalive is not None and keepalive <= 0:
            raise ValueError(f"keepalive must be positive seconds or None, got {keepalive!r}")
        if buffer <= 0:
            raise ValueError(f"buffer must be a positive number of bytes, got {buffer!r}")
        if disconnect_check <= 0:
            raise ValueError(f"disconnect_check must be positive seconds, got {disconnect_check!r}")
        self.keepalive = keepalive
        self.buffer = buffer
        self.hub = hub
        self._environ = environ
        self._check = disconnect_check
        self._iterator: Iterator[Any] = iter(source)
        self._cond = threading.Condition()
        self._pending: deque[bytes] = deque()
        self._queued = 0
        self._done = False  # the source ended (the thread's side)
        self._stopped = False  # close() was called (the server's side)
        self._thread: threading.Thread | None = None
        self._exit: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        try:
            return self._next()
        except (SystemExit, KeyboardInterrupt) as exc:
            # Told to exit while it waited (gunicorn's sync worker on Ctrl+C): end the body
            # cleanly; close() raises it again once the server has ended the response.
            self._exit = exc
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            raise StopIteration from None

    def _next(self) -> bytes:
        if self.keepalive is None:
            return self._next_direct()
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, name="ssehub-stream", daemon=True)
            self._thread.start()
            # WSGI servers send the headers with the first body bytes: send them now, so the
            # client sees the stream open before the source's first item.
            return _OPENING
        deadline = time.monotonic() + self.keepalive
        hub = self.hub
        with self._cond:
            if hub is not None and (hub.closed or hub.draining):
                # A busy stream never waits: check the hub here too (two attribute reads).
                self._stopped = True
                self._cond.notify_all()
            while not self._pending and not self._done and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return _PING
                self._cond.wait(min(remaining, self._check))
                if not self._pending and self._gone():
                    self._stopped = True
                    self._cond.notify_all()
            if self._stopped or not self._pending:
                raise StopIteration
            chunk = b"".join(self._pending)
            self._pending.clear()
            self._queued = 0
            self._cond.notify_all()
            return chunk

    def _gone(self) -> bool:
        # The client left, or the hub shut down or heard a signal to exit: each ends the body.
        if self.hub is not None and (self.hub.closed or self.hub.draining):
            return True
        return self._environ is not None and client_disconnected(self._environ)

    def _next_direct(self) -> bytes:
        hub = self.hub
        if self._stopped or (hub is not None and (hub.closed or hub.draining)):
            raise StopIteration
        try:
            item = next(self._iterator)
            return encode_item(item)
        except StopIteration:
            raise
        except Exception:
            log.exception("the source of an event stream raised; the stream ends")
            self.close()
            raise StopIteration from None

    def _produce(self) -> None:
        iterator = self._iterator
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
                    self._pending.append(data)
                    self._queued += len(data)
                    self._cond.notify_all()
        except Exception:
            log.exception("the source of an event stream raised; the stream ends")
        finally:
            _close_source(iterator)
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def close(self) -> None:
        """Stop the stream and close the source (called by the server); safe to call again.

        Raises the `SystemExit` or `KeyboardInterrupt` that interrupted the body's wait, if one
        did, once the response has ended."""
        exit_, self._exit = self._exit, None
        with self._cond:
            already = self._stopped and self._thread is None
            self._stopped = True
            self._cond.notify_all()
        if not already and self._thread is None:  # no thread ever read it: close it here
            _close_source(self._iterator)
        if exit_ is not None:
            raise exit_


def _close_source(iterator: Iterator[Any]) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("closing the source of an event stream raised")


def open_threaded_stream(
    hub: Hub,
    request: Request,
    environ: WSGIEnviron | None = None,
    *,
    channel: Selection | None = None,
    disconnect_check: float = 1.0,
) -> WSGIStream:
    """Open a stream for ``request`` from a worker thread and return its response body.

    ``channel`` overrides the hub's choice of channel: a channel name, or a list of selectors
    (exact names, ``*``, URI templates such as ``/rooms/{id}``) read by one stream. Blocks
    until the subscription (and any replay) is ready. Raises `SubscriptionDenied`, `HubClosed`,
    `BackendUnavailable`, `InvalidSelector` or `InvalidToken` as `Hub.open_stream` does, and
    `UnsupportedServer` under gevent or eventlet (see `unsupported`). Used by the Flask and
    Django integrations.
    """
    opened = hub.run_threadsafe(hub.open_stream(request, threaded=True, channel=channel))
    assert isinstance(opened, ThreadedSubscription)
    env = environ if environ is not None else request.native
    return WSGIStream(
        hub,
        opened,
        env if isinstance(env, Mapping) else None,
        disconnect_check=disconnect_check,
    )


def unsupported(hub: Hub, exc: UnsupportedServer) -> Answer:
    """The answer to a stream the server cannot run (gevent's green threads): a 501 whose JSON
    body says why and what to run instead."""
    return error_answer(hub, 501, str(exc))


def start_answer(start_response: StartResponse, answer: Answer) -> list[bytes]:
    """Start a complete `Answer` (a preflight, a 405, a refusal); return its WSGI body."""
    start_response(answer.status_line, list(answer.headers))
    return [answer.body] if answer.body else []


class WSGIApp:
    """A WSGI app that subscribes each GET request to a channel of its hub.

    The WSGI twin of `ssehub.asgi.ASGIApp`: the channel is the request path (``SCRIPT_NAME``
    plus ``PATH_INFO``), or the ``?channel=`` selectors (repeatable: one stream reads them all)
    when given, unless the hub's ``channel_name`` says otherwise; resume with the
    ``Last-Event-ID`` header or the ``lastEventId`` query parameter; OPTIONS answers a CORS
    preflight, other methods get 405, a refused stream 403 and a shut-down hub 503.
    Each open stream holds one server thread; see the module's notes on disconnects.
    """

    def __init__(self, hub: Hub, *, disconnect_check: float = 1.0) -> None:
        if disconnect_check <= 0:
            raise ValueError(f"disconnect_check must be positive seconds, got {disconnect_check}")
        self.hub = hub
        self.disconnect_check = disconnect_check

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        hub = self.hub
        early = answer_before_stream(hub, environ.get("REQUEST_METHOD", "GET"))
        if early is not None:
            return start_answer(start_response, early)
        request = request_from_environ(environ)
        try:
            stream = open_threaded_stream(
                hub, request, environ, disconnect_check=self.disconnect_check
            )
        except REFUSED as exc:
            return start_answer(start_response, refusal(hub, exc))
        except UnsupportedServer as exc:
            return start_answer(start_response, unsupported(hub, exc))
        try:
            start_response("200 OK", list(hub.headers))
        except BaseException:
            stream.close()
            raise
        return stream


ADAPTERS["wsgi"] = WSGIApp
