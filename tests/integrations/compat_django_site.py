"""A Django site written as for django-eventstream, with only its imports changed to ssehub's.

Served by gunicorn in a subprocess (its own settings). ``send_event`` finds the hub through
``SSEHUB_HUB``; ``/events/`` streams the channel fixed in the URL (``{"channels": [...]}``),
``/stream/`` the one named by ``?channel=``; ``POST /send/<channel>/<type>`` calls
``send_event`` with the JSON body.
"""

from __future__ import annotations

import json
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
        SSEHUB_HUB=f"{__name__}.hub",
    )

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

from ssehub import Hub
from ssehub.integrations.django import events_view, send_event

hub = Hub(keepalive=1)


def send(request: HttpRequest, channel: str, event_type: str) -> HttpResponse:
    event_id = send_event(channel, event_type, json.loads(request.body))
    return HttpResponse(json.dumps({"id": event_id}), content_type="application/json")


urlpatterns: list[Any] = [
    path("events/", events_view(), {"channels": ["test"]}),
    path("stream/", events_view()),
    path("send/<str:channel>/<str:event_type>", send),
]

application = get_wsgi_application()
