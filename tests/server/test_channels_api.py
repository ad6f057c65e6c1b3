"""``GET /events?channel=`` (one stream, several channels) and ``POST /events`` (one event,
several channels) on a real ``ssehub serve``, next to ``/events/{channel}``, which is unchanged."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests._support.sse import SSEStream, open_sse
from tests.server.hub_process import HubProcess

pytestmark = pytest.mark.timeout(30)


async def wait_streams(client: httpx.AsyncClient, count: int) -> None:
    """Wait until the hub holds ``count`` open streams in all (``/healthz``; bounded)."""
    for _ in range(250):
        if (await client.get("/healthz")).json()["clients"] == count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the hub never held {count} streams")


async def publish(client: httpx.AsyncClient, path: str, body: object) -> str:
    answer = await client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    event_id: str = answer.json()["id"]
    return event_id


async def data_until(stream: SSEStream, last: str) -> list[str]:
    """The data of each event up to and including the one whose data is ``last``."""
    seen: list[str] = []
    while not seen or seen[-1] != last:
        seen.append((await stream.next_event()).data)
    return seen


async def test_one_stream_reads_exact_names_and_templates_each_event_once(hub: HubProcess) -> None:
    params = [("channel", "/events/t1/news"), ("channel", "/events/t1/rooms/{id}")]
    async with (
        httpx.AsyncClient(base_url=hub.url) as c,
        open_sse(hub.url + "/events", params=params) as stream,
    ):
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        for channel, data in [
            ("/events/t1/news", "news"),
            ("/events/t1/rooms/7", "room 7"),
            ("/events/t1/rooms/7/deep", "not one segment"),
            ("/events/t1/other", "not selected"),
            ("/events/t1/rooms/8", "room 8"),
        ]:
            await publish(c, channel, {"data": data})
        # One event to a channel matched by name and by the template: received once.
        await publish(
            c, "/events", {"channels": ["/events/t1/news", "/events/t1/rooms/9"], "data": "both"}
        )
        assert await data_until(stream, "both") == ["news", "room 7", "room 8", "both"]


async def test_post_events_reaches_a_subscriber_of_both_channels_once(hub: HubProcess) -> None:
    a, b = "/events/t2/a", "/events/t2/b"
    async with (
        httpx.AsyncClient(base_url=hub.url) as c,
        open_sse(hub.url + "/events", params=[("channel", a), ("channel", b)]) as both,
        open_sse(hub.url + a) as only_a,
        open_sse(hub.url + b) as only_b,
    ):
        await wait_streams(c, 3)
        answer = await c.post("/events", json={"channels": [a, b], "data": "hi", "event": "e"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["channels"] == [a, b]
        # Per channel: the stream reading both is counted in each, and receives the event once.
        assert body["clients"] == {a: 2, b: 2}
        for stream in (both, only_a, only_b):
            event = await stream.next_event()
            assert (event.data, event.event, event.id) == ("hi", "e", body["id"])
        await publish(c, a, {"data": "after"})
        assert (await both.next_event()).data == "after"  # not a second "hi"


async def test_post_events_counts_the_streams_that_match_through_a_template(
    hub: HubProcess,
) -> None:
    room, news = "/events/t2b/rooms/1", "/events/t2b/news"
    async with (
        httpx.AsyncClient(base_url=hub.url) as c,
        open_sse(hub.url + "/events", params=[("channel", "/events/t2b/rooms/{id}")]),
        open_sse(hub.url + room),
    ):
        await wait_streams(c, 2)
        answer = await c.post("/events", json={"channels": [room, news], "data": "x"})
        assert answer.json()["clients"] == {room: 2, news: 0}
        single = await c.post(room, json={"data": "y"})
        assert single.json()["clients"] == 2


async def test_one_last_event_id_resumes_every_channel_in_publish_order(hub: HubProcess) -> None:
    a, b, room = "/events/t3/a", "/events/t3/b", "/events/t3/rooms/1"
    params = [("channel", a), ("channel", b), ("channel", "/events/t3/rooms/{id}")]
    async with httpx.AsyncClient(base_url=hub.url) as c:
        first = await publish(c, a, {"data": "a1"})
        await publish(c, b, {"data": "b1"})
        await publish(c, room, {"data": "r1"})
        await publish(c, "/events", {"channels": [a, b], "data": "ab"})
        await publish(c, "/events/t3/elsewhere", {"data": "not selected"})
        await publish(c, a, {"data": "a2"})
        expected = ["b1", "r1", "ab", "a2"]
        async with open_sse(
            hub.url + "/events", params=params, headers={"Last-Event-ID": first}
        ) as by_header:
            assert await data_until(by_header, "a2") == expected
        # ?lastEventId= (for polyfills) resumes the same way.
        async with open_sse(
            hub.url + "/events", params=[*params, ("lastEventId", first)]
        ) as by_query:
            assert await data_until(by_query, "a2") == expected
            await publish(c, room, {"data": "live"})
            assert (await by_query.next_event()).data == "live"


async def test_a_channel_path_ignores_channel_query_parameters(hub: HubProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=hub.url) as c,
        open_sse(hub.url + "/events/t4/path", params={"channel": "/events/t4/query"}) as stream,
    ):
        await publish(c, "/events/t4/query", {"data": "query"})
        await publish(c, "/events/t4/path", {"data": "path"})
        assert (await stream.next_event()).data == "path"


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("", "no channel given"),
        ("?channel=", "no channel given"),
        ("?other=/events/a", "no channel given"),
        ("?channel=news", "'news' is not a channel name"),
        ("?channel=/events/rooms/{id", "bad channel selector"),
        ("?channel=/events/a%0Ab", "bad channel selector"),
        ("?channel=/events/a&channel=rooms/{id}&channel=x", "'x' is not a channel name"),
        ("?" + "&".join(f"channel=/events/c{i}" for i in range(65)), "64"),
    ],
)
async def test_get_events_without_a_usable_channel_is_400_json(
    hub: HubProcess, query: str, needle: str
) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as c:
        answer = await c.get("/events" + query)
        assert answer.status_code == 400
        assert answer.headers["content-type"] == "application/json"
        assert needle in answer.json()["error"]
        # The hub goes on serving.
        assert (await c.get("/healthz")).status_code == 200


async def test_post_events_refuses_bad_bodies_with_4xx_json_and_publishes_nothing(
    hub: HubProcess,
) -> None:
    channel = "/events/t5/a"
    async with (
        httpx.AsyncClient(base_url=hub.url) as c,
        open_sse(hub.url + channel) as stream,
    ):
        too_many = [f"/events/t5/c{i}" for i in range(65)]
        for body, status in [
            (b'{"channels": ["/events/t5/a"], "data": "x"}', 415),  # not declared as JSON
            (b'{"channels": ["/events/t5/a"', 400),
            (b'[{"channels": ["/events/t5/a"], "data": "x"}]', 400),
            (b'{"channels": ["/events/t5/a", "/events/t5/a"], "data": "x"}', 400),
            (b'{"channels": ["/events/t5/{id}"], "data": "x"}', 400),
            (b'{"channels": ["/events/t5/a"], "data": "x", "private": "no"}', 400),
            (b'{"channels": %b, "data": "x"}' % repr(too_many).replace("'", '"').encode(), 413),
        ]:
            content_type = "text/plain" if status == 415 else "application/json"
            answer = await c.post("/events", content=body, headers={"content-type": content_type})
            assert answer.status_code == status, (body, answer.text)
            assert "error" in answer.json()
        # A bad item refuses the whole batch, "private" included: nothing of it was sent.
        batch = [{"data": "x"}, {"data": "y", "private": None}]
        assert (await c.post(channel, json=batch)).status_code == 400
        # A broadcast is public.
        refused = await c.post("/broadcast", json={"data": "x", "private": True})
        assert refused.status_code == 400
        assert "public" in refused.json()["error"]
        await publish(c, channel, {"data": "the first event"})
        assert (await stream.next_event()).data == "the first event"


async def test_events_with_a_trailing_slash_is_404_naming_both_forms(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as c:
        answer = await c.get("/events/")
        assert answer.status_code == 404
        assert "/events?channel=" in answer.json()["error"]
        preflight = await c.options("/events")
        assert preflight.headers["allow"] == "GET, POST, OPTIONS"
