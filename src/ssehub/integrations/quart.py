"""Quart: stream a channel from a route (Quart's usual server is hypercorn).

In a route, after your own checks::

    @app.get("/events/<path:name>")
    async def events(name: str):
        return await sse_response(hub)            # the channel is the path, /events/<name>

    @app.get("/me/events")
    async def my_events():
        return await sse_response(hub, channel=f"/users/{current_user.auth_id}")

Routes publish with ``await hub.publish(channel, message)``. Each open stream costs one asyncio
task (Quart's response task) plus its subscription; Quart cancels it when the client leaves.
Add ``hub.shutdown`` to ``app.after_serving``.
"""

from __future__ import annotations

import quart

from ssehub._serving import Answer, iter_subscription, open_stream
from ssehub.asgi import request_from_scope
from ssehub.hub import Hub
from ssehub.request import Request

__all__ = ["request_from_quart", "sse_response"]


def request_from_quart() -> Request:
    """The ssehub `Request` for the current Quart request (``native`` is the ASGI scope)."""
    return request_from_scope(dict(quart.request.scope))


async def sse_response(hub: Hub, channel: str | None = None) -> quart.Response:
    """A response that streams ``channel`` (default: the hub's choice) to the current client.

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
