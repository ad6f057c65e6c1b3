"""Edges of the wire format that the property tests may not draw: the exact bounds of ``retry``,
field type errors that name the wrong type, and a CRLF split across three chunks."""

from __future__ import annotations

import enum

import pytest

from ssehub import EventParser, InvalidMessage, Message

MAX_RETRY = 2**63 - 1


@pytest.mark.parametrize("field", ["id", "event", "comment"])
def test_a_field_of_the_wrong_type_is_refused_naming_the_type(field: str) -> None:
    with pytest.raises(InvalidMessage, match=f"^{field} must be a str, got int$"):
        Message(**{field: 5})  # type: ignore[arg-type]


def test_data_json_cannot_encode_is_refused_naming_the_type() -> None:
    with pytest.raises(
        InvalidMessage, match=r"^data must be a str or a value JSON can encode.*got set"
    ):
        Message({1})


def test_the_largest_retry_is_allowed_and_one_more_is_not() -> None:
    assert Message(retry=MAX_RETRY).encode() == f"retry: {MAX_RETRY}\ndata: \n\n".encode()
    with pytest.raises(InvalidMessage, match="retry"):
        Message(retry=MAX_RETRY + 1)


def test_parser_takes_the_largest_retry_and_ignores_a_larger_one() -> None:
    parser = EventParser()
    (event,) = parser.feed(f"retry: {MAX_RETRY}\ndata: x\n\n".encode())
    assert event.retry == MAX_RETRY and parser.retry == MAX_RETRY
    parser.feed(f"retry: {MAX_RETRY + 1}\ndata: y\n\n".encode())
    assert parser.retry == MAX_RETRY


def test_parser_reads_retry_with_many_leading_zeros() -> None:
    parser = EventParser()
    (event,) = parser.feed(b"retry: " + b"0" * 40 + b"1500\ndata: x\n\n")
    assert event.retry == 1500 and parser.retry == 1500
    parser.feed(b"retry: " + b"0" * 40 + b"\ndata: x\n\n")
    assert parser.retry == 0


def test_crlf_split_over_chunks_then_a_blank_line_ends_the_event() -> None:
    parser = EventParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF of the CRLF, not a blank line
    (event,) = parser.feed(b"\n")  # this one is the blank line
    assert event.data == "a"
    (event,) = parser.feed(b"data: b\n\n")
    assert event.data == "b"


def test_a_str_subclass_is_sent_as_its_text_not_as_json() -> None:
    class Color(enum.StrEnum):
        RED = "red"

    class Name(str):
        pass

    assert Message(Color.RED).encode() == b"data: red\n\n"
    assert Message(Name("ada")).encode() == b"data: ada\n\n"
