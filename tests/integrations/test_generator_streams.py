"""Per-request streams (``EventSourceResponse``) in every framework, under its real server.

Each app's ``GET /count`` streams a generator (see ``apps.counting``); ``GET /closed?tag=``
tells whether that generator's ``finally`` ran, in the server's own process. Async generators
are tested where the framework runs them (ASGI and aiohttp); WSGI bodies are sync only.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from tests._support.sse import open_sse
from tests.integrations.conftest import Served

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

SYNC_ONLY = {"flask", "wsgi", "django-wsgi"}
"""The WSGI apps: their response bodies are sync, so only sync generators."""

_tags = itertools.count()


def kinds(served: Served) -> list[str]:
    """The generator kinds the framework streams."""
    return ["sync"] if served.name in SYNC_ONLY else ["sync", "async"]


def new_tag(served: Served, kind: str) -> str:
    """A generator tag unique in the session (the servers live across tests)."""
    return f"{served.name}-{kind}-{next(_tags)}"


async def generator_closed(served: Served, tag: str) -> bool:
    """Whether the app's generator tagged ``tag`` has run its ``finally``."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(served.url("/closed"), params={"tag": tag})
    response.raise_for_status()
    answer: bool = response.json()["closed"]
    return answer


async def wait_closed(served: Served, tag: str, timeout: float) -> None:
    """Poll until the generator tagged ``tag`` is closed; TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await generator_closed(served, tag):
            await asyncio.sleep(0.05)


async def test_a_generator_is_streamed_and_the_response_ends(served: Served) -> None:
    for kind in kinds(served):
        tag = new_tag(served, kind)
        params = {"n": "5", "kind": kind, "tag": tag}
        async with open_sse(served.url("/count"), params=params) as stream:
            assert stream.response.status_code == 200, kind
            assert stream.response.headers["content-type"].startswith("text/event-stream")
            events = await stream.read_until_end(timeout=10)  # UncleanEnd unless it ended well
        assert [e.data for e in events] == ["1", "2", "3", "4", "5"], kind
        assert await generator_closed(served, tag), kind


async def test_a_client_that_leaves_closes_the_generator(served: Served) -> None:
    for kind in kinds(served):
        tag = new_tag(served, kind)
        params = {"n": "100000", "delay": "0.05", "kind": kind, "tag": tag}
        async with open_sse(served.url("/count"), params=params) as stream:
            assert [e.data for e in await stream.events(2)] == ["1", "2"], kind
            assert not await generator_closed(served, tag), kind
        # The client has closed its socket mid-stream: the server closes the generator.
        await wait_closed(served, tag, timeout=8.0)


async def test_keepalive_comments_while_the_generator_is_idle(served: Served) -> None:
    for kind in kinds(served):
        tag = new_tag(served, kind)
        params = {"n": "1", "wait": "1.0", "ping": "0.2", "kind": kind, "tag": tag}
        async with open_sse(served.url("/count"), params=params) as stream:
            await stream.wait_raw(b": ping\n\n", timeout=5)
            assert b"data: 1" not in stream.raw, kind  # the ping came while it was idle
            events = await stream.read_until_end(timeout=10)
        assert [e.data for e in events] == ["1"], kind
