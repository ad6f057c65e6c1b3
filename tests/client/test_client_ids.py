"""The client and ids: every legal SSE id resumes, and status codes end or retry as browsers do.

``Last-Event-ID`` goes out as UTF-8 (as browsers send it). An id that no header can carry
(leading or trailing whitespace: HTTP strips it; a control character other than tab: servers
refuse the request) goes out as the ``lastEventId`` query parameter instead, never into a
silent loop of refused requests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from urllib.parse import parse_qs

import pytest

import ssehub.client
from ssehub import Message
from ssehub.client import BadStatus
from ssehub.client._reconnect import Reconnection
from ssehub.types import Receive, Scope, Send
from tests._support.asgi_server import run_uvicorn
from tests._support.hub_app import Scripted, Served

CHANNEL = "/events/ids"
UNSENDABLE = [" leading space", "trailing space ", "vertical\x0btab", "\tleading tab"]
SENDABLE = ["café ✓ 日本", "inner spaces", "inner\ttab"]


# -- the policy, as data ---------------------------------------------------------------------


@pytest.mark.parametrize("event_id", SENDABLE)
def test_an_id_a_header_can_carry_goes_in_last_event_id_as_utf8(event_id: str) -> None:
    policy = Reconnection("http://h/events?x=1", last_event_id=event_id)
    assert policy.request_url() == "http://h/events?x=1"
    assert (b"Last-Event-ID", event_id.encode()) in policy.encoded_headers()


@pytest.mark.parametrize("event_id", UNSENDABLE)
def test_an_id_no_header_can_carry_goes_in_the_query(event_id: str) -> None:
    policy = Reconnection("http://h/events?x=1&lastEventId=old", last_event_id=event_id)
    assert "Last-Event-ID" not in policy.request_headers()
    query = parse_qs(policy.request_url().partition("?")[2], keep_blank_values=True)
    assert query == {"x": ["1"], "lastEventId": [event_id]}


# -- end to end, against a server that sends such ids ----------------------------------------


class IdServer:
    """Sends one event per request, with the next of ``ids``, then ends the response.

    Records each request's ``Last-Event-ID`` header and ``lastEventId`` query parameter.
    """

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.seen: list[tuple[bytes | None, str | None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        header = dict(scope["headers"]).get(b"last-event-id")
        query = parse_qs(scope["query_string"].decode(), keep_blank_values=True)
        self.seen.append((header, query.get("lastEventId", [None])[0]))
        n = len(self.seen) - 1
        body = b"retry: 10\n\n"
        if n < len(self.ids):
            body += f"id: {self.ids[n]}\ndata: event {n}\n\n".encode()
        else:
            body += b"data: the end\n\n"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def served_ids(ids: list[str]) -> AsyncIterator[tuple[IdServer, str]]:
    server = IdServer(ids)
    async with run_uvicorn(server) as url:
        yield server, url


@pytest.fixture
async def id_server() -> AsyncIterator[tuple[IdServer, str]]:
    async for pair in served_ids([*UNSENDABLE, *SENDABLE]):
        yield pair


async def test_the_async_client_resumes_after_every_kind_of_id(
    id_server: tuple[IdServer, str],
) -> None:
    server, url = id_server
    got = []
    async with (
        asyncio.timeout(20),
        ssehub.client.connect(url + CHANNEL, reconnect_delay=0.01) as source,
    ):
        async for message in source:
            got.append((message.id, message.data))
            if message.data == "the end":
                break
    ids = server.ids
    assert got[:-1] == [(event_id, f"event {n}") for n, event_id in enumerate(ids)]
    # Each reconnection carried the previous id: in the header when it could, else the query.
    assert server.seen[0] == (None, None)
    for previous, seen in zip(ids, server.seen[1:], strict=False):
        if previous in UNSENDABLE:
            assert seen == (None, previous)
        else:
            assert seen == (previous.encode(), None)


async def test_the_sync_client_resumes_after_every_kind_of_id(
    id_server: tuple[IdServer, str],
) -> None:
    server, url = id_server

    def read() -> list[str | None]:
        with ssehub.client.connect_sync(url + CHANNEL, reconnect_delay=0.01) as source:
            got = []
            for message in source:
                got.append(message.id)
                if message.data == "the end":
                    return got
        raise AssertionError("the stream ended")

    got = await asyncio.wait_for(asyncio.to_thread(read), 20)
    assert got[:-1] == server.ids
    assert [q for _, q in server.seen[1:]] == [i if i in UNSENDABLE else None for i in server.ids]


# -- statuses on reconnect -------------------------------------------------------------------


async def test_a_4xx_on_reconnect_ends_after_the_delivered_events(served: Served) -> None:
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.01) as source:
        reader = asyncio.ensure_future(source.__anext__())  # connects
        await asyncio.wait_for(_until_clients(served, 1), 10)
        await served.hub.publish(CHANNEL, "before")
        first = await asyncio.wait_for(reader, 10)
        served.app.scripted.append(Scripted(403, b"no longer allowed"))
        await served.hub.restart()
        with pytest.raises(BadStatus) as caught:
            await asyncio.wait_for(source.__anext__(), 10)
    assert first.data == "before"
    assert caught.value.status_code == 403
    assert source.closed
    assert len(served.app.streams(CHANNEL)) == 2  # no retry after the 403


async def test_5xx_on_reconnect_is_retried_and_the_stream_resumes_from_a_utf8_id(
    served: Served,
) -> None:
    async with ssehub.client.connect(served.url + CHANNEL, reconnect_delay=0.02) as source:
        reader = asyncio.ensure_future(source.__anext__())  # connects
        await asyncio.wait_for(_until_clients(served, 1), 10)
        await served.hub.publish(CHANNEL, Message("before", id="naïve-1"))
        assert (await asyncio.wait_for(reader, 10)).id == "naïve-1"
        served.app.scripted.extend([Scripted(503), Scripted(500), Scripted(502)])
        await served.hub.restart()
        await served.hub.publish(CHANNEL, "missed")
        missed = await asyncio.wait_for(source.__anext__(), 10)
    assert missed.data == "missed"
    streams = served.app.streams(CHANNEL)
    assert len(streams) == 5
    # Backoff: each failed attempt in a row waits twice as long as the one before, from the
    # server's retry (50 ms).
    gaps = [b.at - a.at for a, b in itertools.pairwise(streams[1:])]
    assert [round(g, 2) >= w for g, w in zip(gaps, [0.05, 0.1, 0.2], strict=True)] == [True] * 3
    # The last request resumed from the UTF-8 id (recorded as latin-1 text by the test app).
    assert streams[-1].headers["last-event-id"] == "naïve-1".encode().decode("latin-1")


async def _until_clients(served: Served, count: int) -> None:
    while served.hub.client_count(CHANNEL) != count:
        await asyncio.sleep(0.01)
