# Run: pip install 'ssehub[fastapi,server]' && uvicorn generator_stream:app --app-dir examples
#      then: curl -N 'http://127.0.0.1:8000/count?n=5'
"""A per-request stream in FastAPI: GET /count?n=5 streams ``data: 1`` ... ``data: 5`` and ends."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ssehub import Hub
from ssehub.integrations.starlette import EventSourceResponse

hub = Hub()  # only to end open streams at shutdown; no channel is used here


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await hub.shutdown()  # open streams end cleanly, their generators are closed


app = FastAPI(lifespan=lifespan)


@app.get("/count")
async def count(n: int = 5, delay: float = 0.0) -> EventSourceResponse:
    """Count from 1 to ``n``, one event per number, ``delay`` seconds apart."""

    async def numbers() -> AsyncIterator[int]:
        for i in range(1, n + 1):
            yield i  # a str, a dict (sent as JSON) or a Message(...) works too
            if delay:
                await asyncio.sleep(delay)

    return EventSourceResponse(numbers(), hub=hub)
