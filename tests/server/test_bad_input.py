"""Bad requests get the right 4xx with a JSON error, and the hub loses nothing it accepted."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from tests._support.sse import open_sse
from tests.server.hub_process import HubProcess, wait_clients

pytestmark = pytest.mark.timeout(30)

JSON = {"content-type": "application/json"}

# (method, path ("{ch}" is the test's channel), headers, body, expected status, words in error)
BAD_REQUESTS: list[tuple[str, str, dict[str, str], bytes, int, str]] = [
    ("POST", "{ch}", JSON, b'{"data": "x"', 400, "malformed JSON"),
    ("POST", "{ch}", JSON, b"", 400, "malformed JSON"),
    ("POST", "{ch}", JSON, b'"just a string"', 400, "JSON object"),
    ("POST", "{ch}", JSON, b"42", 400, "JSON object"),
    ("POST", "{ch}", JSON, b"null", 400, "JSON object"),
    ("POST", "{ch}", JSON, b'{"event": "x"}', 400, 'missing field "data"'),
    ("POST", "{ch}", JSON, b'{"data": 1e400}', 400, "JSON can encode"),
    ("POST", "{ch}", JSON, b'{"data": "x", "event": 3}', 400, "event must be a str"),
    ("POST", "{ch}", JSON, b'{"data": "x", "id": ["a"]}', 400, "id must be a str"),
    ("POST", "{ch}", JSON, b'{"data": "x", "retry": "100"}', 400, "retry"),
    ("POST", "{ch}", JSON, b'{"data": "x", "retry": -1}', 400, "retry"),
    ("POST", "{ch}", JSON, b'{"data": "x", "retry": true}', 400, "retry"),
    ("POST", "{ch}", JSON, b'{"data": "x", "evnet": "typo"}', 400, "unknown field"),
    ("POST", "{ch}", JSON, b'{"data": "x", "event": "a\\nb"}', 400, "event may not contain"),
    ("POST", "{ch}", JSON, b'{"data": "x", "event": "a\\rb"}', 400, "event may not contain"),
    ("POST", "{ch}", JSON, b'{"data": "x", "id": "a\\nb"}', 400, "id may not contain"),
    ("POST", "{ch}", JSON, b'{"data": "x", "id": "a\\u0000b"}', 400, "id may not contain"),
    # One bad item refuses the whole batch: nothing of it is published.
    ("POST", "{ch}", JSON, b'[{"data": "ok"}, {"data": "x", "id": "a\\nb"}]', 400, "item 1"),
    ("POST", "{ch}", JSON, b'[{"data": "ok"}, 7]', 400, "item 1"),
    ("POST", "{ch}", {}, b"caf\xe9 latin-1", 415, "UTF-8"),
    ("POST", "{ch}", JSON, b'{"data": "caf\xe9"}', 415, "UTF-8"),
    ("POST", "{ch}", {"content-type": "text/plain; charset=latin-1"}, b"x", 415, "UTF-8"),
    ("POST", "{ch}", {"content-encoding": "gzip"}, b"\x1f\x8b", 415, "compressed"),
    ("POST", "{ch}", {}, b"x" * 4097, 413, "4096 bytes"),
    ("POST", "/broadcast", JSON, b'{"data": "x", "event": "a\\nb"}', 400, "event may not"),
    ("POST", "/broadcast", JSON, b"{", 400, "malformed JSON"),
    ("GET", "/nowhere", {}, b"", 404, "no route /nowhere"),
    ("POST", "/nowhere", {}, b"x", 404, "no route"),
    ("GET", "/events/", {}, b"", 404, "no channel"),
    ("POST", "/events/", {}, b"x", 404, "no channel"),
    ("DELETE", "{ch}", {}, b"", 405, "DELETE not allowed"),
    ("PUT", "{ch}", {}, b"x", 405, "PUT not allowed"),
    ("GET", "/broadcast", {}, b"", 405, "GET not allowed"),
    ("POST", "/channels", {}, b"x", 405, "POST not allowed"),
    ("POST", "/metrics", {}, b"x", 405, "POST not allowed"),
    ("DELETE", "/healthz", {}, b"", 405, "DELETE not allowed"),
]


async def test_every_bad_request_gets_its_4xx_and_nothing_accepted_is_lost(
    hub: HubProcess,
) -> None:
    channel = f"/events/bad-{uuid.uuid4().hex[:8]}"
    async with open_sse(hub.url + channel) as stream, httpx.AsyncClient(base_url=hub.url) as c:
        await wait_clients(c, channel, 1)
        accepted = []
        answer = await c.post(channel, content="before")
        assert answer.status_code == 200
        accepted.append(answer.json()["id"])
        for i, (method, path, headers, body, status, words) in enumerate(BAD_REQUESTS):
            url = path.format(ch=channel)
            bad = await c.request(method, url, headers=headers, content=body)
            assert bad.status_code == status, (method, url, body, bad.text)
            assert bad.headers["content-type"] == "application/json"
            error = bad.json()["error"]
            assert words in error, (body, error)
            if status == 405:
                assert "OPTIONS" in bad.headers["allow"]
            good = await c.post(channel, json={"data": f"after {i}"})
            assert good.status_code == 200, good.text
            accepted.append(good.json()["id"])
        events = await stream.events(len(accepted))
        assert [e.id for e in events] == accepted
        assert [e.data for e in events] == ["before"] + [
            f"after {i}" for i in range(len(BAD_REQUESTS))
        ]
        # Nothing else arrives: the refused batches published none of their items.
        last = await c.post(channel, content="last")
        assert (await stream.next_event()).data == "last"
        assert last.status_code == 200


async def test_chunked_body_over_the_limit_gets_413(hub: HubProcess) -> None:
    channel = f"/events/bad-{uuid.uuid4().hex[:8]}"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"y" * 2000

    async with httpx.AsyncClient(base_url=hub.url) as c:
        answer = await c.post(channel, content=chunks())
        assert answer.status_code == 413
        assert "4096" in answer.json()["error"]
        small = await c.post(channel, content=b"z" * 4096)
        assert small.status_code == 200


async def test_bad_publishes_are_logged(hub: HubProcess) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as c:
        await c.post("/events/logged-bad", json={"data": "x", "event": "a\nb"})
    for _ in range(100):
        if "event=publish_rejected status=400 target=/events/logged-bad" in hub.log():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(hub.log())
