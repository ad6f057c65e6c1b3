"""Flask: stream a channel from a view, or mount the hub as a blueprint.

Flask runs under a WSGI server, so each open stream holds one server thread for its life
(see `ssehub.wsgi`). Publish from any view with ``hub.publish_threadsafe(channel, message)``.

In a view, after your own checks::

    @app.get("/me/events")
    def my_events():
        return sse_response(hub, channel=f"/users/{current_user.id}")

or mount every channel under a prefix (the channel is the request path, ``/events/...``)::

    app.register_blueprint(sse_blueprint(hub), url_prefix="/events")
"""

from __future__ import annotations

from typing import Any

import flask

from ssehub._serving import REFUSED, Answer, answer_before_stream, refusal
from ssehub.errors import UnsupportedServer
from ssehub.hub import Hub
from ssehub.request import Request
from ssehub.wsgi import open_threaded_stream, request_from_environ, unsupported

__all__ = ["request_from_flask", "sse_blueprint", "sse_response"]


def request_from_flask(request: flask.Request | None = None) -> Request:
    """The ssehub `Request` for a Flask request (the current one by default)."""
    if request is None:
        # The real request object rather than the context-local proxy, for hooks to keep.
        request = getattr(flask.request, "_get_current_object", lambda: flask.request)()
    assert request is not None
    return request_from_environ(request.environ, native=request)


def sse_response(
    hub: Hub, channel: str | None = None, *, disconnect_check: float = 1.0
) -> flask.Response:
    """A response that streams ``channel`` (default: the hub's choice) to the current client.

    Call it inside a request. The client resumes with ``Last-Event-ID`` or ``?lastEventId=``;
    the hub's ``authorize`` hook applies (403 when it refuses, 503 after shutdown or with the
    backend down). Blocks the
    worker thread only while the subscription opens; the stream then holds that thread until
    the client leaves (checked every ``disconnect_check`` seconds while idle, where the server
    allows it).
    """
    request = request_from_flask()
    try:
        stream = open_threaded_stream(
            hub, request, request.native.environ, channel=channel, disconnect_check=disconnect_check
        )
    except REFUSED as exc:
        return _response(refusal(hub, exc))
    except UnsupportedServer as exc:
        return _response(unsupported(hub, exc))
    # direct_passthrough hands the stream itself to the server, which calls its close().
    return flask.Response(stream, headers=list(hub.headers), direct_passthrough=True)


def _response(answer: Answer) -> flask.Response:
    return flask.Response(answer.body, status=answer.status, headers=list(answer.headers))


def sse_blueprint(
    hub: Hub, name: str = "ssehub", *, disconnect_check: float = 1.0, **options: Any
) -> flask.Blueprint:
    """A blueprint that streams every channel under its prefix (``GET /<path:channel>``).

    Register it with ``url_prefix="/events"``: ``GET /events/news`` streams the channel
    ``/events/news`` (the request path, unless the hub's ``channel_name`` says otherwise).
    OPTIONS answers a CORS preflight with the hub's headers. ``disconnect_check`` is as in
    `sse_response`; other ``options`` go to `Blueprint`.
    """
    blueprint = flask.Blueprint(name, __name__, **options)

    def stream(path: str = "") -> flask.Response:
        early = answer_before_stream(hub, flask.request.method)
        if early is not None:
            return _response(early)
        return sse_response(hub, disconnect_check=disconnect_check)

    blueprint.add_url_rule(
        "/", "stream_root", stream, methods=["GET", "OPTIONS"], provide_automatic_options=False
    )
    blueprint.add_url_rule(
        "/<path:path>",
        "stream",
        stream,
        methods=["GET", "OPTIONS"],
        provide_automatic_options=False,
    )
    return blueprint
