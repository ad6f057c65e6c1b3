"""Publish parsing as data: request head and body in, messages or a typed refusal out.

No socket and no event loop: `ssehub.server.publish` decides, the app only reads the body.
"""

from __future__ import annotations

import pytest

from ssehub.server.publish import (
    DEFAULT_MAX_BODY,
    PublishError,
    PublishHead,
    check_head,
    parse_body,
    parse_publish,
)
from ssehub.wire import Message

JSON = [(b"content-type", b"application/json")]
TEXT = [(b"content-type", b"text/plain")]


def refused(
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    token: bytes | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> PublishError:
    with pytest.raises(PublishError) as caught:
        parse_publish(headers, body, token=token, max_body=max_body)
    return caught.value


# -- what a body publishes ---------------------------------------------------------------


def test_a_json_object_is_one_message_with_every_field() -> None:
    body = b'{"data": "hi", "event": "note", "id": "7", "retry": 1500}'
    assert parse_publish(JSON, body) == Message("hi", event="note", id="7", retry=1500)


def test_a_json_object_needs_only_data() -> None:
    assert parse_publish(JSON, b'{"data": ""}') == Message("")


def test_a_json_array_is_its_messages_in_order() -> None:
    body = b'[{"data": "a"}, {"data": "b", "id": "2"}]'
    assert parse_publish(JSON, body) == [Message("a"), Message("b", id="2")]


def test_an_empty_json_array_publishes_nothing() -> None:
    assert parse_publish(JSON, b"[]") == []


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"Application/JSON",
        b"application/json; charset=utf-8",
        b"application/merge-patch+json",
        b" application/json ;charset=UTF8",
    ],
)
def test_json_and_plus_json_types_are_parsed_as_json(content_type: bytes) -> None:
    assert parse_publish([(b"content-type", content_type)], b'{"data": "x"}') == Message("x")


@pytest.mark.parametrize(
    "headers", [[], TEXT, [(b"content-type", b"application/x-www-form-urlencoded")]]
)
def test_any_other_body_is_the_raw_text(headers: list[tuple[bytes, bytes]]) -> None:
    assert parse_publish(headers, b'{"data": "not parsed"}') == Message('{"data": "not parsed"}')


def test_raw_text_keeps_newlines_and_unicode() -> None:
    assert parse_publish(TEXT, "line 1\r\nline 2 café ✓".encode()) == Message(
        "line 1\r\nline 2 café ✓"
    )


def test_an_empty_raw_body_is_an_empty_message() -> None:
    assert parse_publish([], b"") == Message("")


@pytest.mark.parametrize(
    "content_type",
    [b"text/plain; charset=utf-8", b"text/plain; charset=UTF8", b'text/plain; charset="utf-8"'],
)
def test_a_utf8_charset_is_accepted(content_type: bytes) -> None:
    assert parse_publish([(b"content-type", content_type)], b"ok") == Message("ok")


# -- refusals from the head --------------------------------------------------------------


def test_the_publish_token_is_required_when_set() -> None:
    for headers in (
        [],
        [(b"authorization", b"Bearer wrong")],
        [(b"authorization", b"Bearer s3cret-and-more")],
        [(b"authorization", b"Basic s3cret")],
        [(b"authorization", b"s3cret")],
    ):
        error = refused(headers, b"x", token=b"s3cret")
        assert error.status == 401
        assert "Authorization: Bearer" in error.message
        assert (b"www-authenticate", b'Bearer realm="ssehub"') in error.headers


@pytest.mark.parametrize("value", [b"Bearer s3cret", b"bearer s3cret", b"BEARER  s3cret "])
def test_the_right_token_is_accepted_whatever_the_scheme_case(value: bytes) -> None:
    assert parse_publish([(b"authorization", value)], b"x", token=b"s3cret") == Message("x")


def test_the_token_is_checked_before_anything_else() -> None:
    headers = [(b"content-length", b"999"), (b"content-encoding", b"gzip")]
    assert refused(headers, b"x", token=b"t", max_body=10).status == 401


def test_a_declared_length_over_the_limit_is_refused_from_the_head() -> None:
    with pytest.raises(PublishError) as caught:
        check_head([(b"content-length", b"101")], token=None, max_body=100)
    assert (caught.value.status, caught.value.message) == (
        413,
        "the body is over the limit of 100 bytes",
    )


def test_a_declared_length_at_the_limit_passes_the_head() -> None:
    assert check_head([(b"content-length", b"100")], token=None, max_body=100) == PublishHead(
        json=False
    )


def test_a_malformed_content_length_is_left_to_the_body_count() -> None:
    check_head([(b"content-length", b"-5")], token=None, max_body=100)
    check_head([(b"content-length", b"lots")], token=None, max_body=100)


def test_a_body_over_the_limit_is_refused_even_without_a_declared_length() -> None:
    error = refused([], b"x" * 101, max_body=100)
    assert (error.status, error.message) == (413, "the body is over the limit of 100 bytes")
    assert parse_publish([], b"x" * 100, max_body=100) == Message("x" * 100)


@pytest.mark.parametrize("encoding", [b"gzip", b"br", b"deflate", b"x-anything"])
def test_a_compressed_body_is_refused(encoding: bytes) -> None:
    error = refused([(b"content-encoding", encoding)], b"\x1f\x8b")
    assert error.status == 415
    assert "compressed" in error.message


@pytest.mark.parametrize("encoding", [b"identity", b" Identity "])
def test_identity_encoding_is_accepted(encoding: bytes) -> None:
    assert parse_publish([(b"content-encoding", encoding)], b"x") == Message("x")


def test_the_head_says_json_and_charset() -> None:
    head = check_head(
        [(b"content-type", b"application/json; charset=UTF-8")], token=None, max_body=10
    )
    assert head == PublishHead(json=True, charset=b"utf-8")


# -- refusals from the body --------------------------------------------------------------


@pytest.mark.parametrize("charset", [b"latin-1", b"iso-8859-1", b"utf-16"])
def test_a_charset_other_than_utf8_is_refused(charset: bytes) -> None:
    error = refused([(b"content-type", b"text/plain; charset=" + charset)], b"x")
    assert error.status == 415
    assert error.message == f"only UTF-8 bodies are accepted, not {charset.decode()!r}"


@pytest.mark.parametrize("headers", [[], JSON])
def test_bytes_that_are_not_utf8_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    error = refused(headers, b'{"data": "caf\xe9"}')
    assert error.status == 415
    assert error.message == "the body is not valid UTF-8 (byte 13): only UTF-8 is accepted"


@pytest.mark.parametrize("body", [b'{"data": "x"', b"", b"{", b"[1,", b"nope"])
def test_malformed_json_is_400(body: bytes) -> None:
    error = refused(JSON, body)
    assert error.status == 400
    assert error.message.startswith("malformed JSON: ")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'"just a string"', "a message must be a JSON object like"),
        (b"42", "got int"),
        (b"null", "got NoneType"),
        (b"true", "got bool"),
        (b'{"event": "x"}', 'missing field "data" (a string, or any JSON value)'),
        (b'{"data": 1e400}', "data must be a str or a value JSON can encode"),
        (b'{"data": {"x": "\\ud800"}}', "data is not encodable as UTF-8"),
        (b'{"data": "x", "event": 3}', "event must be a str"),
        (b'{"data": "x", "id": ["a"]}', "id must be a str"),
        (b'{"data": "x", "retry": "100"}', "retry"),
        (b'{"data": "x", "retry": -1}', "retry"),
        (b'{"data": "x", "retry": true}', "retry"),
        (b'{"data": "x", "retry": 1.5}', "retry"),
        (b'{"data": "x", "event": "a\\nb"}', "event may not contain CR or LF"),
        (b'{"data": "x", "event": "a\\rb"}', "event may not contain CR or LF"),
        (b'{"data": "x", "id": "a\\nb"}', "id may not contain CR, LF or NUL"),
        (b'{"data": "x", "id": "a\\u0000b"}', "id may not contain CR, LF or NUL"),
    ],
)
def test_a_bad_message_is_400_with_what_was_wrong(body: bytes, words: str) -> None:
    error = refused(JSON, body)
    assert error.status == 400
    assert words in error.message


@pytest.mark.parametrize(
    ("body", "data"),
    [
        (b'{"data": {"price": 42}}', '{"price":42}'),
        (
            b'{"data": {"name": "caf\xc3\xa9", "tags": ["a", "b"]}}',
            '{"name":"caf\u00e9","tags":["a","b"]}',
        ),
        (b'{"data": [1, 2.5, true, null]}', "[1,2.5,true,null]"),
        (b'{"data": 42}', "42"),
        (b'{"data": false}', "false"),
        (b'{"data": null}', "null"),
        (b'{"data": "42"}', "42"),
    ],
)
def test_json_data_that_is_not_a_string_is_published_as_compact_json(
    body: bytes, data: str
) -> None:
    assert parse_publish(JSON, body) == Message(data)


def test_json_data_keeps_its_other_fields_and_works_in_a_batch() -> None:
    body = b'[{"data": {"a": 1}, "event": "tick", "id": "7"}, {"data": [2]}]'
    assert parse_publish(JSON, body) == [Message('{"a":1}', id="7", event="tick"), Message("[2]")]


def test_unknown_fields_are_named_with_the_allowed_ones() -> None:
    error = refused(JSON, b'{"data": "x", "evnet": "typo", "zz": 1}')
    assert error.status == 400
    assert error.message == (
        "unknown field(s) 'evnet', 'zz'; allowed: data, event, id, retry, private"
    )


def test_one_bad_item_refuses_the_whole_array_and_names_it() -> None:
    error = refused(JSON, b'[{"data": "ok"}, {"data": "x", "id": "a\\nb"}]')
    assert error.status == 400
    assert error.message.startswith("item 1: id may not contain")
    error = refused(JSON, b'[{"data": "ok"}, 7]')
    assert error.message.startswith("item 1: a message must be a JSON object")


def test_parse_body_alone_takes_a_head_and_the_bytes() -> None:
    assert parse_body(PublishHead(json=True), b'{"data": "x"}') == Message("x")
    assert parse_body(PublishHead(json=False), b'{"data": "x"}') == Message('{"data": "x"}')
    with pytest.raises(PublishError):
        parse_body(PublishHead(json=False, charset=b"latin-1"), b"x")


def test_every_refusal_is_an_http_error_with_a_status_and_message() -> None:
    error = refused(JSON, b"{")
    assert isinstance(error, PublishError)
    assert str(error) == error.message
    assert error.headers == ()


def test_only_a_parameter_named_charset_names_the_charset() -> None:
    # A parameter whose name merely contains "charset" says nothing of the encoding.
    head = check_head(
        [(b"content-type", b"text/plain; x-charset-hint=latin-1")], token=None, max_body=1024
    )
    assert parse_body(head, "café".encode()) == Message("café")
    latin = check_head(
        [(b"content-type", b'text/plain; format=flowed; Charset="latin-1"')],
        token=None,
        max_body=1024,
    )
    with pytest.raises(PublishError) as caught:
        parse_body(latin, b"x")
    assert caught.value.status == 415
