"""A one-module Django site for the tests: a WSGI half (sync views) and an ASGI half (async).

``application`` (WSGI, run by gunicorn in a subprocess): ``sse_view`` at /events/<name>, a sync
view publishing with ``publish_threadsafe``, ``stream_response`` of several selectors at
/multi/<name>. ``asgi_application`` (run by uvicorn): the same under /asgi/, with
``async_sse_view``, ``astream_response`` and async views publishing with ``await hub.publish``.
Each half has its own hub (the WSGI one runs its loop in a thread of its own).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )

from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

from ssehub.integrations.django import (
    EventSourceResponse,
    astream_response,
    async_sse_view,
    sse_view,
    stream_response,
)
from tests.integrations.apps import (
    closed,
    count_clients,
    counting,
    json_body,
    make_hub,
    multi_selectors,
    time_message,
)

wsgi_hub = make_hub()
asgi_hub = make_hub(channel_name=lambda request: request.path.removeprefix("/asgi"))


def publish(request: HttpRequest, name: str) -> HttpResponse:
    event_id = wsgi_hub.publish_threadsafe(f"/events/{name}", time_message(request.body))
    return HttpResponse(json_body({"id": event_id}), content_type="application/json")


def clients(request: HttpRequest, name: str) -> HttpResponse:
    count = wsgi_hub.run_threadsafe(count_clients(wsgi_hub, f"/events/{name}"))
    return HttpResponse(json_body({"clients": count}), content_type="application/json")


async def apublish(request: HttpRequest, name: str) -> HttpResponse:
    event_id = await asgi_hub.publish(f"/events/{name}", time_message(request.body))
    return HttpResponse(json_body({"id": event_id}), content_type="application/json")


async def aclients(request: HttpRequest, name: str) -> HttpResponse:
    count = asgi_hub.client_count(f"/events/{name}")
    return HttpResponse(json_body({"clients": count}), content_type="application/json")


def multi(request: HttpRequest, name: str) -> Any:
    return stream_response(wsgi_hub, request, channel=multi_selectors(name), disconnect_check=0.2)


async def amulti(request: HttpRequest, name: str) -> Any:
    return await astream_response(asgi_hub, request, channel=multi_selectors(name))


def publish_to(request: HttpRequest) -> HttpResponse:
    message = time_message(request.body)
    event_id = wsgi_hub.publish_threadsafe(request.GET.getlist("channel"), message)
    return HttpResponse(json_body({"id": event_id}), content_type="application/json")


async def apublish_to(request: HttpRequest) -> HttpResponse:
    event_id = await asgi_hub.publish(request.GET.getlist("channel"), time_message(request.body))
    return HttpResponse(json_body({"id": event_id}), content_type="application/json")


def count(request: HttpRequest) -> EventSourceResponse:
    source, ping = counting(request.GET, sync_only=True)
    return EventSourceResponse(
        source, hub=wsgi_hub, ping=ping, disconnect_check=0.2, request=request
    )


async def acount(request: HttpRequest) -> EventSourceResponse:
    source, ping = counting(request.GET)
    return EventSourceResponse(source, hub=asgi_hub, ping=ping)


def closed_(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json_body(closed(request.GET["tag"])), content_type="application/json")


async def aclosed(request: HttpRequest) -> HttpResponse:
    return HttpResponse(json_body(closed(request.GET["tag"])), content_type="application/json")


urlpatterns: list[Any] = [
    path("count", count),
    path("closed", closed_),
    path("asgi/count", acount),
    path("asgi/closed", aclosed),
    path("events/<path:channel>", sse_view(wsgi_hub, disconnect_check=0.2)),
    path("publish/<path:name>", publish),
    path("clients/<path:name>", clients),
    path("multi/<path:name>", multi),
    path("publish-to", publish_to),
    path("asgi/events/<path:channel>", async_sse_view(asgi_hub)),
    path("asgi/publish/<path:name>", apublish),
    path("asgi/clients/<path:name>", aclients),
    path("asgi/multi/<path:name>", amulti),
    path("asgi/publish-to", apublish_to),
]

application = get_wsgi_application()
asgi_application = get_asgi_application()
