"""Starlette and FastAPI: a per-route streaming response, besides mounting ``hub.asgi``.

Mount the whole hub (the channel is the request path, or the ``?channel=`` selectors)::

    app.mount("/events", hub.asgi)

or, when the route picks the channel itself (say per user, after authentication), one channel
or a list of selectors read by one stream::

    @app.get("/me/events")
    async def my_events(user: User = Depends(current_user)) -> EventStreamResponse:
        return EventStreamResponse(hub, channel=[f"/users/{user.id}", "/news", "/rooms/{id}"])

Each open stream costs one asyncio task (the server's request task) plus its subscription.

To stream one response from a generator (LLM tokens, a job's progress) rather than a channel,
return an `EventSourceResponse` (sse-starlette's name, so moving over is one import)::

    @app.get("/count")
    async def count(n: int = 5) -> EventSourceResponse:
        async def numbers():
            for i in range(1, n + 1):
                yield i                              # or a str, a dict, a Message(...)
                await asyncio.sleep(1)
        return EventSourceResponse(numbers(), hub=hub)   # hub: ends with hub.shutdown()
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.background import BackgroundTask
from starlette.responses import Response

from ssehub._serving import Answer, open_stream
from ssehub.asgi import request_from_scope, send_answer, send_event_stream, stream_subscription
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, EventStream, Source
from ssehub.hub import Hub, Selection
from ssehub.types import Receive, Scope, Send

__all__ = ["EventSourceResponse", "EventStreamResponse"]


class EventStreamResponse(Response):
    """A response that streams a channel of ``hub``, or several, to this request's client.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400); it defaults
    to the hub's choice for the request (its ``channel_name``, else ``?channel=`` selectors, else
    the path). The client resumes with ``Last-Event-ID`` (or ``?lastEventId=``) as with
    ``hub.asgi``; the hub's ``authorize`` hook still applies (403 when it refuses; 503 after
    shutdown or with the backend down). ``headers`` are added to the hub's. The subscription opens
    when the response is sent and ends when the client disconnects.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        hub: Hub,
        channel: Selection | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.hub = hub
        self.channel = channel
        self.status_code = 200
        self.background = None
        self.stream_headers = [*hub.headers, *(headers or {}).items()]
        self.body = b""
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.stream_headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await open_stream(self.hub, request_from_scope(scope), channel=self.channel)
        if isinstance(opened, Answer):
            await send_answer(send, opened)
            return
        await stream_subscription(self.hub, opened, receive, send, self.stream_headers)


class EventSourceResponse(Response):
    """A response that streams the items of ``content``, a sync or async generator (or
    iterable), to this request's client as server-sent events.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as
    compact JSON). ``ping`` is the seconds between keep-alive comments (None: none). With
    ``hub``, the stream ends at ``hub.shutdown()`` and ``hub.restart()`` and carries the hub's
    headers; ``headers`` are added. When the client leaves, the generator is closed (an async
    one is cancelled at its ``await``). ``background`` runs after the response, as in Starlette.
    See `ssehub.EventStream` for the rest.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Source,
        headers: Mapping[str, str] | None = None,
        *,
        hub: Hub | None = None,
        ping: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
        background: BackgroundTask | None = None,
    ) -> None:
        self.stream = EventStream(content, hub=hub, keepalive=ping, buffer=buffer, headers=headers)
        self.status_code = 200
        self.background = background
        self.body = b""
        self.raw_headers = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.stream.headers
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_event_stream(self.stream, receive, send)
        if self.background is not None:
            await self.background()
