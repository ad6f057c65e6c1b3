"""The Redis backend: hubs sharing a real redis-server deliver, order, replay and bound history."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from ssehub import GAP_EVENT, Hub, Message, Subscription
from ssehub.backends.base import encode_event
from ssehub.redis import RedisBackend
from tests._support.asgi_server import run_uvicorn
from tests._support.redis_server import RedisServer
from tests._support.sse import open_sse
from tests._support.waiting import eventually

if TYPE_CHECKING:
    # tests/redis has no __init__.py: as a package it would shadow redis-py itself.
    from tests.redis.conftest import HubPair


pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


class Reader:
    """Reads a `Subscription` the way an adapter does (its public `next_chunk`)."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.data = bytearray()

    async def until(self, *needles: bytes, timeout: float = 5.0) -> bytes:
        """Read until every needle has arrived; return everything read so far."""
        async with asyncio.timeout(timeout):
            while not all(n in self.data for n in needles):
                chunk = await self.sub.next_chunk()
                if chunk is None:
                    raise EOFError("the subscription ended")
                self.data += chunk
        return bytes(self.data)

    async def settle(self, seconds: float = 0.2) -> bytes:
        """Read whatever else arrives within ``seconds``; return everything read."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    chunk = await self.sub.next_chunk()
                    if chunk is None:
                        break
                    self.data += chunk
        return bytes(self.data)


async def test_subscriber_on_hub_a_gets_events_published_on_hub_b(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    async with run_uvicorn(a.asgi) as url_a, open_sse(url_a + "/events/news") as stream:
        await eventually(lambda: a.client_count("/events/news") == 1)
        ids = [await b.publish("/events/news", f"story {n}") for n in range(3)]
        events = await stream.events(3)
    assert [e.data for e in events] == ["story 0", "story 1", "story 2"]
    assert [e.id for e in events] == ids
    # Redis assigns the ids, so they sort in publish order on every hub.
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_a_hub_delivers_its_own_publishes_once(hubs: HubPair) -> None:
    a = await hubs.hub()
    reader = Reader(await a.subscribe("/own"))
    await a.publish("/own", "one")
    await a.publish("/own", "two")
    await reader.until(b"data: two\n")
    data = await reader.settle()  # a second delivery would arrive by now
    assert data.count(b"data: one\n") == 1
    assert data.count(b"data: two\n") == 1


async def test_event_bytes_match_the_in_memory_encoding(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    messages = [
        Message("plain"),
        Message("two\nlines", event="update", retry=2500),
        Message("mine", id="order-17", event="order"),
        Message("noted", comment="first\nsecond"),
        Message("both", id="x-1", comment="c"),
    ]
    async with run_uvicorn(a.asgi) as url_a, open_sse(url_a + "/events/bytes") as stream:
        await eventually(lambda: a.client_count("/events/bytes") == 1)
        ids = [await b.publish("/events/bytes", m) for m in messages]
        expected = b"".join(encode_event(m, i) for m, i in zip(messages, ids, strict=True))
        await stream.wait_raw(expected)
    assert ids[2] == "order-17" and ids[4] == "x-1"


async def test_subscriber_moves_from_hub_a_to_hub_b_with_last_event_id(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    async with run_uvicorn(a.asgi) as url_a, run_uvicorn(b.asgi) as url_b:
        async with open_sse(url_a + "/events/move") as first:
            await eventually(lambda: a.client_count("/events/move") == 1)
            for n in range(3):
                await a.publish("/events/move", f"m{n}")
            seen = await first.events(3)
        last = seen[-1].id
        assert last is not None
        # Published while the client is between hubs, from both hubs.
        await a.publish("/events/move", "m3")
        await b.publish("/events/move", "m4")
        async with open_sse(url_b + "/events/move", headers={"Last-Event-ID": last}) as second:
            missed = await second.events(2)
            await b.publish("/events/move", "m5")
            await a.publish("/events/move", "m6")
            live = await second.events(2)
            with pytest.raises(TimeoutError):
                await second.next_event(timeout=0.3)
    assert [e.data for e in missed + live] == ["m3", "m4", "m5", "m6"]
    assert GAP_EVENT not in [e.event for e in missed]


async def test_a_user_supplied_id_resumes_on_another_hub(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    await a.publish("/ids", Message("first", id="invoice-1"))
    await a.publish("/ids", Message("second", id="invoice-2"))
    await a.publish("/ids", "third")
    replay = await b.backend.replay("/ids", "invoice-1")
    assert replay.found
    assert [data.split(b"data: ")[1] for _, data in replay.events] == [b"second\n\n", b"third\n\n"]
    assert replay.events[0][0] == "invoice-2"
    unknown = await b.backend.replay("/ids", "invoice-99")
    assert not unknown.found and len(unknown.events) == 3


async def test_every_hub_sees_one_order_under_concurrent_publishers(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    readers = [Reader(await a.subscribe("/race")), Reader(await b.subscribe("/race"))]
    count = 200

    async def publish_all(hub: Hub, name: str) -> list[str]:
        return [await hub.publish("/race", f"{name}{n}") for n in range(count)]

    ids_a, ids_b = await asyncio.gather(publish_all(a, "a"), publish_all(b, "b"))
    marker = b"data: a%d\n" % (count - 1)
    marker_b = b"data: b%d\n" % (count - 1)
    for reader in readers:
        await reader.until(marker, marker_b)
    streams = [await reader.settle() for reader in readers]
    assert streams[0] == streams[1]  # the same events, in the same order, on both hubs
    ids = [line[4:].decode() for line in streams[0].split(b"\n") if line.startswith(b"id: ")]
    assert sorted(ids) == sorted(ids_a + ids_b) and len(set(ids)) == 2 * count
    datas = [line[6:].decode() for line in streams[0].split(b"\n") if line.startswith(b"data: ")]
    assert [d for d in datas if d[0] == "a"] == [f"a{n}" for n in range(count)]
    assert [d for d in datas if d[0] == "b"] == [f"b{n}" for n in range(count)]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


async def test_history_keeps_exactly_the_newest_events(hubs: HubPair) -> None:
    a = await hubs.hub(history=5)
    b = await hubs.hub(history=5)
    ids = [await a.publish("/bounded", f"e{n}") for n in range(12)]
    from_start = await b.backend.replay("/bounded", ids[0])
    assert not from_start.found
    assert [i for i, _ in from_start.events] == ids[-5:]
    # The newest event trimmed away: the client has missed nothing still retained.
    from_trimmed = await b.backend.replay("/bounded", ids[6])
    assert from_trimmed.found
    assert [i for i, _ in from_trimmed.events] == ids[-5:]
    from_recent = await b.backend.replay("/bounded", ids[9])
    assert from_recent.found and [i for i, _ in from_recent.events] == ids[10:]
    data = await Reader(await b.subscribe("/bounded", last_event_id=ids[0])).settle()
    assert data.startswith(b"event: " + GAP_EVENT.encode())
    assert data.count(b"data: e") == 5


async def test_trimmed_user_ids_are_forgotten(hubs: HubPair) -> None:
    a = await hubs.hub(history=2)
    await a.publish("/uids", Message("x", id="old"))
    for n in range(3):
        await a.publish("/uids", f"n{n}")
    assert not (await a.backend.replay("/uids", "old")).found
    backend = a.backend
    assert isinstance(backend, RedisBackend)
    client = backend._require_client()
    assert await client.hget(backend.index_key("/uids"), "old") is None


async def test_history_ttl_expires_events_and_channels(hubs: HubPair) -> None:
    a = await hubs.hub(history_ttl=0.3)
    first = await a.publish("/ttl", "soon gone")
    assert await a.backend.channels() == ["/ttl"]
    await asyncio.sleep(0.5)
    replay = await a.backend.replay("/ttl", first)
    assert not replay.found and replay.events == ()
    assert await a.backend.channels() == []


async def test_broadcast_reaches_channels_with_history_on_other_hubs(hubs: HubPair) -> None:
    a = await hubs.hub()
    b = await hubs.hub()
    await a.publish("/x", "x0")
    await a.publish("/y", "y0")
    readers = [Reader(await a.subscribe("/x")), Reader(await a.subscribe("/y"))]
    ids = await b.broadcast("to all")
    assert sorted(ids) == ["/x", "/y"]
    for reader in readers:
        await reader.until(b"data: to all\n")


async def test_no_history_still_fans_out_and_keeps_no_channels(hubs: HubPair) -> None:
    a = await hubs.hub(history=0)
    b = await hubs.hub(history=0)
    reader = Reader(await a.subscribe("/nohist"))
    event_id = await b.publish("/nohist", "live only")
    await reader.until(b"live only")
    assert await b.backend.channels() == []
    assert not (await b.backend.replay("/nohist", event_id)).found


async def test_hubs_with_different_prefixes_do_not_share(shared_redis: RedisServer) -> None:
    a = Hub(backend=RedisBackend(shared_redis.url, prefix="iso-one"))
    b = Hub(backend=RedisBackend(shared_redis.url, prefix="iso-two"))
    try:
        reader = Reader(await a.subscribe("/same"))
        await b.publish("/same", "elsewhere")
        await a.publish("/same", "here")
        assert b"elsewhere" not in await reader.until(b"here")
    finally:
        await a.shutdown(1)
        await b.shutdown(1)


def test_prefix_is_validated() -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisBackend("redis://127.0.0.1:1/0", prefix="a{b}")


def test_importing_ssehub_does_not_import_redis() -> None:
    code = "import sys, ssehub; assert 'redis' not in sys.modules, 'redis imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


async def test_health_reports_redis_state(hubs: HubPair) -> None:
    a = await hubs.hub()
    report = await a.backend.health()
    assert report["ok"] is True and report["backend"] == "redis"
    assert report["feed"] == "connected"


def test_password_is_hidden_from_reports() -> None:
    backend = RedisBackend("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in backend._safe_url and "***" in backend._safe_url
    assert json.dumps({"url": backend._safe_url})


@pytest.mark.parametrize("watched", [True, False], ids=["watched", "new-channel"])
async def test_a_lagging_feed_does_not_repeat_what_the_resuming_client_has(
    hubs: HubPair, shared_redis: RedisServer, watched: bool
) -> None:
    a = await hubs.hub()
    # Hub B runs on a loop thread of its own; publishing from here blocks this loop, so hub A's
    # feed falls behind Redis by exactly those events, as under load.
    b = Hub(backend=RedisBackend(shared_redis.url, prefix=hubs.prefix))
    try:
        watcher = Reader(await a.subscribe("/lag")) if watched else None
        ids = [b.publish_threadsafe("/lag", f"e{n}") for n in range(3)]
        # The client got e0..e2 from hub B and resumes on hub A before A's feed has caught up.
        resumed = Reader(await a.subscribe("/lag", last_event_id=ids[-1]))
        b.publish_threadsafe("/lag", "e3")
        data = await resumed.until(b"data: e3\n")
        assert (await resumed.settle()).count(b"data: ") == 1, data
        if watcher is not None:
            assert (await watcher.until(b"data: e3\n")).count(b"data: ") == 4
    finally:
        b.run_threadsafe(b.shutdown(1))
