"""The test SSE helper tells a clean end of a stream from a reset or a truncation.

Every "ends cleanly" test in the suite relies on this: a scripted server on a raw socket ends a
response each way a real server can, and the helper must name each one right.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests._support.sse import CLEAN, RESET, TRUNCATED, UncleanEnd, at_event_boundary, open_sse

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
CLOSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
EVENT = b"data: one\n\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


@asynccontextmanager
async def scripted_server(body: bytes, *, reset: bool = False) -> AsyncIterator[str]:
    """A server on 127.0.0.1 that answers any request with ``body``, then closes (FIN), or
    resets the connection (RST) when ``reset``."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(body)
        await writer.drain()
        if reset:
            # Let the client read what was sent, then close with SO_LINGER 0: an RST, no FIN.
            await asyncio.sleep(0.2)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("body", "reset", "end"),
    [
        (CHUNKED_HEAD + chunk(EVENT) + b"0\r\n\r\n", False, CLEAN),
        (CLOSE_HEAD + EVENT + EVENT, False, CLEAN),
        (CHUNKED_HEAD + chunk(EVENT), False, TRUNCATED),  # no terminator, then FIN
        (CHUNKED_HEAD + chunk(EVENT) + b"40\r\ndata: cut", False, TRUNCATED),  # partial chunk
        (CHUNKED_HEAD + chunk(b"data: cut\n") + b"0\r\n\r\n", False, TRUNCATED),  # partial event
        (CLOSE_HEAD + EVENT + b"data: cut", False, TRUNCATED),  # FIN inside an event
        (CLOSE_HEAD + EVENT, True, RESET),
        (CHUNKED_HEAD + chunk(EVENT), True, RESET),
    ],
    ids=[
        "chunked-terminator",
        "close-delimited-fin",
        "chunked-no-terminator",
        "chunked-partial-chunk",
        "chunked-partial-event",
        "close-delimited-partial-event",
        "close-delimited-reset",
        "chunked-reset",
    ],
)
async def test_stream_end_is_classified(body: bytes, reset: bool, end: str) -> None:
    async with scripted_server(body, reset=reset) as url, open_sse(url) as stream:
        events = await stream.read_until_end(strict=False)
        assert stream.end == end, stream.end_detail
        if end == CLEAN:
            assert [e.data for e in events] == ["one"] * body.count(EVENT)
            stream.assert_clean_end()
        else:
            with pytest.raises(UncleanEnd, match=end):
                stream.assert_clean_end()


async def test_read_until_end_is_strict_by_default() -> None:
    async with scripted_server(CHUNKED_HEAD + chunk(EVENT)) as url, open_sse(url) as stream:
        with pytest.raises(UncleanEnd, match="truncated"):
            await stream.read_until_end()


async def test_an_open_stream_has_not_ended_cleanly() -> None:
    body = CHUNKED_HEAD + chunk(EVENT) + b"0\r\n\r\n"
    async with scripted_server(body) as url, open_sse(url) as stream:
        with pytest.raises(UncleanEnd, match="still open"):
            stream.assert_clean_end()


@pytest.mark.parametrize(
    ("raw", "boundary"),
    [
        (b"", True),
        (b"data: a\n\n", True),
        (b"data: a\r\n\r\n", True),
        (b"data: a\r\r", True),
        (b": ping\n\n", True),
        (b"data: a\n", False),
        (b"data: a", False),
        (b"data: a\n\ndata: b\r\n", False),
    ],
)
def test_event_boundary(raw: bytes, boundary: bool) -> None:
    assert at_event_boundary(raw) is boundary
