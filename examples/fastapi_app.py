# Run: uvicorn fastapi_app:app --app-dir examples    (then open http://127.0.0.1:8000/)
"""The seed's example in FastAPI: publish the time every 5 s to /events/my-channel."""

import asyncio
import contextlib
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from ssehub import Hub, Message

hub = Hub(headers={"Access-Control-Allow-Origin": "*"})

# The EventSource page every example serves.
PAGE = (Path(__file__).parent / "page.html").read_text()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    async def tick() -> None:
        while True:
            await hub.publish("/events/my-channel", Message(time.ctime(), event="time"))
            await asyncio.sleep(5)

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    await hub.shutdown()  # streams end cleanly; browsers reconnect elsewhere


app = FastAPI(lifespan=lifespan)
app.mount("/events", hub.asgi)  # GET /events/my-channel streams the channel "/events/my-channel"


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE
