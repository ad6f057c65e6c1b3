"""Hub processes sharing a Redis see each other's reports; a silent one drops out."""

from __future__ import annotations

import asyncio

import pytest

from tests.redis.conftest import HubPair

pytestmark = pytest.mark.redis


async def test_each_process_sees_every_live_report_and_a_silent_one_drops_out(
    hubs: HubPair,
) -> None:
    first = await hubs.hub()
    second = await hubs.hub()
    await second.backend.report("w2", {"worker": "w2", "clients": 3}, ttl=0.5)
    seen = await first.backend.report("w1", {"worker": "w1", "clients": 1}, ttl=0.5)
    assert sorted(s["worker"] for s in seen) == ["w1", "w2"]
    # w2 stops reporting: past the ttl it is left out, whatever its last report said.
    await asyncio.sleep(0.7)
    seen = await first.backend.report("w1", {"worker": "w1", "clients": 1}, ttl=0.5)
    assert [s["worker"] for s in seen] == ["w1"]


async def test_a_process_that_stops_cleanly_leaves_at_once(hubs: HubPair) -> None:
    first = await hubs.hub()
    second = await hubs.hub()
    await second.backend.report("w2", {"worker": "w2"}, ttl=30)
    await second.backend.retire("w2")
    seen = await first.backend.report("w1", {"worker": "w1"}, ttl=30)
    assert [s["worker"] for s in seen] == ["w1"]


async def test_a_process_alone_in_memory_reports_only_itself() -> None:
    from ssehub.backends.memory import MemoryBackend

    state = {"worker": "solo", "clients": 2}
    assert await MemoryBackend().report("solo", state, ttl=1.0) == [state]
    assert MemoryBackend().shared is False
