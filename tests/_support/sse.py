"""A test client that reads an SSE stream over a real socket (httpx) with ssehub's parser."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ssehub import EventParser, Message


class SSEStream:
    """An open ``text/event-stream`` response; read parsed events and raw bytes from it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = EventParser()
        self.raw = bytearray()
        self._events: list[Message] = []
        self._chunks = response.aiter_raw()
        self.ended = False

    async def _read_more(self) -> None:
        try:
            chunk = await self._chunks.__anext__()
        except (StopAsyncIteration, httpx.RemoteProtocolError, httpx.ReadError):
            self.ended = True
            return
        self.raw += chunk
        self._events.extend(self.parser.feed(chunk))

    async def next_event(self, timeout: float = 5.0) -> Message:
        """The next event; raises TimeoutError if none comes in ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not self._events:
                if self.ended:
                    raise EOFError("the stream ended")
                await self._read_more()
        return self._events.pop(0)

    async def events(self, count: int, timeout: float = 10.0) -> list[Message]:
        """The next ``count`` events."""
        async with asyncio.timeout(timeout):
            return [await self.next_event(timeout) for _ in range(count)]

    async def read_until_end(self, timeout: float = 5.0) -> list[Message]:
        """Every event until the server ends the stream."""
        async with asyncio.timeout(timeout):
            while not self.ended:
                await self._read_more()
        events, self._events = self._events, []
        return events

    async def wait_raw(self, needle: bytes, timeout: float = 5.0) -> None:
        """Read until ``needle`` appears in the raw bytes received."""
        async with asyncio.timeout(timeout):
            while needle not in self.raw:
                if self.ended:
                    raise EOFError(f"the stream ended before {needle!r}")
                await self._read_more()


@contextlib.asynccontextmanager
async def open_sse(
    url: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> AsyncIterator[SSEStream]:
    """GET ``url`` and yield an `SSEStream` over the response."""
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client,
        client.stream("GET", url, headers=headers, **kwargs) as response,
    ):
        yield SSEStream(response)
