"""Publish parsing, the cases scripts/mutate showed untested: exact refusals, the browser
same-origin rule, Content-Type parameters, and the size a 413 reports for an event.

Sans-IO like tests/server/test_publish.py: no socket, no event loop.
"""

from __future__ import annotations

import json

import pytest

from ssehub.server import _json
from ssehub.server.cors import CORS
from ssehub.server.publish import (
    PublishError,
    PublishHead,
    check_event_sizes,
    check_head,
    parse_body,
    parse_publish,
)
from ssehub.wire import Message

Headers = list[tuple[bytes, bytes]]


def head_refusal(
    headers: Headers, *, token: bytes | None = None, cors: CORS | None = None, max_body: int = 100
) -> PublishError:
    with pytest.raises(PublishError) as caught:
        check_head(headers, token=token, max_body=max_body, cors=cors)
    return caught.value


# -- exact refusals ----------------------------------------------------------------------


def test_the_401_says_which_header_to_send() -> None:
    error = head_refusal([], token=b"s3cret")
    assert (error.status, error.message) == (
        401,
        "publishing needs the header 'Authorization: Bearer <publish token>'",
    )


def test_the_415_for_a_compressed_body_says_what_to_send() -> None:
    error = head_refusal([(b"content-encoding", b"gzip")])
    assert (error.status, error.message) == (
        415,
        "compressed bodies are not accepted; send identity encoding",
    )


def test_the_403_for_a_foreign_origin_names_it_and_the_way_out() -> None:
    headers = [(b"host", b"hub.example"), (b"origin", b"https://evil.example")]
    error = head_refusal(headers, cors=CORS())
    assert (error.status, error.message) == (
        403,
        "publishing from the origin 'https://evil.example' is not allowed: only the hub's own "
        "origin and --cors-origin origins may publish from a browser (or set a publish token)",
    )


def test_json_nested_too_deeply_is_400_with_its_reason() -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(PublishError) as caught:
        parse_body(PublishHead(json=True), body)
    assert caught.value.status == 400
    assert caught.value.message.startswith("malformed JSON: ")
    if _json.loads is json.loads:  # orjson says it in its own words
        assert caught.value.message == "malformed JSON: nested too deeply"


def test_a_batch_over_the_limit_says_how_many_and_what_to_do() -> None:
    with pytest.raises(PublishError) as caught:
        parse_body(PublishHead(json=True), b'[{"data": "a"}, {"data": "b"}]', max_batch=1)
    assert (caught.value.status, caught.value.message) == (
        413,
        "a batch may hold at most 1 messages, got 2; split it into several requests",
    )


# -- the browser same-origin rule of an open hub -----------------------------------------


@pytest.mark.parametrize("scheme", [b"http://", b"https://"])
def test_a_same_origin_page_may_publish_to_an_open_hub(scheme: bytes) -> None:
    headers = [(b"host", b"hub.example:8080"), (b"origin", scheme + b"hub.example:8080")]
    assert check_head(headers, token=None, max_body=100, cors=CORS()) == PublishHead(json=False)


def test_the_host_is_read_whatever_the_other_headers_and_their_order() -> None:
    headers = [
        (b"host", b"hub.example"),
        (b"origin", b"https://hub.example"),
        (b"user-agent", b"browser"),
        (b"accept", b"*/*"),
    ]
    assert check_head(headers, token=None, max_body=100, cors=CORS()) == PublishHead(json=False)


def test_an_origin_without_a_host_to_compare_with_is_refused() -> None:
    # Not even the bare scheme matches: without a Host there is no "same origin".
    assert head_refusal([(b"origin", b"http://")], cors=CORS()).status == 403


# -- the head's size and Content-Type ----------------------------------------------------


@pytest.mark.parametrize("length", [[], [(b"content-length", b"chunked?")]])
def test_no_usable_declared_length_is_never_refused_from_the_head(length: Headers) -> None:
    # Even with a limit of 0: the body is counted while it is read instead.
    assert check_head(length, token=None, max_body=0) == PublishHead(json=False)


def test_content_type_parameters_other_than_charset_are_ignored() -> None:
    headers = [(b"content-type", b"text/plain; format=flowed")]
    assert parse_publish(headers, b"hello") == Message("hello")


def test_the_charset_ends_at_the_next_parameter() -> None:
    headers = [(b"content-type", b"application/json; charset=utf-8; profile=x")]
    assert check_head(headers, token=None, max_body=100) == PublishHead(json=True, charset=b"utf-8")
    assert parse_publish(headers, b'{"data": "hi"}') == Message("hi")


def test_the_first_charset_parameter_is_the_one_read() -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8; x-charset=latin-1")]
    assert parse_publish(headers, b"hi") == Message("hi")


def test_a_charset_without_a_value_is_415_not_a_crash() -> None:
    with pytest.raises(PublishError) as caught:
        parse_publish([(b"content-type", b"text/plain; charset")], b"hi")
    assert caught.value.status == 415


# -- the size a 413 reports for an event (a client's buffer) -----------------------------


def reported_size(message: Message) -> int | None:
    """The size check_event_sizes reports for ``message`` alone with a 1-byte buffer."""
    body = len(json.dumps({"data": message.data}))
    try:
        check_event_sizes([message], body, 1)
    except PublishError as error:
        assert error.status == 413
        return int(error.message.split("about ")[1].split(" bytes")[0])
    return None


@pytest.mark.parametrize(
    "message",
    [
        Message("", id="1"),
        Message("x" * 40, id="42"),
        Message("hi", id="9", event="price"),
        Message("hi", id="9", comment="note"),
    ],
)
def test_a_one_line_ascii_event_with_an_id_is_reported_at_its_exact_size(message: Message) -> None:
    size = len(message.encode())
    assert reported_size(message) == size
    # And exactly that size fits a buffer of that size; one byte less does not.
    check_event_sizes([message], 10 * size, size)
    with pytest.raises(PublishError) as caught:
        check_event_sizes([message], 10 * size, size - 1)
    assert caught.value.message == (
        f"item 0: the event is about {size} bytes once encoded, larger than a client's buffer "
        f"of {size - 1} bytes (raise --max-buffer to send it)"
    )


@pytest.mark.parametrize(
    "message",
    [
        Message("a\nb\nc", id="7"),
        Message("a\rb\rc", id="7"),
        Message("a\rb\nc", id="7"),
        Message("hi", id="9", comment="one\ntwo\rthree"),
    ],
)
def test_a_multi_line_event_is_never_reported_smaller_and_at_most_a_byte_more_per_line(
    message: Message,
) -> None:
    size = len(message.encode())
    breaks = sum(
        text.count("\n") + text.count("\r") for text in (message.data, message.comment or "")
    )
    reported = reported_size(message)
    assert reported is not None
    assert size <= reported <= size + breaks


def test_an_event_without_an_id_is_counted_with_the_longest_id_the_hub_assigns() -> None:
    # The hub assigns "<boot-ms>-<n>"; the bound reserves 48 characters for it.
    assert reported_size(Message("hi")) == len(Message("hi", id="x" * 48).encode())


def test_a_retry_is_counted_at_its_widest_twenty_digits() -> None:
    message = Message("hi", id="9", retry=5)
    widest = len(Message("hi", id="9").encode()) + len("retry: \n") + 20
    assert reported_size(message) == widest
    assert widest >= len(Message("hi", id="9", retry=2**63 - 1).encode())


def test_a_small_batch_with_an_event_over_the_buffer_is_still_refused() -> None:
    # One short item (an 11-byte body) whose event, with the id the hub adds, is 71 bytes.
    body = b'[{"data": "0123456789"}]'
    messages = parse_publish([(b"content-type", b"application/json")], body)
    assert isinstance(messages, list)
    with pytest.raises(PublishError) as caught:
        check_event_sizes(messages, len(body), 50)
    assert caught.value.status == 413
    check_event_sizes(messages, len(body), 71)
