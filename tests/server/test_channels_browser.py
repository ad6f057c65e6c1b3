"""Several channels on one ``EventSource`` in headless Chromium, on a real ``ssehub serve``.

The page is of the hub's origin (its ``/healthz``, or the proxy's), so EventSource needs no
CORS. Tokens ride in ``?authorization=``, as EventSource cannot set headers. Ids are compared
with those the publish answers gave, ordered by the hub's publish counter (their last number).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx
import pytest

from tests._support.eventsource_page import Received, eventsource_page
from tests._support.redis_server import RedisServer
from tests._support.tcp_proxy import tcp_proxy
from tests.server.hub_process import HubFactory, HubProcess
from tests.server.test_channels_api import wait_streams
from tests.server.test_jwt import ADMIN, SECRET, bearer, token

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(40)]

JWT = {"SSEHUB_JWT_SECRET": SECRET}


def events_url(selectors: list[str], **params: str) -> str:
    """``/events?channel=...&channel=...`` plus ``params``, encoded as a page would."""
    return "/events?" + urlencode([*(("channel", s) for s in selectors), *params.items()])


def counter(event_id: str) -> int:
    """The hub's publish counter in one of its ids (``<epoch>-<n>``, on Redis ``<ms>-<g>``)."""
    return int(event_id.rpartition("-")[2])


async def post(
    client: httpx.AsyncClient, channels: str | Sequence[str], data: str, **more: object
) -> str:
    """Publish one event (to several channels through ``POST /events``); return its id."""
    if isinstance(channels, str):
        answer = await client.post(channels, json={"data": data, **more})
    else:
        answer = await client.post("/events", json={"channels": channels, "data": data, **more})
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["id"]
    return event_id


# -- one EventSource, three selectors ----------------------------------------------------------


async def test_one_eventsource_with_a_name_a_template_and_a_private_channel_gets_exactly_its_events(
    start_hub: HubFactory,
) -> None:
    hub = start_hub(env=JWT)
    news, rooms, mine = "/events/news", "/events/rooms/{id}", "/events/users/42"
    selectors = [news, rooms, mine]
    member = token([mine])
    async with (
        httpx.AsyncClient(base_url=hub.url, headers=bearer(token(publish=["*"]))) as c,
        eventsource_page(hub.url) as page,
    ):
        await page.open("member", events_url(selectors, authorization=member))
        await page.open("anonymous", events_url(selectors))
        await wait_streams(c, 2)
        published: list[tuple[str, str, bool, bool]] = []  # (id, data, to member, to anonymous)
        for channels, data, private, to_member, to_anonymous in [
            (news, "news", False, True, True),
            ("/events/rooms/7", "room 7", False, True, True),
            ("/events/rooms/7/deep", "not one segment", False, False, False),
            ("/events/other", "not selected", False, False, False),
            (mine, "mine", True, True, False),
            ("/events/users/43", "not mine", True, False, False),
            ("/events/rooms/8", "private room: not granted", True, False, False),
            ([news, "/events/rooms/9"], "news and room 9", False, True, True),
            ([mine, "/events/rooms/3"], "mine and room 3", True, True, False),
            ([mine, news], "mine and news, public", False, True, True),
            ("/events/users/43", "public, not selected", False, False, False),
            (mine, "end", False, True, True),
        ]:
            event_id = await post(c, channels, data, private=private)
            published.append((event_id, data, to_member, to_anonymous))

        got_member = await page.wait_for("member", "end")
        got_anonymous = await page.wait_for("anonymous", "end")

    assert got_member == [Received("message", i, d) for i, d, m, _ in published if m]
    assert got_anonymous == [Received("message", i, d) for i, d, _, a in published if a]
    assert [counter(e.id) for e in got_member] == sorted(counter(e.id) for e in got_member)


# -- resume through a proxy that cuts, while 4 publishers publish --------------------------------


@dataclass(frozen=True)
class Published:
    """One publish: its id (from the answer), data, channels and whether it was private."""

    id: str
    data: str
    channels: tuple[str, ...]
    private: bool


ROOMS = "/events/rooms/{id}"
TARGETS: list[list[str]] = [
    ["/events/feed"],
    ["/events/rooms/1"],
    ["/events/other"],
    ["/events/rooms/2"],
    ["/events/rooms/1/deep"],
    ["/events/feed", "/events/other"],
    ["/events/other", "/events/rooms/1/deep"],
    ["/events/rooms/2", "/events/feed"],
]
"""Where the publishers publish, in turn: matched by name or template, by neither, or by both."""

SELECTIONS: dict[str, tuple[list[str], Callable[[str], bool]]] = {
    "name+template": (["/events/feed", ROOMS], lambda c: c == "/events/feed" or _is_room(c)),
    "star": (["*"], lambda c: True),
}


def _is_room(channel: str) -> bool:
    head, _, last = channel.rpartition("/")
    return head == "/events/rooms" and last != ""


@pytest.mark.parametrize("selection", list(SELECTIONS))
@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def test_eventsources_resumed_through_cuts_get_every_matched_event_once_in_order(
    start_hub: HubFactory, backend: str, selection: str
) -> None:
    """Two EventSources (one without a token, one whose token reads the rooms' private events)
    read through a proxy that cuts every connection twice while 4 publishers publish 150 events
    each; Chromium reconnects by itself with Last-Event-ID. Each gets exactly the events it may
    read, in the hub's publish order, once: no private event without the token, live or replayed,
    through ``*`` or not. On Redis the page reads hub B and the publishers post to hub A."""
    selectors, selected = SELECTIONS[selection]
    with RedisServer() if backend == "redis" else contextlib.nullcontext() as redis:
        serve = ["--retry", "100"] + (["--redis", redis.url] if redis else [])
        publish_hub = start_hub(*serve, env=JWT)
        read_hub = start_hub(*serve, env=JWT) if redis else publish_hub
        try:
            run = await _read_through_cuts(publish_hub, read_hub, selectors)
        finally:
            # Before Redis goes: a hub stopping without it would wait for it.
            statuses = [hub.stop() for hub in (read_hub, publish_hub)]
    assert statuses == [0, 0], read_hub.log() + publish_hub.log()

    in_order = sorted(run.published, key=lambda p: counter(p.id))
    for name, may_read in [("anonymous", _is_public), ("member", _member_may_read)]:
        expected = [
            Received("message", p.id, p.data)
            for p in in_order
            if any(selected(c) for c in p.channels) and may_read(p)
        ]
        got = run.received[name]
        assert len(got) == len(set(got)), f"{name}: an event arrived twice"
        assert got == expected, f"{name}: an event was lost, leaked or out of order"
    # Events were published while the sources were away, and both came back from their last
    # id after each cut.
    assert min(run.away) > 0, run.away
    assert len(run.resumed_from) >= 4, run.resumed_from


def _is_public(p: Published) -> bool:
    return not p.private


def _member_may_read(p: Published) -> bool:
    # Its token's subscribe claim is ROOMS: a private event of a room (and maybe others too).
    return not p.private or any(_is_room(c) for c in p.channels)


@dataclass
class CutRun:
    """What `_read_through_cuts` saw."""

    published: list[Published]
    """Every publish, as its answer came (not in the hub's order)."""
    received: dict[str, list[Received]]
    """What each source of the page received, in order."""
    away: list[int]
    """How many events were published during each cut."""
    resumed_from: list[str]
    """The Last-Event-ID of each reconnection the proxy forwarded."""


async def _read_through_cuts(
    publish_hub: HubProcess, read_hub: HubProcess, selectors: list[str]
) -> CutRun:
    """Two sources on ``read_hub`` through a proxy, 4 publishers on ``publish_hub``, 2 cuts."""
    port = int(read_hub.url.rsplit(":", 1)[1])
    run = CutRun([], {}, [], [])
    turns = itertools.count()
    async with (
        tcp_proxy(port) as proxy,
        eventsource_page(proxy.url) as page,
        httpx.AsyncClient(base_url=read_hub.url) as watch,
        httpx.AsyncClient(base_url=publish_hub.url, headers=bearer(ADMIN)) as end_publisher,
    ):
        await page.open("anonymous", events_url(selectors))
        await page.open("member", events_url(selectors, authorization=token([ROOMS])))
        await wait_streams(watch, 2)

        async def publisher(name: str) -> None:
            async with httpx.AsyncClient(base_url=publish_hub.url, headers=bearer(ADMIN)) as c:
                for n in range(150):
                    channels = TARGETS[(n + len(name)) % len(TARGETS)]
                    private = next(turns) % 5 == 0
                    event_id = await post(c, channels, f"{name}{n}", private=private)
                    run.published.append(
                        Published(event_id, f"{name}{n}", tuple(channels), private)
                    )

        async def cutter() -> None:
            for at in (150, 400):
                while len(run.published) < at:
                    await asyncio.sleep(0.005)
                proxy.cut()
                before = len(run.published)
                await asyncio.sleep(0.3)  # the publishers go on while both sources are away
                run.away.append(len(run.published) - before)
                proxy.restore()

        async with asyncio.timeout(30):
            await asyncio.gather(cutter(), *(publisher(n) for n in ("p", "qq", "rrr", "ssss")))
            end = await post(end_publisher, "/events/feed", "end")
            run.published.append(Published(end, "end", ("/events/feed",), False))
            for name in ("anonymous", "member"):
                run.received[name] = await page.wait_for(name, "end", timeout=15)
        requests = proxy.requests("GET", "/events")
    run.resumed_from = [h["last-event-id"] for h in requests if "last-event-id" in h]
    return run
