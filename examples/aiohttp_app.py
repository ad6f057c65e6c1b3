# Run: python examples/aiohttp_app.py    (then open http://127.0.0.1:8000/)
"""The seed's example in aiohttp: publish the time every 5 s to /events/my-channel."""

import asyncio
import os
import time
from pathlib import Path

from aiohttp import web

from ssehub import Hub, Message
from ssehub.integrations.aiohttp import sse_handler

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()


async def page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def clock(app: web.Application):
    async def tick() -> None:
        while True:
            await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
            await asyncio.sleep(5)

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    await hub.shutdown()


app = web.Application()
app.router.add_get("/", page)
app.router.add_route("*", "/events/{channel:.*}", sse_handler(hub))
app.cleanup_ctx.append(clock)

if __name__ == "__main__":
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
