"""aiohttp: a handler that streams a channel with ``web.StreamResponse``.

Add it for every channel under a prefix (the channel is the request path)::

    app.router.add_route("*", "/events/{channel:.*}", sse_handler(hub))

or stream a channel your handler picks::

    async def my_events(request):
        user = await authenticate(request)
        return await stream_response(hub, request, channel=f"/users/{user.id}")

Each open stream costs aiohttp's request task and one timer that checks the connection every
``disconnect_check`` seconds (aiohttp does not cancel handlers when clients leave). Handlers
publish with ``await hub.publish(channel, message)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from ssehub._serving import Answer, answer_before_stream, cancel_on_slow_drop, drain, open_stream
from ssehub.hub import Hub
from ssehub.request import Request
from ssehub.subscription import CloseReason

__all__ = ["request_from_aiohttp", "sse_handler", "stream_response"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_from_aiohttp(request: web.Request) -> Request:
    """The ssehub `Request` for an aiohttp request (``native`` is the aiohttp request)."""
    query: dict[str, str] = {}
    for key, value in request.query.items():
        query.setdefault(key, value)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
    return Request(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=query,
        client=client,
        native=request,
    )


def _response(answer: Answer) -> web.Response:
    return web.Response(body=answer.body, status=answer.status, headers=list(answer.headers))


async def stream_response(
    hub: Hub,
    request: web.Request,
    channel: str | None = None,
    *,
    disconnect_check: float = 1.0,
) -> web.StreamResponse:
    """Stream ``channel`` (default: the hub's choice) to ``request``'s client until it ends.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``); the hub's ``authorize`` hook
    applies (403 when it refuses, 503 after shutdown or with the backend down). Each wake-up
    writes everything pending in one write. Returns when the client leaves or the hub ends the
    stream; always unsubscribes.
    """
    opened = await open_stream(hub, request_from_aiohttp(request), channel=channel)
    if isinstance(opened, Answer):
        return _response(opened)
    sub = opened
    loop = asyncio.get_running_loop()
    cancel_on_slow_drop(sub, asyncio.current_task())
    timer: asyncio.TimerHandle | None = None

    def check_connection() -> None:
        nonlocal timer
        transport = request.transport
        if transport is None or transport.is_closing():
            sub.close(CloseReason.DISCONNECTED)
        else:
            timer = loop.call_later(disconnect_check, check_connection)

    timer = loop.call_later(disconnect_check, check_connection)
    response = web.StreamResponse(headers=list(hub.headers))
    try:
        await response.prepare(request)
        await drain(sub, response.write)
        if sub.close_reason != CloseReason.DISCONNECTED:
            await response.write_eof()
    except asyncio.CancelledError:
        if sub.close_reason != CloseReason.SLOW:
            raise
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass  # the client went away mid-write
    finally:
        if timer is not None:
            timer.cancel()
        hub.unsubscribe(sub)
    return response


def sse_handler(hub: Hub, *, disconnect_check: float = 1.0) -> Handler:
    """A handler for ``add_route("*", ...)``: GET streams the request's channel.

    OPTIONS answers a CORS preflight with the hub's headers; other methods get 405.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        early = answer_before_stream(hub, request.method)
        if early is not None:
            return _response(early)
        return await stream_response(hub, request, disconnect_check=disconnect_check)

    return handler
