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
