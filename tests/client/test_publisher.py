"""The client's publishers against a real ``ssehub serve`` process: one streaming POST, ids back
in order, refusals per event, a new stream after the hub ended one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ssehub.client import ConnectionLost, Publisher, PublishRefused, SyncPublisher
from tests._support.sse import open_sse
from tests.server.hub_process import HubProcess, wait_clients


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    process = HubProcess(
        ["--body-timeout", "2", "--max-body", "4096"], tmp_path_factory.mktemp("publisher")
    )
    yield process
    assert process.stop() == 0, process.log()


async def test_publish_returns_each_id_and_subscribers_get_the_events_in_order(
    hub: HubProcess,
) -> None:
    async with open_sse(hub.url + "/events/pub-order") as sse:
        async with httpx.AsyncClient(base_url=hub.url) as client:
            await wait_clients(client, "/events/pub-order", 1)
        async with Publisher(hub.url + "/events/pub-order") as publisher:
            first = await publisher.publish("first", event="greeting")
            # Pipelined: 200 events on the wire at once, answered in order.
            futures = [await publisher.send({"n": i}) for i in range(200)]
            ids = await asyncio.gather(*futures)
            own = await publisher.publish("own id", id="pub-order-own")
        events = await sse.events(202)
    assert [e.id for e in events] == [first, *ids, own]
    assert own == "pub-order-own"
    assert events[0].event == "greeting" and events[1].data == '{"n":0}'


async def test_a_refused_event_raises_and_the_stream_goes_on(hub: HubProcess) -> None:
    async with Publisher(hub.url + "/events") as publisher:
        with pytest.raises(PublishRefused) as refused:
            await publisher.publish("x")  # names no channel on /events
        assert refused.value.status == 400
        with pytest.raises(PublishRefused) as refused:
            await publisher.publish("x" * 5000, channel="/events/pub-refused")
        assert refused.value.status == 413
        event_id = await publisher.publish("ok", channels=["/events/pub-a", "/events/pub-b"])
        duplicate = await publisher.publish("again", channel="/events/pub-a", id=event_id)
    assert duplicate == event_id


async def test_a_refused_stream_raises_for_every_event(tmp_path: Path) -> None:
    guarded = HubProcess([], tmp_path, env={"SSEHUB_PUBLISH_TOKEN": "tok"})
    try:
        async with Publisher(guarded.url + "/events/pub-guarded") as publisher:
            with pytest.raises(PublishRefused) as refused:
                await publisher.publish("x")
            assert refused.value.status == 401
        async with Publisher(
            guarded.url + "/events/pub-guarded", headers={"Authorization": "Bearer tok"}
        ) as publisher:
            assert await publisher.publish("x")
    finally:
        guarded.stop()


@pytest.mark.slow  # waits 3 s for the hub's line timeout
async def test_keepalive_holds_an_idle_stream_open(hub: HubProcess) -> None:
    # The hub wants a line every 2 s; the publisher sends a blank one after 0.5 s idle.
    async with Publisher(hub.url + "/events/pub-idle", keepalive=0.5) as publisher:
        first = await publisher.publish("before")
        await asyncio.sleep(3)
        second = await publisher.publish("after")
    assert first != second


@pytest.mark.slow  # waits 3 s for the hub's line timeout
async def test_a_publisher_opens_a_new_stream_after_the_hub_ended_one(hub: HubProcess) -> None:
    async with Publisher(hub.url + "/events/pub-reopen", keepalive=0) as publisher:
        await publisher.publish("one")
        await asyncio.sleep(3)  # no keep-alive: the hub ends the stream after 2 s idle
        assert await publisher.publish("two")


async def test_a_closed_publisher_refuses_to_publish(hub: HubProcess) -> None:
    publisher = Publisher(hub.url + "/events/pub-closed")
    await publisher.aclose()
    with pytest.raises(ConnectionLost):
        await publisher.publish("late")


def test_sync_publisher_blocks_for_each_id_and_pipelines_with_send(hub: HubProcess) -> None:
    with SyncPublisher(hub.url + "/events/pub-sync") as publisher:
        first = publisher.publish("one")
        futures = [publisher.send(str(i)) for i in range(50)]
        ids = [future.result(10) for future in futures]
    assert len({first, *ids}) == 51
    answer = httpx.post(hub.url + "/events/pub-sync", json={"data": "x", "id": ids[-1]})
    assert answer.json().get("duplicate") is True


def test_a_url_that_is_not_http_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="not an http"):
        Publisher("ftp://example.com/events")
    with pytest.raises(ValueError, match="not an http"):
        SyncPublisher("/events/relative")
