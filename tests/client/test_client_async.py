"""`ssehub.client.connect` against a real hub served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time

import httpx
import pytest

import ssehub.client
from ssehub import GAP_EVENT, Message
from ssehub.client import BadContentType, BadStatus, ConnectionLost, EventSource
from tests._support.hub_app import Scripted, Served
from tests._support.tcp_proxy import tcp_proxy
from tests._support.waiting import eventually

pytestmark = pytest.mark.timeout(30)

CHANNEL = "/events/news"

LATE = 0.5
"""How much later than its wait a reconnection may arrive here: scheduling on a loaded machine.

The exact waits are checked in test_reconnect.py; these end-to-end checks only bound them on both
sides, loosely enough for a busy 2-core machine and tightly enough to catch a wrong order of
magnitude (a wait not taken, or one not capped).
"""


async def take(source: EventSource, count: int, timeout: float = 5.0) -> list[Message]:
    """The next ``count`` events of ``source``."""
    async with asyncio.timeout(timeout):
        return [await anext(source) for _ in range(count)]


async def drain(source: EventSource, timeout: float = 5.0) -> list[Message]:
    """Every event until ``source`` ends."""
    async with asyncio.timeout(timeout):
        return [m async for m in source]


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_yields_published_events_as_messages(served: Served) -> None:
    published = [
        Message("plain"),
        Message("line one\nline two\r\nline three", event="multi"),
        Message("ünïcödé ✓ 日本語 🎉", id="u-1"),
        Message(""),
        Message(" leading space, a: colon", event="update", id="x:y"),
    ]
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        task = asyncio.ensure_future(take(events, len(published)))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        ids = [await served.hub.publish(CHANNEL, m) for m in published]
        got = await task
    assert [(m.data, m.event, m.id) for m in got] == [
        ("plain", None, ids[0]),
        ("line one\nline two\nline three", "multi", ids[1]),
        ("ünïcödé ✓ 日本語 🎉", None, "u-1"),
        ("", None, ids[3]),
        (" leading space, a: colon", "update", "x:y"),
    ]
    assert events.last_event_id == "x:y"
    assert events.reconnect_delay == 0.05  # the hub's retry: 50


async def test_reconnects_after_a_cut_connection_and_gets_missed_events_once(
    served: Served,
) -> None:
    async with (
        tcp_proxy(served.port) as proxy,
        ssehub.client.connect(proxy.url + CHANNEL, jitter=0) as events,
    ):
        reader = asyncio.ensure_future(take(events, 2))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        before = [await served.hub.publish(CHANNEL, f"before {i}") for i in range(2)]
        assert [m.data for m in await reader] == ["before 0", "before 1"]

        proxy.cut()
        await eventually(lambda: served.hub.client_count(CHANNEL) == 0)
        missed = [await served.hub.publish(CHANNEL, f"missed {i}") for i in range(3)]
        reader = asyncio.ensure_future(take(events, 4))
        proxy.restore()
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        after = await served.hub.publish(CHANNEL, "after")
        got = await reader

    assert [(m.id, m.data) for m in got] == [
        (missed[0], "missed 0"),
        (missed[1], "missed 1"),
        (missed[2], "missed 2"),
        (after, "after"),
    ]
    streams = served.app.streams(CHANNEL)
    assert len(streams) == 2
    assert "last-event-id" not in streams[0].headers
    assert streams[1].headers["last-event-id"] == before[1]
    assert events.reconnects == 1


async def test_reconnects_when_the_server_ends_the_stream(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        first = await served.hub.publish(CHANNEL, "one")
        assert (await reader)[0].id == first

        reader = asyncio.ensure_future(take(events, 1))
        await served.hub.restart()  # ends every open stream; clients should come back
        await eventually(lambda: len(served.app.streams(CHANNEL)) == 2)
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        second = await served.hub.publish(CHANNEL, "two")
        got = await reader
    assert [(m.id, m.data) for m in got] == [(second, "two")]
    assert served.app.streams(CHANNEL)[1].headers["last-event-id"] == first


async def test_retries_server_errors_then_streams(served: Served) -> None:
    served.app.scripted.extend([Scripted(503, b"busy"), Scripted(500, b"oops")])
    async with ssehub.client.connect(
        served.url + CHANNEL, reconnect_delay=0.01, jitter=0
    ) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "through")
        assert [m.data for m in await reader] == ["through"]
    assert len(served.app.streams(CHANNEL)) == 3
    assert events.reconnects == 2


async def test_waits_the_servers_retry_before_reconnecting(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.0, jitter=0) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, Message("sets the retry", retry=300))
        await reader
        assert events.reconnect_delay == 0.3
        reader = asyncio.ensure_future(take(events, 1))
        ended = time.monotonic()
        await served.hub.restart()
        await eventually(lambda: len(served.app.streams(CHANNEL)) == 2)
        reader.cancel()
    second = served.app.streams(CHANNEL)[1]
    # The stream ended at restart; the next request came the server's 300 ms later.
    assert 0.3 <= second.at - ended <= 0.3 + LATE


async def test_caps_a_huge_server_retry_at_max_reconnect_delay(served: Served) -> None:
    async with ssehub.client.connect(
        served.url + CHANNEL, max_reconnect_delay=0.2, jitter=0
    ) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, Message("slow down", retry=3_600_000))
        await reader
        assert events.reconnect_delay == 3600.0
        reader = asyncio.ensure_future(take(events, 1))
        ended = time.monotonic()
        await served.hub.restart()
        await eventually(lambda: len(served.app.streams(CHANNEL)) == 2)
        reader.cancel()
    second = served.app.streams(CHANNEL)[1]
    # The cap's 200 ms, not the hour the server asked for.
    assert 0.2 <= second.at - ended <= 0.2 + LATE


async def test_backoff_doubles_with_each_failure_in_a_row(served: Served) -> None:
    served.app.scripted.extend([Scripted(503), Scripted(503), Scripted(503)])
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.1, jitter=0) as events:
        task = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "finally")
        await task
    times = [r.at for r in served.app.streams(CHANNEL)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    waits = [0.1, 0.2, 0.4]
    assert len(gaps) == len(waits)
    for gap, wait in zip(gaps, waits, strict=True):
        assert wait <= gap <= wait + LATE, (gaps, waits)
    assert sum(gaps) <= sum(waits) + LATE


async def test_retry_after_header_is_honoured(served: Served) -> None:
    served.app.scripted.append(Scripted(429, headers=[("retry-after", "1")]))
    async with ssehub.client.connect(
        served.url + CHANNEL, reconnect_delay=0.0, jitter=0.1
    ) as events:
        task = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "later")
        await task
    first, second = served.app.streams(CHANNEL)
    # The one second asked for, plus at most 10 % jitter.
    assert 1.0 <= second.at - first.at <= 1.1 + LATE


async def test_http_204_ends_the_iteration_without_reconnecting(served: Served) -> None:
    served.app.scripted.append(Scripted(204))
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.01) as events:
        got = await drain(events)
        await asyncio.sleep(0.1)  # a wrongly reconnecting client would show up in this time
    assert got == []
    assert events.closed
    assert len(served.app.streams(CHANNEL)) == 1


async def test_http_204_on_reconnect_ends_after_the_delivered_events(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "last words")
        await reader
        served.app.scripted.append(Scripted(204))
        rest_task = asyncio.ensure_future(drain(events))
        await served.hub.restart()
        rest = await rest_task
    assert rest == []
    assert len(served.app.streams(CHANNEL)) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
async def test_client_errors_raise_bad_status_without_retrying(served: Served, status: int) -> None:
    served.app.scripted.append(Scripted(status, b"token expired"))
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.01) as events:
        with pytest.raises(BadStatus) as caught:
            await take(events, 1)
    assert caught.value.status_code == status
    assert caught.value.body == "token expired"
    assert f"HTTP {status}: token expired" in str(caught.value)
    assert events.closed
    assert len(served.app.streams(CHANNEL)) == 1


async def test_wrong_content_type_raises(served: Served) -> None:
    served.app.scripted.append(Scripted(200, b"{}", [("content-type", "application/json")]))
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        with pytest.raises(BadContentType, match="application/json"):
            await take(events, 1)
    assert len(served.app.streams(CHANNEL)) == 1


async def test_headers_are_sent_on_every_connection(served: Served) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Tenant": "acme"}
    async with ssehub.client.connect(served.url + CHANNEL, headers=headers) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "hi")
        await reader
        reader = asyncio.ensure_future(take(events, 1))
        await served.hub.restart()
        await eventually(lambda: len(served.app.streams(CHANNEL)) == 2)
        reader.cancel()
    for request in served.app.streams(CHANNEL):
        assert request.headers["authorization"] == "Bearer s3cret"
        assert request.headers["x-tenant"] == "acme"
        assert request.headers["accept"] == "text/event-stream"


async def test_starts_after_the_given_last_event_id(served: Served) -> None:
    ids = [await served.hub.publish(CHANNEL, f"old {i}") for i in range(3)]
    async with ssehub.client.connect(served.url + CHANNEL, last_event_id=ids[0]) as events:
        got = await take(events, 2)
    assert [(m.id, m.data) for m in got] == [(ids[1], "old 1"), (ids[2], "old 2")]
    assert served.app.streams(CHANNEL)[0].headers["last-event-id"] == ids[0]


async def test_an_unknown_last_event_id_shows_the_hubs_gap_event(served: Served) -> None:
    await served.hub.publish(CHANNEL, "kept")
    async with ssehub.client.connect(served.url + CHANNEL, last_event_id="forgotten") as events:
        gap, kept = await take(events, 2)
    assert gap.event == GAP_EVENT
    assert kept.data == "kept"


async def test_gives_up_after_max_reconnects_with_connection_lost() -> None:
    url = f"http://127.0.0.1:{closed_port()}/events/x"
    async with ssehub.client.connect(url, reconnect_delay=0.01, max_reconnects=2) as events:
        with pytest.raises(ConnectionLost, match="after 2 failed reconnection attempts") as caught:
            await take(events, 1)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert events.closed


async def test_closing_the_context_disconnects_from_the_hub(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, "x")
        await reader
    assert events.closed
    await eventually(lambda: served.hub.client_count(CHANNEL) == 0)
    with pytest.raises(StopAsyncIteration):
        await anext(events)


async def test_aclose_from_another_task_ends_a_waiting_iteration(served: Served) -> None:
    events = ssehub.client.connect(served.url + CHANNEL)
    received: list[Message] = []

    async def consume() -> None:
        async for message in events:
            received.append(message)

    consumer = asyncio.ensure_future(consume())
    await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
    await served.hub.publish(CHANNEL, "only")
    await eventually(lambda: len(received) == 1)
    await events.aclose()
    async with asyncio.timeout(5):
        await consumer  # ends normally: no CancelledError leaks out of the iteration
    assert not consumer.cancelled()
    await eventually(lambda: served.hub.client_count(CHANNEL) == 0)


async def test_a_timed_out_read_loses_nothing(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        first = await served.hub.publish(CHANNEL, "before")
        await reader
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await anext(events)
        # The read was cancelled mid-stream, so the client drops that connection; anything
        # published meanwhile comes with the next read, which reconnects and resumes.
        published = await served.hub.publish(CHANNEL, "after the timeout")
        got = await take(events, 1)
    assert [(m.id, m.data) for m in got] == [(published, "after the timeout")]
    streams = served.app.streams(CHANNEL)
    assert [r.headers.get("last-event-id") for r in streams] == [None, first]


async def test_last_event_id_follows_delivered_events_not_buffered_ones(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        await served.hub.publish(CHANNEL, Message("0", id="a"))
        await reader
        # Published together, they most likely arrive in one chunk; each is counted on delivery.
        await served.hub.publish(CHANNEL, Message("1", id="b"))
        await served.hub.publish(CHANNEL, Message("2", id="c"))
        assert (await take(events, 1))[0].id == "b"
        assert events.last_event_id == "b"
        assert (await take(events, 1))[0].id == "c"
        assert events.last_event_id == "c"


async def test_a_silent_connection_counts_as_dropped_after_read_timeout(served: Served) -> None:
    # The hub here sends no keep-alive comments, so the stream is silent between events.
    async with ssehub.client.connect(served.url + CHANNEL, read_timeout=0.2) as events:
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
        first = await served.hub.publish(CHANNEL, "first")
        await reader
        reader = asyncio.ensure_future(take(events, 1))
        await eventually(lambda: len(served.app.streams(CHANNEL)) >= 2)
        await served.hub.publish(CHANNEL, "still here")
        got = await reader
    assert [m.data for m in got] == ["still here"]
    assert served.app.streams(CHANNEL)[1].headers["last-event-id"] == first
    assert events.reconnects >= 1


def test_importing_the_client_does_not_import_httpx() -> None:
    code = "import sys, ssehub, ssehub.client; sys.exit('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_public_names_are_the_documented_ones() -> None:
    assert ssehub.client.__all__ == [
        "BadContentType",
        "BadStatus",
        "ClientError",
        "ConnectionLost",
        "EventSource",
        "PublishRefused",
        "Publisher",
        "SyncEventSource",
        "SyncPublisher",
        "UnsendableRequest",
        "connect",
        "connect_sync",
    ]
    for name in ssehub.client.__all__:
        assert getattr(ssehub.client, name).__doc__, name


async def test_repr_shows_whether_the_source_is_idle_open_or_closed(served: Served) -> None:
    url = served.url + CHANNEL
    events = ssehub.client.connect(url)
    assert repr(events) == f"<EventSource {url!r} idle last_event_id=None>"
    reader = asyncio.ensure_future(take(events, 1))
    await eventually(lambda: served.hub.client_count(CHANNEL) == 1)
    first = await served.hub.publish(CHANNEL, "x")
    await reader
    assert repr(events) == f"<EventSource {url!r} open last_event_id={first!r}>"
    await events.aclose()
    assert repr(events) == f"<EventSource {url!r} closed last_event_id={first!r}>"
