"""Idempotent publish on Redis: the same id published through two hubs is stored once."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from ssehub import EventParser, Message

if TYPE_CHECKING:
    from tests.redis.conftest import HubPair

pytestmark = [pytest.mark.redis, pytest.mark.timeout(30)]


async def test_a_retry_through_another_hub_is_a_duplicate_and_delivered_once(
    hubs: HubPair,
) -> None:
    a = await hubs.hub(keepalive=None)
    b = await hubs.hub(keepalive=None)
    sub = await a.subscribe("/pay")
    results = await asyncio.gather(
        *(hub.publish("/pay", Message("paid", id="invoice-7")) for hub in (a, b, a, b))
    )
    assert sorted(r.duplicate for r in results) == [False, True, True, True]
    assert set(results) == {"invoice-7"}
    await b.publish("/pay", "after")
    data = b""
    async with asyncio.timeout(5):
        while b"data: after" not in data:
            data += await sub.next_chunk() or b""
    assert [m.data for m in EventParser().feed(data)] == ["paid", "after"]
    resumed = await b.subscribe("/pay", last_event_id="unknown")
    assert [m.data for m in EventParser().feed(resumed.take() or b"") if m.event is None] == [
        "paid",
        "after",
    ]


async def test_an_id_trimmed_away_can_be_published_again(hubs: HubPair) -> None:
    a = await hubs.hub(history=2, keepalive=None)
    assert not (await a.publish("/t", Message("x", id="x"))).duplicate
    await a.publish("/t", "y")
    await a.publish("/t", "z")
    assert not (await a.publish("/t", Message("x again", id="x"))).duplicate
