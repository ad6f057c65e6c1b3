"""Redis Cluster: hubs on different nodes of a real local 3-primary cluster share every channel.

One cluster (3 primaries, a replica each) serves the module; the test that kills a primary
starts a cluster of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from ssehub import BackendUnavailable, BroadcastIncomplete, Hub, Message, Subscription
from ssehub.redis import RedisBackend
from ssehub.server.app import HubServer
from tests._support.asgi_server import run_uvicorn
from tests._support.redis_cluster import RedisClusterServers
from tests._support.waiting import eventually
from tests.server.hub_process import HubProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

_prefixes = itertools.count()

MakeHub = Callable[..., Awaitable[Hub]]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    """3 primaries with a replica each, for the whole module."""
    with RedisClusterServers(primaries=3, replicas=1) as servers:
        yield servers


@pytest.fixture
async def make_hub(cluster: RedisClusterServers) -> AsyncIterator[MakeHub]:
    """Makes started hubs on the module's cluster (under a prefix of the test's own)."""
    prefix = f"c{next(_prefixes)}"
    hubs: list[Hub] = []

    async def make(url: str | None = None, **options: object) -> Hub:
        hub = Hub(backend=RedisBackend(url or cluster.nodes[0].url, prefix=prefix), **options)  # type: ignore[arg-type]
        await hub.start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        await hub.shutdown(timeout=1)


def spread(prefix: str, per_range: int = 4, base: str = "/room/") -> list[str]:
    """Channel names whose keys fall in each third of the slots (each primary's range)."""
    names: list[str] = []
    counts = [0, 0, 0]
    for i in range(10_000):
        name = f"{base}{i}"
        third = key_slot(f"{prefix}:{{{name}}}".encode()) * 3 // 16384
        if counts[third] < per_range:
            counts[third] += 1
            names.append(name)
        if min(counts) == per_range:
            return names
    raise AssertionError("no spread of names")


class Reader:
    """Reads a subscription's events (data and id) as an adapter would."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.raw = bytearray()

    def events(self) -> list[tuple[str, str]]:
        found = []
        for block in bytes(self.raw).split(b"\n\n"):
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
            if b"data" in fields:
                found.append((fields.get(b"id", b"").decode(), fields[b"data"].decode()))
        return found

    async def until(self, count: int, timeout: float = 20.0) -> list[tuple[str, str]]:
        async with asyncio.timeout(timeout):
            while len(self.events()) < count:
                chunk = await self.sub.next_chunk()
                if chunk is None:
                    raise EOFError("the subscription ended")
                self.raw += chunk
        return self.events()

    async def settle(self, seconds: float = 0.3) -> list[tuple[str, str]]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    chunk = await self.sub.next_chunk()
                    if chunk is None:
                        break
                    self.raw += chunk
        return self.events()


async def test_a_cluster_node_url_is_detected_and_every_slot_is_healthy(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    hub = await make_hub(cluster.nodes[2].url)
    health = await hub.backend.health()
    assert health["ok"] is True and health["mode"] == "cluster", health
    forced = await make_hub("redis+cluster://" + cluster.nodes[1].url.split("://", 1)[1])
    assert (await forced.backend.health())["mode"] == "cluster"


async def test_two_hubs_on_different_nodes_deliver_every_channel_once_in_order(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[1].url)
    backend = a.backend
    assert isinstance(backend, RedisBackend)
    names = spread(backend.prefix)
    assert len(names) >= 12
    readers = [(name, Reader(await hub.subscribe(name))) for name in names for hub in (a, b)]
    sent: dict[str, list[str]] = {name: [] for name in names}
    for n in range(8):
        for name in names:
            event_id = await (a, b)[n % 2].publish(name, f"{name} {n}")
            sent[name].append(event_id)
    for name, reader in readers:
        got = await reader.until(8)
        assert [data for _, data in got] == [f"{name} {n}" for n in range(8)]
        assert [event_id for event_id, _ in got] == sent[name]
    for _, reader in readers:
        assert len(await reader.settle(0.2)) == 8  # nothing twice


async def test_a_resume_through_another_node_is_exact(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[2].url)
    assert isinstance(a.backend, RedisBackend)
    for name in spread(a.backend.prefix):
        ids = [await a.publish(name, f"{name} {n}") for n in range(6)]
        reader = Reader(await b.subscribe(name, last_event_id=ids[2]))
        got = await reader.until(3)
        assert got == [(ids[n], f"{name} {n}") for n in (3, 4, 5)]  # no false gap
        later = await a.publish(name, f"{name} 6")
        assert (await reader.until(4))[3] == (later, f"{name} 6")
        assert len(await reader.settle(0.1)) == 4


async def test_one_event_to_channels_of_several_slots_reaches_each_channel_once(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[1].url)
    assert isinstance(a.backend, RedisBackend)
    names = spread(a.backend.prefix, per_range=1)
    readers = [(name, Reader(await b.subscribe(name))) for name in names]
    await a.publish(names, "to three slots")  # one script per slot
    for name, reader in readers:
        got = await reader.until(1)
        assert [data for _, data in got] == ["to three slots"], name
        assert len(await reader.settle(0.1)) == 1


async def test_a_template_subscriber_gets_every_slots_events_in_each_channels_order(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[2].url)
    assert isinstance(a.backend, RedisBackend)
    names = spread(a.backend.prefix)
    reader = Reader(await b.subscribe(["/room/{id}"]))
    for n in range(3):
        for name in names:
            await a.publish(name, f"{name} {n}")
    got = [data for _, data in await reader.until(3 * len(names))]
    assert sorted(got) == sorted(f"{name} {n}" for name in names for n in range(3))
    for name in names:
        assert [d for d in got if d.startswith(name + " ")] == [f"{name} {n}" for n in range(3)]
    assert len(await reader.settle(0.2)) == 3 * len(names)


async def test_a_template_stream_resumes_across_slots_by_the_ids_time(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[1].url)
    assert isinstance(a.backend, RedisBackend)
    names = spread(a.backend.prefix, per_range=2)
    sent: list[tuple[str, str]] = []
    for n in range(3):
        for name in names:
            sent.append((await a.publish(name, f"{name} {n}"), f"{name} {n}"))
            await asyncio.sleep(0.003)  # a millisecond of its own (see the README: resuming)
    middle = len(sent) // 2
    reader = Reader(await b.subscribe(["/room/{id}"], last_event_id=sent[middle][0]))
    got = await reader.until(len(sent) - middle - 1)
    assert sorted(data for _, data in got) == sorted(data for _, data in sent[middle + 1 :])
    assert len(await reader.settle(0.2)) == len(sent) - middle - 1


async def test_broadcast_reaches_every_channel_on_every_primary(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[1].url)
    assert isinstance(a.backend, RedisBackend)
    names = spread(a.backend.prefix)
    for name in names:
        await b.publish(name, "history")  # a's broadcast finds the channels by their history
    readers = [(name, Reader(await b.subscribe(name))) for name in names]
    ids = await a.broadcast("to all")
    assert set(names) <= set(ids)
    for name, reader in readers:
        # The history event may reach the new subscriber live (it was on its way).
        async with asyncio.timeout(20):
            while (ids[name], "to all") not in reader.events():
                await reader.until(len(reader.events()) + 1)
        assert [e for e in await reader.settle(0.1) if e[1] == "to all"] == [(ids[name], "to all")]


async def test_broadcast_over_ten_thousand_channels_is_pipelined_across_nodes(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    names = [f"/many/{i}" for i in range(10_000)]
    for start in range(0, len(names), 1000):
        results = await a.backend.publish_each(names[start : start + 1000], Message("seed"))
        assert not [r for r in results if isinstance(r, BackendUnavailable)]
    started = time.perf_counter()
    ids = await a.broadcast("all")
    took = time.perf_counter() - started
    print(f"cluster broadcast to {len(ids)} channels: {took:.3f} s")
    assert set(names) <= set(ids)
    assert took < 10, took  # loose: a shared 2-core machine; the README has the figures


async def test_a_broadcast_one_primary_refuses_names_exactly_the_channels_that_failed(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    backend = a.backend
    assert isinstance(backend, RedisBackend)
    names = spread(backend.prefix)
    for name in names:
        await a.publish(name, "history")
    finder = RedisCluster.from_url(cluster.url)
    try:
        await finder.initialize()
        node = finder.get_node_from_key(backend.stream_key(names[0]))
        assert node is not None
        served = {
            name for name in names if finder.get_node_from_key(backend.stream_key(name)) == node
        }
    finally:
        await finder.aclose()
    full = aioredis.Redis(host=node.host, port=int(node.port))
    try:
        # That primary refuses every write (out of memory); the others take theirs.
        await full.config_set("maxmemory", 1)
        with pytest.raises(BroadcastIncomplete) as refused:
            await a.broadcast("to all")
        assert set(refused.value.failed) == served
        assert set(refused.value.ids) == set(names) - served
        assert "maxmemory" in str(refused.value) and "MOVED" not in str(refused.value)
    finally:
        await full.config_set("maxmemory", 0)
        await full.aclose()
    for name in names:
        replay = await backend.replay(name, "0-0")
        datas = [data for _, data in replay.events]
        assert datas[-1].endswith(b"data: history\n\n" if name in served else b"data: to all\n\n")


async def test_a_primary_failover_mid_stream_loses_no_accepted_event(
    cluster: RedisClusterServers, make_hub: MakeHub
) -> None:
    a = await make_hub(cluster.nodes[0].url)
    b = await make_hub(cluster.nodes[1].url)
    assert isinstance(a.backend, RedisBackend)
    names = spread(a.backend.prefix)
    readers = [(name, Reader(await hub.subscribe(name))) for name in names for hub in (a, b)]
    accepted: dict[str, list[str]] = {name: [] for name in names}
    refused = 0
    stop = asyncio.Event()

    async def publisher() -> None:
        nonlocal refused
        for n in itertools.count():
            if stop.is_set():
                return
            for name in names:
                try:
                    await (a, b)[n % 2].publish(name, f"{n}")
                    accepted[name].append(f"{n}")
                except BackendUnavailable as exc:
                    assert "MOVED" not in str(exc) and "ASK " not in str(exc)
                    refused += 1
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(publisher())
    try:
        await eventually(lambda: min(len(v) for v in accepted.values()) >= 5, timeout=20)
        replica = cluster.replica_nodes()[0]
        await asyncio.to_thread(cluster.failover, replica)
        before = min(len(v) for v in accepted.values())
        await eventually(lambda: min(len(v) for v in accepted.values()) >= before + 10, 30)
    finally:
        stop.set()
        await task
    for name, reader in readers:
        wanted = accepted[name]
        async with asyncio.timeout(30):
            while not set(wanted) <= {data for _, data in reader.events()}:
                await reader.until(len(reader.events()) + 1)
        got = [int(data) for _, data in await reader.settle(0.1)]
        assert got == sorted(set(got)), f"{name}: out of order or twice: {got}"
        assert set(wanted) <= {str(n) for n in got}


async def test_an_unreachable_primary_makes_healthz_503_and_publishes_503_without_moved() -> None:
    with RedisClusterServers(primaries=3, replicas=0) as small:
        hub = Hub(backend=RedisBackend(small.nodes[0].url, prefix="down", timeout=1.0))
        app = HubServer(hub)
        await app.start()
        async with (
            contextlib.AsyncExitStack() as stack,
            run_uvicorn(app) as url,
            httpx.AsyncClient(timeout=15) as client,
        ):
            stack.push_async_callback(hub.shutdown, 1)
            deadline = time.monotonic() + 20
            while (health := await client.get(url + "/healthz")).status_code != 200:
                assert time.monotonic() < deadline, health.text
                await asyncio.sleep(0.1)
            assert isinstance(hub.backend, RedisBackend)
            names = spread("down", per_range=1, base="/events/room/")
            for name in names:
                assert (await client.post(url + name, content="x")).status_code == 200
            small.nodes[2].kill()
            deadline = time.monotonic() + 30
            while True:
                health = await client.get(url + "/healthz")
                if health.status_code == 503:
                    break
                assert time.monotonic() < deadline, health.text
                await asyncio.sleep(0.1)
            reason = health.json()["backend"]["error"]
            assert "Redis" in reason and "MOVED" not in reason, reason
            statuses = set()
            for name in names:
                reply = await client.post(url + name, content="y")
                statuses.add(reply.status_code)
                if reply.status_code != 200:
                    assert reply.status_code == 503, reply.text
                    text = reply.json()["error"]
                    assert "MOVED" not in text and "ASK " not in text, text
            assert 503 in statuses
            reply = await client.post(url + "/broadcast", content="z")
            assert reply.status_code == 503 and "MOVED" not in reply.text, reply.text


async def test_ssehub_serve_on_any_node_serves_every_slot(
    cluster: RedisClusterServers, tmp_path: Path
) -> None:
    hub = HubProcess(["--redis", cluster.nodes[1].url, "--redis-key-ttl", "60"], tmp_path)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(hub.url + "/healthz")
            assert health.status_code == 200, health.text
            assert health.json()["backend"]["mode"] == "cluster"
            for name in spread("ssehub", per_range=2, base="/events/cli/"):
                reply = await client.post(hub.url + name, content="stored")
                assert reply.status_code == 200, reply.text
    finally:
        assert hub.stop() == 0, hub.log()


async def test_a_node_down_when_the_hub_starts_is_reported_not_half_served() -> None:
    with RedisClusterServers(primaries=3, replicas=0) as small:
        first = small.nodes[0]
        first.stop()
        hub = Hub(backend=RedisBackend(first.url, prefix="late", timeout=1.0))
        await hub.start()
        try:
            first.start()  # it comes back with its nodes.conf: the same Cluster node
            deadline = time.monotonic() + 30
            while True:
                health = await hub.backend.health()
                if "Redis Cluster node" in health.get("error", ""):
                    break
                assert time.monotonic() < deadline, health
                await asyncio.sleep(0.1)
            assert health["ok"] is False
        finally:
            await hub.shutdown(timeout=1)


async def test_a_killed_primary_replaced_by_its_replica_loses_nothing_silently() -> None:
    """A crash, not a handover: replication is asynchronous, so the newest writes of the dead
    primary may be lost; each stream then gets every accepted event or a gap notice."""
    with RedisClusterServers(primaries=3, replicas=1) as own:
        hubs = [
            Hub(backend=RedisBackend(own.nodes[i].url, prefix="crash", timeout=1.0)) for i in (0, 1)
        ]
        for hub in hubs:
            await hub.start()
        try:
            names = spread("crash")
            readers = [(name, Reader(await hub.subscribe(name))) for name in names for hub in hubs]
            accepted: dict[str, list[str]] = {name: [] for name in names}
            stop = asyncio.Event()

            async def publisher() -> None:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    for name in names:
                        with contextlib.suppress(BackendUnavailable):
                            await hubs[n % 2].publish(name, f"{n}")
                            accepted[name].append(f"{n}")
                    await asyncio.sleep(0.005)

            task = asyncio.ensure_future(publisher())
            try:
                await eventually(lambda: min(len(v) for v in accepted.values()) >= 5, 20)
                victim = own.primary_nodes()[-1]
                victim.kill()
                # Its replica is promoted once the others agree it failed (about 2 s here).
                deadline = time.monotonic() + 30
                while len(own.primary_nodes()) < 3:
                    assert time.monotonic() < deadline, "no replica took over"
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(own.wait_ok, 30)
                before = min(len(v) for v in accepted.values())
                await eventually(lambda: min(len(v) for v in accepted.values()) >= before + 10, 30)
            finally:
                stop.set()
                await task
            for name, reader in readers:
                wanted = set(accepted[name])
                async with asyncio.timeout(30):
                    while not wanted <= {data for _, data in reader.events()} and not any(
                        data.startswith("{") for _, data in reader.events()
                    ):
                        await reader.until(len(reader.events()) + 1)
                got = await reader.settle(0.1)
                numbers = [int(data) for _, data in got if not data.startswith("{")]
                assert numbers == sorted(set(numbers)), f"{name}: out of order or twice"
                gap = any(data.startswith("{") for _, data in got)
                missing = wanted - {str(n) for n in numbers}
                assert not missing or gap, f"{name}: lost {sorted(missing)} without a gap notice"
            for hub in hubs:
                deadline = time.monotonic() + 20
                while not (health := await hub.backend.health())["ok"]:
                    assert time.monotonic() < deadline, health
                    await asyncio.sleep(0.1)
        finally:
            for hub in hubs:
                await hub.shutdown(timeout=1)
