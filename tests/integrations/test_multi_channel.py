"""Several channels on one stream, in every framework integration and its real server.

Each app streams ``apps.multi_selectors(name)`` from ``/multi/<name>`` (``/multi/<name>/a``,
``/multi/<name>/b`` and the template ``/multi/<name>/rooms/{id}``, given as the integration's
``channel`` in code), and publishes one event to a list of channels from ``/publish-to``. The
mounted handlers also read ``?channel=`` selectors from the query.
"""

from __future__ import annotations

import httpx
import pytest

from tests._support.sse import SSEStream, open_sse
from tests.integrations.conftest import Served
from tests.integrations.test_frameworks import channel_name, publish

pytestmark = pytest.mark.timeout(30)

FORCED = {"fastapi", "django-asgi"}
"""The apps whose default route picks the channel in code (a ``channel=`` or ``channel_name``),
so ``?channel=`` does not apply there."""


async def publish_to(served: Served, channels: list[str], data: str) -> str:
    """Publish ``data`` as one event to ``channels`` through the app; its id."""
    params = {"channel": channels}
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(served.publish_to(), params=params, content=data.encode())
    response.raise_for_status()
    event_id: str = response.json()["id"]
    return event_id


async def subscribed(stream: SSEStream) -> None:
    """Wait (bounded) until the stream is open: the hub pushes ``retry:`` when it subscribes."""
    assert stream.response.status_code == 200
    await stream.wait_raw(b"retry: 500\n")


async def test_one_stream_reads_exact_and_templated_channels_in_publish_order(
    served: Served,
) -> None:
    name = channel_name("multi")
    base = f"/multi/{name}"
    async with open_sse(served.multi(name)) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        await subscribed(stream)
        sent = [
            (await publish_to(served, [f"{base}/a"], "a1"), "a1"),
            (await publish_to(served, [f"{base}/rooms/7"], "r1"), "r1"),
            (await publish_to(served, [f"{base}/b"], "b1"), "b1"),
            (await publish_to(served, [f"{base}/a"], "a2"), "a2"),
            (await publish_to(served, [f"{base}/rooms/x"], "r2"), "r2"),
        ]
        events = await stream.events(len(sent))
    assert [(e.id, e.data) for e in events] == sent
    assert {e.event for e in events} == {"time"}


async def test_an_event_published_to_two_selected_channels_arrives_once(served: Served) -> None:
    name = channel_name("once")
    base = f"/multi/{name}"
    async with open_sse(served.multi(name)) as stream:
        await subscribed(stream)
        both = await publish_to(served, [f"{base}/a", f"{base}/b"], "both")
        room = await publish_to(served, [f"{base}/rooms/1", f"{base}/a"], "room")
        last = await publish_to(served, [f"{base}/b"], "last")
        events = await stream.events(3)
    # The next event after each is the following publish: no copy came in between.
    assert [(e.id, e.data) for e in events] == [(both, "both"), (room, "room"), (last, "last")]
    assert stream.raw.count(b"data: both\n") == stream.raw.count(b"data: room\n") == 1


async def test_a_channel_outside_the_selectors_is_not_received(served: Served) -> None:
    name = channel_name("outside")
    base = f"/multi/{name}"
    async with open_sse(served.multi(name)) as stream:
        await subscribed(stream)
        for channel in (
            f"{base}/c",  # a sibling of the exact names
            f"{base}/rooms/1/deeper",  # {id} spans one path segment only
            f"/multi/{channel_name('other')}/a",  # another stream's channel
        ):
            await publish_to(served, [channel], "outside")
        await publish(served, name, "outside")  # the app's own channel of that name
        inside = await publish_to(served, [f"{base}/b"], "inside")
        event = await stream.next_event()
    assert (event.id, event.data) == (inside, "inside")
    assert b"data: outside\n" not in stream.raw


async def test_one_last_event_id_resumes_every_selected_channel_once_in_order(
    served: Served,
) -> None:
    name = channel_name("resume")
    base = f"/multi/{name}"
    async with open_sse(served.multi(name)) as stream:
        await subscribed(stream)
        seen = await publish_to(served, [f"{base}/a"], "seen")
        assert (await stream.next_event()).id == seen
    # Published while the client was away: every selected channel, one event in two of them,
    # and one channel outside the selection.
    missed = [
        (await publish_to(served, [f"{base}/b"], "m1"), "m1"),
        (await publish_to(served, [f"{base}/rooms/3"], "m2"), "m2"),
        (await publish_to(served, [f"{base}/a", f"{base}/b"], "m3"), "m3"),
    ]
    await publish_to(served, [f"{base}/c"], "outside")
    missed.append((await publish_to(served, [f"{base}/a"], "m4"), "m4"))
    async with open_sse(served.multi(name), headers={"Last-Event-ID": seen}) as stream:
        replayed = await stream.events(len(missed))
        assert [(e.id, e.data) for e in replayed] == missed
        live = await publish_to(served, [f"{base}/rooms/4"], "live")
        event = await stream.next_event()
        assert (event.id, event.data) == (live, "live")
    assert b"data: outside\n" not in stream.raw
    assert stream.raw.count(b"data: m3\n") == 1


async def test_query_channel_selectors_on_the_default_route(served: Served) -> None:
    name = channel_name("query")
    base = f"/query/{name}"
    selectors = {"channel": [f"{base}/news", f"{base}/rooms/{{id}}"]}
    if served.name in FORCED:
        # A channel picked in code wins over the query: the stream reads the route's channel.
        async with open_sse(served.events(name), params=selectors) as stream:
            await subscribed(stream)
            await publish_to(served, [f"{base}/news"], "query")
            path_id = await publish(served, name, "path")
            event = await stream.next_event()
            assert (event.id, event.data) == (path_id, "path")
        assert b"data: query\n" not in stream.raw
        return
    async with open_sse(served.events(name), params=selectors) as stream:
        await subscribed(stream)
        await publish(served, name, "path")  # the path's channel: the query replaced it
        await publish_to(served, [f"{base}/sport"], "outside")
        sent = [
            (await publish_to(served, [f"{base}/rooms/9"], "r1"), "r1"),
            (await publish_to(served, [f"{base}/news", f"{base}/rooms/2"], "n1"), "n1"),
        ]
        events = await stream.events(len(sent))
    assert [(e.id, e.data) for e in events] == sent
    assert b"data: path\n" not in stream.raw
    assert b"data: outside\n" not in stream.raw


async def test_a_bad_query_selector_gets_400(served: Served) -> None:
    url = served.events(channel_name("bad"))
    if served.name in FORCED:
        # The query is not read where the route picks the channel in code: the stream opens.
        async with open_sse(url, params={"channel": "/rooms/{id"}) as stream:
            await subscribed(stream)
        return
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url, params={"channel": "/rooms/{id"})
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == "*"
