"""Ids that survive the round trip: what the hub accepts as an id, and how it reads one back.

A client resumes by sending the last id it saw as ``Last-Event-ID``. Browsers send the header
as UTF-8 bytes and strip leading and trailing spaces and tabs; HTTP servers refuse a header
holding any other control character. So the hub refuses, where the id enters (`Hub.publish`,
`Message.encode`, the HTTP publish API), an id no client could send back, and reads the header
as UTF-8 wherever a server handed it over as latin-1 text.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub import EventParser, Hub, InvalidMessage, Message
from ssehub.asgi import request_from_scope
from ssehub.request import utf8_from_latin1
from ssehub.server.publish import PublishError, parse_publish
from ssehub.wire import id_problem
from ssehub.wsgi import request_from_environ

UNSENDABLE = [" lead", "trail ", "\tlead", "trail\t", "v\x0bt", "bell\x07", "del\x7f", " "]
SENDABLE = ["café-1", "a b", "in\tside", "日本語 ✓", "\x85\u2028", "x"]


@pytest.mark.parametrize("event_id", UNSENDABLE)
def test_an_id_no_client_can_send_back_is_refused_where_it_enters(event_id: str) -> None:
    message = Message("x", id=event_id)  # a legal SSE id: a parser may make one
    with pytest.raises(InvalidMessage, match="cannot be resumed from"):
        message.encode()
    with pytest.raises(PublishError) as caught:
        body = json.dumps({"data": "x", "id": event_id}).encode()
        parse_publish([(b"content-type", b"application/json")], body, token=None)
    assert caught.value.status == 400 and "cannot be resumed from" in caught.value.message


async def test_hub_publish_refuses_such_an_id_and_stores_nothing() -> None:
    hub = Hub(keepalive=None)
    with pytest.raises(InvalidMessage, match="starts or ends with a space"):
        await hub.publish("/c", Message("x", id="padded "))
    with pytest.raises(InvalidMessage, match="control character"):
        await hub.publish("/c", Message("x", id="a\x0bb"))
    assert await hub.backend.channels() == []
    await hub.shutdown(timeout=0.1)


@pytest.mark.parametrize("event_id", SENDABLE)
def test_any_other_id_is_encoded_and_parsed_back(event_id: str) -> None:
    assert id_problem(event_id) is None
    (parsed,) = EventParser().feed(Message("x", id=event_id).encode())
    assert parsed.id == event_id


@given(st.text().filter(lambda s: not any(c in s for c in "\r\n\0")))
def test_id_problem_is_exactly_what_http_cannot_carry(event_id: str) -> None:
    expected = (
        event_id[:1] in (" ", "\t")
        or event_id[-1:] in (" ", "\t")
        or any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in event_id)
    )
    assert (id_problem(event_id) is not None) == expected


@pytest.mark.parametrize("event_id", SENDABLE)
def test_asgi_and_wsgi_read_last_event_id_as_the_utf8_browsers_send(event_id: str) -> None:
    raw = event_id.encode()
    scope: dict[str, Any] = {"type": "http", "path": "/c", "headers": [(b"last-event-id", raw)]}
    assert request_from_scope(scope).last_event_id == event_id
    environ = {"PATH_INFO": "/c", "HTTP_LAST_EVENT_ID": raw.decode("latin-1")}
    assert request_from_environ(environ).last_event_id == event_id
    # The query parameter too, percent-encoded or (from a careless client) raw.
    for query in (b"lastEventId=" + quote(event_id).encode(), b"lastEventId=" + raw):
        scope = {"type": "http", "path": "/c", "headers": [], "query_string": query}
        assert request_from_scope(scope).last_event_id == event_id
        environ = {"PATH_INFO": "/c", "QUERY_STRING": query.decode("latin-1")}
        assert request_from_environ(environ).last_event_id == event_id


def test_bytes_that_are_not_utf8_keep_their_latin1_reading() -> None:
    assert utf8_from_latin1(b"caf\xe9".decode("latin-1")) == "café"
    assert utf8_from_latin1("plain") == "plain"
