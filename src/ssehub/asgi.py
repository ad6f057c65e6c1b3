"""The ASGI adapter: `Hub.asgi` streams a channel per request in any ASGI framework or server."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from ssehub.errors import HubClosed, SubscriptionDenied
from ssehub.request import Request
from ssehub.subscription import CloseReason, Subscription
from ssehub.types import Receive, Scope, Send

if TYPE_CHECKING:
    from ssehub.hub import Hub

__all__ = ["DIRECT_STREAM", "ASGIApp", "request_from_scope", "stream_subscription"]

_ALLOW = "GET, OPTIONS"


def request_from_scope(scope: Scope) -> Request:
    """Build a `Request` from an ASGI HTTP scope (the full path, mount prefix included)."""
    path: str = scope.get("path", "/")
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):
        path = root + path
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    query: dict[str, str] = {}
    for key, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        query.setdefault(key, value)
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"),
        path=path,
        headers=headers,
        query=query,
        client=tuple(client) if client else None,
        native=scope,
    )


def _encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def _send_json(
    send: Send, status: int, body: dict[str, str], extra: list[tuple[str, str]]
) -> None:
    payload = json.dumps(body).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(payload)))]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": _encode_headers(headers + extra),
        }
    )
    await send({"type": "http.response.body", "body": payload})


DIRECT_STREAM = "ssehub.direct_stream"
"""ASGI extension of ssehub's own server: it writes a subscription straight to its socket."""


async def stream_subscription(
    hub: Hub,
    sub: Subscription,
    receive: Receive,
    send: Send,
    headers: list[tuple[str, str]],
    scope: Scope | None = None,
) -> None:
    """Write ``sub`` to an ASGI response until the client leaves or the hub ends the stream.

    The response starts with ``headers``; each wake-up sends everything pending in one body
    message. A client disconnect (``http.disconnect``) ends it at once; a client dropped as too
    slow is cut off even while a send is blocked on it. Always unsubscribes at the end.

    When ``scope`` offers the `DIRECT_STREAM` extension (ssehub's own server does), the
    subscription is handed to the server, which writes it to the socket with no task per
    client, and this returns at once.
    """
    if scope is not None and DIRECT_STREAM in scope.get("extensions", ()):
        await send({"type": DIRECT_STREAM, "hub": hub, "subscription": sub, "headers": headers})
        return
    task = asyncio.current_task()

    def on_close(closed: Subscription) -> None:
        hub._on_sub_closed(closed)
        if closed.close_reason == CloseReason.SLOW and closed.writing and task is not None:
            task.cancel()

    sub.on_close = on_close

    async def watch_disconnect() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                sub.close(CloseReason.DISCONNECTED)
                return

    watcher = asyncio.ensure_future(watch_disconnect())
    try:
        await send(
            {"type": "http.response.start", "status": 200, "headers": _encode_headers(headers)}
        )
        while True:
            chunk = await sub.next_chunk()
            if chunk is None:
                break
            sub.writing = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sub.writing = False
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
        watcher.cancel()
        hub.unsubscribe(sub)


class ASGIApp:
    """An ASGI app that subscribes each GET request to a channel of its hub.

    The channel is the request path unless the hub's ``channel_name`` says otherwise; resume
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
        extra = [
            (k, v)
            for k, v in hub.headers
            if k.lower() not in {"content-type", "cache-control", "x-accel-buffering"}
        ]
        method = scope.get("method", "GET")
        if method == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": _encode_headers([("allow", _ALLOW), *extra]),
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if method != "GET":
            await _send_json(
                send,
                405,
                {"error": f"method {method} not allowed; subscribe with GET"},
                [("allow", _ALLOW), *extra],
            )
            return
        request = request_from_scope(scope)
        try:
            sub = await hub.open_stream(request)
        except SubscriptionDenied as exc:
            await _send_json(send, 403, {"error": str(exc)}, extra)
            return
        except HubClosed:
            await _send_json(send, 503, {"error": "the hub is shutting down"}, extra)
            return
        await stream_subscription(hub, sub, receive, send, hub.headers, scope)

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
