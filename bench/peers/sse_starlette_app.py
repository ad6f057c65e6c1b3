"""sse-starlette on uvicorn, written the way its documentation shows: a queue per client.

Each subscriber gets an ``asyncio.Queue`` registered under its channel and an
``EventSourceResponse`` over an async generator that awaits the queue; a publish puts the data
into every queue of the channel. The queue is registered before the response starts so that no
event published after the subscriber's headers arrive is missed.

Same HTTP contract as ssehub's hub for the benchmark: GET /events/{channel} subscribes, POST
/events/{channel} with JSON ``{"data": ...}`` (or an array of them) publishes and answers JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
from collections.abc import AsyncIterator

import uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

channels: dict[str, set[asyncio.Queue[str]]] = {}


async def subscribe(request: Request) -> EventSourceResponse:
    """GET: stream the channel's events to this client."""
    channel = request.url.path
    queue: asyncio.Queue[str] = asyncio.Queue()
    channels.setdefault(channel, set()).add(queue)

    async def events() -> AsyncIterator[dict[str, str]]:
        try:
            while True:
                data = await queue.get()
                yield {"data": data}
        finally:
            subs = channels.get(channel)
            if subs is not None:
                subs.discard(queue)
                if not subs:
                    del channels[channel]

    return EventSourceResponse(events())


async def publish(request: Request) -> JSONResponse:
    """POST: put the event(s) into every subscriber's queue."""
    channel = request.url.path
    try:
        body = await request.json()
        items = body if isinstance(body, list) else [body]
        datas = [str(item["data"]) for item in items]
    except (ValueError, KeyError, TypeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    subs = channels.get(channel, set())
    for data in datas:
        for queue in subs:
            queue.put_nowait(data)
    return JSONResponse({"channel": channel, "clients": len(subs)})


app = Starlette(
    routes=[
        Route("/events/{channel:path}", subscribe, methods=["GET"]),
        Route("/events/{channel:path}", publish, methods=["POST"]),
    ]
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
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
