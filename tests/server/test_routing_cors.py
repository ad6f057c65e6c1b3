"""The route table and the CORS policy as plain objects: lookups and headers, no socket."""

from __future__ import annotations

import pytest

from ssehub.server.cors import CORS, PREFLIGHT_ALLOW_HEADERS
from ssehub.server.routing import Route, Router
from ssehub.types import Receive, Scope, Send


async def subscribe(scope: Scope, receive: Receive, send: Send) -> None: ...
async def publish(scope: Scope, receive: Receive, send: Send) -> None: ...
async def channels(scope: Scope, receive: Receive, send: Send) -> None: ...


ROUTER = Router(
    [
        Route("/events/", subscribe, ("GET",), prefix=True),
        Route("/events/", publish, ("POST",), prefix=True),
        Route("/channels", channels),
    ]
)


def test_a_prefix_route_serves_longer_paths_with_an_endpoint_per_method() -> None:
    resource = ROUTER.match("/events/room/a")
    assert resource is not None
    assert resource.endpoints == {"GET": subscribe, "POST": publish}
    assert resource.allow == "GET, POST, OPTIONS"


def test_the_prefix_itself_and_unknown_paths_match_nothing() -> None:
    assert ROUTER.match("/events/") is None
    assert ROUTER.match("/events") is None
    assert ROUTER.match("/nowhere") is None
    assert ROUTER.match("/channels/x") is None


def test_an_exact_route_allows_its_methods_and_options() -> None:
    resource = ROUTER.match("/channels")
    assert resource is not None
    assert resource.endpoints == {"GET": channels}
    assert resource.allow == "GET, OPTIONS"


def test_a_method_routed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="GET /x is routed twice"):
        Router([Route("/x", channels), Route("/x", publish)])
    with pytest.raises(ValueError, match="OPTIONS"):
        Router([Route("/x", channels, ("OPTIONS",))])


def test_the_longest_prefix_wins() -> None:
    router = Router([Route("/a/", subscribe, prefix=True), Route("/a/b/", publish, prefix=True)])
    inner, outer = router.match("/a/b/c"), router.match("/a/c")
    assert inner is not None and inner.endpoints == {"GET": publish}
    assert outer is not None and outer.endpoints == {"GET": subscribe}


def origin(value: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"accept", b"*/*"), (b"origin", value)]


def test_without_origins_no_cors_header_is_ever_sent() -> None:
    cors = CORS()
    assert not cors.enabled
    assert not cors.is_allowed_origin(b"http://a.example")
    assert cors.simple_headers(origin(b"http://a.example")) == ()
    assert cors.preflight_headers(origin(b"http://a.example"), b"GET, OPTIONS") == [
        (b"allow", b"GET, OPTIONS")
    ]


def test_an_allowed_origin_is_echoed_with_vary_and_others_get_nothing() -> None:
    cors = CORS(["http://a.example", "http://b.example"])
    assert cors.enabled
    assert cors.is_allowed_origin(b"http://b.example")
    assert not cors.is_allowed_origin(b"http://evil.example")
    assert list(cors.simple_headers(origin(b"http://b.example"))) == [
        (b"access-control-allow-origin", b"http://b.example"),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]
    assert cors.simple_headers(origin(b"http://evil.example")) == ()
    assert cors.simple_headers([]) == ()


def test_a_preflight_from_an_allowed_origin_lists_methods_and_headers() -> None:
    cors = CORS(["http://a.example"])
    headers = dict(cors.preflight_headers(origin(b"http://a.example"), b"POST, OPTIONS"))
    assert headers == {
        b"allow": b"POST, OPTIONS",
        b"access-control-allow-origin": b"http://a.example",
        b"access-control-allow-credentials": b"true",
        b"vary": b"Origin",
        b"access-control-allow-methods": b"POST, OPTIONS",
        b"access-control-allow-headers": PREFLIGHT_ALLOW_HEADERS,
        b"access-control-max-age": b"86400",
    }
    stranger = cors.preflight_headers(origin(b"http://evil.example"), b"POST, OPTIONS")
    assert stranger == [(b"allow", b"POST, OPTIONS")]


def test_a_wildcard_allows_any_origin_and_requests_without_one() -> None:
    cors = CORS(["*", "http://a.example"])
    star = [(b"access-control-allow-origin", b"*")]  # never with credentials
    assert list(cors.simple_headers(origin(b"http://whoever.example"))) == star
    assert list(cors.simple_headers([])) == star
    # A listed origin is still echoed, so that credentials can work for it.
    assert (b"vary", b"Origin") in cors.simple_headers(origin(b"http://a.example"))


def test_the_answer_for_an_origin_is_computed_once() -> None:
    cors = CORS(["http://a.example"])
    first = cors.simple_headers(origin(b"http://a.example"))
    assert cors.simple_headers(origin(b"http://a.example")) is first


@pytest.mark.parametrize("bad", ["http://a.example\r\nX: y", "a b", "a,b", "a\0"])
def test_an_origin_that_cannot_be_a_header_value_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid CORS origin"):
        CORS([bad])
