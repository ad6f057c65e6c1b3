"""The hub (a real ``ssehub serve`` process) against SSE clients nobody here wrote.

Each client (headless Chromium's EventSource, the npm ``eventsource`` package under node,
httpx-sse, and ssehub's own client for comparison) must receive every kind of event exactly as
published, and, after its connection is cut, come back with ``Last-Event-ID`` and receive the
events it missed exactly once, in order.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests._support.tcp_proxy import tcp_proxy
from tests.interop.clients import DRIVERS, Driver, Received
from tests.interop.hub_http import HubControl

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(45)]

TYPES = ["update", "user.joined", "ping"]
"""The custom event types the clients listen for."""

CASES: list[tuple[dict[str, Any], str, str]] = [
    # (what is published, the type the client sees, the data the client sees)
    ({"data": "line one\nline two\nline three"}, "message", "line one\nline two\nline three"),
    ({"data": "crlf\r\nand cr\rend"}, "message", "crlf\nand cr\nend"),
    ({"data": "blank\n\nline inside"}, "message", "blank\n\nline inside"),
    ({"data": "trailing newline\n"}, "message", "trailing newline\n"),
    ({"data": "ünïcödé ✓ 日本語 עברית 🎉 𝄞"}, "message", "ünïcödé ✓ 日本語 עברית 🎉 𝄞"),
    ({"data": ""}, "message", ""),
    ({"data": " leading space, a: colon"}, "message", " leading space, a: colon"),
    (
        {"data": "data: no field\n: no comment\nid: no id"},
        "message",
        "data: no field\n: no comment\nid: no id",
    ),
    ({"data": '{"json": [1, 2, 3]}'}, "message", '{"json": [1, 2, 3]}'),
    ({"data": "typed", "event": "update"}, "update", "typed"),
    ({"data": "dotted type", "event": "user.joined"}, "user.joined", "dotted type"),
    ({"data": "", "event": "ping"}, "ping", ""),
    ({"data": "explicit id", "id": "order-42"}, "message", "explicit id"),
    (
        {"data": "id with a space and a colon", "id": "a b:c"},
        "message",
        "id with a space and a colon",
    ),
    ({"data": "x" * 70_000}, "message", "x" * 70_000),
]

clients = pytest.mark.parametrize("driver", list(DRIVERS.values()), ids=list(DRIVERS))


@clients
async def test_client_receives_every_kind_of_event_as_published(
    driver: Driver, hub: HubControl, channel: str
) -> None:
    async with driver(hub.url + channel, TYPES) as consumer:
        await hub.until_clients(channel, 1)
        expected = []
        for fields, event_type, data in CASES:
            event_id = await hub.publish(channel, **fields)
            expected.append(Received(event_type, data, event_id))
        # A last event after all the others: anything extra or duplicated would come before it.
        end = await hub.publish(channel, "end")
        expected.append(Received("message", "end", end))
        received = await consumer.wait_for(len(expected))
    assert received == expected
    assert [r.id for r in received if r.data == "explicit id"] == ["order-42"]


@clients
async def test_client_resumes_after_a_cut_and_gets_missed_events_once_in_order(
    driver: Driver, hub: HubControl, channel: str
) -> None:
    port = int(hub.url.rsplit(":", 1)[1])
    async with tcp_proxy(port) as proxy, driver(proxy.url + channel, TYPES) as consumer:
        await hub.until_clients(channel, 1)
        before = [await hub.publish(channel, f"before {i}") for i in range(2)]
        await consumer.wait_for(2)

        proxy.cut()  # resets the connection; reconnections wait until restore()
        await hub.until_clients(channel, 0)
        missed = [
            await hub.publish(channel, "missed 0"),
            await hub.publish(channel, "missed 1", event="update"),
            await hub.publish(channel, "missed 2\nsecond line"),
        ]
        proxy.restore()
        await hub.until_clients(channel, 1)
        after = await hub.publish(channel, "after")
        received = await consumer.wait_for(6)

    assert received == [
        Received("message", "before 0", before[0]),
        Received("message", "before 1", before[1]),
        Received("message", "missed 0", missed[0]),
        Received("update", "missed 1", missed[1]),
        Received("message", "missed 2\nsecond line", missed[2]),
        Received("message", "after", after),
    ]
    streams = proxy.requests("GET", channel)
    assert [s.get("last-event-id") for s in streams] == [None, before[1]]
