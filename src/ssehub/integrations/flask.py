"""Flask: stream a channel from a view, or mount the hub as a blueprint.

Flask runs under a WSGI server, so each open stream holds one server thread for its life
(see `ssehub.wsgi`). Publish from any view with ``hub.publish_threadsafe(channel, message)``.

In a view, after your own checks (one channel, or a list of selectors read by one stream)::

    @app.get("/me/events")
    def my_events():
        return sse_response(hub, channel=[f"/users/{current_user.id}", "/rooms/{id}"])

or mount every channel under a prefix (the channel is the request path, ``/events/...``, or
the ``?channel=`` selectors)::

    app.register_blueprint(sse_blueprint(hub), url_prefix="/events")

To stream one response from a generator (a job's progress) rather than a channel, return an
`EventSourceResponse` over a sync generator (WSGI bodies are sync: no async generators)::

    @app.get("/count")
    def count():
        def numbers():
            for i in range(1, int(flask.request.args.get("n", 5)) + 1):
                yield i                              # or a str, a dict, a Message(...)
                time.sleep(1)
        return EventSourceResponse(numbers())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import flask

from ssehub._serving import REFUSED, Answer, answer_before_stream, refusal
from ssehub.errors import HubClosed, UnsupportedServer
from ssehub.event_stream import DEFAULT_STREAM_BUFFER
from ssehub.hub import DEFAULT_HEADERS, Hub, Selection
from ssehub.request import Request
from ssehub.wsgi import WSGIEventStream, open_threaded_stream, request_from_environ, unsupported

__all__ = ["EventSourceResponse", "request_from_flask", "sse_blueprint", "sse_response"]


def request_from_flask(request: flask.Request | None = None) -> Request:
    """The ssehub `Request` for a Flask request (the current one by default)."""
    if request is None:
        # The real request object rather than the context-local proxy, for hooks to keep.
        request = getattr(flask.request, "_get_current_object", lambda: flask.request)()
    assert request is not None
    return request_from_environ(request.environ, native=request)


def sse_response(
    hub: Hub, channel: Selection | None = None, *, disconnect_check: float = 1.0
) -> flask.Response:
    """A response that streams ``channel`` (default: the hub's choice) to the current client.

    ``channel`` is a channel name, or a list of selectors (exact names, ``*``, URI templates such
    as ``/rooms/{id}``) read by one stream, each event once (a bad selector gets 400); the hub's
    choice is its ``channel_name``, else the request's ``?channel=`` selectors, else the path. Call
    it inside a request. The client resumes with ``Last-Event-ID`` or ``?lastEventId=``; the hub's
    ``authorize`` hook applies (403 when it refuses, 503 after shutdown or with the backend down).
    Blocks the worker thread only while the subscription opens; the stream then holds that thread
    until the client leaves (checked every ``disconnect_check`` seconds while idle, where the
    server allows it).
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
    ``/events/news`` (the request path; ``?channel=`` selectors instead, when given; the hub's
    ``channel_name`` overrides both).
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


class EventSourceResponse(flask.Response):
    """A response that streams the items of ``content``, a sync generator (or iterable), to
    the current client as server-sent events.

    Each item is a `ssehub.Message`, a str of data, or a value JSON can encode (sent as compact
    JSON). The generator runs in a thread of its own (it may block), at most ``buffer`` bytes
    ahead of the client; a ``: ping`` comment goes out every ``ping`` seconds while it is idle
    (``ping=None``: no thread and no keep-alive; the server's thread iterates it). The response
    ends when the generator does. When the client leaves, the generator is closed after its
    current item (noticed at the next write, or within ``disconnect_check`` seconds under
    gunicorn and waitress with ``channel_request_lookahead``). With ``hub``, the stream carries
    the hub's headers and ends within ``disconnect_check`` seconds of ``hub.shutdown()`` (503
    once shut down); ``headers`` are added. WSGI bodies are sync, so async generators are refused
    (TypeError); see `ssehub.wsgi.WSGIEventStream`. Call it inside a request.
    """

    def __init__(
        self,
        content: Iterable[Any],
        headers: Mapping[str, str] | None = None,
        *,
        hub: Hub | None = None,
        ping: float | None = 15.0,
        buffer: int = DEFAULT_STREAM_BUFFER,
        disconnect_check: float = 1.0,
    ) -> None:
        if hub is not None and hub.closed:
            answer = refusal(hub, HubClosed("the hub is shut down"))
            super().__init__(answer.body, status=answer.status, headers=list(answer.headers))
            return
        environ = flask.request.environ if flask.has_request_context() else None
        body = WSGIEventStream(
            content,
            hub=hub,
            keepalive=ping,
            buffer=buffer,
            environ=environ,
            disconnect_check=disconnect_check,
        )
        base = hub.headers if hub is not None else list(DEFAULT_HEADERS)
        # direct_passthrough hands the body itself to the server, which calls its close().
        super().__init__(body, headers=[*base, *(headers or {}).items()], direct_passthrough=True)
