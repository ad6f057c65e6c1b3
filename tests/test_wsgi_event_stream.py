"""`ssehub.wsgi.WSGIEventStream`, the WSGI body of a per-request stream, without a server.

Iterated and closed as a WSGI server would (from the test's thread); what a real server and
client see is in tests/integrations/test_generator_streams.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from ssehub import EventParser, Hub, Message
from ssehub.wsgi import WSGIEventStream

pytestmark = pytest.mark.timeout(20)


class Tracked:
    """A sync generator source that records its ``finally``."""

    def __init__(self, items: list[object], *, wait: float = 0.0, delay: float = 0.0) -> None:
        self.items = items
        self.wait = wait
        self.delay = delay
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[object]:
        try:
            time.sleep(self.wait)
            for item in self.items:
                yield item
                time.sleep(self.delay)
        finally:
            self.closed.set()


def body_of(stream: WSGIEventStream, limit: int = 1000) -> bytes:
    """Iterate ``stream`` as a server would (at most ``limit`` chunks), then close it."""
    out = bytearray()
    try:
        for count, chunk in enumerate(stream):
            out += chunk
            assert count < limit, "the body did not end"
    finally:
        stream.close()
    return bytes(out)


@pytest.mark.parametrize("keepalive", [15.0, None])
def test_items_are_encoded_and_the_body_ends_with_the_source(keepalive: float | None) -> None:
    source = Tracked(["a", {"x": 1}, Message("m", event="e")])
    body = body_of(WSGIEventStream(iter(source), keepalive=keepalive))
    events = EventParser().feed(body)
    assert [(e.event, e.data) for e in events] == [
        (None, "a"),
        (None, '{"x":1}'),
        ("e", "m"),
    ]
    assert source.closed.is_set()


def test_pings_while_the_source_is_idle() -> None:
    source = Tracked(["late"], wait=0.6)
    body = body_of(WSGIEventStream(iter(source), keepalive=0.1))
    assert body.count(b": ping\n\n") >= 2
    assert body.endswith(b"data: late\n\n")


def test_close_mid_stream_closes_the_source_after_its_current_item() -> None:
    source = Tracked(list(range(100_000)), delay=0.01)
    stream = WSGIEventStream(iter(source), keepalive=5.0)
    assert next(stream) == b":\n\n"  # the opening comment: headers go out at once
    assert b"data: 0" in next(stream)
    stream.close()
    assert source.closed.wait(5)


def test_close_before_iteration_closes_the_source() -> None:
    source = Tracked(["never"])
    generator = iter(source)
    assert next(generator) == "never"  # started, so it has a finally to run
    WSGIEventStream(generator).close()
    assert source.closed.is_set()


def test_a_raising_source_ends_the_body_after_what_it_yielded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def failing() -> Iterator[str]:
        yield "ok"
        raise ValueError("boom")

    body = body_of(WSGIEventStream(failing(), keepalive=5.0))
    assert [e.data for e in EventParser().feed(body)] == ["ok"]
    assert "the source of an event stream raised" in caplog.text


def test_an_async_generator_is_refused() -> None:
    async def numbers() -> AsyncIterator[int]:
        yield 1

    generator = numbers()
    with pytest.raises(TypeError, match="sync generator"):
        WSGIEventStream(generator)  # type: ignore[arg-type]


def test_the_hub_shutting_down_ends_the_body() -> None:
    hub = Hub()
    hub.publish_threadsafe("/a", "starts the hub's own loop")
    source = Tracked(list(range(100_000)), delay=0.05)
    stream = WSGIEventStream(iter(source), hub=hub, keepalive=5.0, disconnect_check=0.05)
    next(stream)
    hub.run_threadsafe(hub.shutdown())
    started = time.monotonic()
    body_of(stream)
    assert time.monotonic() - started < 2
    assert source.closed.wait(5)


@pytest.mark.parametrize("keepalive", [5.0, None])
def test_a_signal_to_exit_ends_a_busy_body_of_a_hub_that_never_started(
    keepalive: float | None,
) -> None:
    # A Flask app serving only per-request streams never starts its hub (no loop): the signal
    # handler's flag alone must end the body, even while the source yields without pause.
    hub = Hub(end_streams_on_signal=False)
    source = Tracked(list(range(100_000)), delay=0.001)
    stream = WSGIEventStream(iter(source), hub=hub, keepalive=keepalive)
    chunks = [next(stream) for _ in range(3)]
    assert chunks
    hub._exit_signal()  # what the chained SIGINT/SIGTERM handler calls
    assert hub.draining
    started = time.monotonic()
    body_of(stream)
    assert time.monotonic() - started < 2
    assert source.closed.wait(5)
