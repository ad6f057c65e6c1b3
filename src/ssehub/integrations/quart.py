"""Quart: stream a channel from a route (Quart's usual server is hypercorn).

In a route, after your own checks::

    @app.get("/events/<path:name>")
    async def events(name: str):
        return await sse_response(hub)            # the channel is the path, /events/<name>

    @app.get("/me/events")
    async def my_events():                        # several channels, one stream
        return await sse_response(hub, channel=[f"/users/{current_user.auth_id}", "/news"])

Routes publish with ``await hub.publish(channel, message)``. Each open stream costs one asyncio
task (Quart's response task) plus its subscription; Quart cancels it when the client leaves.
Add ``hub.shutdown`` to ``app.after_serving``.

To stream one response from a generator (LLM tokens, a job's progress) rather than a channel,
return an `EventSourceResponse` over a sync or async generator::

    @app.get("/count")
    async def count():
        async def numbers():
            for i in range(1, quart.request.args.get("n", 5, type=int) + 1):
                yield i                              # or a str, a dict, a Message(...)
        return EventSourceResponse(numbers(), hub=hub)   # hub: ends with hub.shutdown()
"""

from __future__ import annotations

from collections.abc import Mapping

import quart

from ssehub._serving import Answer, iter_subscription, open_stream, refusal
from ssehub.asgi import request_from_scope
from ssehub.errors import HubClosed
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, EventStream, Source
from ssehub.hub import Hub, Selection
from ssehub.request import Request

__all__ = ["EventSourceResponse", "request_from_quart", "sse_response"]


def request_from_quart() -> Request:
    """The ssehub `Request` for the current Quart request (``native`` is the ASGI scope)."""
    return request_from_scope(dict(quart.request.scope))


async def sse_response(hub: Hub, channel: Selection | None = None) -> quart.Response:
    """A response that streams ``channel`` (default: the hub's choice) to the current client.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400). The hub's
    choice is its ``channel_name``, else the request's ``?channel=`` selectors, else the path.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``); the hub's ``authorize`` hook
    applies (403 when it refuses, 503 after shutdown or with the backend down). The response
    has no timeout (Quart's ``RESPONSE_TIMEOUT`` would cut the stream); it ends when the client
    disconnects.
    """
    opened = await open_stream(hub, request_from_quart(), channel=channel)
    if isinstance(opened, Answer):
        return quart.Response(opened.body, opened.status, dict(opened.headers))
    response = quart.Response(iter_subscription(hub, opened), 200, dict(hub.headers))
    response.timeout = None
    return response


class EventSourceResponse(quart.Response):
    """A response that streams the items of ``content``, a sync or async generator (or
    iterable), to the current client as server-sent events.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as compact
    JSON). ``ping`` is the seconds between keep-alive comments (None: none). With ``hub``, the
    stream ends at ``hub.shutdown()`` and ``hub.restart()`` (503 once shut down) and carries
    the hub's headers; ``headers`` are added. The response has no timeout and ends when the
    generator does; when the client leaves, Quart cancels the body and the generator is closed
    (an async one at its ``await``, a sync one, which runs in a thread of its own, after its
    current item). The body is `ssehub.EventStream.chunks`.
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
        if hub is not None and hub.closed:
            answer = refusal(hub, HubClosed("the hub is shut down"))
            super().__init__(answer.body, answer.status, dict(answer.headers))
            return
        self.stream = EventStream(content, hub=hub, keepalive=ping, buffer=buffer, headers=headers)
        super().__init__(self.stream.chunks(), 200, dict(self.stream.headers))
        self.timeout = None
