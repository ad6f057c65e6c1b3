"""The async source: `EventSource` and `connect`, doing what `Reconnection` decides."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ssehub.client._base import Source, http_timeout, require_httpx
from ssehub.client._exceptions import UnsendableRequest
from ssehub.client._reconnect import EXCERPT_BYTES, Reconnection, Reject, Stream, wait_or_raise
from ssehub.wire import Message

if TYPE_CHECKING:
    import httpx


class EventSource(Source):
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
        require_httpx()
        import httpx

        self._policy = Reconnection(
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
            timeout=http_timeout(connect_timeout, read_timeout), follow_redirects=True
        )
        self._response: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._wait: float | None = None
        self._reader: asyncio.Task[Any] | None = None
        self._idle: asyncio.Event | None = None
        self._cancelled_by_close = False

    def _reconnection(self) -> Reconnection:
        return self._policy

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> EventSource:
        return self

    async def __anext__(self) -> Message:
        while True:
            message = self._policy.next_event()
            if message is not None:
                return message
            if self._policy.closed:
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
                self._policy.interrupted()
                raise
            except BaseException:
                await self._fail()
                raise
            finally:
                self._reader = None
                self._idle.set()

    async def _open(self) -> None:
        import httpx

        policy = self._policy
        if self._wait is not None:
            await asyncio.sleep(self._wait)
            self._wait = None
        request = self._client.build_request(
            "GET", policy.request_url(), headers=policy.encoded_headers()
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.LocalProtocolError as exc:
            raise UnsendableRequest(f"cannot send GET {policy.url}: {exc}") from exc
        except httpx.TransportError as exc:
            self._wait = wait_or_raise(policy.dropped(exc))
            return
        answer = policy.on_response(response.status_code, response.headers)
        if isinstance(answer, Stream):
            self._response = response
            self._chunks = response.aiter_bytes()
        elif isinstance(answer, Reject):
            raise answer.error(await self._excerpt(response))
        else:
            await response.aclose()
            self._wait = wait_or_raise(answer)

    @staticmethod
    async def _excerpt(response: httpx.Response) -> bytes:
        body = b""
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= EXCERPT_BYTES:
                    break
        except Exception:
            pass  # the status is what matters; the body is only a hint
        finally:
            await response.aclose()
        return body

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
            self._policy.feed(chunk)
            return
        await self._drop_response()
        self._wait = wait_or_raise(self._policy.dropped(error))

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
        self._policy.close()
        await self._release()

    # -- closing -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the stream and the connection; any iteration in another task then ends.

        Events already received but not yet iterated are discarded.
        """
        self._policy.close()
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
