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

or in your own view, after your own checks (one channel, or a list of selectors read by one
stream)::

    def my_events(request):
        return stream_response(hub, request, channel=[f"/users/{request.user.pk}", "/news"])

To stream one response from a generator (a job's progress) rather than a channel, return an
`EventSourceResponse`: from an async view under ASGI (a sync or async generator), or from a
sync view under WSGI (a sync generator only)::

    async def count(request):
        async def numbers():
            for i in range(1, int(request.GET.get("n", 5)) + 1):
                yield i                              # or a str, a dict, a Message(...)
        return EventSourceResponse(numbers(), hub=hub)

Coming from django-eventstream: ``send_event(channel, event_type, data)`` (``asend_event`` in
async code) and `events_view` keep its API on the hub that ``settings.SSEHUB_HUB`` names.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.module_loading import import_string

from ssehub._serving import (
    REFUSED,
    Answer,
    answer_before_stream,
    iter_subscription,
    open_stream,
    refusal,
)
from ssehub.backends import PublishResult
from ssehub.errors import HubClosed, UnsupportedServer
from ssehub.event_stream import DEFAULT_STREAM_BUFFER, EventStream, Source
from ssehub.hub import DEFAULT_HEADERS, Hub, Selection
from ssehub.request import Request
from ssehub.wire import Message
from ssehub.wsgi import WSGIEventStream, open_threaded_stream, request_from_environ, unsupported

__all__ = [
    "HUB_SETTING",
    "EventSourceResponse",
    "asend_event",
    "astream_response",
    "async_sse_view",
    "configured_hub",
    "events_view",
    "request_from_django",
    "send_event",
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
    channel: Selection | None = None,
    *,
    disconnect_check: float = 1.0,
) -> HttpResponseBase:
    """Stream ``channel`` (default: the hub's choice) to ``request``'s client, under WSGI.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400); the hub's
    choice is its ``channel_name``, else the request's ``?channel=`` selectors, else the path.

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
    hub: Hub, request: HttpRequest, channel: Selection | None = None
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
    """A sync view (for WSGI) that streams the request's channel (or its ``?channel=``
    selectors); OPTIONS and 405 handled."""

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        early = _early(hub, request)
        if early is not None:
            return early
        return stream_response(hub, request, disconnect_check=disconnect_check)

    return view


def async_sse_view(hub: Hub) -> AsyncView:
    """An async view (for ASGI) that streams the request's channel (or its ``?channel=``
    selectors); OPTIONS and 405 handled."""

    async def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        early = _early(hub, request)
        if early is not None:
            return early
        return await astream_response(hub, request)

    return view


class EventSourceResponse(StreamingHttpResponse):  # type: ignore[misc]  # Django is untyped
    """A response that streams the items of ``content`` to the client as server-sent events.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as compact
    JSON). Made in an async view (a running event loop: Django under ASGI), ``content`` is a
    sync or async generator (or iterable) sent by `ssehub.EventStream`: an async one runs on
    the loop, a sync one in a thread of its own; when the client leaves, Django (5.0 or later)
    cancels the response and the generator is closed (an async one at its ``await``, a sync one
    after its current item); with ``hub``, ``hub.shutdown()`` and ``hub.restart()`` end it.
    Made in a sync view (Django under WSGI), ``content`` must be a sync generator (TypeError
    otherwise); it is sent by `ssehub.wsgi.WSGIEventStream`, in a thread of its own, and closed
    after its current item once the server closes the response (the client left, noticed at
    the next write, or within ``disconnect_check`` seconds under gunicorn and waitress when
    ``request`` is given); with
    ``hub``, ``hub.shutdown()`` ends it within ``disconnect_check`` seconds.

    Either way the response ends when the generator does, ``ping`` is the seconds between
    keep-alive comments (None: none), the stream carries the hub's headers with ``hub`` (503
    once it is shut down) and ``headers`` are added.
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
        request: HttpRequest | None = None,
    ) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a sync view: WSGI, the server's thread iterates the body
            is_async = False
        else:
            is_async = True
        if hub is not None and hub.closed:
            answer = refusal(hub, HubClosed("the hub is shut down"))
            refusal_body = _once(answer.body) if is_async else [answer.body]
            super().__init__(refusal_body, status=answer.status, headers=dict(answer.headers))
            return
        base = hub.headers if hub is not None else list(DEFAULT_HEADERS)
        all_headers = dict([*base, *(headers or {}).items()])
        body: AsyncIterable[bytes] | WSGIEventStream
        if not is_async:
            body = WSGIEventStream(
                content,  # type: ignore[arg-type]  # refused at runtime when async
                hub=hub,
                keepalive=ping,
                buffer=buffer,
                environ=None if request is None else request.META,
                disconnect_check=disconnect_check,
            )
        else:
            stream = EventStream(content, hub=hub, keepalive=ping, buffer=buffer, headers=headers)
            body = stream.chunks()
        super().__init__(body, headers=all_headers)


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


# -- django-eventstream's API ------------------------------------------------------------------

HUB_SETTING = "SSEHUB_HUB"
"""The Django setting that names the hub of `send_event` and `events_view` (a dotted path)."""


def configured_hub() -> Hub:
    """The `Hub` that ``settings.SSEHUB_HUB`` names (e.g. ``"mysite.events.hub"``).

    Raises ``ImproperlyConfigured`` when the setting is missing or names no `Hub`.
    """
    path = getattr(settings, HUB_SETTING, None)
    if not path:
        raise ImproperlyConfigured(
            f"{HUB_SETTING} must name the ssehub Hub to use, e.g. {HUB_SETTING} = "
            '"mysite.events.hub" (a module-level `hub = Hub()` in mysite/events.py)'
        )
    hub = import_string(path)
    if not isinstance(hub, Hub):
        raise ImproperlyConfigured(f"{HUB_SETTING} = {path!r} is a {type(hub).__name__}, not a Hub")
    return hub


def _event(event_type: str, data: Any, json_encode: bool) -> Message:
    text = json.dumps(data, cls=DjangoJSONEncoder) if json_encode else data
    return Message(text, event=event_type)


def send_event(
    channel: str, event_type: str, data: Any, *, json_encode: bool = True, hub: Hub | None = None
) -> PublishResult:
    """django-eventstream's ``send_event``: publish ``data`` as an ``event_type`` event.

    ``data`` is sent as JSON (Django's encoder: dates, decimals, UUIDs) unless ``json_encode``
    is false (then it must be a string). ``hub`` defaults to `configured_hub`. Blocks until
    the event is stored (`Hub.publish_threadsafe`): call it from sync code (views, tasks); in
    async code ``await asend_event(...)``. Returns the event's id.
    """
    target = hub if hub is not None else configured_hub()
    return target.publish_threadsafe(channel, _event(event_type, data, json_encode))


async def asend_event(
    channel: str, event_type: str, data: Any, *, json_encode: bool = True, hub: Hub | None = None
) -> PublishResult:
    """`send_event` for async code on the hub's loop (Django under ASGI)."""
    target = hub if hub is not None else configured_hub()
    return await target.publish(channel, _event(event_type, data, json_encode))


def events_view(hub: Hub | None = None, *, disconnect_check: float = 1.0) -> View:
    """A sync view (WSGI) that streams the channel django-eventstream's URLs would.

    The channels are the URL's ``channels`` keyword (as ``path("events/", events_view(),
    {"channels": ["test"]})``), else the ``channel`` keyword of the URL pattern, else
    ``?channel=`` (repeatable). Several channels are read by one stream, each event once, as
    django-eventstream does; a request that names none gets 400. ``hub`` defaults to
    `configured_hub` (looked up per request).
    """

    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        target = hub if hub is not None else configured_hub()
        early = _early(target, request)
        if early is not None:
            return early
        channels = list(kwargs.get("channels") or [])
        if not channels and kwargs.get("channel"):
            channels = [kwargs["channel"]]
        if not channels:
            channels = request.GET.getlist("channel")
        if not channels:
            return HttpResponse(
                json.dumps({"error": "name a channel: the URL's channels, or ?channel="}),
                status=400,
                content_type="application/json",
            )
        return stream_response(
            target,
            request,
            channel=channels[0] if len(channels) == 1 else channels,
            disconnect_check=disconnect_check,
        )

    return view
