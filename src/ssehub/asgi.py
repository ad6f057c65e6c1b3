"""The ASGI adapter: `Hub.asgi` streams a channel per request in any ASGI framework or server."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl

from ssehub._serving import (
    DIRECT_STREAM,
    Answer,
    DirectStream,
    answer_before_stream,
    cancel_on_slow_drop,
    drain,
    open_stream,
    refusal,
)
from ssehub.errors import HubClosed
from ssehub.event_stream import EventStream
from ssehub.hub import ADAPTERS, Hub
from ssehub.request import Request, utf8_from_latin1
from ssehub.subscription import CloseReason, Subscription
from ssehub.types import Receive, Scope, Send

__all__ = [
    "DIRECT_STREAM",
    "ASGIApp",
    "request_from_scope",
    "send_answer",
    "send_event_stream",
    "send_subscription",
    "stream_subscription",
]


def request_from_scope(scope: Scope) -> Request:
    """Build a `Request` from an ASGI HTTP scope (the full path, mount prefix included)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    last_event_id = headers.get("last-event-id")
    if last_event_id is not None:
        headers["last-event-id"] = utf8_from_latin1(last_event_id)
    query: dict[str, str] = {}
    raw_query = scope.get("query_string", b"").decode("latin-1")
    params = tuple(parse_qsl(utf8_from_latin1(raw_query)))
    for key, value in params:
        query.setdefault(key, value)
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"),
        path=path,
        headers=headers,
        query=query,
        params=params,
        client=tuple(client) if client else None,
        native=scope,
    )


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_answer(send: Send, answer: Answer) -> None:
    """Send a complete `Answer` (a preflight, a 405, a refusal) as an ASGI response."""
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": _encode_headers(list(answer.headers)),
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def stream_subscription(
    hub: Hub,
    sub: Subscription,
    receive: Receive,
    send: Send,
    headers: list[tuple[str, str]],
    scope: Scope | None = None,
) -> None:
    """Write ``sub`` to an ASGI response until the client leaves or the hub ends the stream.

    As `send_subscription`, and always unsubscribes from ``hub`` at the end.

    When ``scope`` offers the `DIRECT_STREAM` extension (ssehub's native server does), the
    subscription is handed to the server, which writes it to the socket with no task per
    client, and this returns at once.
    """
    if scope is not None and DIRECT_STREAM in scope.get("extensions", ()):
        message: DirectStream = {
            "type": DIRECT_STREAM,
            "hub": hub,
            "subscription": sub,
            "headers": headers,
        }
        await send(message)  # type: ignore[arg-type]
        return
    try:
        await send_subscription(sub, receive, send, headers)
    finally:
        hub.unsubscribe(sub)


async def send_subscription(
    sub: Subscription, receive: Receive, send: Send, headers: list[tuple[str, str]]
) -> None:
    """Send ``sub`` as this ASGI request's response until the client leaves or the stream ends.

    Two coroutines run: one waits for ``http.disconnect`` and ends the subscription; this one
    starts the response with ``headers`` and sends everything pending in one body message per
    wake-up. A client dropped as too slow is cut off even while a send is blocked on it. The
    subscription is closed at the end, whatever ended it.
    """
    cancel_on_slow_drop(sub, asyncio.current_task())

    async def listen_for_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                sub.close(CloseReason.DISCONNECTED)
                return

    async def write(chunk: bytes) -> None:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})

    listener = asyncio.ensure_future(listen_for_disconnect())
    try:
        await send(
            {"type": "http.response.start", "status": 200, "headers": _encode_headers(headers)}
        )
        await drain(sub, write)
        if sub.close_reason != CloseReason.DISCONNECTED:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if sub.close_reason != CloseReason.SLOW:
            raise
        # Dropped as too slow while blocked writing to it: end the response here; the server
        # closes the connection since the response never completed.
    except OSError:
        pass  # the client went away mid-write
    finally:
        listener.cancel()
        sub.close(CloseReason.DISCONNECTED)


async def send_event_stream(stream: EventStream, receive: Receive, send: Send) -> None:
    """Send a per-request `EventStream` as this ASGI request's response.

    Ends when the source is exhausted (the response completes), the client leaves (the source
    is closed) or the stream's hub shuts down; a hub already shut down gets a 503.
    """
    try:
        sub = stream.open()
    except HubClosed as exc:
        assert stream.hub is not None
        await send_answer(send, refusal(stream.hub, exc))
        return
    await send_subscription(sub, receive, send, stream.headers)


class ASGIApp:
    """An ASGI app that subscribes each GET request to a channel of its hub.

    The channel is the request path, or the ``?channel=`` selectors (repeatable: one stream
    reads them all) when given, unless the hub's ``channel_name`` says otherwise; resume
    with the ``Last-Event-ID`` header or the ``lastEventId`` query parameter. OPTIONS answers a
    CORS preflight with the hub's headers; other methods get 405. It also answers the ASGI
    lifespan protocol, shutting the hub down gracefully when the server stops.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"ssehub's ASGI app serves http, not {scope['type']!r}")
        hub = self.hub
        early = answer_before_stream(hub, scope.get("method", "GET"))
        if early is not None:
            await send_answer(send, early)
            return
        opened = await open_stream(hub, request_from_scope(scope))
        if isinstance(opened, Answer):
            await send_answer(send, opened)
            return
        await stream_subscription(hub, opened, receive, send, hub.headers, scope)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.hub.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.hub.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


ADAPTERS["asgi"] = ASGIApp
