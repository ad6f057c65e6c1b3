"""The stream policy every adapter shares, decided as data before any I/O."""

from __future__ import annotations

import json

import pytest

from ssehub import BackendUnavailable, Hub, HubClosed, Request, SubscriptionDenied
from ssehub._serving import Answer, answer_before_stream, cors_headers, open_stream, refusal

CORS = {"Access-Control-Allow-Origin": "https://app.example"}


def test_stream_headers_are_the_defaults_plus_the_configured_ones() -> None:
    hub = Hub(headers=CORS)
    names = [name.lower() for name, _ in hub.headers]
    assert names == [
        "content-type",
        "cache-control",
        "x-accel-buffering",
        "access-control-allow-origin",
    ]
    assert cors_headers(hub) == [("Access-Control-Allow-Origin", "https://app.example")]


def test_get_opens_a_stream_options_is_a_preflight_and_the_rest_is_405() -> None:
    hub = Hub(headers=CORS)
    assert answer_before_stream(hub, "GET") is None
    preflight = answer_before_stream(hub, "OPTIONS")
    assert preflight == Answer(
        204, (("allow", "GET, OPTIONS"), ("Access-Control-Allow-Origin", "https://app.example"))
    )
    refused = answer_before_stream(hub, "POST")
    assert refused is not None and refused.status == 405
    assert refused.status_line == "405 Method Not Allowed"
    assert ("allow", "GET, OPTIONS") in refused.headers
    assert ("Access-Control-Allow-Origin", "https://app.example") in refused.headers
    assert json.loads(refused.body) == {"error": "method POST not allowed; subscribe with GET"}
    assert ("content-length", str(len(refused.body))) in refused.headers


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (SubscriptionDenied("not yours"), 403, "not yours"),
        (HubClosed("closed"), 503, "the hub is shutting down"),
        (BackendUnavailable("redis down"), 503, "the backend is unavailable: redis down"),
    ],
)
def test_each_refusal_has_one_status_and_a_json_error(
    exc: Exception, status: int, error: str
) -> None:
    answer = refusal(Hub(headers=CORS), exc)
    assert answer.status == status
    assert json.loads(answer.body) == {"error": error}
    assert ("content-type", "application/json") in answer.headers
    assert ("Access-Control-Allow-Origin", "https://app.example") in answer.headers


async def test_open_stream_turns_the_authorize_hooks_no_into_a_403() -> None:
    hub = Hub(authorize=lambda request: request.headers.get("x-user") == "ann")
    denied = await open_stream(hub, Request("GET", "/events/a"))
    assert isinstance(denied, Answer) and denied.status == 403
    allowed = await open_stream(hub, Request("GET", "/events/a", headers={"x-user": "ann"}))
    assert not isinstance(allowed, Answer) and allowed.channel == "/events/a"
    await hub.shutdown()
    closed = await open_stream(hub, Request("GET", "/events/a", headers={"x-user": "ann"}))
    assert isinstance(closed, Answer) and closed.status == 503
