"""Redis faults: crashes, restarts and dropped connections lose nothing Redis accepted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from ssehub import GAP_EVENT, BackendUnavailable, Hub, Message
from ssehub.redis import RedisBackend
from tests._support.asgi_server import run_uvicorn
from tests._support.redis_server import RedisServer
from tests._support.sse import SSEStream, open_sse

pytestmark = [pytest.mark.redis, pytest.mark.timeout(40)]


def redis_hub(url: str, **options: object) -> Hub:
    """A hub on ``url`` that retries Redis quickly (tests wait on reconnects)."""
    return Hub(backend=RedisBackend(url, max_backoff=0.2, timeout=2.0), **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def started(*hubs: Hub) -> AsyncIterator[None]:
    for hub in hubs:
        await hub.start()
    try:
        yield
    finally:
        for hub in hubs:
            await hub.shutdown(timeout=1)


async def eventually(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def healthy(hub: Hub) -> bool:
    return bool((await hub.backend.health())["ok"])


async def collect(stream: SSEStream, wanted: set[str], timeout: float = 10.0) -> list[Message]:
    """Events until every data in ``wanted`` has arrived, then whatever else comes in 0.3 s."""
    got: list[Message] = []
    async with asyncio.timeout(timeout):
        while not wanted <= {e.data for e in got}:
            got.append(await stream.next_event(timeout))
    with contextlib.suppress(TimeoutError):
        while True:
            got.append(await stream.next_event(0.3))
    return got


async def test_redis_crash_and_restart_with_clients_connected_loses_nothing_accepted(
    redis_server: RedisServer,
) -> None:
    a = redis_hub(redis_server.url)
    b = redis_hub(redis_server.url)
    channel = "/events/live"
    accepted: list[str] = []
    refused = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal refused
        n = 0
        while not stop.is_set():
            hub = (a, b)[n % 2]
            try:
                await hub.publish(channel, f"p{n}")
                accepted.append(f"p{n}")
            except BackendUnavailable:
                refused += 1
            n += 1
            await asyncio.sleep(0.003)

    async with (
        started(a, b),
        run_uvicorn(a.asgi) as url_a,
        run_uvicorn(b.asgi) as url_b,
        open_sse(url_a + channel) as on_a,
        open_sse(url_b + channel) as on_b,
    ):
        await eventually(lambda: _true(a.client_count(channel) == b.client_count(channel) == 1))
        task = asyncio.ensure_future(publisher())
        await eventually(lambda: _true(len(accepted) >= 40))
        redis_server.kill()
        await eventually(lambda: _true(refused >= 10))
        assert not await healthy(a) and not await healthy(b)
        accepted_before_restart = len(accepted)
        redis_server.start()
        await eventually(lambda: _true(len(accepted) >= accepted_before_restart + 40))
        stop.set()
        await task
        await eventually(lambda: healthy(a))
        await eventually(lambda: healthy(b))
        # Streams opened before the crash are the same streams now, and got each event once.
        # Redis came back empty (its history lost): each stream was told so once, by a gap
        # notice between the events before the crash and those after.
        for stream in (on_a, on_b):
            events = await collect(stream, set(accepted))
            assert not stream.ended
            assert [e.event for e in events].count(GAP_EVENT) == 1
            assert [e.data for e in events if e.event != GAP_EVENT] == accepted
    assert refused >= 10
    assert accepted_before_restart < len(accepted)
    for hub in (a, b):
        backend = hub.backend
        assert isinstance(backend, RedisBackend) and backend.reconnects >= 1


async def _true(value: bool) -> bool:
    return value


async def test_events_published_while_a_feed_is_cut_are_refilled_once(
    redis_server: RedisServer,
) -> None:
    a = redis_hub(redis_server.url)
    b = redis_hub(redis_server.url)
    async with started(a, b):
        sub_a = await a.subscribe("/cut")
        sub_b = await b.subscribe("/cut")
        await b.publish("/cut", "before")
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            # Cut every feed connection; Redis itself stays up and keeps accepting events.
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        during = [f"d{n}" for n in range(20)]
        for n, data in enumerate(during):
            await (a, b)[n % 2].publish("/cut", data)
        # A channel first watched while the feed is down still gets what follows.
        sub_new = await a.subscribe("/cut-new")
        await b.publish("/cut-new", "fresh")
        await eventually(lambda: _both_refilled(a, b))
        await b.publish("/cut", "after")
        for sub in (sub_a, sub_b):
            received = await _read_until(sub, b"data: after\n")
            lines = [line for line in received.split(b"\n") if line.startswith(b"data: ")]
            assert lines == [b"data: " + d.encode() for d in ["before", *during, "after"]]
        assert b"data: fresh\n" in await _read_until(sub_new, b"data: fresh\n")


async def _both_refilled(a: Hub, b: Hub) -> bool:
    backends = [a.backend, b.backend]
    return all(
        isinstance(x, RedisBackend) and x.reconnects >= 1 and x._feed_up and x.refilled > 0
        for x in backends
    )


async def _read_until(sub: object, needle: bytes, timeout: float = 5.0) -> bytes:
    from ssehub import Subscription

    assert isinstance(sub, Subscription)
    data = bytearray()
    async with asyncio.timeout(timeout):
        while needle not in data:
            chunk = await sub.next_chunk()
            assert chunk is not None, "the subscription ended"
            data += chunk
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2):
            while True:
                chunk = await sub.next_chunk()
                if chunk is None:
                    break
                data += chunk
    return bytes(data)


async def test_during_an_outage_publish_fails_and_streams_stay_open(
    redis_server: RedisServer,
) -> None:
    a = redis_hub(redis_server.url)
    async with started(a), run_uvicorn(a.asgi) as url:
        first = await a.publish("/events/o", "kept")
        async with open_sse(url + "/events/o") as open_stream:
            await eventually(lambda: _true(a.client_count("/events/o") == 1))
            redis_server.kill()
            with pytest.raises(BackendUnavailable, match="could not store"):
                await a.publish("/events/o", "lost")
            report = await a.backend.health()
            assert report["ok"] is False and "error" in report
            # A client resuming now cannot be replayed: it is told so, and stays connected.
            async with open_sse(url + "/events/o", headers={"Last-Event-ID": first}) as resumed:
                gap = await resumed.next_event()
                assert gap.event == GAP_EVENT
                redis_server.start()
                await eventually(lambda: healthy(a))
                await a.publish("/events/o", "back")
                assert (await resumed.next_event()).data == "back"
            assert (await open_stream.next_event()).data == "back"
            assert not open_stream.ended


async def test_a_hub_started_before_redis_comes_up_serves_once_it_does() -> None:
    server = RedisServer()  # not started yet: its port refuses connections
    a = redis_hub(server.url)
    try:
        async with started(a):
            assert not await healthy(a)
            sub = await a.subscribe("/late")
            with pytest.raises(BackendUnavailable):
                await a.publish("/late", "too early")
            server.start()
            await eventually(lambda: healthy(a))
            b = redis_hub(server.url)
            async with started(b):
                await b.publish("/late", "on time")
                assert b"data: on time\n" in await _read_until(sub, b"data: on time\n")
    finally:
        server.close()


async def test_a_stream_made_anew_below_the_delivered_ids_is_followed(
    redis_server: RedisServer,
) -> None:
    a = redis_hub(redis_server.url)
    b = redis_hub(redis_server.url)
    async with started(a, b):
        sub = await a.subscribe("/anew")
        await b.publish("/anew", "first")
        await _read_until(sub, b"data: first\n")
        backend = a.backend
        assert isinstance(backend, RedisBackend)
        # As if the events so far came from a Redis whose clock ran far ahead of the one that
        # replaces it (a fail-over to an empty server): the ids delivered exceed any new one.
        watch = backend._watched["/anew"]
        watch.last = (2**62, 0)
        watch.last_raw = f"{2**62}-0"
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            await admin.delete(backend.stream_key("/anew"), backend.index_key("/anew"))
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        await b.publish("/anew", "during")
        await eventually(lambda: _true(backend.reconnects >= 1 and backend._feed_up))
        await b.publish("/anew", "after")
        data = await _read_until(sub, b"data: after\n")
        # The stream lost what the hub delivered: one gap notice, then the new stream's events.
        notice, *events = [block for block in data.split(b"\n\n") if block]
        assert notice.startswith(b"event: ssehub.gap\n")
        assert [block.rsplit(b"\n", 1)[-1] for block in events] == [b"data: during", b"data: after"]
