"""Event ids from an earlier run of the hub never resume a stream from the wrong place.

The memory backend forgets its history when the process ends. A client that comes back after a
restart with the id of an event from the earlier run must be told about the gap (the
``ssehub.gap`` event) and get what the new run retained, never a replay that starts at the new
run's event that happens to carry the same id.
"""

from __future__ import annotations

import json

import httpx
import pytest

from ssehub import GAP_EVENT
from tests._support.sse import open_sse
from tests.server.hub_process import HubFactory

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


async def publish(url: str, channel: str, texts: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answers = [await client.post(channel, content=text) for text in texts]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [str(a.json()["id"]) for a in answers]


async def test_resume_with_an_id_from_before_a_restart_gets_the_gap_event(
    start_hub: HubFactory,
) -> None:
    channel = "/events/restarted"
    first = start_hub()
    old_ids = await publish(first.url, channel, ["old 0", "old 1", "old 2"])
    assert first.stop() == 0, first.log()

    second = start_hub()
    new_ids = await publish(second.url, channel, ["new 0", "new 1", "new 2"])
    assert set(old_ids).isdisjoint(new_ids), (old_ids, new_ids)

    for old in (old_ids[0], old_ids[-1]):
        async with open_sse(f"{second.url}{channel}", headers={"Last-Event-ID": old}) as stream:
            gap, *events = await stream.events(4)
        assert gap.event == GAP_EVENT
        assert json.loads(gap.data) == {"last_event_id": old, "replayed": 3}
        assert [(e.id, e.data) for e in events] == list(
            zip(new_ids, ["new 0", "new 1", "new 2"], strict=True)
        )
