"""A test client that reads an SSE stream over a real socket (httpx) with ssehub's parser.

It also tells how the stream ended, strictly: `CLEAN` only for a body that ended as HTTP says it
should (the chunked terminator ``0\\r\\n\\r\\n``, or for a close-delimited body a FIN) *and* at
an event boundary; `TRUNCATED` for a chunked body broken off without its terminator, or a body
that stops inside an event; `RESET` for a connection reset (ECONNRESET) or another read error.
`SSEStream.read_until_end` raises `UncleanEnd` unless the end was clean, so a test that says a
stream "ends cleanly" fails when the server breaks it off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from ssehub import EventParser, Message

CLEAN = "clean"
"""The body ended as its framing says (chunked terminator, or FIN) right after a whole event."""
TRUNCATED = "truncated"
"""The body was broken off: no chunked terminator, a partial chunk, or a partial event."""
RESET = "reset"
"""The connection was reset (ECONNRESET) or failed while reading."""


class UncleanEnd(AssertionError):
    """A stream expected to end cleanly was reset or truncated."""


def at_event_boundary(raw: bytes) -> bool:
    """Whether ``raw`` (a whole event-stream body) stops between events, not inside one."""
    if not raw:
        return True
    lines = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return lines == b"\n" or lines.endswith(b"\n\n")


class SSEStream:
    """An open ``text/event-stream`` response; read parsed events and raw bytes from it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parser = EventParser()
        self.raw = bytearray()
        self._events: list[Message] = []
        self._chunks = response.aiter_raw()
        self.end: str | None = None
        """None while the stream is open, then `CLEAN`, `TRUNCATED` or `RESET`."""
        self.end_detail = ""
        """What ended the stream, in words (the error, or why a FIN was not a clean end)."""

    @property
    def ended(self) -> bool:
        """True once the stream has ended, however it ended."""
        return self.end is not None

    async def _read_more(self) -> None:
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            if at_event_boundary(bytes(self.raw)):
                self.end, self.end_detail = CLEAN, "the body ended after a whole event"
            else:
                self.end = TRUNCATED
                self.end_detail = f"the body ended inside an event: {bytes(self.raw[-80:])!r}"
            return
        except httpx.RemoteProtocolError as exc:  # h11: a chunked body without its terminator
            self.end, self.end_detail = TRUNCATED, f"{type(exc).__name__}: {exc}"
            return
        except httpx.ReadError as exc:  # ECONNRESET and other socket errors
            self.end, self.end_detail = RESET, f"{type(exc).__name__}: {exc!r}"
            return
        self.raw += chunk
        self._events.extend(self.parser.feed(chunk))

    def assert_clean_end(self) -> None:
        """Raise `UncleanEnd` unless the stream has ended, and ended cleanly."""
        if self.end != CLEAN:
            state = "is still open" if self.end is None else f"ended {self.end}"
            raise UncleanEnd(f"the stream {state}: {self.end_detail}")

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

    async def read_until_end(self, timeout: float = 5.0, *, strict: bool = True) -> list[Message]:
        """Every event until the server ends the stream.

        With ``strict`` (the default) raises `UncleanEnd` unless the stream ended cleanly; with
        ``strict=False`` any end will do (then look at `end`).
        """
        async with asyncio.timeout(timeout):
            while not self.ended:
                await self._read_more()
        if strict:
            self.assert_clean_end()
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
