"""Hub processes sharing a Redis share their lists of subscriptions (presence); the list of a
process that stops refreshing it drops out after its ttl."""

from __future__ import annotations

import asyncio

import pytest

from ssehub.backends.base import Backend
from ssehub.backends.memory import MemoryBackend
from tests.redis.conftest import HubPair

pytestmark = pytest.mark.redis


async def listed(backend: Backend, exclude: str, ttl: float = 30, page: int = 1000) -> list[str]:
    return [text async for found in backend.presence(exclude, ttl, page=page) for text in found]


async def test_a_process_reads_every_other_process_list_but_its_own(hubs: HubPair) -> None:
    first = await hubs.hub()
    second = await hubs.hub()
    await first.backend.share_presence("w1", {"a": '"a"'}, ttl=30)
    await second.backend.share_presence("w2", {"b": '"b"', "c": '"c"'}, ttl=30)
    assert sorted(await listed(first.backend, "w1")) == ['"b"', '"c"']
    assert sorted(await listed(second.backend, "w2")) == ['"a"']
    # Changes: one leaves, one joins; a reset replaces the whole list.
    await second.backend.share_presence("w2", {"b": None, "d": '"d"'}, ttl=30)
    assert sorted(await listed(first.backend, "w1")) == ['"c"', '"d"']
    await second.backend.share_presence("w2", {"e": '"e"'}, ttl=30, reset=True)
    assert await listed(first.backend, "w1") == ['"e"']


async def test_a_long_list_is_read_in_pages(hubs: HubPair) -> None:
    first = await hubs.hub()
    second = await hubs.hub()
    entries: dict[str, str | None] = {f"id{i}": f'"{i}"' for i in range(2500)}
    await second.backend.share_presence("w2", entries, ttl=30)
    pages = [found async for found in first.backend.presence("w1", 30, page=100)]
    assert len(pages) > 1
    assert len({text for found in pages for text in found}) == 2500


async def test_a_silent_process_drops_out_after_the_ttl_and_a_retired_one_at_once(
    hubs: HubPair,
) -> None:
    first = await hubs.hub()
    second = await hubs.hub()
    await second.backend.share_presence("w2", {"b": '"b"'}, ttl=0.5)
    await second.backend.share_presence("w3", {"c": '"c"'}, ttl=0.5)
    assert sorted(await listed(first.backend, "w1", ttl=0.5)) == ['"b"', '"c"']
    await asyncio.sleep(0.3)
    await second.backend.share_presence("w3", {}, ttl=0.5)  # w3 refreshes, w2 is silent
    await asyncio.sleep(0.3)
    assert await listed(first.backend, "w1", ttl=0.5) == ['"c"']
    await second.backend.retire_presence("w3")
    assert await listed(first.backend, "w1", ttl=0.5) == []


async def test_a_process_alone_in_memory_shares_nothing() -> None:
    backend = MemoryBackend()
    await backend.share_presence("solo", {"a": '"a"'}, ttl=1.0)
    assert await listed(backend, "other") == []
    await backend.retire_presence("solo")
