# Run: uvicorn django_asgi_app:application --app-dir examples
"""The seed's example as a single-file Django app under ASGI: the time every 5 s.

Each open stream is one task on the server's loop; async views publish with
``await hub.publish``. Django 5.0 or later ends a stream as soon as its client disconnects.
Django has no lifespan events, so a small ASGI wrapper starts the clock and shuts the hub down.
"""

import asyncio
import time
from pathlib import Path

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpResponse
from django.urls import path

from ssehub import Hub, Message
from ssehub.integrations.django import async_sse_view

settings.configure(
    DEBUG=False,
    SECRET_KEY="example-only",
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
)

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()


async def page(request):
    return HttpResponse(PAGE)


urlpatterns = [
    path("", page),
    path("events/<path:channel>", async_sse_view(hub)),
]

django_app = get_asgi_application()


async def tick() -> None:
    while True:
        await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
        await asyncio.sleep(5)


async def application(scope, receive, send):
    if scope["type"] != "lifespan":
        await django_app(scope, receive, send)
        return
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            clock = asyncio.ensure_future(tick())
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            clock.cancel()
            await hub.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
