"""Litestar: mount the hub under a path, or return a streaming response from a handler.

Mount every channel under a prefix (the channel is the request path, ``/events/...``, or the
``?channel=`` selectors)::

    app = Litestar([mount(hub, "/events"), ...], on_shutdown=[shutdown_hook(hub)])

or stream a channel your handler picks, or a list of selectors read by one stream::

    @get("/me/events")
    async def my_events(request: Request) -> EventStreamResponse:
        return EventStreamResponse(hub, channel=[f"/users/{request.user.id}", "/rooms/{id}"])

Each open stream costs one asyncio task (the server's request task) plus its subscription.

To stream one response from a generator (LLM tokens, a job's progress) rather than a channel,
return an `EventSourceResponse` over a sync or async generator::

    @get("/count")
    async def count(n: int = 5) -> EventSourceResponse:
        async def numbers():
            for i in range(1, n + 1):
                yield i                              # or a str, a dict, a Message(...)
        return EventSourceResponse(numbers(), hub=hub)   # hub: ends with hub.shutdown()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from urllib.parse import unquote

from litestar import Request as LitestarRequest
from litestar import Response, asgi
from litestar.handlers import ASGIRouteHandler
from litestar.response.base import ASGIResponse
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope as LitestarScope
from litestar.types import Send as LitestarSend

from ssehub._serving import Answer, open_stream
from ssehub.asgi import request_from_scope, send_answer, send_event_stream, stream_subscription
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, EventStream, Source
from ssehub.hub import Hub, Selection
from ssehub.types import Receive, Scope, Send

__all__ = ["EventSourceResponse", "EventStreamResponse", "mount", "shutdown_hook"]


def shutdown_hook(hub: Hub) -> Callable[[], Awaitable[None]]:
    """An ``on_shutdown`` hook that shuts ``hub`` down gracefully.

    (Litestar passes the app to hooks that take parameters, so ``hub.shutdown`` itself, whose
    parameter is a timeout, cannot be the hook.)
    """

    async def ssehub_shutdown() -> None:
        await hub.shutdown()

    return ssehub_shutdown


def mount(hub: Hub, path: str = "/events") -> ASGIRouteHandler:
    """A route handler that serves ``hub.asgi`` at ``path`` and every path under it.

    The channel is the full request path (``/events/news``), or the request's ``?channel=``
    selectors, unless the hub's ``channel_name`` says otherwise. Add ``shutdown_hook(hub)`` to
    the app's ``on_shutdown``.
    """
    asgi_app = hub.asgi
    prefix = path.rstrip("/")

    async def ssehub_events(
        scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        full: dict[str, Any] = dict(scope)
        # Litestar strips the mount path from "path" (and adds a slash); the hub names
        # channels by the full path, which raw_path still holds.
        raw: bytes = full.get("raw_path") or b""
        if raw:
            full["path"] = unquote(raw.decode("latin-1").split("?", 1)[0])
        else:
            full["path"] = prefix + full["path"].rstrip("/")
        full["root_path"] = ""
        await asgi_app(full, cast(Receive, receive), cast(Send, send))

    return asgi(path, is_mount=True, copy_scope=False)(ssehub_events)


class _EventStream(ASGIResponse):
    __slots__ = ("channel", "hub", "stream_headers")

    def __init__(self, hub: Hub, channel: Selection | None, headers: list[tuple[str, str]]) -> None:
        super().__init__(status_code=200)
        self.hub = hub
        self.channel = channel
        self.stream_headers = headers

    async def __call__(
        self, scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        asgi_scope, asgi_receive, asgi_send = (
            cast(Scope, scope),
            cast(Receive, receive),
            cast(Send, send),
        )
        opened = await open_stream(self.hub, request_from_scope(asgi_scope), channel=self.channel)
        if isinstance(opened, Answer):
            await send_answer(asgi_send, opened)
            return
        await stream_subscription(self.hub, opened, asgi_receive, asgi_send, self.stream_headers)


class EventStreamResponse(Response[None]):
    """A response that streams a channel of ``hub``, or several, to this request's client.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400); it defaults
    to the hub's choice for the request. Resumes after ``Last-Event-ID`` (or ``?lastEventId=``);
    the hub's ``authorize`` hook applies (403 when it refuses, 503 after shutdown or with the
    backend down); ``headers`` are added to the hub's. Ends when the client disconnects.
    """

    def __init__(
        self,
        hub: Hub,
        channel: Selection | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content=None, media_type="text/event-stream")
        self.hub = hub
        self.channel = channel
        self.stream_headers = [*hub.headers, *(headers or {}).items()]

    def to_asgi_response(
        self, app: Any, request: LitestarRequest[Any, Any, Any], **kwargs: Any
    ) -> ASGIResponse:
        """The ASGI callable Litestar sends (it opens the subscription when called)."""
        return _EventStream(self.hub, self.channel, self.stream_headers)


class _EventSource(ASGIResponse):
    __slots__ = ("stream",)

    def __init__(self, stream: EventStream) -> None:
        super().__init__(status_code=200)
        self.stream = stream

    async def __call__(
        self, scope: LitestarScope, receive: LitestarReceive, send: LitestarSend
    ) -> None:
        await send_event_stream(self.stream, cast(Receive, receive), cast(Send, send))


class EventSourceResponse(Response[None]):
    """A response that streams the items of ``content``, a sync or async generator (or
    iterable), to this request's client as server-sent events.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as compact
    JSON). ``ping`` is the seconds between keep-alive comments (None: none). With ``hub``, the
    stream ends at ``hub.shutdown()`` and ``hub.restart()`` (503 once shut down) and carries
    the hub's headers; ``headers`` are added. The response ends when the generator does; when
    the client leaves, the generator is closed (an async one is cancelled at its ``await``, a
    sync one, which runs in a thread of its own, after its current item). See
    `ssehub.EventStream`.
    """

    def __init__(
        self,
        content: Source,
        headers: Mapping[str, str] | None = None,
        *,
        hub: Hub | None = None,
        ping: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
    ) -> None:
        super().__init__(content=None, media_type="text/event-stream")
        self.stream = EventStream(content, hub=hub, keepalive=ping, buffer=buffer, headers=headers)

    def to_asgi_response(
        self, app: Any, request: LitestarRequest[Any, Any, Any], **kwargs: Any
    ) -> ASGIResponse:
        """The ASGI callable Litestar sends (it starts the generator when called)."""
        return _EventSource(self.stream)
