"""``ssehub serve --presence``: the open subscriptions listed at ``/subscriptions`` (and per
channel), and joins and leaves announced as private events on the reserved channel
``/subscriptions``; real ``ssehub serve`` processes, real sockets."""

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
import pytest

from ssehub import Message
from ssehub.server.presence import PRESENCE_TTL
from tests._support.redis_server import RedisServer
from tests._support.sse import SSEStream, open_sse
from tests.server.hub_process import HubFactory, HubProcess

pytestmark = pytest.mark.timeout(60)

ADMIN = "admin-token-for-presence"


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


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
) -> list[dict[str, Any]]:
    """The listing at ``path`` once ``condition`` holds for it (polled; fails after timeout)."""
    async with asyncio.timeout(timeout):
        while True:
            found: list[dict[str, Any]] = (await listing(hub, path))["subscriptions"]
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


async def test_the_open_subscriptions_are_listed_and_a_leaver_drops_out(
    start_hub: HubFactory,
) -> None:
    hub = start_hub("--presence", "--admin-token", ADMIN)
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


def presence_events(messages: list[Message]) -> list[dict[str, Any]]:
    return [json.loads(m.data) for m in messages if m.event == "subscription"]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.mark.redis
async def test_on_redis_every_hub_lists_the_subscriptions_of_every_hub(
    start_hub: HubFactory, redis: RedisServer
) -> None:
    a = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url)
    b = start_hub("--presence", "--admin-token", ADMIN, "--redis", redis.url)
    async with stream(a, "/events/on-a"):
        async with stream(b, "/events/on-b"):
            for hub in (a, b):
                found = await listed_when(hub, lambda found: len(found) == 2)
                assert selectors(found) == [["/events/on-a"], ["/events/on-b"]]
                assert len({entry["hub"] for entry in found}) == 2
            on_b = await listed_when(
                a, lambda found: len(found) == 1, path="/subscriptions/events/on-b"
            )
            assert on_b[0]["hub"] != (await listing(a, "/healthz"))["worker"]
        await listed_when(a, lambda found: selectors(found) == [["/events/on-a"]])
        await listed_when(b, lambda found: selectors(found) == [["/events/on-a"]])


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
