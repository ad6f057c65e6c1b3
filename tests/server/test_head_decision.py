"""`HubServer.refuse_head`: the app's own rules, decided from a request's head alone, and the
open-stream count behind ``max_clients``. No socket: scopes and a real hub."""

from __future__ import annotations

import json

import pytest

from ssehub import Hub
from ssehub._serving import DIRECT_STREAM
from ssehub.server.app import HubServer
from ssehub.subscription import CloseReason, Subscription
from ssehub.types import ASGIMessage, Scope


def head(method: str, path: str, *headers: tuple[bytes, bytes]) -> Scope:
    """An HTTP scope with no body read yet."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": list(headers),
        "client": ("127.0.0.1", 5000),
    }


@pytest.fixture
def app() -> HubServer:
    return HubServer(
        Hub(), publish_token="s3cret", max_body=100, cors_origins=["http://ok.example"]
    )


TOKEN = (b"authorization", b"Bearer s3cret")


@pytest.mark.parametrize(
    ("scope", "status"),
    [
        (head("POST", "/nowhere"), 404),
        (head("POST", "/events/"), 404),
        (head("PUT", "/events/a"), 405),
        (head("POST", "/channels"), 405),
        (head("POST", "/events/a"), 401),
        (head("POST", "/broadcast", (b"authorization", b"Bearer nope")), 401),
        (head("POST", "/events/a", TOKEN, (b"content-length", b"101")), 413),
        (head("POST", "/events/a", TOKEN, (b"content-encoding", b"gzip")), 415),
    ],
)
def test_a_request_the_app_would_refuse_is_refused_from_its_head(
    app: HubServer, scope: Scope, status: int
) -> None:
    answer = app.refuse_head(scope)
    assert answer is not None
    assert answer.status == status
    assert json.loads(answer.body)["error"]
    assert ("content-length", str(len(answer.body))) in answer.headers


@pytest.mark.parametrize(
    "scope",
    [
        head("POST", "/events/a", TOKEN, (b"content-length", b"100")),
        head("POST", "/broadcast", TOKEN),
        head("GET", "/events/a"),
        head("GET", "/healthz"),
        head("OPTIONS", "/events/a"),
    ],
)
def test_a_request_the_app_would_serve_is_not_refused(app: HubServer, scope: Scope) -> None:
    assert app.refuse_head(scope) is None


def test_a_refusal_carries_cors_headers_and_is_counted_as_the_app_counts_it(
    app: HubServer,
) -> None:
    answer = app.refuse_head(head("POST", "/events/a", (b"origin", b"http://ok.example")))
    assert answer is not None
    assert ("access-control-allow-origin", "http://ok.example") in answer.headers
    assert ("www-authenticate", 'Bearer realm="ssehub"') in answer.headers
    assert app.publish_errors == {401: 1}


async def test_open_streams_count_each_stream_until_it_closes() -> None:
    hub = Hub()
    app = HubServer(hub, max_clients=2)
    await app.start()
    handed: list[Subscription] = []

    async def receive() -> ASGIMessage:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: ASGIMessage) -> None:
        if message["type"] == DIRECT_STREAM:  # a server taking the stream over
            handed.append(message["subscription"])

    try:
        for _ in range(2):
            scope = head("GET", "/events/a")
            scope["extensions"] = {DIRECT_STREAM: {}}
            await app(scope, receive, send)
        assert len(handed) == 2 and app.open_streams == 2
        answer = app.refuse_head(head("GET", "/events/b"))
        assert answer is not None and answer.status == 503
        assert ("retry-after", "5") in answer.headers
        handed[0].close(CloseReason.SLOW)
        assert hub.dropped_slow == 1  # the hub's own on_close hook ran
        # A stream counts until its server lets it go (the native server does on the drop).
        hub.unsubscribe(handed[0])
        assert app.open_streams == 1
        assert app.refuse_head(head("GET", "/events/b")) is None
        hub.unsubscribe(handed[0])  # twice counts once
        assert app.open_streams == 1
    finally:
        await app.close()
