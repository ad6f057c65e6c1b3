# Run: gunicorn --worker-class gthread --threads 100 --chdir examples django_app:application
# Or, for development: python examples/django_app.py runserver
"""The seed's example as a single-file Django app under WSGI: the time every 5 s.

Each open stream holds one server thread (see ``ssehub.wsgi``); views publish from their worker
thread with ``hub.publish_threadsafe``. For Django under ASGI see ``django_asgi_app.py``.
"""

import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path

from ssehub import Hub, Message
from ssehub.integrations.django import sse_view

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


def page(request):
    return HttpResponse(PAGE)


urlpatterns = [
    path("", page),
    path("events/<path:channel>", sse_view(hub)),  # the channel is the path: /events/my-channel
]


def tick() -> None:
    while True:
        hub.publish_threadsafe("/events/my-channel", Message(time.ctime(), event="time"))
        time.sleep(5)


threading.Thread(target=tick, name="tick", daemon=True).start()
application = get_wsgi_application()


if __name__ == "__main__":
    # Django's development server: python examples/django_app.py runserver
    import sys

    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
