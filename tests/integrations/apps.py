"""Test apps built like the examples, one per framework, with the same three routes each.

- ``GET  <events>/<name>``  streams the channel for ``name`` (through the integration under test)
- ``POST /publish/<name>``  publishes the request body to that channel from a route handler
  (a sync handler where the framework is sync) and answers ``{"id": ...}``
- ``GET  /clients/<name>``  answers ``{"clients": N}``: the hub's client count of that channel

two for several channels on one stream:

- ``GET  /multi/<name>``  streams `multi_selectors` of ``name`` (two exact channels and a URI
  template), passed in code as the ``channel`` of the integration under test
- ``POST /publish-to?channel=C&channel=D``  publishes the body as one event to those channels
  and answers ``{"id": ...}``

and two for per-request streams (``EventSourceResponse`` of the integration under test):

- ``GET  /count?n=5``  streams ``data: 1`` ... ``data: 5`` from a generator and ends (see
  `counting` for the other parameters)
- ``GET  /closed?tag=T``  answers ``{"closed": bool}``: whether the generator tagged T has
  been closed (its ``finally`` ran) in this server's process
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl

import flask
import quart
from aiohttp import web
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from litestar import Litestar, get, post
from litestar import Request as LitestarRequest
from starlette.applications import Starlette
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ssehub import Hub, Message
from ssehub.integrations import aiohttp as aiohttp_sse
from ssehub.integrations import flask as flask_sse
from ssehub.integrations import litestar as litestar_sse
from ssehub.integrations import quart as quart_sse
from ssehub.integrations import starlette as starlette_sse
from ssehub.integrations.aiohttp import sse_handler
from ssehub.integrations.flask import sse_blueprint
from ssehub.integrations.litestar import mount, shutdown_hook
from ssehub.integrations.quart import sse_response
from ssehub.integrations.starlette import EventStreamResponse
from ssehub.wsgi import WSGIEventStream, open_threaded_stream, request_from_environ


def make_hub(**options: Any) -> Hub:
    """The hub every test app uses: CORS header, a retry line, short keep-alives."""
    return Hub(headers={"Access-Control-Allow-Origin": "*"}, retry=500, keepalive=2.0, **options)


def time_message(body: bytes) -> Message:
    """The published body as an event of type \"time\", as the examples send."""
    return Message(body.decode(), event="time")


def multi_selectors(name: str) -> list[str]:
    """What ``/multi/<name>`` streams: ``/multi/<name>/a``, ``/multi/<name>/b`` and every
    ``/multi/<name>/rooms/<one segment>``."""
    return [f"/multi/{name}/a", f"/multi/{name}/b", f"/multi/{name}/rooms/{{id}}"]


_closed: set[str] = set()
_closed_lock = threading.Lock()


def closed(tag: str) -> dict[str, bool]:
    """The ``/closed`` answer: whether the counting generator tagged ``tag`` was closed."""
    with _closed_lock:
        return {"closed": tag in _closed}


def _mark_closed(tag: str) -> None:
    with _closed_lock:
        _closed.add(tag)


def count_sync(n: int, delay: float, wait: float, tag: str) -> Iterator[int]:
    """Yield 1..n, ``delay`` s apart, after ``wait`` s; its ``finally`` records ``tag``."""
    try:
        time.sleep(wait)
        for i in range(1, n + 1):
            yield i
            time.sleep(delay)
    finally:
        _mark_closed(tag)


async def count_async(n: int, delay: float, wait: float, tag: str) -> AsyncIterator[int]:
    """`count_sync` as an async generator."""
    try:
        await asyncio.sleep(wait)
        for i in range(1, n + 1):
            yield i
            await asyncio.sleep(delay)
    finally:
        _mark_closed(tag)


def counting(query: Mapping[str, str], *, sync_only: bool = False) -> tuple[Any, float | None]:
    """The generator and keep-alive interval a ``/count`` request asks for.

    ``n`` (5) numbers, ``delay`` (0) s apart, after ``wait`` (0) s; ``kind`` is ``sync`` or
    ``async`` (the default: async, or sync where ``sync_only``); ``tag`` names it for
    ``/closed``; ``ping`` is the keep-alive interval (default 15 s).
    """
    n = int(query.get("n", "5"))
    delay = float(query.get("delay", "0"))
    wait = float(query.get("wait", "0"))
    tag = query.get("tag", "")
    ping = float(query.get("ping", "15"))
    kind = query.get("kind", "sync" if sync_only else "async")
    if kind == "sync":
        return count_sync(n, delay, wait, tag), ping
    return count_async(n, delay, wait, tag), ping


def starlette_app(hub: Hub) -> Any:
    """Starlette: ``hub.asgi`` mounted at /events (the channel is the request path)."""

    async def publish(request: StarletteRequest) -> JSONResponse:
        name = request.path_params["name"]
        event_id = await hub.publish(f"/events/{name}", time_message(await request.body()))
        return JSONResponse({"id": event_id})

    async def clients(request: StarletteRequest) -> JSONResponse:
        name = request.path_params["name"]
        return JSONResponse({"clients": hub.client_count(f"/events/{name}")})

    async def multi(request: StarletteRequest) -> EventStreamResponse:
        return EventStreamResponse(hub, channel=multi_selectors(request.path_params["name"]))

    async def publish_to(request: StarletteRequest) -> JSONResponse:
        channels = request.query_params.getlist("channel")
        return JSONResponse({"id": await hub.publish(channels, time_message(await request.body()))})

    async def count(request: StarletteRequest) -> starlette_sse.EventSourceResponse:
        source, ping = counting(request.query_params)
        return starlette_sse.EventSourceResponse(source, hub=hub, ping=ping)

    async def closed_(request: StarletteRequest) -> JSONResponse:
        return JSONResponse(closed(request.query_params["tag"]))

    return Starlette(
        routes=[
            Route("/count", count),
            Route("/closed", closed_),
            Route("/publish/{name:path}", publish, methods=["POST"]),
            Route("/clients/{name:path}", clients),
            Route("/multi/{name:path}", multi),
            Route("/publish-to", publish_to, methods=["POST"]),
            Mount("/events", hub.asgi),
        ]
    )


def fastapi_app(hub: Hub) -> Any:
    """FastAPI: a route that picks the channel in its own code and returns EventStreamResponse."""

    app = FastAPI()

    @app.get("/events/{name:path}")
    async def events(name: str) -> EventStreamResponse:
        return EventStreamResponse(hub, channel=f"/users/{name}")

    @app.post("/publish/{name:path}")
    async def publish(name: str, request: FastAPIRequest) -> dict[str, str]:
        return {"id": await hub.publish(f"/users/{name}", time_message(await request.body()))}

    @app.get("/clients/{name:path}")
    async def clients(name: str) -> dict[str, int]:
        return {"clients": hub.client_count(f"/users/{name}")}

    @app.get("/multi/{name:path}")
    async def multi(name: str) -> EventStreamResponse:
        return EventStreamResponse(hub, channel=multi_selectors(name))

    @app.post("/publish-to")
    async def publish_to(request: FastAPIRequest) -> dict[str, str]:
        channels = request.query_params.getlist("channel")
        return {"id": await hub.publish(channels, time_message(await request.body()))}

    @app.get("/count")
    async def count(request: FastAPIRequest) -> starlette_sse.EventSourceResponse:
        source, ping = counting(request.query_params)
        return starlette_sse.EventSourceResponse(source, hub=hub, ping=ping)

    @app.get("/closed")
    async def closed_(tag: str) -> dict[str, bool]:
        return closed(tag)

    return app


def litestar_app(hub: Hub) -> Any:
    """Litestar: ``mount(hub, "/events")``."""

    @post("/publish/{name:path}", status_code=200)
    async def publish(name: str, request: LitestarRequest[Any, Any, Any]) -> dict[str, str]:
        channel = "/events/" + name.lstrip("/")
        return {"id": await hub.publish(channel, time_message(await request.body()))}

    @get("/clients/{name:path}")
    async def clients(name: str) -> dict[str, int]:
        return {"clients": hub.client_count("/events/" + name.lstrip("/"))}

    @get("/multi/{name:path}")
    async def multi(name: str) -> litestar_sse.EventStreamResponse:
        return litestar_sse.EventStreamResponse(hub, channel=multi_selectors(name.lstrip("/")))

    @post("/publish-to", status_code=200)
    async def publish_to(request: LitestarRequest[Any, Any, Any]) -> dict[str, str]:
        channels = request.query_params.getall("channel")
        return {"id": await hub.publish(channels, time_message(await request.body()))}

    @get("/count")
    async def count(request: LitestarRequest[Any, Any, Any]) -> litestar_sse.EventSourceResponse:
        source, ping = counting(request.query_params)
        return litestar_sse.EventSourceResponse(source, hub=hub, ping=ping)

    @get("/closed")
    async def closed_(request: LitestarRequest[Any, Any, Any]) -> dict[str, bool]:
        return closed(request.query_params["tag"])

    return Litestar(
        [publish, clients, multi, publish_to, count, closed_, mount(hub, "/events")],
        on_shutdown=[shutdown_hook(hub)],
    )


def quart_app(hub: Hub) -> Any:
    """Quart: a route returning ``await sse_response(hub)``."""

    app = quart.Quart(__name__)

    @app.get("/events/<path:name>")
    async def events(name: str) -> Any:
        return await sse_response(hub)

    @app.post("/publish/<path:name>")
    async def publish(name: str) -> Any:
        body = await quart.request.get_data(as_text=False)
        assert isinstance(body, bytes)
        return {"id": await hub.publish(f"/events/{name}", time_message(body))}

    @app.get("/clients/<path:name>")
    async def clients(name: str) -> Any:
        return {"clients": hub.client_count(f"/events/{name}")}

    @app.get("/multi/<path:name>")
    async def multi(name: str) -> Any:
        return await sse_response(hub, channel=multi_selectors(name))

    @app.post("/publish-to")
    async def publish_to() -> Any:
        body = await quart.request.get_data(as_text=False)
        assert isinstance(body, bytes)
        channels = quart.request.args.getlist("channel")
        return {"id": await hub.publish(channels, time_message(body))}

    @app.get("/count")
    async def count() -> Any:
        source, ping = counting(quart.request.args)
        return quart_sse.EventSourceResponse(source, hub=hub, ping=ping)

    @app.get("/closed")
    async def closed_() -> Any:
        return closed(quart.request.args["tag"])

    return app


def aiohttp_app(hub: Hub) -> Any:
    """aiohttp: ``sse_handler(hub)`` for every path under /events."""

    async def publish(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        event_id = await hub.publish(f"/events/{name}", time_message(await request.read()))
        return web.json_response({"id": event_id})

    async def clients(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return web.json_response({"clients": hub.client_count(f"/events/{name}")})

    async def multi(request: web.Request) -> web.StreamResponse:
        selectors = multi_selectors(request.match_info["name"])
        return await aiohttp_sse.stream_response(
            hub, request, channel=selectors, disconnect_check=0.2
        )

    async def publish_to(request: web.Request) -> web.Response:
        channels = request.query.getall("channel", [])
        event_id = await hub.publish(channels, time_message(await request.read()))
        return web.json_response({"id": event_id})

    async def count(request: web.Request) -> web.StreamResponse:
        source, ping = counting(request.query)
        return aiohttp_sse.EventSourceResponse(source, hub=hub, ping=ping, disconnect_check=0.2)

    async def closed_(request: web.Request) -> web.Response:
        return web.json_response(closed(request.query["tag"]))

    app = web.Application()
    app.router.add_get("/count", count)
    app.router.add_get("/closed", closed_)
    app.router.add_post("/publish/{name:.*}", publish)
    app.router.add_get("/clients/{name:.*}", clients)
    app.router.add_get("/multi/{name:.*}", multi)
    app.router.add_post("/publish-to", publish_to)
    app.router.add_route("*", "/events/{channel:.*}", sse_handler(hub, disconnect_check=0.2))
    return app


async def count_clients(hub: Hub, channel: str) -> int:
    """The hub's client count, read on its loop (run it with `hub.run_threadsafe`)."""
    return hub.client_count(channel)


def flask_app(hub: Hub) -> Any:
    """Flask: ``sse_blueprint`` at /events; a sync view publishes with publish_threadsafe."""

    app = flask.Flask(__name__)
    app.register_blueprint(sse_blueprint(hub, disconnect_check=0.2), url_prefix="/events")

    @app.post("/publish/<path:name>")
    def publish(name: str) -> Any:
        return {
            "id": hub.publish_threadsafe(f"/events/{name}", time_message(flask.request.get_data()))
        }

    @app.get("/clients/<path:name>")
    def clients(name: str) -> Any:
        return {"clients": hub.run_threadsafe(count_clients(hub, f"/events/{name}"))}

    @app.get("/multi/<path:name>")
    def multi(name: str) -> Any:
        return flask_sse.sse_response(hub, channel=multi_selectors(name), disconnect_check=0.2)

    @app.post("/publish-to")
    def publish_to() -> Any:
        channels = flask.request.args.getlist("channel")
        return {"id": hub.publish_threadsafe(channels, time_message(flask.request.get_data()))}

    @app.get("/count")
    def count() -> Any:
        source, ping = counting(flask.request.args, sync_only=True)
        return flask_sse.EventSourceResponse(source, hub=hub, ping=ping, disconnect_check=0.2)

    @app.get("/closed")
    def closed_() -> Any:
        return closed(flask.request.args["tag"])

    return app


def wsgi_app(hub: Hub) -> Any:
    """Bare WSGI: ``hub.wsgi`` for every path under /events, dispatched by a plain WSGI app."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/events/"):
            return hub.wsgi(environ, start_response)
        params = parse_qsl(environ.get("QUERY_STRING", ""))
        query = dict(params)
        if path.startswith("/multi/"):
            stream = open_threaded_stream(
                hub,
                request_from_environ(environ),
                environ,
                channel=multi_selectors(path.removeprefix("/multi/")),
                disconnect_check=0.2,
            )
            start_response("200 OK", list(hub.headers))
            return stream
        if path == "/count":
            source, ping = counting(query, sync_only=True)
            body = WSGIEventStream(
                source, hub=hub, keepalive=ping, environ=environ, disconnect_check=0.2
            )
            start_response("200 OK", list(hub.headers))
            return body
        if path == "/closed":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json_body(closed(query["tag"]))]
        name = path.partition("/")[2].partition("/")[2]
        result: dict[str, object]
        if path.startswith("/publish") and environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            if path == "/publish-to":
                channels = [value for key, value in params if key == "channel"]
                result = {"id": hub.publish_threadsafe(channels, time_message(body))}
            else:
                result = {"id": hub.publish_threadsafe(f"/events/{name}", time_message(body))}
        elif path.startswith("/clients/"):
            result = {"clients": hub.run_threadsafe(count_clients(hub, f"/events/{name}"))}
        else:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json_body(result)]

    return app


def json_body(data: Any) -> bytes:
    """JSON bytes (for the Django views)."""
    return json.dumps(data).encode()
