"""Redis losing or regressing data, and hubs dying: never a re-delivery, always a gap signal.

- Redis restarts from an older snapshot (RDB saved, more publishes, kill -9, restart): open
  streams receive one ``ssehub.gap`` notice and go on live, with nothing of the snapshot sent
  again; a client resuming with an id the snapshot lost, or with an id older than the loss, is
  told about the gap and gets only what it lacks.
- A hub is killed (SIGKILL) while its subscribers read a busy channel: they resume on another
  hub with ``Last-Event-ID`` and get every later event exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from ssehub import GAP_EVENT, EventParser, Hub, Message, Subscription
from ssehub.redis import RedisBackend
from tests._support.redis_server import RedisServer
from tests._support.sse import SSEStream, open_sse
from tests.server.hub_process import HubProcess

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def redis_hub(url: str) -> Hub:
    """A hub on ``url`` that retries Redis quickly (tests wait on reconnects)."""
    return Hub(backend=RedisBackend(url, max_backoff=0.2, timeout=2.0), keepalive=None)


@contextlib.asynccontextmanager
async def started(*hubs: Hub) -> AsyncIterator[None]:
    for hub in hubs:
        await hub.start()
    try:
        yield
    finally:
        for hub in hubs:
            await hub.shutdown(timeout=1)


async def healthy(hub: Hub, timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not (await hub.backend.health())["ok"]:
            await asyncio.sleep(0.02)


class Reader:
    """The events a `Subscription` holds, parsed as a client would."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.parser = EventParser()
        self.events: list[Message] = []

    async def until(self, data: str, timeout: float = 10.0) -> list[Message]:
        async with asyncio.timeout(timeout):
            while not any(m.data == data for m in self.events):
                chunk = await self.sub.next_chunk()
                assert chunk is not None, "the subscription ended"
                self.events.extend(self.parser.feed(chunk))
        return self.events

    async def settle(self, seconds: float = 0.3) -> list[Message]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (chunk := await self.sub.next_chunk()) is not None:
                    self.events.extend(self.parser.feed(chunk))
        return self.events


def shown(events: list[Message]) -> list[str]:
    """What a client sees: the data of each event, the gap notice as ``<gap>``."""
    return ["<gap>" if m.event == GAP_EVENT else m.data for m in events]


async def test_redis_restarted_from_an_older_snapshot_sends_a_gap_not_the_snapshot_again(
    redis_server: RedisServer,
) -> None:
    a, b = redis_hub(redis_server.url), redis_hub(redis_server.url)
    channel = "/events/snap"
    async with started(a, b):
        open_stream = Reader(await a.subscribe(channel))
        ids = [await b.publish(channel, f"e{n}") for n in range(50)]
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await admin.save()  # the snapshot: e0..e49
        finally:
            await admin.aclose()
        ids += [await b.publish(channel, f"e{n}") for n in range(50, 60)]
        await open_stream.until("e59")
        redis_server.kill()  # e50..e59 were acknowledged, and are lost
        redis_server.start()  # from the snapshot
        await healthy(a)
        await healthy(b)
        after = await b.publish(channel, "after")
        await open_stream.until("after")
        await open_stream.settle()
        # Each event once; the loss told once; then live again.
        assert shown(open_stream.events) == [f"e{n}" for n in range(60)] + ["<gap>", "after"]

        async def resume(hub: Hub, last_event_id: str) -> list[str]:
            reader = Reader(await hub.subscribe(channel, last_event_id=last_event_id))
            try:
                return shown(await reader.settle())
            finally:
                hub.unsubscribe(reader.sub)

        for hub in (a, b):
            # An id the snapshot lost: the gap, and what came after the loss.
            assert await resume(hub, ids[55]) == ["<gap>", "after"]
            # An id before the loss: what it lacks of the snapshot, the gap, what came after.
            assert await resume(hub, ids[45]) == ["<gap>", "e46", "e47", "e48", "e49", "after"]
            # An id of the new epoch: nothing is missing.
            assert await resume(hub, after) == []


async def test_subscribers_of_a_killed_hub_resume_on_another_hub_without_a_duplicate(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    channel = "/events/killed"
    doomed = HubProcess(["--redis", redis_server.url, "--keepalive", "60"], tmp_path)
    survivor = HubProcess(["--redis", redis_server.url, "--keepalive", "60"], tmp_path)
    published: list[str] = []
    stop = asyncio.Event()

    async def publisher(http: httpx.AsyncClient) -> None:
        n = 0
        while not stop.is_set():
            reply = await http.post(survivor.url + channel, content=f"p{n}")
            published.append(reply.json()["id"])
            n += 1

    async def read(stream: SSEStream, into: list[Message]) -> None:
        with contextlib.suppress(httpx.HTTPError, EOFError):
            while True:
                into.append(await stream.next_event(timeout=30))

    try:
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
            streams = [
                await stack.enter_async_context(open_sse(doomed.url + channel)) for _ in range(10)
            ]
            received: list[list[Message]] = [[] for _ in streams]
            readers = [
                asyncio.ensure_future(read(s, r)) for s, r in zip(streams, received, strict=True)
            ]
            tasks = [asyncio.ensure_future(publisher(http)) for _ in range(2)]
            async with asyncio.timeout(15):
                while min(len(r) for r in received) < 30:
                    await asyncio.sleep(0.01)
            doomed.stop(signal.SIGKILL)
            async with asyncio.timeout(15):
                await asyncio.gather(*readers)
            # Each subscriber resumes on the other hub from the last id it received.
            resumed = []
            for events in received:
                last = events[-1].id
                assert last is not None
                resumed.append(
                    await stack.enter_async_context(
                        open_sse(survivor.url + channel, headers={"Last-Event-ID": last})
                    )
                )
            await asyncio.sleep(0.2)  # more publishes while they resume
            stop.set()
            await asyncio.gather(*tasks)
            end = (await http.post(survivor.url + channel, content="end")).json()["id"]
            for stream, events in zip(resumed, received, strict=True):
                async with asyncio.timeout(15):
                    while events[-1].id != end:
                        events.append(await stream.next_event(timeout=15))
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            entries = await admin.xrange(f"ssehub:{{{channel}}}")
            order = [sid.decode() for sid, _ in entries]  # type: ignore[union-attr]
        finally:
            await admin.aclose()
        for events in received:
            got = [m.id for m in events]
            assert len(got) == len(set(got)), "a duplicate"
            assert GAP_EVENT not in {m.event for m in events}
            first = order.index(got[0])
            assert got == order[first : first + len(got)], "a gap"
            assert got[-1] == end
    finally:
        doomed.stop(signal.SIGKILL)
        assert survivor.stop() == 0, survivor.log()
