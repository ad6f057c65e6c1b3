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

import json

import quart

from ssehub.asgi import request_from_scope
from ssehub.errors import HubClosed, SubscriptionDenied
from ssehub.hub import Hub
from ssehub.integrations import iter_subscription
from ssehub.request import Request

__all__ = ["request_from_quart", "sse_response"]

_STREAM_HEADERS = {"content-type", "cache-control", "x-accel-buffering"}


def request_from_quart() -> Request:
    """The ssehub `Request` for the current Quart request (``native`` is the ASGI scope)."""
    return request_from_scope(dict(quart.request.scope))


async def sse_response(hub: Hub, channel: str | None = None) -> quart.Response:
    """A response that streams ``channel`` (default: the hub's choice) to the current client.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``); the hub's ``authorize`` hook
    applies (403 when it refuses, 503 after shutdown). The response has no timeout (Quart's
    ``RESPONSE_TIMEOUT`` would cut the stream); it ends when the client disconnects.
    """
    cors = {k: v for k, v in hub.headers if k.lower() not in _STREAM_HEADERS}
    try:
        sub = await hub.open_stream(request_from_quart(), channel=channel)
    except SubscriptionDenied as exc:
        return quart.Response(_error(str(exc)), 403, cors, content_type="application/json")
    except HubClosed:
        message = _error("the hub is shutting down")
        return quart.Response(message, 503, cors, content_type="application/json")
    response = quart.Response(iter_subscription(hub, sub), 200, dict(hub.headers))
    response.timeout = None
    return response


def _error(message: str) -> str:
    return json.dumps({"error": message})
