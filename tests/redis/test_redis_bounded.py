"""Bounded keys and fast broadcast on one Redis: idle channels expire, a broadcast is pipelined."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from ssehub.redis import RedisBackend
from tests._support.redis_server import RedisServer
from tests.redis.conftest import HubPair


async def test_an_idle_channels_keys_expire_key_ttl_after_its_last_publish(
    hubs: HubPair, shared_redis: RedisServer
) -> None:
    hub = await hubs.hub(backend_options={"key_ttl": 30})
    await hub.publish("idle", "one")
    await hub.publish("idle", {"data": "two"})
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        for key in (backend.stream_key("idle"), backend.index_key("idle")):
            ttl = await client.pttl(key)
            assert 25_000 < ttl <= 30_000, (key, ttl)
        assert await client.pttl(backend.counter_key()) == -1  # ids never go back
    finally:
        await client.aclose()


async def test_key_ttl_zero_keeps_a_channels_keys_forever(
    hubs: HubPair, shared_redis: RedisServer
) -> None:
    hub = await hubs.hub(backend_options={"key_ttl": 0})
    await hub.publish("kept", "one")
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        assert await client.pttl(backend.stream_key("kept")) == -1
    finally:
        await client.aclose()


async def test_history_ttl_shorter_than_key_ttl_expires_the_keys_sooner(
    hubs: HubPair, shared_redis: RedisServer
) -> None:
    hub = await hubs.hub(history_ttl=5)
    await hub.publish("short", "one")
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        assert 0 < await client.pttl(backend.stream_key("short")) <= 5_000
    finally:
        await client.aclose()


async def test_a_channel_that_expired_tells_a_resuming_client_about_the_gap(
    hubs: HubPair, shared_redis: RedisServer
) -> None:
    hub = await hubs.hub(backend_options={"key_ttl": 0.2})
    first = await hub.publish("brief", "one")
    deadline = time.monotonic() + 10
    client = aioredis.Redis.from_url(shared_redis.url)
    try:
        backend = hub.backend
        assert isinstance(backend, RedisBackend)
        while await client.exists(backend.stream_key("brief")):
            assert time.monotonic() < deadline, "the channel's stream never expired"
            await hub.backend.replay("brief", first)  # a read does not keep it alive
            time.sleep(0.05)
        assert await client.exists(backend.index_key("brief")) == 0
    finally:
        await client.aclose()
    second = await hub.publish("brief", "two")
    replay = await hub.backend.replay("brief", first)
    assert not replay.found  # the client is told about the gap
    assert [event_id for event_id, _ in replay.events] == [second]


async def test_broadcast_over_many_channels_is_pipelined_and_reaches_each(
    hubs: HubPair,
) -> None:
    hub = await hubs.hub()
    names = [f"b{i}" for i in range(2000)]
    for name in names:
        await hub.publish(name, "seed")
    started = time.perf_counter()
    ids = await hub.broadcast("all")
    took = time.perf_counter() - started
    assert set(names) <= set(ids)
    assert len(set(ids.values())) == len(ids)  # one event per channel
    # One round trip per channel took about 1 s for 2000 on a loaded machine; pipelined, it
    # is a few batches. The bound is loose on purpose (a shared 2-core machine).
    assert took < 5, took
    for name in names[::500]:
        replay = await hub.backend.replay(name, "0-0")
        assert [data for _, data in replay.events][-1].endswith(b"data: all\n\n")
