"""The standalone hub's HTTP API over real sockets: publish, subscribe, broadcast, inspect."""

from __future__ import annotations

import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._support.sse import SSEStream, open_sse
from tests.server.hub_process import HubProcess, wait_clients

pytestmark = pytest.mark.timeout(30)


def _channel() -> str:
    return f"/events/test-{uuid.uuid4().hex[:8]}"


async def test_json_publish_reaches_subscriber_with_assigned_id(hub: HubProcess) -> None:
    channel = _channel()
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache"
        assert stream.response.headers["x-accel-buffering"] == "no"
        await wait_clients(c, channel, 1)
        answer = await c.post(channel, json={"data": "hello", "event": "greeting"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["channel"] == channel
        assert body["clients"] == 1
        assert isinstance(body["id"], str) and body["id"]
        event = await stream.next_event()
        assert (event.data, event.event, event.id) == ("hello", "greeting", body["id"])


async def test_raw_body_is_the_data_and_json_fields_are_kept(hub: HubProcess) -> None:
    channel = _channel()
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        await wait_clients(c, channel, 1)
        raw = await c.post(channel, content="line one\nline two ü")
        assert raw.status_code == 200
        own = await c.post(channel, json={"data": "x", "id": "my-id", "retry": 2500})
        assert own.json()["id"] == "my-id"
        first, second = await stream.events(2)
        assert first.data == "line one\nline two ü"
        assert first.id == raw.json()["id"]
        assert (second.data, second.id, second.retry) == ("x", "my-id", 2500)


async def test_json_array_publishes_every_message_in_order(hub: HubProcess) -> None:
    channel = _channel()
    batch = [{"data": f"event {i}", "event": "batch" if i % 2 else None} for i in range(50)]
    batch = [{k: v for k, v in m.items() if v is not None} for m in batch]
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        await wait_clients(c, channel, 1)
        answer = await c.post(channel, json=batch)
        assert answer.status_code == 200
        body = answer.json()
        assert body["channel"] == channel and body["clients"] == 1
        assert len(body["ids"]) == 50 and len(set(body["ids"])) == 50
        events = await stream.events(50)
        assert [e.data for e in events] == [f"event {i}" for i in range(50)]
        assert [e.id for e in events] == body["ids"]
        assert [e.event for e in events] == ["batch" if i % 2 else None for i in range(50)]


async def test_channels_are_isolated_and_named_by_full_path(hub: HubProcess) -> None:
    a, b = _channel(), _channel()
    async with (
        open_sse(hub.url + a) as sa,
        open_sse(hub.url + b) as sb,
        httpx.AsyncClient(base_url=hub.url) as c,
    ):
        await wait_clients(c, a, 1)
        await wait_clients(c, b, 1)
        await c.post(a, content="for a")
        await c.post(b, content="for b")
        assert (await sa.next_event()).data == "for a"
        assert (await sb.next_event()).data == "for b"
        listed = {ch["channel"]: ch for ch in (await c.get("/channels")).json()["channels"]}
        assert listed[a]["clients"] == 1 and listed[a]["published"] == 1
        assert listed[a]["delivered"] == 1
        assert not any(name.startswith("/dashboard") for name in listed)


async def test_resume_with_last_event_id_header_and_query(hub: HubProcess) -> None:
    channel = _channel()
    async with httpx.AsyncClient(base_url=hub.url) as c:
        ids = (await c.post(channel, json=[{"data": str(i)} for i in range(5)])).json()["ids"]
    async with open_sse(hub.url + channel, headers={"Last-Event-ID": ids[1]}) as stream:
        assert [e.data for e in await stream.events(3)] == ["2", "3", "4"]
    async with open_sse(hub.url + channel, params={"lastEventId": ids[3]}) as stream:
        assert (await stream.next_event()).data == "4"


async def test_broadcast_reaches_every_channel(hub: HubProcess) -> None:
    a, b = _channel(), _channel()
    async with (
        open_sse(hub.url + a) as sa,
        open_sse(hub.url + b) as sb,
        httpx.AsyncClient(base_url=hub.url) as c,
    ):
        await wait_clients(c, a, 1)
        await wait_clients(c, b, 1)
        answer = await c.post("/broadcast", json={"data": "to all", "event": "notice"})
        assert answer.status_code == 200
        ids = answer.json()["ids"]
        assert a in ids and b in ids
        for stream, name in ((sa, a), (sb, b)):
            event = await stream.next_event()
            assert (event.data, event.event, event.id) == ("to all", "notice", ids[name])
        batch = await c.post("/broadcast", json=[{"data": "one"}, {"data": "two"}])
        assert batch.status_code == 200 and len(batch.json()["ids"]) == 2
        assert [e.data for e in await sa.events(2)] == ["one", "two"]


async def test_healthz_reports_backend_and_clients(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as c:
        answer = await c.get("/healthz")
    assert answer.status_code == 200
    body = answer.json()
    assert body["ok"] is True
    assert body["backend"] == {"ok": True, "backend": "MemoryBackend"}
    assert body["status"] == "serving"


async def test_metrics_expose_per_channel_counters_from_the_hub(hub: HubProcess) -> None:
    channel = _channel()
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        await wait_clients(c, channel, 1)
        await c.post(channel, json=[{"data": "1"}, {"data": "2"}, {"data": "3"}])
        await stream.events(3)
        await c.post(channel, json={"data": "x", "event": 5})  # a rejected publish
        answer = await c.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    label = (("channel", channel),)
    assert samples[("ssehub_events_published_total", label)] == 3
    assert samples[("ssehub_events_delivered_total", label)] == 3
    assert samples[("ssehub_channel_clients", label)] == 1
    assert samples[("ssehub_connections_open", ())] >= 1
    assert samples[("ssehub_publish_errors_total", (("status", "400"),))] >= 1
    assert ("ssehub_events_replayed_total", ()) in samples
    assert ("ssehub_clients_dropped_slow_total", ()) in samples


async def test_dashboard_page_is_served(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as c:
        answer = await c.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert "<html" in answer.text.lower()


async def test_dashboard_stats_stream_lists_channels(hub: HubProcess) -> None:
    channel = _channel()
    async with (
        open_sse(hub.url + channel),
        open_sse(hub.url + "/dashboard/stats") as stats,
        httpx.AsyncClient(base_url=hub.url) as c,
    ):
        await wait_clients(c, channel, 1)
        await c.post(channel, content="tick")
        seen = await _stats_until(stats, channel)
        assert seen["clients"] == 1


async def _stats_until(stats: SSEStream, channel: str) -> dict[str, object]:
    import json

    for _ in range(10):
        event = await stats.next_event(timeout=5)
        assert event.event == "stats"
        rows = {row["channel"]: row for row in json.loads(event.data)["channels"]}
        if channel in rows and rows[channel]["clients"] == 1:
            return dict(rows[channel])
    raise AssertionError(f"{channel} never appeared in the dashboard statistics")
