"""A publish the native server answers without the ASGI cycle (`HubServer.answer_now`: at once
where the hub publishes without waiting, in a task of its own otherwise) is answered, published
and refused exactly as through the app, in the connection's order."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ssehub import Hub, SqliteBackend
from ssehub.server.app import HubServer
from ssehub.types import Scope
from tests._support.asgi_server import run_native
from tests._support.sse import SSEStream, open_sse

pytestmark = pytest.mark.timeout(30)

ORIGIN = "http://ok.example"


def post(path: str, body: bytes, *headers: str, content_type: str = "application/json") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: hub", f"Content-Type: {content_type}", *headers]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# Each request, in order on one connection, with how answer_now answers it: one event, and a
# refusal found in the body, at once; a batch (published one event at a time) later.
REQUESTS: list[tuple[bytes, str]] = [
    (post("/events/c", b'{"data": "one", "id": "e1"}'), "now"),
    (post("/events/c", b"two", content_type="text/plain"), "now"),
    (post("/events/c", b'{"data": "three", "id": "e3"}', f"Origin: {ORIGIN}"), "now"),
    (post("/events/c", b'{"data": "four"}', content_type="application/json; charset=utf-8"), "now"),
    (post("/events/c", b'{"data": "again", "id": "e1"}'), "now"),  # a duplicate: not sent again
    (post("/events/c", b'[{"data": "five"}, {"data": "six"}]'), "later"),
    (post("/events/c", b'{"data": "bad json"'), "now"),
    (post("/events/c", b'{"data": "x", "id": " spaced"}'), "now"),
    (post("/events/c", b'{"data": "' + b"y" * 3000 + b'"}'), "now"),  # over max_buffer
    (post("/events/c", b"\xff\xfe", content_type="text/plain"), "now"),  # not UTF-8
    (post("/events/c", b'[{"data": "seven"}, {"data": "' + b"z" * 3000 + b'"}]'), "later"),
    (post("/events/c", b'{"data": "last", "id": "e9"}', "Connection: close"), "now"),
]


def split_whole(data: bytes) -> list[tuple[bytes, list[bytes], bytes]]:
    """(status line, header lines, body) of each whole Content-Length-delimited response."""
    out: list[tuple[bytes, list[bytes], bytes]] = []
    while True:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            return out
        status, *headers = head.split(b"\r\n")
        length = next(int(h.split(b":")[1]) for h in headers if h.startswith(b"content-length"))
        if len(rest) < length:
            return out
        out.append((status, headers, rest[:length]))
        data = rest[length:]


def order_of(event_id: str) -> str:
    """A hub's own id without its per-hub prefix (``<prefix>-<order>``); an id given as is."""
    return event_id.rsplit("-", 1)[-1]


def without_prefix(body: bytes) -> Any:
    """An answer with the hub's own ids named by their order only."""
    answer = json.loads(body)
    if "id" in answer:
        answer["id"] = order_of(answer["id"])
    if "ids" in answer:
        answer["ids"] = [order_of(i) for i in answer["ids"]]
    return answer


@contextlib.asynccontextmanager
async def serving(
    app: HubServer, channel: str, **config: Any
) -> AsyncIterator[tuple[SSEStream, asyncio.StreamReader, asyncio.StreamWriter]]:
    """``app`` on the native server with ``config``, a subscriber of ``channel`` reading, and a
    raw connection to publish on (closed on exit)."""
    async with run_native(app, **config) as base, open_sse(f"{base}{channel}") as stream:
        async with asyncio.timeout(5):
            while not app.hub.client_count(channel):
                await asyncio.sleep(0.01)
        host, port = base.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            yield stream, reader, writer
        finally:
            writer.close()


async def exchange(
    answer_now: Callable[[HubServer], Any] | None,
) -> tuple[list[tuple[bytes, list[bytes], bytes]], list[tuple[str | None, str]], list[str]]:
    """Send every request on one connection to a hub (a subscriber of ``/events/c`` reading);
    its answers, the events the subscriber got, and for each request how answer_now answered
    it ("now", "later" or "app": None)."""
    hub = Hub(max_buffer=2048)
    app = HubServer(hub, cors_origins=[ORIGIN], max_body=10_000)
    taken: list[str] = []
    config: dict[str, Any] = {"refuse_head": app.refuse_head, "stream_body": app.stream_body}
    if answer_now is not None:
        real = answer_now(app)

        def counted(scope: Scope, body: bytes) -> Any:
            reply = real(scope, body)
            if scope["method"] == "POST":  # not the subscriber's GET
                taken.append("now" if isinstance(reply, tuple) else "later" if reply else "app")
            return reply

        config["answer_now"] = counted
    async with serving(app, "/events/c", **config) as (stream, reader, writer):
        data = b""
        async with asyncio.timeout(10):
            for number, (request, _) in enumerate(REQUESTS, 1):
                # One at a time: each is offered to answer_now (one pipelined behind a request
                # still in the app waits for it: see the next test).
                writer.write(request)
                while len(split_whole(data)) < number:
                    chunk = await reader.read(65536)
                    assert chunk, "the connection closed early"
                    data += chunk
        events = await stream.events(6)
    return split_whole(data), [(e.id, e.data) for e in events], taken


async def test_a_publish_answered_at_once_is_answered_and_published_as_through_the_app() -> None:
    fast, fast_events, taken = await exchange(lambda app: app.answer_now)
    slow, slow_events, _ = await exchange(None)
    assert len(fast) == len(slow) == len(REQUESTS)
    for (status, headers, body), (status2, headers2, body2) in zip(fast, slow, strict=True):
        assert status == status2
        assert headers == headers2
        assert without_prefix(body) == without_prefix(body2)
    assert [s for s, _, _ in fast] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 400 Bad Request",
        b"HTTP/1.1 413 Request Entity Too Large",
        b"HTTP/1.1 415 Unsupported Media Type",
        b"HTTP/1.1 413 Request Entity Too Large",  # all or nothing: "seven" is not sent
        b"HTTP/1.1 200 OK",
    ]
    assert json.loads(fast[4][2])["duplicate"] is True
    assert f"access-control-allow-origin: {ORIGIN}".encode() in fast[2][1]
    assert b"connection: close" in fast[-1][1]
    assert taken == [how for _, how in REQUESTS]
    assert [data for _, data in fast_events] == ["one", "two", "three", "four", "five", "six"]
    assert [(order_of(i or ""), d) for i, d in fast_events] == [
        (order_of(i or ""), d) for i, d in slow_events
    ]
    assert fast_events[0][0] == "e1" and fast_events[2][0] == "e3"
    assert b"seven" not in b"".join(body for _, _, body in fast)


async def test_a_publish_pipelined_behind_one_the_app_answers_waits_its_turn() -> None:
    """A batch (answered through the app, in a task) then a single event, in one write: the
    single one is not answered at once ahead of the batch; answers and events keep their
    order."""
    app = HubServer(Hub())
    config = {
        "refuse_head": app.refuse_head,
        "stream_body": app.stream_body,
        "answer_now": app.answer_now,
    }
    async with serving(app, "/events/p", **config) as (stream, reader, writer):
        writer.write(
            post("/events/p", b'[{"data": "1"}, {"data": "2"}]')
            + post("/events/p", b'{"data": "3"}', "Connection: close")
        )
        async with asyncio.timeout(10):
            data = await reader.read(-1)
        events = await stream.events(3)
    answers = [json.loads(body) for _, _, body in split_whole(data)]
    assert [len(a["ids"]) if "ids" in a else 1 for a in answers] == [2, 1]
    assert [e.data for e in events] == ["1", "2", "3"]
    assert answers[1]["id"] == events[2].id


async def test_answer_now_answers_later_where_the_hub_waits_and_leaves_the_rest_to_the_app(
    tmp_path: Path,
) -> None:
    """No head checked by refuse_head (another server) or a streaming publish: None. A batch,
    a backend that waits for its write, a hub shut down: an awaitable of the app's answer."""
    hub = Hub()
    app = HubServer(hub)
    await hub.start()

    def scope(content_type: bytes = b"application/json") -> Scope:
        return {
            "type": "http",
            "method": "POST",
            "path": "/events/n",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", content_type)],
            "client": ("127.0.0.1", 1),
            "extensions": {},
        }

    async def answer(request: Scope, body: bytes) -> tuple[int, Any]:
        reply = app.answer_now(request, body)
        assert reply is not None and not isinstance(reply, tuple)
        status, _, payload = await reply
        return status, json.loads(payload)

    plain = scope()
    assert app.answer_now(plain, b'{"data": "x"}') is None  # refuse_head never saw it
    assert app.refuse_head(plain) is None
    reply = app.answer_now(plain, b'{"data": "x"}')
    assert isinstance(reply, tuple) and reply[0] == 200
    status, batch = await answer(plain, b'[{"data": "y"}, {"data": "z"}]')
    assert status == 200 and len(batch["ids"]) == 2
    assert hub.published_count("/events/n") == 3
    ndjson = scope(b"application/x-ndjson")
    assert app.refuse_head(ndjson) is None
    assert app.answer_now(ndjson, b'{"data": "y"}\n') is None
    await hub.shutdown()
    assert await answer(plain, b'{"data": "late"}') == (503, {"error": "the hub is shutting down"})
    assert hub.published_count("/events/n") == 3

    # The durable backend: written in a commit of its own as it comes (fsync batch), answered
    # at once, the row already in the file; with fsync always a thread writes it: later.
    for fsync, at_once in (("batch", True), ("always", False)):
        path = tmp_path / f"{fsync}.sqlite3"
        durable = HubServer(Hub(backend=SqliteBackend(path, fsync=fsync)))
        await durable.start()
        try:
            written = scope()
            assert durable.refuse_head(written) is None
            reply = durable.answer_now(written, b'{"data": "kept"}')
            assert reply is not None and isinstance(reply, tuple) == at_once
            if isinstance(reply, tuple):
                with sqlite3.connect(path) as db:
                    assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)
                db.close()
            else:
                reply = await reply
            status, _, payload = reply
            assert status == 200 and durable.hub.published_count("/events/n") == 1
        finally:
            await durable.close()
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT data FROM events").fetchall() == [
                (b"id: %s\ndata: kept\n\n" % json.loads(payload)["id"].encode(),)
            ]
        db.close()
    await app.close()
    assert app.answer_now(plain, b'{"data": "closed"}') is None  # the app answers 503
