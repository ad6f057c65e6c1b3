"""A Server-Sent Events client that reconnects on its own and resumes with ``Last-Event-ID``.

It behaves like a browser's ``EventSource``: after any drop (connection error, the server ending
the stream, a 5xx answer) it waits the reconnection time (the server's ``retry:``, capped), then
asks again with the last event id it saw, so a hub that keeps history replays what was missed.
An HTTP 204 ends it quietly, as the spec says; other client errors raise `BadStatus`.

    async with ssehub.client.connect(url, headers={"Authorization": "Bearer T"}) as events:
        async for message in events:
            print(message.id, message.event, message.data)

    with ssehub.client.connect_sync(url) as events:  # the same, for plain threads
        for message in events:
            ...

Built on httpx (the ``ssehub[client]`` extra), imported only when a source is created, and on
ssehub's own `EventParser`; events are `ssehub.Message` values.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ssehub.errors import SSEHubError
from ssehub.wire import EventParser, Message

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BadContentType",
    "BadStatus",
    "ClientError",
    "ConnectionLost",
    "EventSource",
    "SyncEventSource",
    "connect",
    "connect_sync",
]

_RETRYABLE_STATUS = frozenset({408, 429})
_BODY_EXCERPT = 512


class ClientError(SSEHubError):
    """Base class of the errors the SSE client raises."""


class BadStatus(ClientError):
    """The server answered with a status that must not be retried (e.g. 401, 403, 404).

    ``status_code`` is the HTTP status, ``body`` the start of the response body (for the
    server's error message). 5xx, 408 and 429 are retried instead; 204 ends the stream quietly.
    """

    def __init__(self, url: str, status_code: int, body: str) -> None:
        self.url = url
        self.status_code = status_code
        self.body = body
        detail = f": {body}" if body else ""
        super().__init__(f"GET {url} answered HTTP {status_code}{detail}")


class BadContentType(ClientError):
    """The server answered 200 with a Content-Type other than ``text/event-stream``."""

    def __init__(self, url: str, content_type: str | None) -> None:
        self.url = url
        self.content_type = content_type
        super().__init__(
            f"GET {url} answered Content-Type {content_type!r}; expected text/event-stream"
        )


class ConnectionLost(ClientError, ConnectionError):
    """The stream dropped and ``max_reconnects`` attempts in a row failed to reopen it.

    The last connection error, if any, is the ``__cause__``.
    """


class _Retry(Exception):
    """A retryable answer (5xx, 408, 429): reconnect after the delay (``Retry-After`` honoured)."""

    def __init__(self, status_code: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is rare for SSE; the normal backoff applies then
    return float(value.strip())


class _Reconnection:
    """What a reconnecting source knows between connections, shared by both sources (no I/O).

    Holds the URL and headers, the last event id to resend, the reconnection time (updated by
    the server's ``retry:``), the count of failed attempts in a row, and the current parser.
    """

    __slots__ = (
        "delay",
        "headers",
        "jitter",
        "max_delay",
        "max_reconnects",
        "parser",
        "reconnects",
        "streak",
        "stream_id",
        "url",
    )

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        last_event_id: str | None,
        reconnect_delay: float,
        max_reconnect_delay: float,
        max_reconnects: int | None,
        jitter: float,
    ) -> None:
        if reconnect_delay < 0:
            raise ValueError(f"reconnect_delay must be >= 0 seconds, got {reconnect_delay!r}")
        if max_reconnect_delay < 0:
            raise ValueError(
                f"max_reconnect_delay must be >= 0 seconds, got {max_reconnect_delay!r}"
            )
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be >= 0 or None, got {max_reconnects!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")
        if last_event_id is not None and any(c in last_event_id for c in "\r\n\0"):
            raise ValueError(f"last_event_id may not contain CR, LF or NUL: {last_event_id!r}")
        self.url = url
        # The spec's request: ask for an event stream and never a cached one.
        self.headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        lower = {name.lower(): name for name in self.headers}
        for name, value in (headers or {}).items():
            self.headers.pop(lower.get(name.lower(), name), None)
            self.headers[name] = value
        self.stream_id = last_event_id
        self.delay = reconnect_delay
        self.max_delay = max_reconnect_delay
        self.max_reconnects = max_reconnects
        self.jitter = jitter
        self.streak = 0
        self.reconnects = 0
        self.parser: EventParser | None = None

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.stream_id:  # an empty id resets it: then no header is sent, as a browser does
            headers["Last-Event-ID"] = self.stream_id
        return headers

    def check(self, response: httpx.Response) -> bool:
        """True to read the stream, False on 204 (stop); raises `_Retry` or a fatal error."""
        status = response.status_code
        if status == 204:
            return False
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise _Retry(status, _retry_after(response.headers.get("retry-after")))
        if status != 200:
            return True  # the caller reads the body and raises BadStatus
        content_type = response.headers.get("content-type")
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != "text/event-stream":
            raise BadContentType(self.url, content_type)
        self.streak = 0
        self.parser = EventParser()
        return True

    def feed(self, chunk: bytes) -> list[Message]:
        assert self.parser is not None
        parser = self.parser
        events = parser.feed(chunk)
        if events and self.stream_id is not None:
            # A new connection's parser starts without an id; the stream's id carries over.
            events = [replace(m, id=self.stream_id) if m.id is None else m for m in events]
        if parser.last_event_id is not None:
            self.stream_id = parser.last_event_id
        if parser.retry is not None:
            self.delay = parser.retry / 1000
        return events

    def backoff(self, error: BaseException | None, retry_after: float | None = None) -> float:
        """Seconds to wait before the next attempt; raises `ConnectionLost` when out of tries."""
        self.parser = None
        self.streak += 1
        if self.max_reconnects is not None and self.streak > self.max_reconnects:
            tries = self.streak - 1
            reason = f" (last error: {error})" if error is not None else ""
            raise ConnectionLost(
                f"lost the stream {self.url} and gave up after {tries} failed reconnection "
                f"attempt{'s' if tries != 1 else ''}{reason}"
            ) from error
        self.reconnects += 1
        delay = min(self.delay, self.max_delay) * 2.0 ** min(self.streak - 1, 16)
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay *= 1 + self.jitter * random.random()
        return min(delay, self.max_delay)


def _require_httpx() -> None:
    try:
        import httpx  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "ssehub.client needs httpx: install it with pip install 'ssehub[client]'"
        ) from exc


def _timeout(connect_timeout: float, read_timeout: float | None) -> httpx.Timeout:
    import httpx

    return httpx.Timeout(connect_timeout, read=read_timeout, pool=connect_timeout)


def _shutdown_socket(response: httpx.Response | None) -> None:
    """Wake a read blocked on ``response`` from another thread by shutting its socket down."""
    if response is None:
        return
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Source:
    """What the async and the sync source share: their state as the caller sees it."""

    _state: _Reconnection
    _pending: deque[Message]
    _delivered_id: str | None
    _closed: bool
    _response: httpx.Response | None

    # -- what the caller can see ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """The URL the source connects (and reconnects) to."""
        return self._state.url

    @property
    def last_event_id(self) -> str | None:
        """The id of the last event delivered (None before any); sent as ``Last-Event-ID``.

        Save it to resume later with ``connect(url, last_event_id=...)``.
        """
        return self._delivered_id if self._pending else self._state.stream_id

    @property
    def reconnect_delay(self) -> float:
        """The current reconnection time in seconds (the server's ``retry:`` once it sends one)."""
        return self._state.delay

    @property
    def reconnects(self) -> int:
        """How many times the source has reconnected."""
        return self._state.reconnects

    @property
    def closed(self) -> bool:
        """True once the source is closed (by `aclose` / `close`, a 204, or an error)."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._response is not None else "idle"
        return f"<{type(self).__name__} {self.url!r} {state} last_event_id={self.last_event_id!r}>"


class EventSource(_Source):
    """An async iterator of `Message` from one SSE URL that reconnects until closed.

    Create it with `connect`. Iterating opens the stream; use it as an async context manager
    (or call `aclose`) to close it cleanly: `aclose` may also be called from another task, and
    then the iteration in progress ends. Not for use from several tasks at once otherwise.

    Iteration raises `BadStatus` (a non-retryable status such as 401), `BadContentType`, and
    `ConnectionLost` when ``max_reconnects`` attempts in a row fail; it ends normally on HTTP
    204 or after `aclose`. A source that raised or ended is closed.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect_delay: float = 3.0,
        max_reconnect_delay: float = 30.0,
        max_reconnects: int | None = None,
        jitter: float = 0.1,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        _require_httpx()
        import httpx

        self._state = _Reconnection(
            url,
            headers,
            last_event_id,
            reconnect_delay,
            max_reconnect_delay,
            max_reconnects,
            jitter,
        )
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=_timeout(connect_timeout, read_timeout), follow_redirects=True
        )
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._pending: deque[Message] = deque()
        self._delivered_id: str | None = last_event_id
        self._wait: float | None = None
        self._closed = False
        self._reader: asyncio.Task[Any] | None = None
        self._idle: asyncio.Event | None = None
        self._cancelled_by_close = False

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> Message:
        while True:
            if self._pending:
                message = self._pending.popleft()
                self._delivered_id = message.id
                return message
            if self._closed:
                await self._release()
                raise StopAsyncIteration
            if self._reader is not None:
                raise RuntimeError("this EventSource is already being iterated by another task")
            task = self._reader = asyncio.current_task()
            self._idle = asyncio.Event()
            try:
                if self._response is None:
                    await self._open()
                else:
                    await self._read()
            except asyncio.CancelledError:
                if self._cancelled_by_close:
                    self._cancelled_by_close = False
                    if task is not None and sys.version_info >= (3, 11):
                        task.uncancel()
                    continue
                # Cancelled by the caller (say, a timeout around one read): the response may be
                # half-read, so it is dropped; the next iteration reconnects at once and resumes
                # from the last id, so nothing is lost.
                await self._drop_response()
                raise
            except BaseException:
                await self._fail()
                raise
            finally:
                self._reader = None
                self._idle.set()

    async def _open(self) -> None:
        import httpx

        state = self._state
        if self._wait is not None:
            await asyncio.sleep(self._wait)
            self._wait = None
        request = self._client.build_request("GET", state.url, headers=state.request_headers())
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            self._wait = state.backoff(exc)
            return
        try:
            readable = state.check(response)
        except _Retry as retry:
            await response.aclose()
            self._wait = state.backoff(retry, retry.retry_after)
            return
        except BaseException:
            await response.aclose()
            raise
        if not readable:
            await response.aclose()
            self._closed = True
            return
        if response.status_code != 200:
            body = await self._excerpt(response)
            raise BadStatus(state.url, response.status_code, body)
        self._response = response
        self._chunks = response.aiter_bytes()

    @staticmethod
    async def _excerpt(response: httpx.Response) -> str:
        body = b""
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= _BODY_EXCERPT:
                    break
        except Exception:
            pass  # the status is what matters; the body is only a hint
        finally:
            await response.aclose()
        return body[:_BODY_EXCERPT].decode("utf-8", "replace").strip()

    async def _read(self) -> None:
        import httpx

        assert self._chunks is not None
        error: BaseException | None = None
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            pass  # the server ended the stream: reconnect, as a browser does
        except (httpx.TransportError, httpx.StreamError) as exc:
            error = exc
        else:
            self._pending.extend(self._state.feed(chunk))
            return
        await self._drop_response()
        self._wait = self._state.backoff(error)

    async def _drop_response(self) -> None:
        response, self._response, self._chunks = self._response, None, None
        if response is not None:
            with contextlib.suppress(Exception):
                await response.aclose()

    async def _release(self) -> None:
        await self._drop_response()
        if self._own_client and not self._client.is_closed:
            await self._client.aclose()

    async def _fail(self) -> None:
        self._closed = True
        self._pending.clear()
        await self._release()

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the stream and the connection; any iteration in another task then ends.

        Events already received but not yet iterated are discarded.
        """
        self._closed = True
        self._pending.clear()
        reader = self._reader
        if reader is not None and reader is not asyncio.current_task() and not reader.done():
            self._cancelled_by_close = True
            reader.cancel()
            if self._idle is not None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), 5.0)
        await self._release()

    async def __aenter__(self) -> EventSource:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class SyncEventSource(_Source):
    """The blocking counterpart of `EventSource`, for plain threads; create it with `connect_sync`.

    Iterate it in one thread; `close` may be called from any thread and ends that iteration
    (a blocked read is woken by shutting the socket down). Raises and ends as `EventSource` does.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        last_event_id: str | None = None,
        reconnect_delay: float = 3.0,
        max_reconnect_delay: float = 30.0,
        max_reconnects: int | None = None,
        jitter: float = 0.1,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        _require_httpx()
        import httpx

        self._state = _Reconnection(
            url,
            headers,
            last_event_id,
            reconnect_delay,
            max_reconnect_delay,
            max_reconnects,
            jitter,
        )
        self._own_client = client is None
        self._client = client or httpx.Client(
            timeout=_timeout(connect_timeout, read_timeout), follow_redirects=True
        )
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending: deque[Message] = deque()
        self._delivered_id: str | None = last_event_id
        self._wait: float | None = None
        self._closed = False
        self._woken = threading.Event()
        self._lock = threading.RLock()
        self._idle = threading.Event()
        self._idle.set()

    def __iter__(self) -> SyncEventSource:
        return self

    def __next__(self) -> Message:
        while True:
            if self._pending:
                message = self._pending.popleft()
                self._delivered_id = message.id
                return message
            if self._closed:
                self._release()
                raise StopIteration
            self._idle.clear()
            try:
                if self._response is None:
                    self._open()
                else:
                    self._read()
            except BaseException:
                self._closed = True
                self._pending.clear()
                self._release()
                raise
            finally:
                self._idle.set()

    def _open(self) -> None:
        import httpx

        state = self._state
        if self._wait is not None:
            self._woken.wait(self._wait)
            self._wait = None
            if self._closed:
                return
        request = self._client.build_request("GET", state.url, headers=state.request_headers())
        try:
            response = self._client.send(request, stream=True)
        except httpx.TransportError as exc:
            if not self._closed:
                self._wait = state.backoff(exc)
            return
        try:
            readable = state.check(response)
        except _Retry as retry:
            response.close()
            self._wait = state.backoff(retry, retry.retry_after)
            return
        except BaseException:
            response.close()
            raise
        if not readable:
            response.close()
            self._closed = True
            return
        if response.status_code != 200:
            body = b""
            try:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) >= _BODY_EXCERPT:
                        break
            except Exception:
                pass  # the status is what matters; the body is only a hint
            finally:
                response.close()
            text = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip()
            raise BadStatus(state.url, response.status_code, text)
        with self._lock:
            self._response = response
            self._chunks = response.iter_bytes()
        if self._closed:  # closed by another thread while connecting
            _shutdown_socket(response)

    def _read(self) -> None:
        import httpx

        assert self._chunks is not None
        error: BaseException | None = None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            pass  # the server ended the stream: reconnect, as a browser does
        except (httpx.TransportError, httpx.StreamError) as exc:
            error = exc
        else:
            if not self._closed:
                self._pending.extend(self._state.feed(chunk))
            return
        self._drop_response()
        if not self._closed:
            self._wait = self._state.backoff(error)

    def _drop_response(self) -> None:
        with self._lock:
            response, self._response, self._chunks = self._response, None, None
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()

    def _release(self) -> None:
        with self._lock:
            self._drop_response()
            if self._own_client and not self._client.is_closed:
                self._client.close()

    def close(self) -> None:
        """Close the stream and the connection; safe from any thread.

        An iteration blocked in another thread wakes up and ends (this waits up to 5 s for it).
        Events already received but not yet iterated are discarded.
        """
        self._closed = True
        self._woken.set()
        with self._lock:
            _shutdown_socket(self._response)
        if not self._idle.wait(5.0):
            return  # the reader is stuck in a connect; it releases everything when it returns
        self._pending.clear()
        self._release()

    def __enter__(self) -> SyncEventSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def connect(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    reconnect_delay: float = 3.0,
    max_reconnect_delay: float = 30.0,
    max_reconnects: int | None = None,
    jitter: float = 0.1,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    client: httpx.AsyncClient | None = None,
) -> EventSource:
    """Open an async, reconnecting stream of `Message` from ``url`` (connects on first use).

    Args:
        url: the stream's URL (e.g. ``http://127.0.0.1:8000/events/news``).
        headers: extra request headers, e.g. ``{"Authorization": "Bearer T"}``; sent on every
            (re)connection.
        last_event_id: resume after this id (sent as ``Last-Event-ID`` on the first request).
        reconnect_delay: seconds to wait before reconnecting until the server sends ``retry:``.
        max_reconnect_delay: the cap on any wait, whatever the server's ``retry:`` or the
            backoff (the wait doubles with each failed attempt in a row).
        max_reconnects: failed attempts in a row before raising `ConnectionLost`; None retries
            forever, 0 never reconnects.
        jitter: a random extra of up to this fraction on each wait, so that many clients
            dropped together do not all come back at the same instant.
        connect_timeout: seconds to connect and get the response headers.
        read_timeout: seconds without any byte (events or keep-alive comments) after which the
            connection counts as dropped; None waits forever. Set it to a few times the hub's
            keep-alive interval to detect dead connections.
        client: an `httpx.AsyncClient` of your own (TLS, proxies, auth); it is not closed for
            you, and its timeouts apply instead of the two above.
    """
    return EventSource(
        url,
        headers=headers,
        last_event_id=last_event_id,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
        max_reconnects=max_reconnects,
        jitter=jitter,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        client=client,
    )


def connect_sync(
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    reconnect_delay: float = 3.0,
    max_reconnect_delay: float = 30.0,
    max_reconnects: int | None = None,
    jitter: float = 0.1,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    client: httpx.Client | None = None,
) -> SyncEventSource:
    """Open a blocking, reconnecting stream of `Message` from ``url`` (see `connect`).

    Takes the same arguments as `connect`, with an `httpx.Client` for ``client``.
    """
    return SyncEventSource(
        url,
        headers=headers,
        last_event_id=last_event_id,
        reconnect_delay=reconnect_delay,
        max_reconnect_delay=max_reconnect_delay,
        max_reconnects=max_reconnects,
        jitter=jitter,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        client=client,
    )
