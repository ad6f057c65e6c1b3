"""The WSGI adapter: requests from environs, disconnect detection, refusals under waitress.

Delivery, isolation, replay, disconnects and CORS preflight of ``hub.wsgi`` under a real
server are in tests/integrations (the ``wsgi`` app of the framework matrix).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ssehub import BackendUnavailable, Hub, MemoryBackend, Replay
from ssehub.wsgi import client_disconnected, request_from_environ
from tests.integrations.conftest import _serve_waitress


def test_request_from_environ_names_the_full_path_and_keeps_first_query_values() -> None:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/events/news",
        "QUERY_STRING": "lastEventId=7&lastEventId=9&token=t",
        "HTTP_LAST_EVENT_ID": "5",
        "HTTP_X_FORWARDED_FOR": "10.0.0.1",
        "CONTENT_TYPE": "text/plain",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "5000",
    }
    request = request_from_environ(environ)
    assert request.path == "/app/events/news"
    assert request.headers["last-event-id"] == "5"
    assert request.headers["x-forwarded-for"] == "10.0.0.1"
    assert request.headers["content-type"] == "text/plain"
    assert request.query == {"lastEventId": "7", "token": "t"}
    assert request.last_event_id == "5"  # the header wins over the query parameter
    assert request.client == ("127.0.0.1", 5000)
    assert request.native is environ


def test_client_disconnected_peeks_at_a_gunicorn_socket() -> None:
    server, client = socket.socketpair()
    try:
        environ = {"gunicorn.socket": server}
        assert not client_disconnected(environ)  # idle and open
        client.sendall(b"x")
        assert not client_disconnected(environ)  # bytes waiting are not an end of file
        server.recv(1)
        client.close()
        assert client_disconnected(environ)
    finally:
        server.close()


def test_client_disconnected_asks_waitress_and_is_false_when_it_cannot_tell() -> None:
    assert client_disconnected({"waitress.client_disconnected": lambda: True})
    assert not client_disconnected({"waitress.client_disconnected": lambda: False})
    assert not client_disconnected({})


class _DownOnReplay(MemoryBackend):
    """History that cannot be read: as a Redis backend during an outage."""

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        raise BackendUnavailable("history is unreachable")


def _refusing_hub() -> Hub:
    return Hub(
        headers={"Access-Control-Allow-Origin": "*"},
        backend=_DownOnReplay(),
        authorize=lambda request: request.headers.get("authorization") == "Bearer ok",
    )


@pytest.fixture
def wsgi_base() -> Iterator[tuple[Hub, str]]:
    hub = _refusing_hub()
    for base in _serve_waitress(hub.wsgi):
        yield hub, base


def _error(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json"
    assert response.headers["access-control-allow-origin"] == "*"
    return json.loads(response.content)["error"]


def test_refusals_are_json_errors_with_the_hubs_cors_headers(wsgi_base: tuple[Hub, str]) -> None:
    hub, base = wsgi_base
    url = f"{base}/events/a"
    with httpx.Client(timeout=10) as client:
        denied = client.get(url)
        assert denied.status_code == 403
        assert "authorize" in _error(denied)
        down = client.get(url, headers={"authorization": "Bearer ok", "last-event-id": "1"})
        assert down.status_code == 503
        assert _error(down) == "the backend is unavailable: history is unreachable"
        hub.run_threadsafe(hub.shutdown())
        closed = client.get(url, headers={"authorization": "Bearer ok"})
        assert closed.status_code == 503
        assert _error(closed) == "the hub is shutting down"
