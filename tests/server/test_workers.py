"""``--redis`` and ``--workers N``: several hub processes on one port, sharing events via Redis."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssehub import EventParser
from tests._support.redis_server import RedisServer
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory, client_on_each_worker

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


PINNED = ("--idle-timeout", "0")
"""Keep idle keep-alive connections open: each test client stays pinned to the worker it
reached (an idle timeout would close it, and the reconnect could land on another worker)."""


async def test_workers_share_one_port_and_events_through_redis(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    hub = start_hub("--redis", redis.url, "--workers", "2", *PINNED)
    clients = await client_on_each_worker(hub.url, 2)
    (pid_a, a), (pid_b, _) = clients.items()
    try:
        health = (await a.get("/healthz")).json()
        assert health["ok"] is True and health["backend"]["backend"] == "redis"
        async with a.stream("GET", "/events/shared") as stream:
            assert stream.status_code == 200
            for _ in range(200):
                if (await a.get("/healthz")).json()["clients"] == 1:
                    break
                await asyncio.sleep(0.02)
            # Published on the other worker (its answer names the worker), delivered by this
            # one. A connection may land on either worker, so publish until one lands on B.
            for _ in range(40):
                async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as other:
                    published = await other.post("/events/shared", content="across workers")
                assert published.status_code == 200
                if published.json()["worker"].rsplit(":", 1)[1] == str(pid_b):
                    break
            else:
                raise AssertionError(f"no publish reached worker {pid_b}")
            assert pid_b != pid_a
            received = b""
            async with asyncio.timeout(5):
                async for chunk in stream.aiter_raw():
                    received += chunk
                    if f"id: {published.json()['id']}".encode() in received:
                        break
    finally:
        for client in clients.values():
            await client.aclose()
    assert hub.stop(signal.SIGTERM, timeout=10) == 0, hub.log()
    assert "workers=2 status=0" in hub.log()


async def test_resume_on_another_worker_replays_from_redis(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    hub = start_hub("--redis", redis.url, "--workers", "2", *PINNED)
    clients = await client_on_each_worker(hub.url, 2)
    (_, a), (_, b) = clients.items()
    try:
        ids = (await a.post("/events/replayed", json=[{"data": "1"}, {"data": "2"}])).json()["ids"]
        # The client resumes on the other worker, which never saw these events live.
        headers = {"Last-Event-ID": ids[0]}
        async with b.stream("GET", "/events/replayed", headers=headers) as stream:
            parser = EventParser()
            events = []
            async with asyncio.timeout(5):
                async for chunk in stream.aiter_raw():
                    events += parser.feed(chunk)
                    if events:
                        break
            assert [(e.data, e.id) for e in events] == [("2", ids[1])]
    finally:
        for client in clients.values():
            await client.aclose()


def test_redis_that_is_down_fails_health(start_hub: HubFactory) -> None:
    server = RedisServer()
    server.start()
    hub = start_hub("--redis", server.url)
    try:
        assert httpx.get(hub.url + "/healthz").status_code == 200
        server.kill()
        for _ in range(100):
            answer = httpx.get(hub.url + "/healthz", timeout=10)
            if answer.status_code == 503:
                break
        assert answer.status_code == 503
        assert answer.json()["ok"] is False
        published = httpx.post(hub.url + "/events/x", content="lost?", timeout=15)
        assert published.status_code == 503
        assert "error" in published.json()
    finally:
        server.close()


async def test_every_worker_serves_the_options_of_the_command_line(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    hub = start_hub(
        "--redis",
        redis.url,
        "--workers",
        "2",
        "--cors-origin",
        "http://w.example",
        "--max-body",
        "100",
        *PINNED,
        env={"SSEHUB_PUBLISH_TOKEN": "w-secret"},
    )
    clients = await client_on_each_worker(hub.url, 2)
    try:
        for pid, client in clients.items():
            # The token reached the worker through its config pipe, not its command line or
            # environment.
            assert b"w-secret" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert b"w-secret" not in Path(f"/proc/{pid}/environ").read_bytes()
            origin = {"Origin": "http://w.example"}
            refused = await client.post("/events/opts", content="x", headers=origin)
            assert refused.status_code == 401
            assert refused.headers["access-control-allow-origin"] == "http://w.example"
            auth = {"Authorization": "Bearer w-secret"}
            too_big = await client.post("/events/opts", content="x" * 101, headers=auth)
            assert too_big.status_code == 413
            assert (await client.post("/events/opts", content="x", headers=auth)).status_code == 200
    finally:
        for client in clients.values():
            await client.aclose()


async def test_every_number_covers_every_worker_or_names_its_worker(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    hub = start_hub("--redis", redis.url, "--workers", "2", *PINNED)
    clients = await client_on_each_worker(hub.url, 2)
    pids = sorted(clients)
    channel = hub.url + "/events/counted"
    try:
        async with contextlib.AsyncExitStack() as stack:
            # Streams on fresh connections, until both workers hold one (the kernel picks).
            for opened in range(1, 21):
                await stack.enter_async_context(open_sse(channel))
                states = (await clients[pids[0]].get("/healthz")).json()["workers"]
                for _ in range(30):
                    if sum(w["clients"] for w in states) == opened:
                        break
                    await asyncio.sleep(0.1)
                    states = (await clients[pids[0]].get("/healthz")).json()["workers"]
                if len(states) == 2 and all(w["clients"] for w in states):
                    break
            streams = sum(w["clients"] for w in states)
            by_pid = {w["pid"]: w["clients"] for w in states}
            assert sorted(by_pid) == pids and all(by_pid.values()), states
            for pid, client in clients.items():
                # /healthz: the answering worker's numbers, named, and every worker's, summed
                # (the other's from its last report, at most a second old).
                for _ in range(30):
                    health = (await client.get("/healthz")).json()
                    if health["totals"]["clients"] == streams:
                        break
                    await asyncio.sleep(0.1)
                assert health["pid"] == pid and health["worker"].endswith(f":{pid}")
                assert health["clients"] == by_pid[pid]
                assert health["totals"] == {**health["totals"], "clients": streams, "workers": 2}
                # The publish answer counts the answering worker's clients, and says which.
                answer = (await client.post("/events/counted", content="x")).json()
                assert answer["worker"] == health["worker"]
                assert answer["clients"] == by_pid[pid]
                # /channels: this worker's channels, named, plus every worker's totals.
                listed = (await client.get("/channels")).json()
                assert listed["worker"] == health["worker"]
                assert listed["clients"] == by_pid[pid]
                assert listed["totals"]["clients"] == streams
            # /metrics: every worker's series, labelled, from either worker (the others'
            # figures are their last report's, at most a second old).
            for _ in range(50):
                metrics = (await clients[pids[0]].get("/metrics")).text
                published = [
                    float(line.split()[-1])
                    for line in metrics.splitlines()
                    if line.startswith("ssehub_worker_events_published_total")
                ]
                if published == [1.0, 1.0]:
                    break
                await asyncio.sleep(0.1)
            assert published == [1.0, 1.0]
            assert "ssehub_workers 2.0" in metrics
            for pid in pids:
                assert re.search(
                    rf'ssehub_worker_connections_open{{worker="[^"]+:{pid}"}} {by_pid[pid]}\.0',
                    metrics,
                ), metrics
    finally:
        for client in clients.values():
            await client.aclose()
