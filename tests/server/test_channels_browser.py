"""Several channels on one ``EventSource`` in headless Chromium, on a real ``ssehub serve``.

The page is of the hub's origin (its ``/healthz``, or the proxy's), so EventSource needs no
CORS. Tokens ride in ``?authorization=``, as EventSource cannot set headers. Ids are compared
with those the publish answers gave, ordered by the hub's publish counter (their last number).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urlsplit

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


# -- 401, 403 and token expiry in the browser ----------------------------------------------------


async def test_in_the_browser_bad_tokens_are_refused_401_and_publishes_outside_the_claim_403(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--require-subscriber-token", "--retry", "100", env=JWT)
    room = "/events/rooms/1"
    refused = {
        "without a token": "",
        "expired": token([room], exp=int(time.time()) - 60),
        "badly signed": token([room], key="another-secret-that-is-32-bytes-long"),
        "not a JWT": "not-a-jwt",
    }
    async with (
        httpx.AsyncClient(base_url=hub.url, headers=bearer(ADMIN)) as c,
        eventsource_page(hub.url) as page,
    ):
        for name, value in refused.items():
            await page.open(name, events_url([room], **({"authorization": value} if value else {})))
        await page.open("granted", events_url([room], authorization=token([room])))
        await wait_streams(c, 1)
        for name in refused:
            # A non-200 answer fails the EventSource for good: closed (2), never open, no retry.
            record = await page.wait_until(name, lambda r: bool(r.errors))
            assert (record.opens, [e["readyState"] for e in record.errors]) == (0, [2]), name
        statuses = {}
        for name, publisher in {
            "no token": None,
            "subscribe only": token([room]),
            "outside the claim": token(publish=["/events/news"]),
            "badly signed": token(publish=["*"], key="another-secret-that-is-32-bytes-long"),
            "granted": token(publish=["/events/rooms/{id}"]),
        }.items():
            headers = {"Content-Type": "application/json"}
            if publisher is not None:
                headers["Authorization"] = f"Bearer {publisher}"
            body = f'{{"data": "{name}", "private": true}}'
            statuses[name] = await page.fetch("POST", room, headers, body)
        assert statuses == {
            "no token": 401,
            "subscribe only": 403,
            "outside the claim": 403,
            "badly signed": 401,
            "granted": 200,
        }
        # Only the accepted publish reached the stream; the refused sources stayed closed.
        assert [e.data for e in await page.wait_for("granted", "granted")] == ["granted"]
        await asyncio.sleep(0.3)  # three retry delays: a refused source would have come back
        for name in refused:
            assert len((await page.record(name)).errors) == 1, name


async def test_an_eventsource_whose_token_expires_ends_at_exp_and_resumes_with_a_fresh_one(
    start_hub: HubFactory,
) -> None:
    """The README's page: it closes its EventSource when the hub ends the stream at the token's
    exp and opens a new one with a fresh token and ``lastEventId``: nothing is lost. A plain
    EventSource retries with its expired token, gets 401 and stops."""
    hub = start_hub("--retry", "100", env=JWT)
    mine = "/events/users/42"
    selectors = ["/events/news", "/events/rooms/{id}", mine]
    given: list[str] = []
    asked = asyncio.Event()
    allowed = asyncio.Event()
    exp = 0

    async def fresh_token() -> str:
        nonlocal exp
        if not given:  # the first token, made when the page asks: it expires 3 s later
            exp = math.ceil(time.time()) + 3
            given.append(token([mine], exp=exp))
        else:  # the page comes back: let the test publish what it misses first
            asked.set()
            await allowed.wait()
            given.append(token([mine], exp=exp + 60))
        return given[-1]

    async with (
        httpx.AsyncClient(base_url=hub.url, headers=bearer(ADMIN)) as c,
        eventsource_page(hub.url) as page,
    ):
        await page.open_refreshing("page", events_url(selectors), fresh_token, delay_ms=200)
        await wait_streams(c, 1)
        # A plain EventSource with the same token retries by itself after exp, with it: 401.
        await page.open("plain", events_url(selectors, authorization=given[0]))
        await wait_streams(c, 2)
        # The last event before exp is private: the page resumes from an id only it may read.
        ids = [
            await post(c, "/events/rooms/5", "1 room"),
            await post(c, mine, "2 private", private=True),
        ]
        await page.wait_for("page", "2 private")
        async with asyncio.timeout(exp - time.time() + 3):
            await asked.wait()
        ended = (await page.record("page")).errors[0]["at"]
        assert exp <= ended < exp + 1.5, (exp, ended)
        plain = await page.wait_until("plain", lambda r: len(r.errors) == 2)
        assert [e["readyState"] for e in plain.errors] == [0, 2]  # retrying, then closed
        assert exp <= plain.errors[0]["at"] < exp + 1.5, (exp, plain.errors)
        assert [e.data for e in plain.events] == ["1 room", "2 private"]
        # Published while the page is away: it gets them on resuming, then the live ones.
        ids += [
            await post(c, mine, "3 private", private=True),
            await post(c, ["/events/news", mine], "4 both"),
        ]
        allowed.set()
        await wait_streams(c, 1)
        ids.append(await post(c, "/events/news", "5 live"))
        events = await page.wait_for("page", "5 live")
        urls = (await page.record("page")).urls

    data = ["1 room", "2 private", "3 private", "4 both", "5 live"]
    assert events == [Received("message", i, d) for i, d in zip(ids, data, strict=True)]
    queries = [parse_qs(urlsplit(url).query) for url in urls]
    assert [q["authorization"] for q in queries] == [[given[0]], [given[1]]]
    assert [q.get("lastEventId") for q in queries] == [None, [ids[1]]]
