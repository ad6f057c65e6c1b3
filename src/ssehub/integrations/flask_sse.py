"""Flask-SSE's API on ssehub: moving over is a change of import.

Flask-SSE code::

    from flask_sse import sse

    app.register_blueprint(sse, url_prefix="/stream")
    sse.publish({"message": "Hello!"}, type="greeting", channel="users.social")

runs unchanged with ``from ssehub.integrations.flask_sse import sse``, and browsers keep
``new EventSource("/stream?channel=users.social")`` (no ``channel``: the channel ``"sse"``).
As in Flask-SSE, ``data`` is sent as JSON (``json.dumps``), ``type`` is the event's type, and
the channel is the name as given. Clients also resume with ``Last-Event-ID`` from the channel's
history.

``sse`` is the one module-level object here, because Flask-SSE's API is one: its hub is an
in-memory `Hub` (one process). For several processes, or your own hub options, make your own
blueprint: ``sse = ServerSentEventsBlueprint(hub=Hub(backend=RedisBackend(url)))``. Flask-SSE's
``REDIS_URL`` setting is not read. Like every WSGI stream, each open stream holds one server
thread (see `ssehub.integrations.flask`).
"""

from __future__ import annotations

import json
from typing import Any

import flask

from ssehub.backends import PublishResult
from ssehub.hub import Hub
from ssehub.integrations.flask import sse_response
from ssehub.wire import Message

__all__ = ["DEFAULT_CHANNEL", "ServerSentEventsBlueprint", "sse"]

DEFAULT_CHANNEL = "sse"
"""Flask-SSE's channel when a publish or a request names none."""


class ServerSentEventsBlueprint(flask.Blueprint):
    """A blueprint that streams ``?channel=`` (Flask-SSE's) and publishes with `publish`."""

    def __init__(
        self,
        name: str = "sse",
        import_name: str = __name__,
        *,
        hub: Hub | None = None,
        disconnect_check: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(name, import_name, **options)
        self.hub = hub if hub is not None else Hub()
        """The hub the blueprint streams and publishes on."""
        self.disconnect_check = disconnect_check
        self.add_url_rule("", "stream", self.stream)

    def stream(self) -> flask.Response:
        """The view: stream the channel named by ``?channel=`` (``"sse"`` by default)."""
        channel = flask.request.args.get("channel") or DEFAULT_CHANNEL
        return sse_response(self.hub, channel=channel, disconnect_check=self.disconnect_check)

    def publish(
        self,
        data: Any,
        type: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        channel: str = DEFAULT_CHANNEL,
    ) -> PublishResult:
        """Publish ``data`` as JSON on ``channel``; returns the event's id (a `PublishResult`).

        Blocks until the event is stored (`Hub.publish_threadsafe`): call it from views and
        other threads, not from a coroutine on the hub's own loop. Raises `InvalidMessage` for
        a ``type`` or ``id`` that cannot be sent, and `TypeError` for data JSON cannot encode.
        """
        message = Message(json.dumps(data), event=type, id=id, retry=retry)
        return self.hub.publish_threadsafe(channel, message)


sse = ServerSentEventsBlueprint()
"""Flask-SSE's ``sse``: register it (``url_prefix="/stream"``) and call ``sse.publish``."""
