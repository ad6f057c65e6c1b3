"""A hub ends its streams on SIGINT/SIGTERM, in front of the server's own signal handler.

Each test stands in for a server: it installs a handler of its own, as uvicorn or gunicorn do,
then makes a hub, raises the signal in this process and checks both what the hub did and that
the server's handler still ran. (The same through real servers: tests/integrations/
test_shutdown.py.)
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from ssehub import Hub, HubClosed
from ssehub.subscription import CloseReason
from tests._support.waiting import eventually


class ServerHandler:
    """A server's signal handler: records the signals it was called with."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.calls.append(signum)


@pytest.fixture
def server_handlers() -> Iterator[dict[int, ServerHandler]]:
    """A `ServerHandler` on SIGINT and SIGTERM for the test; the previous handlers after it."""
    handlers: dict[int, ServerHandler] = {
        signal.SIGINT: ServerHandler(),
        signal.SIGTERM: ServerHandler(),
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield handlers
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_signal_ends_open_streams_and_still_reaches_the_servers_handler(
    server_handlers: dict[int, ServerHandler], signum: signal.Signals
) -> None:
    hub = Hub()
    await hub.start()
    sub = await hub.subscribe("/news")
    signal.raise_signal(signum)
    assert server_handlers[signum].calls == [signum]
    await eventually(lambda: sub.closed, timeout=1.0)
    assert sub.close_reason == CloseReason.SHUTDOWN
    # New streams are refused (the adapters answer 503); publishing goes on, into history,
    # for clients that reconnect to another hub.
    with pytest.raises(HubClosed):
        await hub.subscribe("/news")
    await hub.publish("/news", "still stored")
    await hub.shutdown()


async def test_shutdown_puts_the_servers_handlers_back(
    server_handlers: dict[int, ServerHandler],
) -> None:
    hub = Hub()
    await hub.start()
    assert signal.getsignal(signal.SIGINT) is not server_handlers[signal.SIGINT]
    await hub.shutdown()
    assert signal.getsignal(signal.SIGINT) is server_handlers[signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) is server_handlers[signal.SIGTERM]


async def test_a_handler_installed_after_the_hub_is_chained_at_start(
    server_handlers: dict[int, ServerHandler],
) -> None:
    hub = Hub()  # made before the server installs its handler (as with uvicorn.run(app))
    late = ServerHandler()
    signal.signal(signal.SIGTERM, late)
    await hub.start()
    sub = await hub.subscribe("/news")
    signal.raise_signal(signal.SIGTERM)
    assert late.calls == [signal.SIGTERM]
    await eventually(lambda: sub.closed, timeout=1.0)
    await hub.shutdown()
    assert signal.getsignal(signal.SIGTERM) is late


async def test_opting_out_leaves_signals_alone(
    server_handlers: dict[int, ServerHandler],
) -> None:
    hub = Hub(end_streams_on_signal=False)
    await hub.start()
    sub = await hub.subscribe("/news")
    assert signal.getsignal(signal.SIGINT) is server_handlers[signal.SIGINT]
    signal.raise_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    assert not sub.closed
    await hub.shutdown()


async def test_an_ignored_signal_is_left_as_it_is_and_a_default_sigterm_comes_back(
    server_handlers: dict[int, ServerHandler],
) -> None:
    # SIGTERM with no handler (waitress): the hub chains one that ends the streams before the
    # process ends by the signal (tests/integrations/test_shutdown.py runs it under waitress);
    # shutdown puts the default back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    hub = Hub()
    await hub.start()
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    await hub.shutdown()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_hub_on_its_own_loop_thread_ends_threaded_streams_on_the_signal(
    server_handlers: dict[int, ServerHandler],
) -> None:
    # A WSGI app: the hub is made at import in the server's main thread, and its loop runs in a
    # thread of its own, started by the first call from a worker thread.
    hub = Hub()
    subs: list[Any] = []

    def worker() -> None:
        subs.append(hub.run_threadsafe(hub.subscribe("/news", threaded=True)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    (sub,) = subs
    signal.raise_signal(signal.SIGTERM)
    assert server_handlers[signal.SIGTERM].calls == [signal.SIGTERM]
    # A worker thread blocked on the stream wakes up to its end at once.
    started = time.monotonic()
    assert sub.next_chunk_blocking(5.0) is None
    assert time.monotonic() - started < 1.0
    assert sub.close_reason == CloseReason.SHUTDOWN
    hub.run_threadsafe(hub.shutdown())
