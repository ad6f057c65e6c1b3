"""The bodies of ``POST /events`` (one event, several channels) and ``"private"``, as data."""

from __future__ import annotations

import json

import pytest

from ssehub import Message
from ssehub.server.publish import (
    MAX_CHANNELS,
    PrivateMessage,
    Publication,
    PublishError,
    PublishHead,
    parse_body,
    parse_channels,
)

JSON = PublishHead(json=True)
TEXT = PublishHead(json=False)


def _channels_error(body: object, head: PublishHead = JSON) -> PublishError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(PublishError) as caught:
        parse_channels(head, raw)
    return caught.value


def test_one_event_to_several_channels_keeps_their_order() -> None:
    body = {"channels": ["/events/b", "/events/a"], "data": {"n": 1}, "id": "x-1", "event": "e"}
    publication = parse_channels(JSON, json.dumps(body).encode())
    assert publication == Publication(
        ("/events/b", "/events/a"), Message('{"n":1}', id="x-1", event="e")
    )
    assert type(publication.message) is Message


def test_private_true_makes_a_private_message_and_false_a_public_one() -> None:
    private = parse_channels(JSON, b'{"channels": ["/events/a"], "data": "s", "private": true}')
    assert type(private.message) is PrivateMessage
    assert private.message.data == "s"
    public = parse_channels(JSON, b'{"channels": ["/events/a"], "data": "p", "private": false}')
    assert type(public.message) is Message


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"data": "x"}, 400, '"channels" must be a non-empty list'),
        ({"channels": [], "data": "x"}, 400, '"channels" must be a non-empty list'),
        ({"channels": "/events/a", "data": "x"}, 400, '"channels" must be a non-empty list'),
        ({"channels": [""], "data": "x"}, 400, "channels[0]: '' is not a channel name"),
        ({"channels": ["news"], "data": "x"}, 400, "full paths such as /events/news"),
        ({"channels": ["/events/"], "data": "x"}, 400, "'/events/' is not a channel name"),
        ({"channels": ["/events/a", 7], "data": "x"}, 400, "channels[1]: a channel name is a str"),
        ({"channels": ["/events/{id}"], "data": "x"}, 400, "is a selector, not a channel name"),
        ({"channels": ["*"], "data": "x"}, 400, "not a channel name"),
        ({"channels": ["/events/a\nb"], "data": "x"}, 400, "holds a control character"),
        ({"channels": ["/events/a", "/events/a"], "data": "x"}, 400, "'/events/a' is given twice"),
        ({"channels": ["/events/a"], "data": "x", "private": "yes"}, 400, '"private" must be'),
        ({"channels": ["/events/a"], "data": "x", "private": 1}, 400, '"private" must be'),
        ({"channels": ["/events/a"], "data": "x", "chanels": []}, 400, "unknown field(s) 'chan"),
        ({"channels": ["/events/a"]}, 400, 'missing field "data"'),
        ({"channels": ["/events/a"], "data": "x", "event": "a\nb"}, 400, "event may not"),
        ([{"channels": ["/events/a"], "data": "x"}], 400, "one JSON object"),
        ("just a string", 400, "one JSON object"),
    ],
)
def test_a_bad_body_is_refused_with_what_was_wrong(body: object, status: int, needle: str) -> None:
    error = _channels_error(body)
    assert (error.status, needle in error.message) == (status, True), error.message


def test_more_channels_than_the_cap_is_413() -> None:
    channels = [f"/events/c{i}" for i in range(MAX_CHANNELS + 1)]
    error = _channels_error({"channels": channels, "data": "x"})
    assert error.status == 413
    assert f"at most {MAX_CHANNELS} channels, got {MAX_CHANNELS + 1}" in error.message
    at_cap = parse_channels(JSON, json.dumps({"channels": channels[:-1], "data": "x"}).encode())
    assert len(at_cap.channels) == MAX_CHANNELS


def test_a_body_that_is_not_json_is_415_and_malformed_json_400() -> None:
    assert _channels_error(b'{"channels": ["/events/a"], "data": "x"}', TEXT).status == 415
    assert _channels_error(b'{"channels": [').status == 400
    assert _channels_error(b"\xff{}").status == 415


def test_private_in_a_channel_publish_and_in_each_item_of_a_batch() -> None:
    single = parse_body(JSON, b'{"data": "s", "private": true}')
    assert type(single) is PrivateMessage
    batch = parse_body(JSON, b'[{"data": "p"}, {"data": "s", "private": true}, {"data": "q"}]')
    assert isinstance(batch, list)
    assert [type(m) for m in batch] == [Message, PrivateMessage, Message]
    with pytest.raises(PublishError) as caught:
        parse_body(JSON, b'[{"data": "p"}, {"data": "s", "private": "true"}]')
    assert caught.value.status == 400
    assert caught.value.message.startswith('item 1: "private" must be true or false')


# -- what each refusal says (the body of the 4xx the publisher reads) -----------------------


def test_a_body_that_is_not_json_is_told_what_to_send() -> None:
    error = _channels_error(b'{"channels": ["/events/a"], "data": "x"}', TEXT)
    assert (error.status, error.message) == (
        415,
        "POST /events takes a JSON object (Content-Type: application/json): "
        '{"channels": ["/events/a", "/events/b"], "data": "..."}',
    )


@pytest.mark.parametrize(("body", "kind"), [([], "list"), ("text", "str"), (7, "int")])
def test_a_body_that_is_not_an_object_names_what_it_got(body: object, kind: str) -> None:
    error = _channels_error(body)
    assert error.status == 400
    assert f"got {kind} (a batch goes to POST /events/<channel>)" in error.message


def test_unknown_fields_are_all_named_and_the_allowed_ones_listed() -> None:
    error = _channels_error({"channels": ["/events/a"], "data": "x", "b": 1, "a": 2})
    assert error.message == (
        "unknown field(s) 'a', 'b'; allowed: channels, data, event, id, retry, private"
    )


def test_a_body_with_every_allowed_field_is_accepted() -> None:
    body = {
        "channels": ["/events/a"],
        "data": "x",
        "event": "e",
        "id": "7",
        "retry": 1000,
        "private": False,
    }
    publication = parse_channels(JSON, json.dumps(body).encode())
    assert publication == Publication(("/events/a",), Message("x", event="e", id="7", retry=1000))
    # The same fields (but channels) make a message on its channel's own route too.
    del body["channels"]
    assert parse_body(JSON, json.dumps(body).encode()) == publication.message


def test_the_413_for_too_many_channels_says_what_to_do() -> None:
    channels = [f"/events/c{i}" for i in range(MAX_CHANNELS + 1)]
    error = _channels_error({"channels": channels, "data": "x"})
    assert error.message.endswith("; split it into several requests")


def test_a_channel_given_twice_is_the_one_named() -> None:
    error = _channels_error({"channels": ["/events/a", "/events/b", "/events/b"], "data": "x"})
    assert error.message == "channels must be distinct: '/events/b' is given twice"


@pytest.mark.parametrize(("channel", "kind"), [(7, "int"), (None, "NoneType"), ([], "list")])
def test_a_channel_that_is_not_a_string_is_named_by_its_type(channel: object, kind: str) -> None:
    error = _channels_error({"channels": ["/events/a", channel], "data": "x"})
    assert error.message == f"channels[1]: a channel name is a string, got {kind}"


@pytest.mark.parametrize("channel", ["/events/{id}", "/events/{id", "/events/id}", "/events/}{"])
def test_a_name_with_either_brace_is_a_selector_and_refused(channel: str) -> None:
    error = _channels_error({"channels": [channel], "data": "x"})
    assert (error.status, error.message) == (
        400,
        f"channels[0]: {channel!r} is a selector, not a channel name: publish to channels by name",
    )


@pytest.mark.parametrize(("private", "kind"), [("yes", "str"), (1, "int"), (None, "NoneType")])
def test_a_private_flag_that_is_not_a_boolean_is_named_by_its_type(
    private: object, kind: str
) -> None:
    error = _channels_error({"channels": ["/events/a"], "data": "x", "private": private})
    assert error.message == f'"private" must be true or false, got {kind}'
