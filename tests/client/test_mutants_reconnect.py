"""The client's reconnection policy, the cases scripts/mutate showed untested: the URL an id
that a header cannot carry travels in, the errors for bad arguments, header overrides.

Plain values like tests/client/test_reconnect.py: no socket, no event loop.
"""

from __future__ import annotations

import pytest

from ssehub.client import BadContentType
from ssehub.client._reconnect import STREAM, Fail, Reconnection, Retry, wait_or_raise

URL = "http://hub.test/events/news"


def resuming(last_event_id: str | None, url: str = URL) -> Reconnection:
    return Reconnection(url, None, last_event_id, 1.0, 30.0, None, 0.0, rng=lambda: 0.0)


# -- where the resume id travels ---------------------------------------------------------


@pytest.mark.parametrize("event_id", [None, "", "42", "a b", "X-1"])
def test_an_id_a_header_can_carry_leaves_the_url_as_it_is(event_id: str | None) -> None:
    assert resuming(event_id).request_url() == URL


def test_an_id_a_header_cannot_carry_goes_in_the_query_percent_encoded() -> None:
    state = resuming(" padded\t")
    assert state.request_url() == URL + "?lastEventId=%20padded%09"
    assert "Last-Event-ID" not in state.request_headers()


def test_the_query_keeps_its_other_parameters_blank_ones_included_in_order() -> None:
    state = resuming(" 7", URL + "?topic=a%20b&flag=&n=1")
    assert state.request_url() == URL + "?topic=a%20b&flag=&n=1&lastEventId=%207"


def test_a_stale_last_event_id_parameter_is_replaced_not_repeated() -> None:
    state = resuming(" new", URL + "?lastEventId=old&n=1")
    assert state.request_url() == URL + "?n=1&lastEventId=%20new"


def test_the_url_follows_the_id_the_stream_sets() -> None:
    state = resuming("1")
    assert state.on_response(200, {"content-type": "text/event-stream"}) == STREAM
    state.feed(b"id:  2\ndata: x\n\n")
    assert state.request_url() == URL + "?lastEventId=%202"
    state.feed(b"id: 3\ndata: y\n\n")
    assert state.request_url() == URL
    assert state.request_headers()["Last-Event-ID"] == "3"


def test_an_id_with_an_x_is_sent_as_a_header() -> None:
    assert resuming("X-1").request_headers()["Last-Event-ID"] == "X-1"


# -- the arguments' errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reconnect_delay": -1}, "reconnect_delay must be >= 0 seconds, got -1"),
        ({"max_reconnect_delay": -0.5}, "max_reconnect_delay must be >= 0 seconds, got -0.5"),
        ({"max_reconnects": -1}, "max_reconnects must be >= 0 or None, got -1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1, got 1.5"),
        ({"last_event_id": "a\nb"}, "last_event_id may not contain CR, LF or NUL: 'a\\nb'"),
    ],
)
def test_a_bad_argument_is_a_value_error_that_names_it(
    kwargs: dict[str, float | str], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        Reconnection(URL, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- headers, state, answers -------------------------------------------------------------


def test_a_default_header_is_overridden_whatever_the_case_of_its_name() -> None:
    state = Reconnection(URL, {"accept": "application/x-ndjson", "CACHE-CONTROL": "max-age=0"})
    assert state.request_headers() == {
        "accept": "application/x-ndjson",
        "CACHE-CONTROL": "max-age=0",
    }


def test_a_new_source_is_not_streaming_and_ignores_bytes_until_a_stream_opens() -> None:
    state = resuming(None)
    assert not state.streaming
    state.feed(b"data: early\n\n")
    assert state.next_event() is None
    assert state.last_event_id is None


def test_a_wrong_content_type_error_names_the_url_and_the_type() -> None:
    decision = resuming(None).on_response(200, {"Content-Type": "text/html"})
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, BadContentType)
    assert (decision.error.url, decision.error.content_type) == (URL, "text/html")
    assert str(decision.error) == (
        f"GET {URL} answered Content-Type 'text/html'; expected text/event-stream"
    )


def test_wait_or_raise_gives_a_retrys_delay() -> None:
    assert wait_or_raise(Retry(2.5)) == 2.5


def test_encoded_headers_send_the_id_in_utf8() -> None:
    assert dict(resuming("é-1").encoded_headers()) == {
        b"Accept": b"text/event-stream",
        b"Cache-Control": b"no-store",
        b"Last-Event-ID": "é-1".encode(),
    }
