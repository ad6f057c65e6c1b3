"""aiohttp: a handler that streams a channel with ``web.StreamResponse``.

Add it for every channel under a prefix (the channel is the request path, or the
``?channel=`` selectors)::

    app.router.add_route("*", "/events/{channel:.*}", sse_handler(hub))

or stream a channel your handler picks, or a list of selectors read by one stream::

    async def my_events(request):
        user = await authenticate(request)
        return await stream_response(hub, request, channel=[f"/users/{user.id}", "/news"])

Each open stream costs aiohttp's request task and one timer that checks the connection every
``disconnect_check`` seconds (aiohttp does not cancel handlers when clients leave). Handlers
publish with ``await hub.publish(channel, message)``.

To stream one response from a generator (LLM tokens, a job's progress) rather than a channel,
return an `EventSourceResponse` over a sync or async generator::

    async def count(request):
        async def numbers():
            for i in range(1, int(request.query.get("n", "5")) + 1):
                yield i                              # or a str, a dict, a Message(...)
        return EventSourceResponse(numbers(), hub=hub)   # hub: ends with hub.shutdown()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ssehub._serving import (
    Answer,
    answer_before_stream,
    cancel_on_slow_drop,
    drain,
    open_stream,
    refusal,
)
from ssehub.errors import HubClosed
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, EventStream, Source
from ssehub.hub import Hub, Selection
from ssehub.request import Request
from ssehub.subscription import CloseReason, Subscription

__all__ = ["EventSourceResponse", "request_from_aiohttp", "sse_handler", "stream_response"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_from_aiohttp(request: web.Request) -> Request:
    """The ssehub `Request` for an aiohttp request (``native`` is the aiohttp request)."""
    query: dict[str, str] = {}
    params = tuple((str(key), str(value)) for key, value in request.query.items())
    for key, value in params:
        query.setdefault(key, value)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
    return Request(
        method=request.method,
        path=request.path,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=query,
        params=params,
        client=client,
        native=request,
    )


def _response(answer: Answer) -> web.Response:
    return web.Response(body=answer.body, status=answer.status, headers=list(answer.headers))


async def stream_response(
    hub: Hub,
    request: web.Request,
    channel: Selection | None = None,
    *,
    disconnect_check: float = 1.0,
) -> web.StreamResponse:
    """Stream ``channel`` (default: the hub's choice) to ``request``'s client until it ends.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400); the hub's
    choice is its ``channel_name``, else the request's ``?channel=`` selectors, else the path.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``); the hub's ``authorize`` hook
    applies (403 when it refuses, 503 after shutdown or with the backend down). Each wake-up
    writes everything pending in one write. Returns when the client leaves or the hub ends the
    stream; always unsubscribes.
    """
    opened = await open_stream(hub, request_from_aiohttp(request), channel=channel)
    if isinstance(opened, Answer):
        return _response(opened)
    sub = opened
    cancel_on_slow_drop(sub, asyncio.current_task())
    watch = _Watch(request, sub, disconnect_check)
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
        watch.cancel()
        hub.unsubscribe(sub)
    return response


class _Watch:
    """A timer that closes ``sub`` once ``request``'s connection is closing (aiohttp does not
    cancel handlers when clients leave)."""

    def __init__(self, request: web.Request, sub: Subscription, every: float) -> None:
        self.request = request
        self.sub = sub
        self.every = every
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = self.loop.call_later(every, self.check)

    def check(self) -> None:
        """Close the subscription if the connection is closing, else check again later."""
        transport = self.request.transport
        if transport is None or transport.is_closing():
            self.sub.close(CloseReason.DISCONNECTED)
            self.timer = None
        else:
            self.timer = self.loop.call_later(self.every, self.check)

    def cancel(self) -> None:
        """Stop checking."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


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


class EventSourceResponse(web.StreamResponse):
    """A response that streams the items of ``content``, a sync or async generator (or
    iterable), to the request's client as server-sent events. Return it from a handler.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as compact
    JSON). ``ping`` is the seconds between keep-alive comments (None: none). With ``hub``, the
    stream ends at ``hub.shutdown()`` and ``hub.restart()`` (503 once shut down) and carries
    the hub's headers; ``headers`` are added. The response ends when the generator does. aiohttp
    does not cancel handlers when clients leave, so the connection is checked every
    ``disconnect_check`` seconds; when the client has left, the generator is closed (an async
    one is cancelled at its ``await``, a sync one, which runs in a thread of its own, after its
    current item). Sending it (``prepare``, which aiohttp calls on the returned response)
    writes the whole stream; see `ssehub.EventStream`.
    """

    def __init__(
        self,
        content: Source,
        headers: Mapping[str, str] | None = None,
        *,
        hub: Hub | None = None,
        ping: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
        disconnect_check: float = 1.0,
    ) -> None:
        self.stream = EventStream(content, hub=hub, keepalive=ping, buffer=buffer, headers=headers)
        self.disconnect_check = disconnect_check
        super().__init__(headers=list(self.stream.headers))

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        """Send the head, then every event until the generator ends or the client leaves."""
        if self.prepared:
            return await super().prepare(request)
        try:
            sub = self.stream.open()
        except HubClosed as exc:
            assert self.stream.hub is not None
            answer = refusal(self.stream.hub, exc)
            self.set_status(answer.status)
            self.headers.clear()
            self.headers.extend(answer.headers)
            writer = await super().prepare(request)
            await self.write(answer.body)
            return writer
        assert isinstance(request, web.Request)
        watch = _Watch(request, sub, self.disconnect_check)
        try:
            writer = await super().prepare(request)
            await drain(sub, self.write)
        except ConnectionError:
            sub.close(CloseReason.DISCONNECTED)
            raise
        finally:
            watch.cancel()
            sub.close(CloseReason.DISCONNECTED)  # no-op when the source ended it
        return writer
