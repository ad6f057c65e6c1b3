"""Per-request streams: a generator's items as one client's event stream.

The core (`EventStream`) is tested without a socket for what it decides (encoding, coalescing,
back-pressure, closing the source); the ASGI response is tested under a real uvicorn with a
real client for what a user sees (events, a clean end, the generator closed when the client
leaves, keep-alive comments, the hub's shutdown).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from ssehub import CloseReason, EventParser, EventStream, Hub, Message
from ssehub.integrations.starlette import EventSourceResponse
from tests._support.asgi_server import run_uvicorn
from tests._support.sse import open_sse
from tests._support.waiting import eventually

pytestmark = pytest.mark.timeout(30)


async def read_all(stream: EventStream) -> bytes:
    """Open ``stream`` and take its chunks as a writer would, until it ends."""
    sub = stream.open()
    out = bytearray()
    while (chunk := await sub.next_chunk()) is not None:
        out += chunk
    return bytes(out)


# -- the core, without a socket ---------------------------------------------------------------


async def test_items_of_every_kind_are_encoded_with_the_wire_encoder() -> None:
    async def items() -> AsyncIterator[object]:
        yield "plain"
        yield {"price": 42}
        yield [1, None]
        yield 7
        yield Message("done", event="end", id="9")

    body = await read_all(EventStream(items(), keepalive=None))
    assert body == (
        b"data: plain\n\n"
        b'data: {"price":42}\n\n'
        b"data: [1,null]\n\n"
        b"data: 7\n\n"
        b"id: 9\nevent: end\ndata: done\n\n"
    )


async def test_a_sync_generator_runs_off_the_loop_and_is_streamed_in_order() -> None:
    threads: set[str] = set()

    def items() -> Iterator[str]:
        for i in range(5):
            threads.add(threading.current_thread().name)
            time.sleep(0.01)  # blocking is fine: it is not the loop's thread
            yield f"line {i}"

    body = await read_all(EventStream(items(), keepalive=None))
    assert [m.data for m in EventParser().feed(body)] == [f"line {i}" for i in range(5)]
    assert threading.current_thread().name not in threads


async def test_a_plain_list_is_a_source_too() -> None:
    body = await read_all(EventStream(["a", "b"], keepalive=None))
    assert body == b"data: a\n\ndata: b\n\n"


async def test_what_a_generator_yields_before_it_awaits_goes_out_in_one_chunk() -> None:
    async def burst() -> AsyncIterator[int]:
        for i in range(1000):
            yield i

    sub = EventStream(burst(), keepalive=None).open()
    chunks = []
    while (chunk := await sub.next_chunk()) is not None:
        chunks.append(chunk)
    events = EventParser().feed(b"".join(chunks))
    assert [m.data for m in events] == [str(i) for i in range(1000)]
    assert len(chunks) <= 2  # ~10 KB: one chunk (a second only if the end raced the first)


async def test_a_source_waits_for_its_client_instead_of_running_ahead() -> None:
    produced = 0

    async def big() -> AsyncIterator[str]:
        nonlocal produced
        for _ in range(1000):
            produced += 1
            yield "x" * 1000

    stream = EventStream(big(), keepalive=None, buffer=10_000)
    sub = stream.open()
    await asyncio.sleep(0.05)  # nobody takes: the source must be waiting, not done
    assert 5 <= produced <= 12
    assert not sub.closed and sub.pending_bytes <= 10_000
    await sub.next_chunk()
    await asyncio.sleep(0.05)
    assert 15 <= produced <= 25
    sub.close()


async def test_a_sync_source_waits_for_its_client_too() -> None:
    produced = 0

    def big() -> Iterator[str]:
        nonlocal produced
        for _ in range(1000):
            produced += 1
            yield "x" * 1000

    sub = EventStream(big(), keepalive=None, buffer=10_000).open()
    await asyncio.sleep(0.1)
    assert 5 <= produced <= 12
    sub.close()


async def test_an_item_larger_than_the_buffer_is_still_sent_whole() -> None:
    body = await read_all(EventStream(["y" * 50_000, "z"], keepalive=None, buffer=1000))
    assert [len(m.data) for m in EventParser().feed(body)] == [50_000, 1]


async def test_closing_the_stream_closes_an_async_generator_waiting_at_an_await() -> None:
    closed = asyncio.Event()

    async def forever() -> AsyncIterator[str]:
        try:
            while True:
                yield "tick"
                await asyncio.sleep(10)
        finally:
            closed.set()

    sub = EventStream(forever(), keepalive=None).open()
    assert await sub.next_chunk() == b"data: tick\n\n"
    sub.close(CloseReason.DISCONNECTED)
    await asyncio.wait_for(closed.wait(), 2)


async def test_closing_the_stream_closes_an_async_generator_paused_by_back_pressure() -> None:
    closed = asyncio.Event()

    async def fast() -> AsyncIterator[str]:
        try:
            while True:
                yield "x" * 1000
        finally:
            closed.set()

    sub = EventStream(fast(), keepalive=None, buffer=5000).open()
    await asyncio.sleep(0.02)
    assert not closed.is_set()
    sub.close(CloseReason.DISCONNECTED)
    await asyncio.wait_for(closed.wait(), 2)


async def test_closing_the_stream_closes_a_sync_generator_after_its_current_item() -> None:
    closed = threading.Event()

    def forever() -> Iterator[str]:
        try:
            while True:
                yield "tick"
                time.sleep(0.05)
        finally:
            closed.set()

    sub = EventStream(forever(), keepalive=None).open()
    assert (await sub.next_chunk() or b"").startswith(b"data: tick\n\n")
    sub.close(CloseReason.DISCONNECTED)
    await eventually(closed.is_set, 2)


async def test_a_source_that_raises_is_logged_and_ends_the_stream_after_its_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> AsyncIterator[str]:
        yield "before"
        raise KeyError("boom")

    with caplog.at_level(logging.ERROR, logger="ssehub.stream"):
        body = await read_all(EventStream(broken(), keepalive=None))
    assert body == b"data: before\n\n"
    assert "the source of an event stream raised" in caplog.text
    assert "KeyError: 'boom'" in caplog.text


async def test_an_item_json_cannot_encode_ends_the_stream_with_a_logged_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="ssehub.stream"):
        body = await read_all(EventStream(["ok", {1, 2}, "never"], keepalive=None))
    assert body == b"data: ok\n\n"
    assert "JSON can encode" in caplog.text


async def test_an_idle_stream_gets_keepalive_comments() -> None:
    async def slow() -> AsyncIterator[str]:
        await asyncio.sleep(10)
        yield "late"

    sub = EventStream(slow(), keepalive=0.05).open()
    assert await asyncio.wait_for(sub.next_chunk(), 2) == b": ping\n\n"
    sub.close()


async def test_hub_shutdown_ends_an_attached_stream_and_closes_its_source() -> None:
    hub = Hub()
    closed = asyncio.Event()

    async def forever() -> AsyncIterator[str]:
        try:
            while True:
                yield "tick"
                await asyncio.sleep(10)
        finally:
            closed.set()

    stream = EventStream(forever(), hub=hub, keepalive=None)
    sub = stream.open()
    assert await sub.next_chunk() == b"data: tick\n\n"
    assert hub.client_count() == 0  # not a client of any channel
    await asyncio.wait_for(hub.shutdown(), 3)
    assert sub.close_reason == CloseReason.SHUTDOWN
    assert await sub.next_chunk() is None
    await asyncio.wait_for(closed.wait(), 2)


async def test_chunks_yields_the_bytes_and_closing_it_closes_the_source() -> None:
    closed = asyncio.Event()

    async def forever() -> AsyncIterator[str]:
        try:
            while True:
                yield "tick"
                await asyncio.sleep(10)
        finally:
            closed.set()

    chunks = EventStream(forever(), keepalive=None).chunks()
    assert await anext(chunks) == b"data: tick\n\n"
    await chunks.aclose()  # as a framework does when the client leaves
    await asyncio.wait_for(closed.wait(), 2)


async def test_a_stream_is_sent_once() -> None:
    stream = EventStream(["a"], keepalive=None)
    await read_all(stream)
    with pytest.raises(RuntimeError, match="sent once"):
        stream.open()


# -- EventSourceResponse under a real uvicorn ---------------------------------------------------

left = asyncio.Event()
hub = Hub()


async def numbers(request: Request) -> EventSourceResponse:
    n = int(request.query_params.get("n", "3"))

    async def gen() -> AsyncIterator[Any]:
        for i in range(1, n + 1):
            yield {"i": i} if request.query_params.get("json") else str(i)

    return EventSourceResponse(gen(), headers={"x-extra": "yes"})


async def endless(request: Request) -> EventSourceResponse:
    async def gen() -> AsyncIterator[str]:
        try:
            i = 0
            while True:
                i += 1
                yield str(i)
                await asyncio.sleep(0.02 if i < 3 else 0.3)  # then idle: keep-alive comments
        finally:
            left.set()

    return EventSourceResponse(gen(), hub=hub, ping=0.05)


def sync_numbers(request: Request) -> EventSourceResponse:
    def gen() -> Iterator[Message]:
        for i in range(3):
            time.sleep(0.01)
            yield Message(str(i), id=str(i))

    return EventSourceResponse(gen())


app = Starlette(
    routes=[
        Route("/numbers", numbers),
        Route("/endless", endless),
        Route("/sync", sync_numbers),
    ]
)


async def test_response_streams_the_generator_and_ends_cleanly() -> None:
    async with run_uvicorn(app) as url, open_sse(f"{url}/numbers?n=3") as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-extra"] == "yes"
        events = await stream.read_until_end()
    assert [m.data for m in events] == ["1", "2", "3"]


async def test_response_sends_json_items_as_compact_json() -> None:
    async with run_uvicorn(app) as url, open_sse(f"{url}/numbers?n=2&json=1") as stream:
        events = await stream.read_until_end()
    assert [m.data for m in events] == ['{"i":1}', '{"i":2}']


async def test_response_streams_a_sync_generator() -> None:
    async with run_uvicorn(app) as url, open_sse(f"{url}/sync") as stream:
        events = await stream.read_until_end()
    assert [(m.id, m.data) for m in events] == [("0", "0"), ("1", "1"), ("2", "2")]


async def test_client_leaving_closes_the_generator_and_pings_keep_the_stream_alive() -> None:
    left.clear()
    async with run_uvicorn(app) as url:
        async with open_sse(f"{url}/endless") as stream:
            assert [m.data for m in await stream.events(3)] == ["1", "2", "3"]
            await stream.wait_raw(b": ping\n\n")
            assert not left.is_set()
        await asyncio.wait_for(left.wait(), 5)


async def test_hub_shutdown_ends_open_responses_cleanly_and_refuses_new_ones() -> None:
    global hub
    hub = Hub()
    left.clear()
    async with run_uvicorn(app) as url:
        async with open_sse(f"{url}/endless") as stream:
            await stream.events(2)
            await hub.shutdown()
            await stream.read_until_end()  # strict: a clean end of the chunked body
        await asyncio.wait_for(left.wait(), 5)
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{url}/endless")
        assert refused.status_code == 503
        assert refused.json() == {"error": "the hub is shutting down"}


async def test_the_generator_stream_example_counts_to_n_and_ends() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "generator_stream.py"
    spec = importlib.util.spec_from_file_location("generator_stream_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    async with (
        run_uvicorn(example.app, lifespan="on") as url,
        httpx.AsyncClient() as client,
    ):
        response = await client.get(f"{url}/count", params={"n": 5})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == "".join(f"data: {i}\n\n" for i in range(1, 6))
