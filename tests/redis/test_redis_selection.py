"""One stream, several channels, on Redis and across hubs: selectors, one event to several
channels, private events, and one Last-Event-ID that resumes every matched channel exactly.

Two hubs share one real redis-server: events are published on hub A and read on hub B (its
feed, its replay). Ids are ``<ms>-<g>`` stream ids, ``g`` the prefix's counter: the same id in
every channel an event goes to, and the order across channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis

from ssehub import GAP_EVENT, EventParser, Hub, Message, Subscription
from ssehub.redis import RedisBackend
from tests._support.redis_server import RedisServer

if TYPE_CHECKING:
    from tests.redis.conftest import HubPair

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]

GAP = "<gap>"


class Reader:
    """The events a `Subscription` holds, parsed as a client would (a gap notice as `GAP`)."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.parser = EventParser()
        self.events: list[Message] = []

    @property
    def datas(self) -> list[str]:
        return [GAP if m.event == GAP_EVENT else m.data for m in self.events]

    @property
    def ids(self) -> list[str]:
        return [GAP if m.event == GAP_EVENT else m.id or "" for m in self.events]

    async def until(self, data: str, timeout: float = 10.0) -> list[str]:
        """Read until an event with ``data`` arrived; return the datas so far."""
        async with asyncio.timeout(timeout):
            while data not in self.datas:
                chunk = await self.sub.next_chunk()
                assert chunk is not None, "the subscription ended"
                self.events.extend(self.parser.feed(chunk))
        return self.datas

    async def settle(self, seconds: float = 0.3) -> list[str]:
        """Read whatever else arrives within ``seconds``; return the datas."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (chunk := await self.sub.next_chunk()) is not None:
                    self.events.extend(self.parser.feed(chunk))
        return self.datas


def backend_of(hub: Hub) -> RedisBackend:
    backend = hub.backend
    assert isinstance(backend, RedisBackend)
    return backend


def g_of(stream_id: str) -> int:
    return int(stream_id.partition("-")[2])


async def history(url: str, backend: RedisBackend, *channels: str) -> list[tuple[int, str, bool]]:
    """Every retained event of ``channels`` as ``(g, SSE id, private)``, once, in g order."""
    admin = aioredis.Redis.from_url(url)
    try:
        seen: dict[int, tuple[int, str, bool]] = {}
        for channel in channels:
            entries: Any = await admin.xrange(backend.stream_key(channel), "-", "+")
            for raw_sid, fields in entries:
                sid = raw_sid.decode()
                sse = fields.get(b"u", raw_sid).decode()
                seen[g_of(sid)] = (g_of(sid), sse, fields.get(b"p") == b"1")
        return [seen[g] for g in sorted(seen)]
    finally:
        await admin.aclose()


# -- live delivery across hubs ---------------------------------------------------------------


async def test_selections_on_another_hub_get_each_matching_event_once(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    named = Reader(await b.subscribe(["/a", "/b"]))
    rooms = Reader(await b.subscribe(["/r/{id}"]))
    every = Reader(await b.subscribe(["*"]))
    every_private_a = Reader(await b.subscribe(["*"], private=["/a"]))
    named_private_b = Reader(await b.subscribe(["/a", "/b"], private=["/b"]))
    await a.publish("/a", "a1")
    await a.publish("/b", "b1")
    await a.publish(["/a", "/b"], "ab")
    await a.publish("/r/1", "r1")
    await a.publish(["/b", "/r/2"], "b-r2")
    await a.publish("/elsewhere", "x")
    await a.publish("/a", "secret-a", private=True)
    await a.publish(["/b", "/r/3"], "secret-b-r3", private=True)
    await a.publish(["/a", "/r/end"], "end")
    for reader in (named, rooms, every, every_private_a, named_private_b):
        await reader.until("end")
        await reader.settle(0.2)
    assert named.datas == ["a1", "b1", "ab", "b-r2", "end"]
    assert rooms.datas == ["r1", "b-r2", "end"]
    # `*` never reads a private event without a private grant for one of its channels.
    assert every.datas == ["a1", "b1", "ab", "r1", "b-r2", "x", "end"]
    assert every_private_a.datas == ["a1", "b1", "ab", "r1", "b-r2", "x", "secret-a", "end"]
    assert named_private_b.datas == ["a1", "b1", "ab", "b-r2", "secret-b-r3", "end"]


async def test_the_publishing_hub_delivers_a_multi_channel_event_once(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None)
    both = Reader(await a.subscribe(["/x", "/y"]))
    only_x = Reader(await a.subscribe("/x"))
    event_id = await a.publish(["/x", "/y"], "xy")
    await a.publish("/x", "end")
    await both.until("end")
    await only_x.until("end")
    assert await both.settle() == ["xy", "end"]
    assert await only_x.settle() == ["xy", "end"]
    assert both.ids[0] == only_x.ids[0] == event_id


# -- ids -------------------------------------------------------------------------------------


async def test_an_event_of_several_channels_has_one_id_in_each_history(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    first = await a.publish("/a", "a1")
    shared = await a.publish(["/a", "/b"], "ab")
    after = await b.publish("/b", "b1")
    backend = backend_of(a)
    assert [e[1] for e in await history(hubs.url, backend, "/a")] == [first, shared]
    assert [e[1] for e in await history(hubs.url, backend, "/b")] == [shared, after]
    # Hub-assigned ids keep the <ms>-<seq> shape; the seq part counts across channels.
    assert [g_of(i) for i in (first, shared, after)] == sorted(
        g_of(i) for i in (first, shared, after)
    )
    assert len({g_of(i) for i in (first, shared, after)}) == 3
    # One-channel streams resume from it as before, on either hub.
    for hub in (a, b):
        resumed = Reader(await hub.subscribe("/b", last_event_id=shared))
        assert await resumed.settle() == ["b1"]
        hub.unsubscribe(resumed.sub)
        replay = await hub.backend.replay("/a", first)
        assert replay.found and [i for i, _ in replay.events] == [shared]


async def test_a_user_id_in_any_channel_of_an_event_makes_it_a_duplicate(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    reader = Reader(await b.subscribe(["/a", "/b", "/c"]))
    assert not (await a.publish(["/a", "/b"], Message("once", id="order-1"))).duplicate
    assert (await b.publish("/b", Message("again", id="order-1"))).duplicate
    assert (await b.publish(["/c", "/a"], Message("again", id="order-1"))).duplicate
    await a.publish("/c", "end")
    await reader.until("end")
    assert await reader.settle() == ["once", "end"]


async def test_private_events_are_replayed_only_when_asked_for(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    first = await a.publish("/p", "public")
    await a.publish("/p", "hidden", private=True)
    await a.publish("/p", "public too")
    public = await b.backend.replay("/p", first)
    assert [data.split(b"data: ")[1] for _, data in public.events] == [b"public too\n\n"]
    everything = await b.backend.replay("/p", first, private=True)
    assert len(everything.events) == 2
    # Through the hub: a subscriber allowed to read the channel's private events gets it.
    allowed = Reader(await b.subscribe("/p", last_event_id=first, private=["/p"]))
    others = Reader(await b.subscribe("/p", last_event_id=first))
    assert await allowed.settle() == ["hidden", "public too"]
    assert await others.settle() == ["public too"]


# -- resume across channels ------------------------------------------------------------------


async def test_one_last_event_id_resumes_every_matched_channel_on_another_hub(
    hubs: HubPair,
) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    start = await a.publish("/a", "a0")
    await a.publish("/b", "b1")
    await a.publish("/z", "z2")
    await a.publish(["/a", "/r/1"], "a-r3")
    await a.publish("/r/2", "r4", private=True)
    await a.publish(["/b", "/r/2"], Message("b-r5", id="mine-5"))
    await a.publish("/a", "a6")
    cases: list[tuple[list[str], list[str] | None, str, list[str]]] = [
        (["/a", "/b"], None, start, ["b1", "a-r3", "b-r5", "a6"]),
        (["/a", "/r/{id}"], None, start, ["a-r3", "b-r5", "a6"]),
        (["*"], None, start, ["b1", "z2", "a-r3", "b-r5", "a6"]),
        (["*"], ["/r/{id}"], start, ["b1", "z2", "a-r3", "r4", "b-r5", "a6"]),
        (["/b", "/r/{id}"], None, "mine-5", []),
        (["/a"], None, "mine-5", [GAP, "a0", "a-r3", "a6"]),  # /a never held it: not placed
        (["/a", "/r/{id}"], None, "mine-5", ["a6"]),
        (["/a", "/b"], None, "no-such-id", [GAP, "a0", "b1", "a-r3", "b-r5", "a6"]),
    ]
    for selectors, private, last_event_id, expected in cases:
        resumed = Reader(await b.subscribe(selectors, last_event_id=last_event_id, private=private))
        assert await resumed.settle(0.1) == expected, (selectors, private, last_event_id)
        b.unsubscribe(resumed.sub)
    # Then live, on the same stream, without a duplicate at the seam.
    resumed = Reader(await b.subscribe(["/a", "/b"], last_event_id=start))
    await a.publish(["/a", "/b"], "live")
    assert await resumed.until("live") == ["b1", "a-r3", "b-r5", "a6", "live"]
    assert await resumed.settle() == ["b1", "a-r3", "b-r5", "a6", "live"]


async def test_a_matched_channel_that_trimmed_an_owed_event_gives_the_gap_notice(
    hubs: HubPair,
) -> None:
    a = await hubs.hub(keepalive=None, history=3)
    b = await hubs.hub(keepalive=None, history=3)
    await a.publish("/a", "a0")
    cut = await a.publish("/b", "b1")
    for n in range(2, 6):
        await a.publish("/a", f"a{n}")  # /a keeps a3, a4, a5: it trimmed a2, after the cut
    await a.publish("/b", "b6")
    gap = Reader(await b.subscribe(["/a", "/b"], last_event_id=cut))
    assert await gap.settle() == [GAP, "a3", "a4", "a5", "b6"]
    # From an id after everything trimmed: nothing is missing, whichever channel held it.
    recent = await b.publish("/a", "a7")  # trims a3
    exact = Reader(await b.subscribe(["/a", "/b"], last_event_id=recent))
    await a.publish("/b", "b8")
    assert await exact.until("b8") == ["b8"]
    # The newest event a channel trimmed away is still a place to resume from.
    trimmed = await newest_trimmed(a, "/a")  # a3's, trimmed by a7
    from_trimmed = Reader(await b.subscribe(["/a", "/b"], last_event_id=trimmed))
    assert await from_trimmed.settle() == ["a4", "a5", "b6", "a7", "b8"]


async def newest_trimmed(hub: Hub, channel: str) -> str:
    """The id of the newest event ``channel`` trimmed away (its index's field "\\n")."""
    backend = backend_of(hub)
    trimmed: Any = await backend._require_client().hget(backend.index_key(channel), "\n")
    assert trimmed is not None
    return str(trimmed.decode())


async def test_an_id_older_than_history_ttl_is_a_gap_for_templates(hubs: HubPair) -> None:
    a = await hubs.hub(keepalive=None, history_ttl=0.3)
    old = await a.publish("/t/1", "gone soon")
    await asyncio.sleep(0.5)  # /t/1 expired whole: it may have held events after `old`
    await a.publish("/t/2", "fresh")
    resumed = Reader(await a.subscribe(["/t/{n}"], last_event_id=old))
    assert await resumed.settle() == [GAP, "fresh"]


async def test_a_channel_made_just_after_a_template_resume_listed_channels_is_not_lost(
    hubs: HubPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    start = await a.publish("/n/1", "n1")
    backend = backend_of(b)
    listing = backend._stream_names

    async def listed_late() -> list[str]:
        # The race, made certain: a channel matching the template gets its first event once
        # the channels are listed, before their history is read. The replay knows nothing of
        # it, so it must leave it to the feed (its head may not cover it).
        names = await listing()
        await a.publish("/n/2", "n2")
        return names

    monkeypatch.setattr(backend, "_stream_names", listed_late)
    resumed = Reader(await b.subscribe(["/n/{id}"], last_event_id=start))
    monkeypatch.undo()
    await a.publish("/n/1", "n3")
    assert await resumed.until("n3") == ["n2", "n3"]
    assert await resumed.settle() == ["n2", "n3"]


@pytest.mark.parametrize("ids", ["hub", "publisher"])
@pytest.mark.parametrize(
    "selection", [["/a", "/b"], ["/a", "/b", "/r/{id}"]], ids=["names", "mixed"]
)
async def test_resumes_during_concurrent_publishing_get_every_missed_event_once_in_order(
    hubs: HubPair, ids: str, selection: list[str]
) -> None:
    a = await hubs.hub(keepalive=None, history=10_000)
    b = await hubs.hub(keepalive=None, history=10_000)
    targets: list[str | list[str]] = ["/a", "/b", ["/a", "/b"], "/r/1", ["/b", "/r/2"], "/z"]
    turns = itertools.count()

    async def publisher(name: str) -> None:
        for n in range(200):
            target = targets[(n + len(name)) % len(targets)]
            own = f"{name}-{n}" if ids == "publisher" else None
            await a.publish(target, Message(f"{name}{n}", id=own), private=n % 17 == 0)
            if next(turns) % 5 == 0:
                await asyncio.sleep(0)

    async def reader() -> list[str]:
        # Reads live, cuts the stream every 15 events or so and resumes on hub B from the last
        # id it got, again and again while the publishers run, until the end marker.
        received: list[str] = []
        last: str | None = None
        while True:
            sub = await b.subscribe(selection, last_event_id=last)
            parser = EventParser()
            try:
                got = 0
                while got < 15:
                    chunk = await sub.next_chunk()
                    assert chunk is not None, "the subscription ended"
                    for m in parser.feed(chunk):
                        received.append(GAP if m.event == GAP_EVENT else m.id or "")
                        got += 1
                        if m.data == "end":
                            return received
            finally:
                b.unsubscribe(sub)
            last = received[-1]
            await asyncio.sleep(0.005)  # the client is away: events go by

    async with asyncio.timeout(45):
        reading = asyncio.ensure_future(reader())
        await asyncio.sleep(0.05)
        await asyncio.gather(*(publisher(name) for name in ("p", "qq", "rrr", "ssss")))
        await a.publish("/a", "end")
        received = await reading
    matched = ["/a", "/b", "/r/1", "/r/2"] if len(selection) == 3 else ["/a", "/b"]
    expected = [
        sse for _, sse, private in await history(hubs.url, backend_of(a), *matched) if not private
    ]
    assert GAP not in received
    assert len(received) == len(set(received)), "an event arrived twice"
    first = expected.index(received[0])
    assert received == expected[first:], "an event was lost or came out of order"
    assert len(received) > 200


# -- the feed: outages, lost history ---------------------------------------------------------


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


async def test_events_of_several_channels_published_while_the_feed_is_cut_arrive_once_in_order(
    redis_server: RedisServer,
) -> None:
    a, b = redis_hub(redis_server.url), redis_hub(redis_server.url)
    async with started(a, b):
        named = Reader(await b.subscribe(["/a", "/b"]))
        every = Reader(await b.subscribe(["*"]))
        single = Reader(await b.subscribe("/b"))
        await a.publish("/a", "before")
        await every.until("before")
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            # Cut every feed connection; Redis itself stays up and keeps accepting events.
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        during = [
            ("/a", "d0"),
            (["/a", "/b"], "d1"),
            ("/c", "d2"),  # watched by no hub: only `*` wants it
            (["/b", "/c"], "d3"),
            ("/b", "d4"),
        ]
        for target, data in during:
            await a.publish(target, data)
        backend = backend_of(b)
        async with asyncio.timeout(10):
            while not (backend.reconnects >= 1 and backend._feed_up):
                await asyncio.sleep(0.02)
        await a.publish(["/a", "/b", "/c"], "after")
        for reader in (named, every, single):
            await reader.until("after")
            await reader.settle(0.2)
        assert named.datas == ["before", "d0", "d1", "d3", "d4", "after"]
        assert every.datas == ["before", "d0", "d1", "d2", "d3", "d4", "after"]
        assert single.datas == ["d1", "d3", "d4", "after"]
        assert backend.refilled >= 5


async def test_a_resume_across_channels_from_an_id_redis_lost_gives_the_gap_notice(
    redis_server: RedisServer,
) -> None:
    a, b = redis_hub(redis_server.url), redis_hub(redis_server.url)
    async with started(a, b):
        watcher = Reader(await a.subscribe(["/a", "/b"]))
        ids = [await b.publish(("/a", "/b")[n % 2], f"e{n}") for n in range(10)]
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await admin.save()  # the snapshot: e0..e9
        finally:
            await admin.aclose()
        ids += [await b.publish(("/a", "/b")[n % 2], f"e{n}") for n in range(10, 14)]
        await watcher.until("e13")
        redis_server.kill()  # e10..e13 were acknowledged, and are lost
        redis_server.start()  # from the snapshot, the counter with it
        for hub in (a, b):
            async with asyncio.timeout(15):
                while not (await hub.backend.health())["ok"]:
                    await asyncio.sleep(0.02)
        after = await b.publish(["/a", "/b"], "after")
        # The counter never hands out a g again that hubs or clients hold.
        assert g_of(after) > max(g_of(i) for i in ids)
        for hub in (a, b):
            lost = Reader(await hub.subscribe(["/a", "/b"], last_event_id=ids[12]))
            assert await lost.settle() == [GAP, "after"]
            older = Reader(await hub.subscribe(["/a", "/b"], last_event_id=ids[7]))
            assert await older.settle() == [GAP, "e8", "e9", "after"]
            current = Reader(await hub.subscribe(["/a", "/b"], last_event_id=after))
            assert await current.settle() == []


# -- cost ------------------------------------------------------------------------------------


async def test_a_publish_is_one_round_trip_whatever_the_number_of_channels(
    hubs: HubPair,
) -> None:
    # Not a timed assertion: counts the commands Redis received (one EVALSHA per publish), and
    # prints the publish rate for the eye.
    a = await hubs.hub(keepalive=None)
    await a.publish("/one", "warm")
    await a.publish(["/one", "/two", "/three"], "warm")
    admin = aioredis.Redis.from_url(hubs.url)
    try:
        for target in ("/one", ["/one", "/two", "/three"]):
            before = (await admin.info("commandstats"))["cmdstat_evalsha"]["calls"]
            began = time.perf_counter()
            for n in range(200):
                await a.publish(target, f"e{n}")
            took = time.perf_counter() - began
            calls = (await admin.info("commandstats"))["cmdstat_evalsha"]["calls"] - before
            print(f"{target}: {200 / took:.0f} publishes/s, {calls} EVALSHA for 200 publishes")
            assert calls == 200
    finally:
        await admin.aclose()
