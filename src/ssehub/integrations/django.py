"""Django: a sync view for WSGI servers and an async view for ASGI servers.

Under WSGI (gunicorn, waitress) use the sync view; each open stream holds one server thread
(see `ssehub.wsgi`), and views publish with ``hub.publish_threadsafe(channel, message)``.
Under ASGI (uvicorn, daphne) use the async view; each open stream is one task on the server's
loop, and async views publish with ``await hub.publish(channel, message)``. Django 5.0 or
later is needed under ASGI for a disconnect to end the stream at once (Django then cancels
the response); older versions notice a dead client only when a keep-alive write fails.

In ``urls.py``::

    urlpatterns = [path("events/<path:channel>", sse_view(hub))]        # WSGI
    urlpatterns = [path("events/<path:channel>", async_sse_view(hub))]  # ASGI

or in your own view, after your own checks::

    def my_events(request):
        return stream_response(hub, request, channel=f"/users/{request.user.pk}")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from ssehub._serving import (
    REFUSED,
    Answer,
    answer_before_stream,
    iter_subscription,
    open_stream,
    refusal,
)
from ssehub.errors import UnsupportedServer
from ssehub.hub import Hub
from ssehub.request import Request
from ssehub.wsgi import open_threaded_stream, request_from_environ, unsupported

__all__ = [
    "astream_response",
    "async_sse_view",
    "request_from_django",
    "sse_view",
    "stream_response",
]

View = Callable[..., HttpResponseBase]
AsyncView = Callable[..., Awaitable[HttpResponseBase]]


def request_from_django(request: HttpRequest) -> Request:
    """The ssehub `Request` for a Django request (``native`` is the Django request)."""
    base = request_from_environ(request.META, native=request)
    return dataclasses.replace(base, path=request.path, method=request.method or "GET")


def _response(answer: Answer) -> HttpResponse:
    return HttpResponse(answer.body, status=answer.status, headers=dict(answer.headers))


def _early(hub: Hub, request: HttpRequest) -> HttpResponseBase | None:
    early = answer_before_stream(hub, request.method or "GET")
    return None if early is None else _response(early)


def stream_response(
    hub: Hub,
    request: HttpRequest,
    channel: str | None = None,
    *,
    disconnect_check: float = 1.0,
) -> HttpResponseBase:
    """Stream ``channel`` (default: the hub's choice) to ``request``'s client, under WSGI.

    Resumes after ``Last-Event-ID`` (or ``?lastEventId=``); the hub's ``authorize`` hook
    applies (403 when it refuses, 503 after shutdown or with the backend down). The stream holds
    the worker thread until the client leaves; the response's ``close()`` (called by the
    server) unsubscribes.
    """
    try:
        stream = open_threaded_stream(
            hub,
            request_from_django(request),
            request.META,
            channel=channel,
            disconnect_check=disconnect_check,
        )
    except REFUSED as exc:
        return _response(refusal(hub, exc))
    except UnsupportedServer as exc:
        return _response(unsupported(hub, exc))
    return StreamingHttpResponse(stream, headers=dict(hub.headers))


async def astream_response(
    hub: Hub, request: HttpRequest, channel: str | None = None
) -> HttpResponseBase:
    """Stream ``channel`` (default: the hub's choice) to ``request``'s client, under ASGI.

    As `stream_response`, but the stream is an async iterator on the server's loop (where the
    hub must run: publish with ``await hub.publish`` from async views).
    """
    opened = await open_stream(hub, request_from_django(request), channel=channel)
    if isinstance(opened, Answer):
        return _response(opened)
    return StreamingHttpResponse(iter_subscription(hub, opened), headers=dict(hub.headers))


def sse_view(hub: Hub, *, disconnect_check: float = 1.0) -> View:
    """A sync view (for WSGI) that streams the request's channel; OPTIONS and 405 handled."""

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        early = _early(hub, request)
        if early is not None:
            return early
        return stream_response(hub, request, disconnect_check=disconnect_check)

    return view


def async_sse_view(hub: Hub) -> AsyncView:
    """An async view (for ASGI) that streams the request's channel; OPTIONS and 405 handled."""

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        early = _early(hub, request)
        if early is not None:
            return early
        return await astream_response(hub, request)

    return view
