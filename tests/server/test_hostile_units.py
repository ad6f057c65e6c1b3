"""The sans-IO pieces behind issue 10's content checks, tested with plain data: path decoding,
log escaping, the Host and Origin rules, batch caps and event sizes."""

from __future__ import annotations

import logging

import pytest

from ssehub.server.app import host_allowed
from ssehub.server.cors import CORS
from ssehub.server.logs import SafeFormatter, escape_controls, redact_tokens
from ssehub.server.publish import PublishError, check_event_sizes, check_head, parse_publish
from ssehub.server.routing import decode_path
from ssehub.wire import Message

JSON = [(b"content-type", b"application/json")]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/events/a/b", "/events/a/b"),
        (b"/events/a%2Fb", "/events/a%2Fb"),
        (b"/events/a%2fb", "/events/a%2Fb"),
        (b"/events/caf%C3%A9", "/events/café"),
        (b"/events/100%25", "/events/100%25"),
        (b"/events/a%252Fb", "/events/a%252Fb"),
        (b"/events/sp%20ace", "/events/sp ace"),
    ],
)
def test_decode_path_keeps_encoded_slashes_and_percents(raw: bytes, path: str) -> None:
    assert decode_path(raw) == path


def test_different_raw_paths_never_name_one_channel() -> None:
    raws = [b"/a/b", b"/a%2Fb", b"/a%252Fb", b"/a%25252Fb", b"/a%2F%2Fb", b"/a//b"]
    assert len({decode_path(raw) for raw in raws}) == len(raws)


@pytest.mark.parametrize("raw", [b"/%ff", b"/%fe%ff", b"/%C3", b"/%ED%A0%80", b"/\xff"])
def test_decode_path_refuses_what_is_not_utf8(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_path(raw)


def test_log_values_are_escaped_and_tokens_redacted() -> None:
    assert escape_controls("a\nb\rc\td\x1b[0m\x00\x85\u2028") == (
        "a\\nb\\rc\\td\\x1b[0m\\x00\\x85\\u2028"
    )
    assert redact_tokens('"GET /events/x?a=1&token=s3cret&b=2 HTTP/1.1"') == (
        '"GET /events/x?a=1&token=***&b=2 HTTP/1.1"'
    )
    record = logging.LogRecord("t", logging.INFO, "f", 1, "target=%s", ("/x\nevent=start",), None)
    line = SafeFormatter("%(message)s").format(record)
    assert line == "target=/x\\nevent=start"


def test_host_allowed() -> None:
    allowed = frozenset({b"hub.example", b"api.example:8443", b".internal.test"})
    for host in (b"hub.example", b"HUB.example:8000", b"api.example:8443", b"a.b.internal.test"):
        assert host_allowed(host, allowed), host
    for host in (b"evil.example", b"api.example:80", b"internal.test.evil", b"xinternal.test"):
        assert not host_allowed(host, allowed), host


def test_publish_origin_rule() -> None:
    cors = CORS(["https://app.example"])
    assert cors.allows_publish(b"https://app.example", b"hub:8000")
    assert cors.allows_publish(b"http://hub:8000", b"hub:8000")
    assert cors.allows_publish(b"HTTPS://Hub:8000", b"hub:8000")
    assert not cors.allows_publish(b"https://evil.example", b"hub:8000")
    assert not cors.allows_publish(b"null", b"hub:8000")
    assert not cors.allows_publish(b"http://hub:8000", None)
    assert CORS(["*"]).allows_publish(b"https://any.example", b"hub")
    evil = [(b"origin", b"https://evil.example"), (b"host", b"hub:8000")]
    with pytest.raises(PublishError) as caught:
        check_head(evil, token=None, max_body=100, cors=cors)
    assert caught.value.status == 403
    # A publish token is the defence when there is one; without an Origin it is not a browser.
    check_head([*evil, (b"authorization", b"Bearer t")], token=b"t", max_body=100, cors=cors)
    check_head([(b"host", b"hub:8000")], token=None, max_body=100, cors=cors)


def test_batches_are_capped_and_deep_nesting_is_a_400() -> None:
    with pytest.raises(PublishError) as caught:
        parse_publish(JSON, b"[" + b",".join([b'{"data":"x"}'] * 11) + b"]", max_batch=10)
    assert caught.value.status == 413 and "at most 10 messages, got 11" in caught.value.message
    accepted = parse_publish(JSON, b"[" + b",".join([b'{"data":"x"}'] * 10) + b"]", max_batch=10)
    assert isinstance(accepted, list) and len(accepted) == 10
    with pytest.raises(PublishError) as caught:
        parse_publish(JSON, b"[" * 100_000 + b"]" * 100_000)
    assert caught.value.status == 400
    with pytest.raises(PublishError) as caught:
        parse_publish(JSON, b'[{"data": "ok"}, {"data": "\\udc00"}]')
    assert caught.value.status == 400 and caught.value.message.startswith("item 1:")


def test_event_sizes_in_a_batch_are_bounded_from_above() -> None:
    small = [Message("x" * 100)] * 3
    check_event_sizes(small, 400, 1000)
    with pytest.raises(PublishError) as caught:
        check_event_sizes([Message("ok"), Message("\n" * 200)], 10_000, 1000)
    assert caught.value.status == 413 and caught.value.message.startswith("item 1:")
    # The bound is never below the real size.
    for message in (
        Message("y" * 900, event="e"),
        Message("é\n" * 50, id="é"),
        Message("a\r\nb", comment="c\nd"),
    ):
        real = len(message.encode()) + (0 if message.id else 45)
        with pytest.raises(PublishError):
            check_event_sizes([message], 10_000, real - 1)
