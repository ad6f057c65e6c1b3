"""ssehub mounted in a Starlette app on uvicorn: the library as users embed it.

``hub.asgi`` is mounted at /events (GET /events/{channel} subscribes to the channel named by
the full path) and routed at /events itself (GET /events?channel=A&channel=B: one stream of
several channels; with the mount alone, Starlette would redirect that to /events/). A POST
route on the same paths publishes JSON ``{"data": ...}`` (or an array of them) with
``hub.publish`` and answers JSON, as the standalone hub's API does.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from ssehub import Hub, Message

hub = Hub()


async def publish(request: Request) -> JSONResponse:
    """POST: publish the event(s) to the channel named by the path."""
    channel = request.url.path
    try:
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        messages = [Message(str(item["data"])) for item in items]
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    ids = [await hub.publish(channel, m) for m in messages]
    return JSONResponse({"ids": ids, "channel": channel, "clients": hub.client_count(channel)})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the hub with the app; shut it down gracefully with it."""
    await hub.start()
    yield
    await hub.shutdown()


app = Starlette(
    routes=[
        Route("/events/{channel:path}", publish, methods=["POST"]),
        Route("/events", hub.asgi),
        Mount("/events", hub.asgi),
    ],
    lifespan=lifespan,
)


def main() -> None:
    """Parse the command line and serve with uvicorn (uvloop and httptools when installed)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, backlog=4096
    )


if __name__ == "__main__":
    main()
