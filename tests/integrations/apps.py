"""Test apps built like the examples, one per framework, with the same three routes each.

- ``GET  <events>/<name>``  streams the channel for ``name`` (through the integration under test)
- ``POST /publish/<name>``  publishes the request body to that channel from a route handler
  (a sync handler where the framework is sync) and answers ``{"id": ...}``
- ``GET  /clients/<name>``  answers ``{"clients": N}``: the hub's client count of that channel
"""

from __future__ import annotations

import json
from typing import Any

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
from ssehub.integrations.aiohttp import sse_handler
from ssehub.integrations.flask import sse_blueprint
from ssehub.integrations.litestar import mount, shutdown_hook
from ssehub.integrations.quart import sse_response
from ssehub.integrations.starlette import EventStreamResponse


def make_hub(**options: Any) -> Hub:
    """The hub every test app uses: CORS header, a retry line, short keep-alives."""
    return Hub(headers={"Access-Control-Allow-Origin": "*"}, retry=500, keepalive=2.0, **options)


def time_message(body: bytes) -> Message:
    """The published body as an event of type \"time\", as the examples send."""
    return Message(body.decode(), event="time")


def starlette_app(hub: Hub) -> Any:
    """Starlette: ``hub.asgi`` mounted at /events (the channel is the request path)."""

    async def publish(request: StarletteRequest) -> JSONResponse:
        name = request.path_params["name"]
        event_id = await hub.publish(f"/events/{name}", time_message(await request.body()))
        return JSONResponse({"id": event_id})

    async def clients(request: StarletteRequest) -> JSONResponse:
        name = request.path_params["name"]
        return JSONResponse({"clients": hub.client_count(f"/events/{name}")})

    return Starlette(
        routes=[
            Route("/publish/{name:path}", publish, methods=["POST"]),
            Route("/clients/{name:path}", clients),
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

    return Litestar([publish, clients, mount(hub, "/events")], on_shutdown=[shutdown_hook(hub)])


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

    app = web.Application()
    app.router.add_post("/publish/{name:.*}", publish)
    app.router.add_get("/clients/{name:.*}", clients)
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

    return app


def wsgi_app(hub: Hub) -> Any:
    """Bare WSGI: ``hub.wsgi`` for every path under /events, dispatched by a plain WSGI app."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path: str = environ.get("PATH_INFO", "")
        if path.startswith("/events/"):
            return hub.wsgi(environ, start_response)
        name = path.partition("/")[2].partition("/")[2]
        result: dict[str, object]
        if path.startswith("/publish/") and environ["REQUEST_METHOD"] == "POST":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
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
