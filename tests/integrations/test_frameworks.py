"""Every framework integration in its real server: delivery, isolation, replay, disconnects.

Each test subscribes with httpx over a real socket to the framework's test app (see
``apps.py``), publishes through a route handler of that app, and checks what the client sees.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from tests._support.sse import open_sse
from tests.integrations.conftest import Served

pytestmark = pytest.mark.timeout(30)

_names = itertools.count()


def channel_name(label: str) -> str:
    """A channel name unique in the session (the servers live across tests)."""
    return f"{label}-{next(_names)}"


async def publish(served: Served, name: str, data: str) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(served.publish(name), content=data.encode())
    response.raise_for_status()
    event_id: str = response.json()["id"]
    return event_id


async def client_count(served: Served, name: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(served.clients(name))
    response.raise_for_status()
    count: int = response.json()["clients"]
    return count


async def wait_clients(served: Served, name: str, expected: int, timeout: float = 5.0) -> None:
    """Poll the app until its hub counts ``expected`` clients of ``name`` (at most ``timeout``)."""
    seen = None
    async with asyncio.timeout(timeout):
        while (seen := await client_count(served, name)) != expected:
            await asyncio.sleep(0.05)
    assert seen == expected


async def test_delivers_events_published_from_a_route_handler(served: Served) -> None:
    name = channel_name("delivery")
    async with open_sse(served.events(name)) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["access-control-allow-origin"] == "*"
        await wait_clients(served, name, 1)
        first = await publish(served, name, "Tue Nov 24 10:00:00 2026")
        second = await publish(served, name, "line one\nline two")
        events = await stream.events(2)
    assert [(e.id, e.event, e.data) for e in events] == [
        (first, "time", "Tue Nov 24 10:00:00 2026"),
        (second, "time", "line one\nline two"),
    ]
    assert b"retry: 500\n" in stream.raw


async def test_channels_are_isolated(served: Served) -> None:
    news, sport = channel_name("news"), channel_name("sport")
    async with open_sse(served.events(news)) as a, open_sse(served.events(sport)) as b:
        await wait_clients(served, news, 1)
        await wait_clients(served, sport, 1)
        await publish(served, news, "n1")
        await publish(served, sport, "s1")
        await publish(served, news, "n2")
        await publish(served, sport, "s2")
        assert [e.data for e in await a.events(2)] == ["n1", "n2"]
        assert [e.data for e in await b.events(2)] == ["s1", "s2"]


async def test_reconnect_with_last_event_id_replays_what_was_missed(served: Served) -> None:
    name = channel_name("replay")
    async with open_sse(served.events(name)) as stream:
        await wait_clients(served, name, 1)
        seen = await publish(served, name, "e1")
        assert (await stream.next_event()).id == seen
    missed = [await publish(served, name, f"e{i}") for i in (2, 3, 4)]
    async with open_sse(served.events(name), headers={"Last-Event-ID": seen}) as stream:
        replayed = await stream.events(3)
        assert [(e.id, e.data) for e in replayed] == list(
            zip(missed, ["e2", "e3", "e4"], strict=True)
        )
        live = await publish(served, name, "e5")
        assert (await stream.next_event()).id == live
    # The query parameter works as the header does (for EventSource polyfills).
    async with open_sse(served.events(name), params={"lastEventId": missed[-1]}) as stream:
        assert [e.data for e in await stream.events(1)] == ["e5"]


async def test_a_disconnect_frees_the_subscription(served: Served) -> None:
    name = channel_name("leave")
    async with open_sse(served.events(name)) as stream:
        await wait_clients(served, name, 1)
        await publish(served, name, "hello")
        assert (await stream.next_event()).data == "hello"
    # The client has closed its socket while the stream was idle: the server notices within a
    # bounded time (no event is published to make it write).
    await wait_clients(served, name, 0, timeout=8.0)


MOUNTED = {"starlette", "litestar", "aiohttp", "flask", "wsgi", "django-wsgi", "django-asgi"}
"""The apps that mount the hub's own handler (the others stream from a route of their own)."""


async def test_a_mounted_hub_answers_cors_preflight_and_refuses_other_methods(
    served: Served,
) -> None:
    url = served.events(channel_name("methods"))
    async with httpx.AsyncClient(timeout=5) as client:
        preflight = await client.options(url)
        refused = await client.put(url, content=b"x")
    assert refused.status_code == 405
    if served.name in MOUNTED:
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
