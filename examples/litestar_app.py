# Run: uvicorn litestar_app:app --app-dir examples    (then open http://127.0.0.1:8000/)
"""The seed's example in Litestar: publish the time every 5 s to /events/my-channel."""

import asyncio
import time
from pathlib import Path

from litestar import Litestar, MediaType, get

from ssehub import Hub, Message
from ssehub.integrations.litestar import mount

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()


@get("/", media_type=MediaType.HTML)
async def page() -> str:
    return PAGE


async def tick() -> None:
    while True:
        await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
        await asyncio.sleep(5)


tasks: set[asyncio.Task[None]] = set()


async def start_clock() -> None:
    tasks.add(asyncio.create_task(tick()))


async def stop() -> None:
    for task in tasks:
        task.cancel()
    await hub.shutdown()


app = Litestar([page, mount(hub, "/events")], on_startup=[start_clock], on_shutdown=[stop])
