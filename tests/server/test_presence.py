"""``ssehub serve --presence``: the open subscriptions listed at ``/subscriptions`` (and per
channel), and joins and leaves announced as private events on the reserved channel
``/subscriptions``; real ``ssehub serve`` processes, real sockets, JWTs made with PyJWT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from ssehub import Message
from ssehub.server.presence import PRESENCE_TTL
from tests._support.redis_server import RedisServer
from tests._support.sse import SSEStream, open_sse
from tests.server.hub_process import HubFactory, HubProcess

pytestmark = pytest.mark.timeout(60)

ADMIN = "admin-token-for-presence"
SECRET = "a-presence-test-secret-of-32-bytes-or-more"
JWT = {"SSEHUB_JWT_SECRET": SECRET}


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def token(
    subscribe: list[str] | None = None, publish: list[str] | None = None, payload: Any = None
) -> str:
    """A JWT (HS256, `SECRET`) granting these selectors, carrying ``payload`` when given."""
    grant: dict[str, Any] = {"subscribe": subscribe or [], "publish": publish or []}
    if payload is not None:
        grant["payload"] = payload
    return jwt.encode({"ssehub": grant}, SECRET, algorithm="HS256")


READER = token(["/subscriptions"])
"""May read the presence channel (its events and every listing)."""


@contextlib.asynccontextmanager
async def stream(
    hub: HubProcess, *selectors: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SSEStream]:
    """A stream of one channel (``/events/...``), or of several selectors (``?channel=``)."""
    if len(selectors) == 1 and selectors[0].startswith("/events/"):
        url = hub.url + selectors[0]
    else:
        url = hub.url + "/events?" + urlencode([("channel", s) for s in selectors])
    async with open_sse(url, headers=headers) as opened:
        assert opened.response.status_code == 200, await opened.response.aread()
        yield opened


async def listing(
    hub: HubProcess, path: str = "/subscriptions", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The JSON answer of ``path`` (with the admin token unless ``headers`` say otherwise)."""
    async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
        answer = await client.get(path, headers=admin() if headers is None else headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    found: dict[str, Any] = answer.json()
    return found


async def listed_when(
    hub: HubProcess,
    condition: Callable[[list[dict[str, Any]]], bool],
    path: str = "/subscriptions",
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The listing at ``path`` once ``condition`` holds for it (polled; fails after timeout)."""
    async with asyncio.timeout(timeout):
        while True:
            found: list[dict[str, Any]] = (await listing(hub, path, headers))["subscriptions"]
            if condition(found):
                return found
            await asyncio.sleep(0.05)


def selectors(found: list[dict[str, Any]]) -> list[list[str]]:
    return sorted(entry["selectors"] for entry in found)


async def test_without_presence_its_routes_are_404(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
        for path in ("/subscriptions", "/subscriptions/events/news"):
            answer = await client.get(path)
            assert answer.status_code == 404, answer.text
            assert "no route" in answer.json()["error"]


@pytest.mark.parametrize("http", ["native", "uvicorn"])
async def test_the_open_subscriptions_are_listed_and_a_leaver_drops_out(
    start_hub: HubFactory, http: str
) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN, "--http", http)
    async with (
        stream(hub, "/events/news"),
        stream(hub, "/events/news"),
        stream(hub, "/events/sport") as leaver,
    ):
        found = await listed_when(hub, lambda found: len(found) == 3)
        assert selectors(found) == [["/events/news"], ["/events/news"], ["/events/sport"]]
        health = (await listing(hub, "/healthz"))["worker"]
        for entry in found:
            assert entry.keys() == {"id", "selectors", "payload", "active", "hub"}
            assert entry["payload"] is None
            assert entry["active"] is True
            assert entry["hub"] == health
        assert len({entry["id"] for entry in found}) == 3
        news = (await listing(hub, "/subscriptions/events/news"))["subscriptions"]
        assert selectors(news) == [["/events/news"], ["/events/news"]]
        assert (await listing(hub, "/subscriptions/events/none"))["subscriptions"] == []
        sport = next(entry for entry in found if entry["selectors"] == ["/events/sport"])
        await leaver.response.aclose()
        left = await listed_when(hub, lambda found: len(found) == 2)
        assert sport["id"] not in {entry["id"] for entry in left}
    await listed_when(hub, lambda found: found == [])


async def test_presence_is_on_with_its_environment_variable(start_hub: HubFactory) -> None:
    hub = start_hub(env={"SSEHUB_PRESENCE": "1"})
    assert (await listing(hub, headers={}))["subscriptions"] == []  # no token set: open


async def test_listing_needs_the_admin_token(start_hub: HubFactory) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN)
    async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
        for path in ("/subscriptions", "/subscriptions/events/news"):
            refused = await client.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get(path, headers=admin("wrong"))).status_code == 401
            assert (await client.get(path, params={"token": ADMIN})).status_code == 200


async def test_a_long_list_is_cut_at_the_limit_and_says_so(start_hub: HubFactory) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN)
    async with contextlib.AsyncExitStack() as streams:
        for index in range(5):
            await streams.enter_async_context(stream(hub, f"/events/c{index}"))
        await listed_when(hub, lambda found: len(found) == 5)
        cut = await listing(hub, "/subscriptions?limit=3")
        assert len(cut["subscriptions"]) == 3 and cut["truncated"] is True
        whole = await listing(hub, "/subscriptions?limit=5")
        assert len(whole["subscriptions"]) == 5 and whole["truncated"] is False
        assert (await listing(hub))["truncated"] is False
        async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
            for bad in ("0", "10001", "-1", "x", "1.5"):
                answer = await client.get(f"/subscriptions?limit={bad}", headers=admin())
                assert answer.status_code == 400, bad
                assert "limit must be a whole number from 1 to 10000" in answer.json()["error"]


async def test_the_presence_channel_is_not_a_user_channel(start_hub: HubFactory) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN, "--history", "10")
    async with stream(hub, "/events/news") as news:
        await listed_when(hub, lambda found: len(found) == 1)
        channels = await listing(hub, "/channels")
        assert [c["channel"] for c in channels["channels"]] == ["/events/news"]
        async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
            answer = await client.post("/broadcast", content="to every user channel")
        assert answer.status_code == 200
        assert "/subscriptions" not in answer.json()["ids"]
        assert (await news.next_event()).data == "to every user channel"


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.redis
async def test_on_redis_every_hub_lists_and_announces_the_subscriptions_of_every_hub(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    a = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url, env=JWT)
    b = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url, env=JWT)
    b_name = (await listing(b, "/healthz"))["worker"]
    async with (
        stream(a, "/subscriptions", headers=admin(READER)) as reader_on_a,
        stream(a, "/events/on-a"),
    ):
        async with stream(b, "/events/on-b"):
            for hub in (a, b):
                found = await listed_when(hub, lambda found: len(found) == 3)
                assert selectors(found) == [["/events/on-a"], ["/events/on-b"], ["/subscriptions"]]
                assert len({entry["hub"] for entry in found}) == 2
            [on_b] = await listed_when(
                a, lambda found: len(found) == 1, path="/subscriptions/events/on-b"
            )
            assert on_b["hub"] == b_name
        await listed_when(a, lambda found: len(found) == 2)
        await listed_when(b, lambda found: len(found) == 2)
        # B's join and leave reached the presence reader on A, through Redis.
        seen = await presence_until(reader_on_a, {**on_b, "active": False})
        assert [e for e in seen if e["id"] == on_b["id"]] == [on_b, {**on_b, "active": False}]


@pytest.mark.redis
@pytest.mark.slow
async def test_on_redis_a_hub_that_dies_drops_out_of_the_others_list(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    a = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url)
    b = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url)
    async with stream(b, "/events/doomed") as doomed:
        await listed_when(a, lambda found: selectors(found) == [["/events/doomed"]])
        b.stop(signal.SIGKILL)
        await doomed.read_until_end(strict=False)
    # Its list lives PRESENCE_TTL (5 s) past its last refresh.
    started = time.monotonic()
    await listed_when(a, lambda found: found == [], timeout=10)
    assert time.monotonic() - started < PRESENCE_TTL + 2


# -- with JWTs -------------------------------------------------------------------------------


async def test_a_tokens_payload_is_listed_and_templates_match_a_channels_list(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--presence", env=JWT)
    ann = token(["/events/rooms/{id}"], payload={"name": "Ann", "tags": [1, None]})
    reader = admin(READER)
    async with (
        stream(hub, "/events/news"),
        stream(hub, "/events/news", "/events/rooms/{id}", headers=admin(ann)),
        stream(hub, "/events/rooms/7"),
    ):
        found = await listed_when(hub, lambda found: len(found) == 3, headers=reader)
        [listed_ann] = [entry for entry in found if entry["payload"] is not None]
        assert listed_ann["payload"] == {"name": "Ann", "tags": [1, None]}
        assert listed_ann["selectors"] == ["/events/news", "/events/rooms/{id}"]
        room7 = await listing(hub, "/subscriptions/events/rooms/7", reader)
        assert selectors(room7["subscriptions"]) == [
            ["/events/news", "/events/rooms/{id}"],
            ["/events/rooms/7"],
        ]
        room8 = await listing(hub, "/subscriptions/events/rooms/8", reader)
        assert room8["subscriptions"] == [listed_ann]
        news = await listing(hub, "/subscriptions/events/news", reader)
        assert len(news["subscriptions"]) == 2


async def test_joins_and_leaves_reach_only_the_streams_allowed_to_read_the_presence_channel(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--presence", env=JWT)
    bob = token(payload={"name": "Bob"})
    publisher = admin(token(publish=["*"]))
    async with (
        stream(hub, "/subscriptions", headers=admin(READER)) as allowed,
        stream(hub, "*", headers=admin(token(["*"]))) as everything_allowed,
        stream(hub, "*") as anonymous,
        stream(hub, "*", "/subscriptions", headers=admin(token(["/events/{x}"]))) as other,
        httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client,
    ):
        await listed_when(hub, lambda found: len(found) == 4, headers=admin(READER))
        # The presence channel is the hub's own: not a user channel.
        channels = (await client.get("/channels")).json()["channels"]
        assert "/subscriptions" not in [c["channel"] for c in channels]
        async with stream(hub, "/events/news", headers=admin(bob)):
            joined = await listed_when(
                hub,
                lambda found: any(e["selectors"] == ["/events/news"] for e in found),
                headers=admin(READER),
            )
        [bob_entry] = [e for e in joined if e["selectors"] == ["/events/news"]]
        assert bob_entry["payload"] == {"name": "Bob"}
        bob_left = {**bob_entry, "active": False}
        for reader in (allowed, everything_allowed):
            seen = await presence_until(reader, bob_left)
            assert [e for e in seen if e["id"] == bob_entry["id"]] == [bob_entry, bob_left]
        # Published after bob's leave: a stream that got neither join nor leave before it never
        # will (a hub delivers to each stream in publish order).
        answer = await client.post("/events/news", content="after bob left", headers=publisher)
        assert answer.status_code == 200, answer.text
        for outsider in (anonymous, other):
            seen_data: list[Message] = []
            while not seen_data or seen_data[-1].data != "after bob left":
                seen_data.append(await outsider.next_event())
            assert [(m.event, m.data) for m in seen_data] == [(None, "after bob left")]


async def presence_until(reader: SSEStream, last: dict[str, Any]) -> list[dict[str, Any]]:
    """The presence events ``reader`` gets, up to and including ``last``."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1] != last:
        message = await reader.next_event()
        if message.event == "subscription":
            seen.append(json.loads(message.data))
    return seen


async def test_with_jwts_a_listing_needs_a_token_that_may_read_it(start_hub: HubFactory) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN, "--subscribe-token", "shared", env=JWT)
    room = token(["/subscriptions/events/rooms/{id}"])
    cases = [
        ("/subscriptions", {}, 401),
        ("/subscriptions", admin("not-a-jwt"), 401),
        ("/subscriptions", admin("shared"), 401),  # every subscriber holds it
        ("/subscriptions", admin(token(["/events/news", "*/x"])), 403),
        ("/subscriptions", admin(room), 403),
        ("/subscriptions/events/rooms/42", admin(room), 200),
        ("/subscriptions/events/news", admin(room), 403),
        ("/subscriptions", admin(READER), 200),
        ("/subscriptions/events/news", admin(READER), 200),
        (f"/subscriptions?authorization={READER}", {}, 200),
        ("/subscriptions", admin(), 200),
        ("/subscriptions/events/news", {}, 401),
    ]
    async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
        for path, headers, status in cases:
            answer = await client.get(path, headers=headers)
            assert answer.status_code == status, (path, headers, answer.text)
            if status == 401:
                assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_the_presence_channel_cannot_be_published_to(start_hub: HubFactory) -> None:
    hub = start_hub("--presence", env=JWT)
    async with httpx.AsyncClient(base_url=hub.url, timeout=5.0) as client:
        answer = await client.post(
            "/events",
            json={"channels": ["/events/news", "/subscriptions"], "data": "forged"},
            headers=admin(token(publish=["*"])),
        )
    # Publishers name channels under /events/ only: the hub alone publishes there.
    assert answer.status_code == 400, answer.text
    assert "'/subscriptions' is not a channel name" in answer.json()["error"]
