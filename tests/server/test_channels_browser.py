"""Several channels on one ``EventSource`` in headless Chromium, on a real ``ssehub serve``.

The page is of the hub's origin (its ``/healthz``, or the proxy's), so EventSource needs no
CORS. Tokens ride in ``?authorization=``, as EventSource cannot set headers. Ids are compared
with those the publish answers gave, ordered by the hub's publish counter (their last number).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlencode

import httpx
import pytest

from tests._support.eventsource_page import Received, eventsource_page
from tests.server.hub_process import HubFactory
from tests.server.test_channels_api import wait_streams
from tests.server.test_jwt import SECRET, bearer, token

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
