"""Redis Sentinel: ``redis+sentinel://`` follows the primary through a failover, losing nothing."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssehub import BackendUnavailable, Hub, Subscription
from ssehub.redis import RedisBackend
from tests._support.redis_cluster import RedisSentinels
from tests._support.waiting import eventually
from tests.server.hub_process import HubProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def sentinels() -> Iterator[RedisSentinels]:
    """A primary, its replica and a Sentinel watching them, for the whole module."""
    with RedisSentinels() as servers:
        yield servers


def datas(raw: bytes) -> list[str]:
    return [
        line[6:].decode()
        for block in raw.split(b"\n\n")
        for line in block.split(b"\n")
        if line.startswith(b"data: ")
    ]


async def read_until(sub: Subscription, raw: bytearray, wanted: set[str]) -> None:
    async with asyncio.timeout(30):
        while not wanted <= set(datas(bytes(raw))):
            chunk = await sub.next_chunk()
            if chunk is None:
                raise EOFError("the subscription ended")
            raw += chunk
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            while (chunk := await sub.next_chunk()) is not None:
                raw += chunk


async def test_a_sentinel_url_follows_the_primary_through_a_failover(
    sentinels: RedisSentinels,
) -> None:
    hubs = [Hub(backend=RedisBackend(sentinels.url, prefix="s")) for _ in range(2)]
    for hub in hubs:
        await hub.start()
    try:
        health = await hubs[0].backend.health()
        assert health["ok"] is True and health["mode"] == "sentinel", health
        subs = [await hub.subscribe("/watched") for hub in hubs]
        raws = [bytearray() for _ in subs]
        accepted: list[str] = []
        refused = 0
        stop = asyncio.Event()

        async def publisher() -> None:
            nonlocal refused
            for n in itertools.count():
                if stop.is_set():
                    return
                try:
                    await hubs[n % 2].publish("/watched", str(n))
                    accepted.append(str(n))
                except BackendUnavailable:
                    refused += 1
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(publisher())
        try:
            await eventually(lambda: len(accepted) >= 20, timeout=20)
            old = sentinels.primary_port()
            await asyncio.to_thread(sentinels.failover)
            assert sentinels.primary_port() != old
            count = len(accepted)
            await eventually(lambda: len(accepted) >= count + 20, timeout=30)
        finally:
            stop.set()
            await task
        for sub, raw in zip(subs, raws, strict=True):
            await read_until(sub, raw, set(accepted))
            got = [int(d) for d in datas(bytes(raw))]
            assert got == sorted(set(got)), f"out of order or twice: {got}"
            assert set(accepted) <= {str(n) for n in got}
        await eventually(lambda: True)
        health = await hubs[1].backend.health()
        assert health["ok"] is True, health
    finally:
        for hub in hubs:
            await hub.shutdown(timeout=1)


async def test_ssehub_serve_takes_a_sentinel_url_and_reports_the_mode(
    sentinels: RedisSentinels, tmp_path: Path
) -> None:
    hub = HubProcess(["--redis", sentinels.url], tmp_path)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(hub.url + "/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["backend"]["mode"] == "sentinel"
            reply = await client.post(hub.url + "/events/cli", content="through the primary")
            assert reply.status_code == 200, reply.text
    finally:
        assert hub.stop() == 0, hub.log()
