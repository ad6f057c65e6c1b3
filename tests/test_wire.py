"""Specification of the sans-IO wire layer: `Message`, `encode_comment` and `EventParser`.

The parser is held to the WHATWG HTML "interpreting an event stream" rules; the encoder to the
seed library's byte-exact output; and the two to each other by property tests over arbitrary
messages and arbitrary chunkings of the bytes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

import ssehub
from ssehub import EventParser, InvalidMessage, Message, encode_comment
from ssehub.wire import id_problem
from tests._support.properties import property_settings

# scripts/mutate asks for fewer examples, drawn the same way each time (tests/_support/properties).
PROPERTY_SETTINGS = property_settings(250)


def parse(*chunks: bytes) -> tuple[list[Message], EventParser]:
    """Feed ``chunks`` to a fresh parser in order; return every event and the parser."""
    parser = EventParser()
    events: list[Message] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events, parser


def data_of(*chunks: bytes) -> list[str]:
    """The ``data`` of every event the chunks complete."""
    return [m.data for m in parse(*chunks)[0]]


def split_at(blob: bytes, points: Sequence[int]) -> list[bytes]:
    """Cut ``blob`` at the given offsets (any order, duplicates allowed: empty chunks)."""
    cuts = [0, *sorted(points), len(blob)]
    return [blob[a:b] for a, b in pairwise(cuts)]


def normalize_newlines(text: str) -> str:
    """What a client sees of data text: every CRLF, CR and LF becomes LF."""
    return re.sub(r"\r\n|\r", "\n", text)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def test_message_with_only_data_encodes_byte_identical_to_seed() -> None:
    assert Message("test").encode() == b"data: test\n\n"


def test_message_with_all_fields_encodes_id_retry_event_data_like_seed() -> None:
    message = Message("test", id="123", retry=10000, event="myevent")
    assert message.encode() == b"id: 123\nretry: 10000\nevent: myevent\ndata: test\n\n"


def test_empty_data_encodes_one_empty_data_line() -> None:
    assert Message().encode() == b"data: \n\n"
    assert Message("").encode() == b"data: \n\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("a\nb", b"data: a\ndata: b\n\n"),
        ("a\r\nb", b"data: a\ndata: b\n\n"),
        ("a\rb", b"data: a\ndata: b\n\n"),
        ("a\r\nb\rc\nd", b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
        ("a\n\nb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\r\rb", b"data: a\ndata: \ndata: b\n\n"),
        ("a\n", b"data: a\ndata: \n\n"),
        ("\r", b"data: \ndata: \n\n"),
    ],
)
def test_multiline_data_is_one_data_line_per_line_for_crlf_cr_and_lf(
    data: str, expected: bytes
) -> None:
    assert Message(data).encode() == expected


def test_lone_cr_in_data_loses_no_text() -> None:
    events, _ = parse(Message("before\rafter").encode())
    assert [m.data for m in events] == ["before\nafter"]


def test_data_is_encoded_as_utf8() -> None:
    assert Message("é€😀").encode() == "data: é€😀\n\n".encode()


def test_empty_id_is_sent_so_it_resets_the_clients_last_event_id() -> None:
    assert Message("x", id="").encode() == b"id: \ndata: x\n\n"


def test_retry_zero_is_sent() -> None:
    assert Message("x", retry=0).encode() == b"retry: 0\ndata: x\n\n"


def test_message_comment_is_sent_before_the_fields() -> None:
    assert Message("x", id="1", comment="hi").encode() == b": hi\nid: 1\ndata: x\n\n"


def test_multiline_message_comment_is_one_comment_line_per_line() -> None:
    assert Message("x", comment="a\r\nb\rc").encode() == b": a\n: b\n: c\ndata: x\n\n"


def test_encode_comment_without_text_is_a_bare_colon_block() -> None:
    assert encode_comment() == b":\n\n"


def test_encode_comment_writes_text_after_colon_space() -> None:
    assert encode_comment("keep-alive") == b": keep-alive\n\n"


def test_encode_comment_splits_lines_and_never_writes_a_blank_line_inside() -> None:
    # A blank line inside the block would dispatch whatever the client had buffered.
    assert encode_comment("a\r\n\rb\nc") == b": a\n:\n: b\n: c\n\n"


def test_message_is_a_frozen_value() -> None:
    message = Message("x", id="1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.data = "y"  # type: ignore[misc]
    assert message == Message("x", id="1")
    assert hash(message) == hash(Message("x", id="1"))


def test_public_names_are_exported_from_ssehub() -> None:
    assert ssehub.Message is Message
    assert ssehub.EventParser is EventParser
    assert ssehub.encode_comment is encode_comment
    assert ssehub.InvalidMessage is InvalidMessage


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"id": "1\n2"}, "id"),
        ({"id": "1\r2"}, "id"),
        ({"id": "1\r\n2"}, "id"),
        ({"id": "1\x002"}, "id"),
        ({"id": 5}, "id"),
        ({"event": "a\nb"}, "event"),
        ({"event": "a\rb"}, "event"),
        ({"event": b"e"}, "event"),
        ({"retry": -1}, "retry"),
        ({"retry": True}, "retry"),
        ({"retry": False}, "retry"),
        ({"retry": 1.5}, "retry"),
        ({"retry": 1000.0}, "retry"),
        ({"retry": "1000"}, "retry"),
        ({"comment": 3}, "comment"),
    ],
)
def test_invalid_field_raises_invalid_message_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidMessage, match=rf"^{field}\b") as info:
        Message("x", **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"price": 42}, '{"price":42}'),
        ({"name": "café", "tags": ["a", "b"]}, '{"name":"café","tags":["a","b"]}'),
        ([1, 2.5, True, None], "[1,2.5,true,null]"),
        ((1, 2), "[1,2]"),
        (42, "42"),
        (-0.5, "-0.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ({}, "{}"),
    ],
)
def test_non_str_data_is_encoded_once_as_compact_json(data: object, text: str) -> None:
    message = Message(data, id="1", event="quote")
    assert message.data == text
    assert message == Message(text, id="1", event="quote")
    assert message.encode() == f"id: 1\nevent: quote\ndata: {text}\n\n".encode()


def test_json_data_with_newlines_in_strings_stays_on_one_data_line() -> None:
    # JSON escapes the newline, so a multi-line string value is still one data: line.
    assert Message({"text": "a\nb"}).encode() == b'data: {"text":"a\\nb"}\n\n'


def test_a_str_is_data_as_it_is_not_json_quoted() -> None:
    assert Message("42").data == "42"
    assert Message("").encode() == b"data: \n\n"


@pytest.mark.parametrize("data", [b"bytes", {1, 2}, object(), float("nan"), float("inf")])
def test_data_json_cannot_encode_raises_invalid_message_naming_data(data: object) -> None:
    with pytest.raises(InvalidMessage, match=r"^data must be a str or a value JSON can encode"):
        Message(data)


def test_circular_data_raises_invalid_message() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidMessage, match=r"^data must be a str"):
        Message(loop)


def test_json_data_holding_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="data is not encodable as UTF-8"):
        Message({"x": "\ud800"})


def test_a_message_with_json_data_survives_the_parser_round_trip() -> None:
    parsed = EventParser().feed(Message({"a": [1, {"b": None}]}, event="e").encode())
    assert [(m.data, m.event) for m in parsed] == [('{"a":[1,{"b":null}]}', "e")]


def test_invalid_message_messages_say_what_is_allowed() -> None:
    with pytest.raises(InvalidMessage, match="CR, LF or NUL"):
        Message("x", id="a\0")
    with pytest.raises(InvalidMessage, match="CR or LF"):
        Message("x", event="a\n")
    with pytest.raises(InvalidMessage, match="non-negative integer"):
        Message("x", retry=-5)


def test_retry_too_large_for_the_wire_raises_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="retry"):
        Message("x", retry=2**63)


def test_parser_ignores_retry_too_large_to_represent() -> None:
    parser = EventParser()
    events = parser.feed(b"retry: 9223372036854775808\ndata: x\n\n")
    assert [(e.data, e.retry) for e in events] == [("x", None)]
    assert parser.retry is None


def test_text_that_is_not_utf8_encodable_raises_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="UTF-8"):
        Message("lone \ud800 surrogate").encode()


def test_values_the_format_can_carry_are_accepted() -> None:
    message = Message("any\0text", id="", event="with\0nul and spaces ", retry=0, comment="")
    assert message.id == ""
    assert message.retry == 0


# --------------------------------------------------------------------------------------------
# Parsing: byte order mark and line ends
# --------------------------------------------------------------------------------------------


def test_parser_dispatches_a_simple_event() -> None:
    events, _ = parse(b"data: hello\n\n")
    assert events == [Message("hello")]


def test_parser_strips_a_leading_bom() -> None:
    assert data_of(b"\xef\xbb\xbfdata: a\n\n") == ["a"]


def test_parser_strips_a_leading_bom_split_across_chunks() -> None:
    assert data_of(b"\xef", b"\xbb", b"", b"\xbfdata: a\n\n") == ["a"]


def test_parser_strips_only_one_bom() -> None:
    # The second BOM becomes part of the first field name, "\ufeffdata", which is unknown.
    assert data_of(b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\ndata: b\n\n") == ["b"]


def test_parser_does_not_strip_a_bom_after_the_start_of_the_stream() -> None:
    assert data_of(b"data: a\n\n", b"\xef\xbb\xbfdata: b\n\ndata: c\n\n") == ["a", "c"]


@pytest.mark.parametrize(
    "stream",
    [
        b"data: a\n\n",
        b"data: a\r\r",
        b"data: a\r\n\r\n",
        b"data: a\r\n\n",
        b"data: a\n\r",
        b"data: a\r\r\n",
    ],
)
def test_parser_accepts_crlf_cr_and_lf_as_line_ends(stream: bytes) -> None:
    assert data_of(stream) == ["a"]


def test_parser_treats_crlf_as_a_single_line_end() -> None:
    # Were CRLF two line ends, "a" would be dispatched alone before "b" was read.
    assert data_of(b"data: a\r\ndata: b\r\n\r\n") == ["a\nb"]


def test_parser_joins_cr_and_lf_split_across_chunks_into_one_line_end() -> None:
    assert data_of(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == ["a\nb"]


def test_parser_keeps_a_pending_cr_across_empty_chunks() -> None:
    assert data_of(b"data: a\r", b"", b"", b"\ndata: b\r", b"", b"\n\n") == ["a\nb"]


def test_parser_ends_the_line_at_a_cr_even_when_no_lf_follows() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert [m.data for m in parser.feed(b"\r")] == ["a"]


def test_parser_treats_cr_then_cr_across_chunks_as_two_line_ends() -> None:
    assert data_of(b"data: a\r", b"\rdata: b\r", b"\r") == ["a", "b"]


def test_parser_returns_events_in_order_from_one_chunk() -> None:
    assert data_of(b"data: 1\n\ndata: 2\n\ndata: 3\n\n") == ["1", "2", "3"]


def test_parser_returns_nothing_for_an_empty_chunk() -> None:
    assert EventParser().feed(b"") == []


# --------------------------------------------------------------------------------------------
# Parsing: fields
# --------------------------------------------------------------------------------------------


def test_field_without_colon_has_an_empty_value() -> None:
    assert data_of(b"data\n\n") == [""]
    assert data_of(b"data\ndata\ndata: x\n\n") == ["\n\nx"]


def test_exactly_one_space_after_the_colon_is_removed() -> None:
    assert data_of(b"data:x\n\n") == ["x"]
    assert data_of(b"data: x\n\n") == ["x"]
    assert data_of(b"data:  x\n\n") == [" x"]
    assert data_of(b"data:\tx\n\n") == ["\tx"]
    assert data_of(b"data: \n\n") == [""]


def test_value_keeps_colons_after_the_first() -> None:
    assert data_of(b"data: a: b:c\n\n") == ["a: b:c"]


def test_unknown_fields_are_ignored() -> None:
    events, parser = parse(b"foo: bar\nDATA: no\nData: no\ndata : no\ndata: yes\nx\n\n")
    assert [m.data for m in events] == ["yes"]
    assert parser.last_event_id is None


def test_comment_lines_are_ignored() -> None:
    assert data_of(b": hello\ndata: a\n:\n::data: b\n\n") == ["a"]


def test_a_stream_of_only_comments_dispatches_nothing() -> None:
    assert data_of(b": one\n\n:\n\n" + encode_comment("two") + encode_comment()) == []


def test_event_field_sets_the_event_type() -> None:
    events, _ = parse(b"event: add\ndata: 1\n\n")
    assert events == [Message("1", event="add")]


def test_event_type_does_not_carry_over_to_the_next_event() -> None:
    events, _ = parse(b"event: add\ndata: 1\n\ndata: 2\n\n")
    assert [m.event for m in events] == ["add", None]


def test_empty_event_type_is_reported_as_none_the_default_message_type() -> None:
    events, _ = parse(b"event:\ndata: 1\n\nevent\ndata: 2\n\n")
    assert [m.event for m in events] == [None, None]


def test_last_event_in_a_block_wins() -> None:
    events, _ = parse(b"event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n")
    assert events == [Message("x", id="2", event="b")]


def test_event_without_data_is_not_dispatched_and_its_event_type_is_reset() -> None:
    events, _ = parse(b"event: foo\n\ndata: a\n\n")
    assert events == [Message("a")]


def test_blank_lines_without_fields_dispatch_nothing() -> None:
    assert data_of(b"\n\n\r\n\r\r") == []


def test_trailing_newline_of_data_is_removed_once() -> None:
    assert data_of(b"data: a\ndata:\n\n") == ["a\n"]
    assert data_of(b"data\ndata\n\n") == ["\n"]


def test_incomplete_event_at_end_of_stream_is_not_dispatched() -> None:
    assert data_of(b"data: a\n\ndata: b\n") == ["a"]
    assert data_of(b"data: a\n\ndata: b") == ["a"]


# --------------------------------------------------------------------------------------------
# Parsing: id and retry
# --------------------------------------------------------------------------------------------


def test_event_carries_the_id_from_its_block() -> None:
    events, parser = parse(b"id: 42\ndata: a\n\n")
    assert events == [Message("a", id="42")]
    assert parser.last_event_id == "42"


def test_last_event_id_is_none_before_any_id() -> None:
    events, parser = parse(b"data: a\n\n")
    assert events[0].id is None
    assert parser.last_event_id is None


def test_last_event_id_persists_across_later_events_without_id() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\ndata: b\n\ndata: c\n\n")
    assert [m.id for m in events] == ["1", "1", "1"]
    assert parser.last_event_id == "1"


def test_empty_id_resets_last_event_id_to_empty_string() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid:\ndata: b\n\n")
    assert [m.id for m in events] == ["1", ""]
    assert parser.last_event_id == ""


def test_id_without_colon_resets_last_event_id_to_empty_string() -> None:
    _, parser = parse(b"id: 1\n\nid\n\n")
    assert parser.last_event_id == ""


def test_id_containing_nul_is_ignored() -> None:
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n")
    assert [m.id for m in events] == ["1", "1"]
    assert parser.last_event_id == "1"


def test_id_only_block_sets_last_event_id_without_dispatching() -> None:
    events, parser = parse(b"id: 7\n\n")
    assert events == []
    assert parser.last_event_id == "7"


def test_id_of_an_unfinished_block_is_not_yet_the_last_event_id() -> None:
    # A client that reconnects now must resume after "1": it never received the event "2".
    events, parser = parse(b"id: 1\ndata: a\n\nid: 2\ndata: b\n")
    assert [m.id for m in events] == ["1"]
    assert parser.last_event_id == "1"
    assert parser.feed(b"\n") == [Message("b", id="2")]
    assert parser.last_event_id == "2"


def test_id_keeps_spaces_after_the_first() -> None:
    _, parser = parse(b"id:  a b \n\n")
    assert parser.last_event_id == " a b "


def test_retry_sets_the_reconnection_time_without_dispatching() -> None:
    events, parser = parse(b"retry: 10\n\n")
    assert events == []
    assert parser.retry == 10


def test_retry_is_reported_on_the_event_whose_block_set_it() -> None:
    events, parser = parse(b"retry: 5\ndata: a\n\ndata: b\n\n")
    assert [m.retry for m in events] == [5, None]
    assert parser.retry == 5


def test_retry_accepts_leading_zeros() -> None:
    _, parser = parse(b"retry: 0007\n\n")
    assert parser.retry == 7


@pytest.mark.parametrize(
    "value",
    [
        "10a",
        "-1",
        "+5",
        " 5",  # two spaces after the colon: one is removed, the other is not a digit
        "5 ",
        "1.5",
        "1e3",
        "",
        "\u0663",  # ARABIC-INDIC DIGIT THREE: a digit, but not an ASCII one
        "\uff15",  # FULLWIDTH DIGIT FIVE
        "\u00b2",  # SUPERSCRIPT TWO
    ],
)
def test_retry_that_is_not_all_ascii_digits_is_ignored(value: str) -> None:
    events, parser = parse(b"retry: 100\n\n", f"retry: {value}\ndata: x\n\n".encode())
    assert parser.retry == 100
    assert [m.retry for m in events] == [None]


def test_retry_too_long_to_convert_is_ignored_without_breaking_the_stream() -> None:
    huge = b"9" * 5000
    events, parser = parse(b"retry: 100\n\nretry: " + huge + b"\ndata: still here\n\n")
    assert [m.data for m in events] == ["still here"]
    assert parser.retry == 100


# --------------------------------------------------------------------------------------------
# Parsing: text decoding
# --------------------------------------------------------------------------------------------


def test_invalid_utf8_is_replaced_with_replacement_character() -> None:
    assert data_of(b"data: a\xffb\n\n") == ["a\ufffdb"]
    assert data_of(b"data: \xc3(\n\n") == ["\ufffd("]


def test_truncated_utf8_sequence_across_chunks_is_replaced_once() -> None:
    assert data_of(b"data: \xe2\x82", b"x\n\n") == ["\ufffdx"]


def test_multibyte_utf8_split_across_chunks_is_decoded() -> None:
    stream = "data: é€😀\n\n".encode()
    assert data_of(*[stream[i : i + 1] for i in range(len(stream))]) == ["é€😀"]


def test_unicode_line_separators_are_not_line_ends() -> None:
    text = "a\u2028b\u0085c\x0bd\x0ce\x1cf"
    assert data_of(f"data: {text}\n\n".encode()) == [text]
    assert Message(text).encode() == f"data: {text}\n\n".encode()


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

line_breaks = st.sampled_from(["\r", "\n", "\r\n"])
texts_with_line_breaks = st.lists(st.one_of(st.text(), line_breaks), max_size=8).map("".join)
event_names = st.one_of(st.none(), st.text().filter(lambda s: "\r" not in s and "\n" not in s))
# Ids a client can send back (see test_ids.py for the others, which encode() refuses).
event_ids = st.one_of(st.none(), st.text().filter(lambda s: id_problem(s) is None))
retries = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))
comments = st.one_of(st.none(), texts_with_line_breaks)

messages = st.builds(
    Message,
    texts_with_line_breaks,
    id=event_ids,
    event=event_names,
    retry=retries,
    comment=comments,
)


def expected_after_parse(message: Message, previous_id: str | None = None) -> Message:
    """What a client parses back from ``message``: newlines normalized to LF, an empty event
    type reported as None (the default "message" type), the stream's last event id, no comment.
    """
    return Message(
        normalize_newlines(message.data),
        id=message.id if message.id is not None else previous_id,
        event=message.event or None,
        retry=message.retry,
    )


@st.composite
def chunkings(draw: st.DrawFn, blob: bytes) -> list[bytes]:
    points = draw(st.lists(st.integers(min_value=0, max_value=len(blob)), max_size=12))
    return split_at(blob, points)


@PROPERTY_SETTINGS
@given(message=messages, data=st.data())
def test_any_valid_message_parses_back_whatever_the_chunking(
    message: Message, data: st.DataObject
) -> None:
    blob = message.encode()
    expected = [expected_after_parse(message)]
    whole, parser = parse(blob)
    assert whole == expected
    assert parser.last_event_id == message.id
    assert parser.retry == message.retry

    chunked, _ = parse(*data.draw(chunkings(blob), label="chunks"))
    assert chunked == expected


@PROPERTY_SETTINGS
@given(message=messages)
def test_any_valid_message_parses_back_when_fed_one_byte_at_a_time(message: Message) -> None:
    blob = message.encode()
    # Every boundary at once: inside multi-byte characters, between CR and LF, inside the BOM.
    events, _ = parse(*[blob[i : i + 1] for i in range(len(blob))])
    assert events == [expected_after_parse(message)]


@PROPERTY_SETTINGS
@given(batch=st.lists(messages, min_size=1, max_size=6), data=st.data())
def test_a_sequence_of_messages_round_trips_in_order(
    batch: list[Message], data: st.DataObject
) -> None:
    expected: list[Message] = []
    last_id: str | None = None
    last_retry: int | None = None
    for message in batch:
        expected.append(expected_after_parse(message, last_id))
        if message.id is not None:
            last_id = message.id
        if message.retry is not None:
            last_retry = message.retry
    blob = b"".join(m.encode() for m in batch)

    events, parser = parse(*data.draw(chunkings(blob), label="chunks"))
    assert events == expected
    assert parser.last_event_id == last_id
    assert parser.retry == last_retry


@PROPERTY_SETTINGS
@given(text=texts_with_line_breaks, message=messages)
def test_comments_between_messages_are_invisible_to_the_client(text: str, message: Message) -> None:
    blob = encode_comment(text) + message.encode() + encode_comment(text)
    events, _ = parse(blob)
    assert events == [expected_after_parse(message)]


def reference_parse(stream: bytes) -> tuple[list[Message], str | None, int | None]:
    """A deliberately naive, whole-stream reading of the spec's parsing rules, to compare with."""
    text = stream.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[Message] = []
    data: list[str] = []
    event_type = ""
    id_buffer: str | None = None
    last_event_id: str | None = None
    retry: int | None = None
    block_retry: int | None = None
    # Only lines that a line end completes count; the rest is pending data, discarded at EOF.
    for match in re.finditer(r"([^\r\n]*)(?:\r\n|\r|\n)", text):
        line = match.group(1)
        if line == "":
            last_event_id = id_buffer
            if data:
                events.append(
                    Message("\n".join(data), id=last_event_id, event=event_type or None,
                            retry=block_retry)
                )  # fmt: skip
            data, event_type, block_retry = [], "", None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event_type = value
        elif name == "id" and "\0" not in value:
            id_buffer = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = block_retry = int(value)
    return events, last_event_id, retry


stream_pieces = st.one_of(
    st.sampled_from(
        [
            b"data", b"event", b"id", b"retry", b"foo", b":", b": ", b" ", b"  ", b"\r",
            b"\n", b"\r\n", b"\xef\xbb\xbf", b"\x00", b"0", b"7", b"42", b"-", b"a",
            b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xff", b"\xc3", b"\xe2\x82",
        ]
    ),
    st.binary(max_size=4),
)  # fmt: skip
streams = st.lists(stream_pieces, max_size=40).map(b"".join)


@PROPERTY_SETTINGS
@given(stream=streams, data=st.data())
def test_parser_matches_a_naive_reading_of_the_spec_for_any_bytes_and_chunking(
    stream: bytes, data: st.DataObject
) -> None:
    expected_events, expected_id, expected_retry = reference_parse(stream)
    events, parser = parse(*data.draw(chunkings(stream), label="chunks"))
    assert events == expected_events
    assert parser.last_event_id == expected_id
    assert parser.retry == expected_retry
