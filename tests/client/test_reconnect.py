"""The client's reconnection policy with plain values: no socket, no event loop, exact numbers.

`Reconnection` decides everything a source does: the request headers, what each answer means,
the events a chunk completes, and the wait before the next attempt. The jitter's random source
is injected, so every delay here is exact.
"""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub import Message
from ssehub.client import BadContentType, BadStatus, ConnectionLost
from ssehub.client._reconnect import (
    EXCERPT_BYTES,
    STOP,
    STREAM,
    Fail,
    Reconnection,
    Reject,
    Retry,
    wait_or_raise,
)

URL = "http://hub.test/events/news"
SSE = {"content-type": "text/event-stream"}
RETRYABLE = [408, 429, 500, 502, 503, 504, 599]


def policy(
    reconnect_delay: float = 1.0,
    max_reconnect_delay: float = 30.0,
    *,
    jitter: float = 0.0,
    fraction: float = 0.0,
    max_reconnects: int | None = None,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reconnection:
    """A policy whose jitter's random fraction is always ``fraction``."""
    return Reconnection(
        URL,
        headers,
        last_event_id,
        reconnect_delay,
        max_reconnect_delay,
        max_reconnects,
        jitter,
        rng=lambda: fraction,
    )


def streaming(state: Reconnection) -> Reconnection:
    """``state`` after a 200 answer opened the stream."""
    assert state.on_response(200, SSE) == STREAM
    return state


def delays(state: Reconnection, count: int) -> list[float]:
    """The waits of ``count`` failed attempts in a row."""
    got = []
    for _ in range(count):
        decision = state.dropped(OSError("refused"))
        assert isinstance(decision, Retry)
        got.append(decision.delay)
    return got


# -- the request ---------------------------------------------------------------------------------


def test_request_asks_for_an_uncached_event_stream() -> None:
    assert policy().request_headers() == {
        "Accept": "text/event-stream",
        "Cache-Control": "no-store",
    }


def test_request_headers_are_added_and_replace_defaults_whatever_their_case() -> None:
    state = policy(headers={"accept": "text/event-stream; q=1", "Authorization": "Bearer T"})
    assert state.request_headers() == {
        "Cache-Control": "no-store",
        "accept": "text/event-stream; q=1",
        "Authorization": "Bearer T",
    }


def test_the_given_last_event_id_is_sent_on_the_first_request() -> None:
    assert policy(last_event_id="41").request_headers()["Last-Event-ID"] == "41"


def test_last_event_id_header_follows_the_stream_and_an_empty_id_removes_it() -> None:
    state = streaming(policy())
    assert "Last-Event-ID" not in state.request_headers()
    state.feed(b"id: 7\ndata: x\n\n")
    assert state.request_headers()["Last-Event-ID"] == "7"
    state.feed(b"id\ndata: y\n\n")
    assert "Last-Event-ID" not in state.request_headers()


def test_an_id_in_an_unfinished_block_is_not_resent() -> None:
    state = streaming(policy(last_event_id="1"))
    state.feed(b"id: 2\ndata: half")
    assert state.request_headers()["Last-Event-ID"] == "1"


@pytest.mark.parametrize(
    "options",
    [
        {"reconnect_delay": -0.1},
        {"max_reconnect_delay": -1.0},
        {"max_reconnects": -1},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"last_event_id": "a\nb"},
        {"last_event_id": "a\rb"},
        {"last_event_id": "a\0b"},
    ],
)
def test_bad_options_raise_value_error(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        policy(**options)


# -- what an answer means ------------------------------------------------------------------------


def test_204_stops_and_closes() -> None:
    state = policy()
    assert state.on_response(204, {}) == STOP
    assert state.closed
    assert wait_or_raise(STOP) is None


@pytest.mark.parametrize("content_type", ["text/event-stream", "Text/Event-Stream; charset=utf-8"])
def test_200_event_stream_streams_whatever_the_parameters_and_case(content_type: str) -> None:
    state = policy()
    assert state.on_response(200, {"Content-Type": content_type}) == STREAM
    assert state.streaming
    assert not state.closed


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "text/event"])
def test_200_with_another_content_type_fails_with_bad_content_type(
    content_type: str | None,
) -> None:
    state = policy()
    headers = {} if content_type is None else {"content-type": content_type}
    decision = state.on_response(200, headers)
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, BadContentType)
    assert decision.error.content_type == content_type
    assert state.closed
    with pytest.raises(BadContentType):
        wait_or_raise(decision)


@given(st.integers(100, 499).filter(lambda s: s not in (200, 204, 408, 429)))
def test_other_statuses_below_500_are_rejected(status: int) -> None:
    state = policy()
    assert state.on_response(status, {}) == Reject(URL, status)
    assert state.closed


@given(st.sampled_from(RETRYABLE) | st.integers(500, 599))
def test_408_429_and_5xx_retry_after_the_reconnection_time(status: int) -> None:
    state = policy(reconnect_delay=2.0)
    assert state.on_response(status, {}) == Retry(2.0)
    assert not state.closed
    assert state.reconnects == 1


def test_a_rejection_carries_the_start_of_the_body_decoded_and_stripped() -> None:
    error = Reject(URL, 401).error(b"  token expired\n")
    assert isinstance(error, BadStatus)
    assert (error.url, error.status_code, error.body) == (URL, 401, "token expired")
    assert str(error) == f"GET {URL} answered HTTP 401: token expired"
    long = Reject(URL, 403).error(b"x" * (EXCERPT_BYTES + 100) + b"\xff")
    assert long.body == "x" * EXCERPT_BYTES
    assert Reject(URL, 400).error(b"bad \xff byte").body == "bad \ufffd byte"
    assert str(Reject(URL, 404).error(b"")) == f"GET {URL} answered HTTP 404"


# -- the wait before the next attempt -------------------------------------------------------------


def test_backoff_doubles_with_each_failure_in_a_row() -> None:
    assert delays(policy(0.5), 5) == [0.5, 1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped_at_max_reconnect_delay() -> None:
    assert delays(policy(1.0, 5.0), 5) == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_backoff_stops_doubling_after_sixteen_doublings() -> None:
    state = policy(1.0, 1e9)
    assert delays(state, 20)[-4:] == [2.0**16] * 4


def test_jitter_adds_the_random_fraction_of_the_wait() -> None:
    assert delays(policy(1.0, jitter=0.5, fraction=0.25), 3) == [1.125, 2.25, 4.5]


def test_jitter_never_lifts_the_wait_over_the_cap() -> None:
    assert delays(policy(4.0, 5.0, jitter=1.0, fraction=0.99), 2) == [5.0, 5.0]


@given(
    base=st.floats(0.0, 60.0),
    cap=st.floats(0.0, 120.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
    failures=st.integers(1, 24),
)
def test_every_wait_lies_between_the_backoff_and_its_jitter_and_under_the_cap(
    base: float, cap: float, jitter: float, seed: int, failures: int
) -> None:
    rng = random.Random(seed)
    state = Reconnection(URL, None, None, base, cap, None, jitter, rng=rng.random)
    for attempt, wait in enumerate(delays(state, failures)):
        backoff = min(base, cap) * 2.0 ** min(attempt, 16)
        assert min(backoff, cap) <= wait <= min(backoff * (1 + jitter), cap)


def test_the_same_random_source_gives_the_same_waits() -> None:
    def waits(seed: int) -> list[float]:
        rng = random.Random(seed)
        state = Reconnection(URL, None, None, 1.0, 30.0, None, 0.5, rng=rng.random)
        return delays(state, 6)

    assert waits(7) == waits(7)
    assert waits(7) != waits(8)


def test_the_servers_retry_sets_the_wait() -> None:
    state = streaming(policy(3.0))
    state.feed(b"retry: 1500\n\n")
    assert state.delay == 1.5
    assert state.dropped() == Retry(1.5)


def test_a_huge_server_retry_is_capped_at_max_reconnect_delay() -> None:
    state = streaming(policy(3.0, 10.0))
    state.feed(b"retry: 3600000\ndata: slow down\n\n")
    assert state.delay == 3600.0
    assert delays(state, 2) == [10.0, 10.0]


def test_retry_after_seconds_lengthen_the_wait() -> None:
    state = policy(0.0)
    assert state.on_response(429, {"Retry-After": "2"}) == Retry(2.0)
    assert state.on_response(503, {"retry-after": " 3 "}) == Retry(3.0)


def test_retry_after_never_shortens_the_backoff() -> None:
    state = policy(5.0)
    assert state.on_response(503, {"retry-after": "1"}) == Retry(5.0)


def test_retry_after_is_capped_at_max_reconnect_delay() -> None:
    state = policy(0.0, 30.0)
    assert state.on_response(503, {"retry-after": "86400"}) == Retry(30.0)


def test_retry_after_as_a_date_is_ignored() -> None:
    state = policy(0.25)
    assert state.on_response(503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == Retry(0.25)


def test_retry_after_gets_the_jitter_too() -> None:
    state = policy(0.0, jitter=0.1, fraction=0.5)
    assert state.on_response(429, {"retry-after": "2"}) == Retry(2.1)


def test_an_opened_stream_resets_the_backoff() -> None:
    state = policy(0.5)
    assert delays(state, 3) == [0.5, 1.0, 2.0]
    streaming(state)
    assert delays(state, 2) == [0.5, 1.0]
    assert state.reconnects == 5


def test_a_retryable_answer_counts_as_a_failure_in_a_row() -> None:
    state = policy(0.5)
    assert state.on_response(503, {}) == Retry(0.5)
    assert state.dropped(OSError()) == Retry(1.0)
    assert state.on_response(500, {}) == Retry(2.0)


def test_an_abandoned_stream_reconnects_without_a_failure() -> None:
    state = streaming(policy(0.5))
    state.interrupted()
    assert not state.streaming
    assert state.reconnects == 0
    assert state.dropped() == Retry(0.5)


# -- giving up -----------------------------------------------------------------------------------


def test_gives_up_after_max_reconnects_failures_in_a_row() -> None:
    state = policy(0.1, max_reconnects=2)
    assert delays(state, 2) == [0.1, 0.2]
    cause = OSError("connection refused")
    decision = state.dropped(cause)
    assert isinstance(decision, Fail)
    assert isinstance(decision.error, ConnectionLost)
    assert str(decision.error) == (
        f"lost the stream {URL} and gave up after 2 failed reconnection attempts "
        "(last error: connection refused)"
    )
    assert decision.error.__cause__ is cause
    assert state.closed
    with pytest.raises(ConnectionLost) as raised:
        wait_or_raise(decision)
    assert raised.value.__cause__ is cause


def test_max_reconnects_zero_never_reconnects() -> None:
    state = streaming(policy(max_reconnects=0))
    decision = state.dropped()
    assert isinstance(decision, Fail)
    assert str(decision.error).endswith("gave up after 0 failed reconnection attempts")


def test_giving_up_on_retryable_answers_names_the_last_status() -> None:
    state = policy(max_reconnects=1)
    assert state.on_response(503, {}) == Retry(1.0)
    decision = state.on_response(502, {})
    assert isinstance(decision, Fail)
    assert str(decision.error).endswith(
        "after 1 failed reconnection attempt (last error: HTTP 502)"
    )


def test_an_opened_stream_resets_the_count_towards_max_reconnects() -> None:
    state = policy(max_reconnects=2)
    delays(state, 2)
    streaming(state)
    assert delays(state, 2) == [1.0, 2.0]
    assert isinstance(state.dropped(), Fail)


# -- events --------------------------------------------------------------------------------------


def test_events_are_delivered_in_order_across_chunks() -> None:
    state = streaming(policy())
    state.feed(b"event: a\ndata: 1\n\ndata: ")
    state.feed(b"2\r\n\r\n")
    assert state.next_event() == Message("1", event="a")
    assert state.next_event() == Message("2")
    assert state.next_event() is None


def test_the_streams_id_carries_over_to_events_after_a_reconnect() -> None:
    state = streaming(policy())
    state.feed(b"id: 5\ndata: before\n\n")
    state.dropped()
    streaming(state)
    state.feed(b"data: after\n\n")
    assert [state.next_event(), state.next_event()] == [
        Message("before", id="5"),
        Message("after", id="5"),
    ]


def test_last_event_id_follows_delivered_events_not_received_ones() -> None:
    state = streaming(policy(last_event_id="a"))
    state.feed(b"id: b\ndata: 1\n\nid: c\ndata: 2\n\n")
    assert state.last_event_id == "a"
    assert state.next_event() == Message("1", id="b")
    assert state.last_event_id == "b"
    assert state.next_event() == Message("2", id="c")
    assert state.last_event_id == "c"


def test_a_closed_policy_delivers_nothing_and_stops_at_every_step() -> None:
    state = streaming(policy(0.1))
    state.feed(b"data: received\n\n")
    state.close()
    assert state.next_event() is None
    state.feed(b"data: late\n\n")
    assert state.next_event() is None
    assert state.dropped(OSError()) == STOP
    assert state.on_response(200, SSE) == STOP
    assert state.on_response(503, {}) == STOP
    assert state.reconnects == 0


def test_bytes_after_a_drop_are_ignored() -> None:
    state = streaming(policy())
    state.dropped()
    state.feed(b"data: stale\n\n")
    assert state.next_event() is None


def test_the_policy_decides_without_httpx() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None\n"  # any import of httpx now fails
        "from ssehub.client._reconnect import Reconnection, Retry\n"
        "assert Reconnection('u', jitter=0).on_response(503, {}) == Retry(3.0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
