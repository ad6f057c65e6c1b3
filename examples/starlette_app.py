# Run: uvicorn starlette_app:app --app-dir examples    (then open http://127.0.0.1:8000/)
"""The seed's example in Starlette: publish the time every 5 s to /events/my-channel."""

import asyncio
import contextlib
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

from ssehub import Hub, Message

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()


async def page(request):
    return HTMLResponse(PAGE)


@contextlib.asynccontextmanager
async def lifespan(app):
    async def tick() -> None:
        while True:
            await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
            await asyncio.sleep(5)

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    await hub.shutdown()


app = Starlette(
    routes=[Route("/", page), Mount("/events", hub.asgi)],
    lifespan=lifespan,
)
