# Run: cd examples && hypercorn --bind 127.0.0.1:8000 quart_app:app    (then open http://127.0.0.1:8000/)
"""The seed's example in Quart: publish the time every 5 s to /events/my-channel."""

import asyncio
import time
from pathlib import Path

from quart import Quart

from ssehub import Hub, Message
from ssehub.integrations.quart import sse_response

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()

app = Quart(__name__)


@app.get("/")
async def page() -> str:
    return PAGE


@app.get("/events/<path:name>")
async def events(name: str):
    return await sse_response(hub)  # the channel is the path: /events/my-channel


async def tick() -> None:
    while True:
        await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
        await asyncio.sleep(5)


clock: set[asyncio.Task[None]] = set()


@app.before_serving
async def start_clock() -> None:
    clock.add(asyncio.create_task(tick()))


@app.after_serving
async def stop() -> None:
    for task in clock:
        task.cancel()  # Quart would wait 5 s for a background task that never ends
    await hub.shutdown()
