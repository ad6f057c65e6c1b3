"""A hub ends its streams on SIGINT/SIGTERM, in front of the server's own signal handler.

Each test stands in for a server: it installs a handler of its own, as uvicorn or gunicorn do,
then makes a hub, raises the signal in this process and checks both what the hub did and that
the server's handler still ran. (The same through real servers: tests/integrations/
test_shutdown.py.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from ssehub import Hub, HubClosed, Subscription
from ssehub import hub as hub_module
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
    draining = r"^the hub is shutting down: its server received a signal to exit$"
    with pytest.raises(HubClosed, match=draining):
        await hub.subscribe("/news")
    with pytest.raises(HubClosed, match=draining):
        await hub.subscribe(["/news", "/rooms/{id}"])
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


class FrameRecorder(ServerHandler):
    """A server's handler that also records the frame it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[FrameType | None] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        super().__call__(signum, frame)
        self.frames.append(frame)


async def test_the_servers_handler_gets_the_signal_and_the_frame_as_python_gave_them(
    server_handlers: dict[int, ServerHandler],
) -> None:
    recorder = FrameRecorder()
    signal.signal(signal.SIGTERM, recorder)
    hub = Hub()
    await hub.start()
    signal.raise_signal(signal.SIGTERM)
    assert recorder.calls == [signal.SIGTERM]
    (frame,) = recorder.frames
    assert frame is not None  # the interrupted frame, passed on as the server expects
    await hub.shutdown()


async def test_a_signal_before_the_hub_ever_ran_reaches_the_server_and_drains_the_hub(
    server_handlers: dict[int, ServerHandler],
) -> None:
    # Linked when made, with no loop yet: nothing to end, but the server is exiting, so the hub
    # says so (WSGI per-request streams poll `draining`) and refuses new streams.
    hub = Hub()
    signal.raise_signal(signal.SIGTERM)
    assert server_handlers[signal.SIGTERM].calls == [signal.SIGTERM]
    assert hub.draining
    with pytest.raises(HubClosed, match="received a signal to exit"):
        await hub.subscribe("/news")
    await hub.shutdown()


async def test_a_hub_that_never_started_ends_its_attached_streams_on_the_signal(
    server_handlers: dict[int, ServerHandler],
) -> None:
    # A hub that serves only per-request streams never starts: the first `attach` binds it to
    # the loop writing the stream and links it in front of a handler installed since it was
    # made (the server's own, set up after the app).
    hub = Hub()
    later = ServerHandler()
    signal.signal(signal.SIGTERM, later)
    sub = Subscription("/per-request", max_buffer=1024)
    hub.attach(sub)
    signal.raise_signal(signal.SIGTERM)
    assert later.calls == [signal.SIGTERM]
    await eventually(lambda: sub.closed, timeout=1.0)
    assert sub.close_reason == CloseReason.SHUTDOWN
    await hub.shutdown()
    assert signal.getsignal(signal.SIGTERM) is later


async def test_a_stream_attached_after_shutdown_links_no_signal(
    server_handlers: dict[int, ServerHandler],
) -> None:
    hub = Hub()
    await hub.shutdown()  # never started
    hub.attach(Subscription("/per-request", max_buffer=1024))
    assert signal.getsignal(signal.SIGTERM) is server_handlers[signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is server_handlers[signal.SIGINT]


async def test_an_ignored_sigint_leaves_sigterm_linked(
    server_handlers: dict[int, ServerHandler],
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    hub = Hub()
    await hub.start()
    sub = await hub.subscribe("/news")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    signal.raise_signal(signal.SIGTERM)
    assert server_handlers[signal.SIGTERM].calls == [signal.SIGTERM]
    await eventually(lambda: sub.closed, timeout=1.0)
    await hub.shutdown()


async def test_a_link_left_under_another_handler_passes_signals_through_after_shutdown(
    server_handlers: dict[int, ServerHandler],
) -> None:
    hub = Hub()
    await hub.start()
    sub = await hub.subscribe("/news")
    link = signal.getsignal(signal.SIGTERM)
    assert callable(link)

    def wrapper(signum: int, frame: FrameType | None) -> None:  # installed after the hub's
        link(signum, frame)

    signal.signal(signal.SIGTERM, wrapper)
    await hub.shutdown()
    assert signal.getsignal(signal.SIGTERM) is wrapper  # not removed from under another one
    signal.raise_signal(signal.SIGTERM)
    assert server_handlers[signal.SIGTERM].calls == [signal.SIGTERM]
    assert sub.close_reason == CloseReason.SHUTDOWN


async def test_links_of_hubs_shut_down_are_dropped_when_a_new_hub_links(
    server_handlers: dict[int, ServerHandler],
) -> None:
    # Hub a links, b links on top, a shuts down (its link, covered, goes inert), b shuts down
    # (its link is removed, a's inert one is back in front). A new hub links past a's.
    a = Hub()
    b = Hub()
    await a.shutdown()
    await b.shutdown()
    assert signal.getsignal(signal.SIGTERM) is not server_handlers[signal.SIGTERM]
    c = Hub()
    await c.start()
    sub = await c.subscribe("/news")
    signal.raise_signal(signal.SIGTERM)
    assert server_handlers[signal.SIGTERM].calls == [signal.SIGTERM]
    await eventually(lambda: sub.closed, timeout=1.0)
    await c.shutdown()
    assert signal.getsignal(signal.SIGTERM) is server_handlers[signal.SIGTERM]


class Kills:
    """`os.kill` and `signal.signal` as the hub module sees them, recorded instead of done."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kills: list[tuple[int, int]] = []
        self.handlers: list[tuple[int, object]] = []
        self.killed = threading.Event()
        self.at = 0.0  # time.monotonic() of the (first) kill
        monkeypatch.setattr(os, "kill", self._kill)
        monkeypatch.setattr(signal, "signal", self._signal)

    def _kill(self, pid: int, signum: int) -> None:
        if not self.kills:
            self.at = time.monotonic()
        self.kills.append((pid, signum))
        self.killed.set()

    def _signal(self, signum: int, handler: object) -> None:
        self.handlers.append((signum, handler))


@pytest.fixture
def exit_thread_ended(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """After the test, wait for the default-SIGTERM stand-in's thread before `monkeypatch` puts
    the real `os.kill` back: it never kills the test run (after a failed test)."""
    yield
    for thread in threading.enumerate():
        if thread.name == "ssehub-exit":
            thread.join(timeout=10)


@pytest.mark.usefixtures("exit_thread_ended")
@pytest.mark.parametrize("kind", ["channel", "attached"])
async def test_a_default_sigterm_ends_the_process_by_the_signal_once_the_streams_ended(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # waitress sets no SIGTERM handler: the hub's stands in for the default action, which it
    # puts back at once (a second SIGTERM ends the process as before), then kills the process
    # with the same signal when its streams are gone: channel streams, or per-request ones
    # (waitress serves `EventStream`s, which the hub only knows by `attach`).
    monkeypatch.setattr(hub_module, "DEFAULT_EXIT_GRACE", 3.0)  # the streams end first
    hub = Hub(end_streams_on_signal=False)
    await hub.start()
    if kind == "channel":
        sub = await hub.subscribe("/news")
    else:
        sub = Subscription("/per-request", max_buffer=1024)
        hub.attach(sub)
    kills = Kills(monkeypatch)
    before = set(threading.enumerate())
    hub_module._DefaultExit(hub)(signal.SIGTERM, None)
    assert kills.handlers == [(signal.SIGTERM, signal.SIG_DFL)]
    # It waits in a daemon thread: a process that ends by itself meanwhile (its main thread
    # returns) is not held up until the kill.
    assert [t.daemon for t in set(threading.enumerate()) - before] == [True]
    await asyncio.sleep(0.2)
    assert kills.kills == []  # a stream is still open
    if kind == "channel":
        hub.unsubscribe(sub)
    else:
        hub.detach(sub)
    ended = time.monotonic()
    assert await asyncio.to_thread(kills.killed.wait, 5)
    assert kills.kills == [(os.getpid(), signal.SIGTERM)]
    # Soon after (it polls every 10 ms, then gives the server 50 ms to write the last bytes);
    # the bound is loose for a loaded machine, and still well under a second.
    assert kills.at - ended < 0.6
    await hub.shutdown(timeout=0.1)


@pytest.mark.usefixtures("exit_thread_ended")
async def test_a_default_sigterm_with_no_stream_open_ends_the_process_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "DEFAULT_EXIT_GRACE", 3.0)
    hub = Hub(end_streams_on_signal=False)
    await hub.start()
    kills = Kills(monkeypatch)
    started = time.monotonic()
    hub_module._DefaultExit(hub)(signal.SIGTERM, None)
    assert await asyncio.to_thread(kills.killed.wait, 5)
    assert kills.at - started < 0.6
    assert kills.kills == [(os.getpid(), signal.SIGTERM)]
    await hub.shutdown(timeout=0.1)


@pytest.mark.usefixtures("exit_thread_ended")
async def test_a_default_sigterm_ends_the_process_after_the_grace_if_a_stream_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "DEFAULT_EXIT_GRACE", 0.3)
    hub = Hub(end_streams_on_signal=False)
    await hub.start()
    await hub.subscribe("/news")
    kills = Kills(monkeypatch)
    started = time.monotonic()
    hub_module._DefaultExit(hub)(signal.SIGTERM, None)
    assert await asyncio.to_thread(kills.killed.wait, 5)
    waited = time.monotonic() - started
    assert 0.3 <= waited < 3.0
    assert kills.kills == [(os.getpid(), signal.SIGTERM)]
    await hub.shutdown(timeout=0.1)


class ParentFlag:
    """A server parent's exit flag (hypercorn's ``multiprocessing`` event): counts its looks."""

    def __init__(self) -> None:
        self.set = False
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        return self.set


def _launched_by(module: str) -> Any:
    """A function as a server's spawned worker process runs it: defined in ``module``."""

    def worker(**kwargs: Any) -> None:
        """Stands for the worker function."""

    worker.__module__ = module
    return worker


@pytest.fixture
def worker_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """This process as a spawned worker of hypercorn's default mode: `multiprocessing` names
    the target it runs and the keywords it got, the parent's exit flag among them."""
    import multiprocessing

    class Process:
        _target = _launched_by("hypercorn.asyncio.run")
        _kwargs: dict[str, object] = {"config": object(), "shutdown_event": ParentFlag()}

    monkeypatch.setattr(multiprocessing, "current_process", Process)
    # Look ten times as often as a real worker: the same code, a tenth of each test's waits.
    monkeypatch.setattr(hub_module, "PARENT_EXIT_POLL", 0.01)
    yield Process


async def test_in_a_hypercorn_worker_the_parents_exit_flag_ends_the_streams(
    worker_process: Any,
) -> None:
    # hypercorn's workers ignore SIGINT and hear of either signal only from a flag their parent
    # sets: the hub looks at it as often as hypercorn does (tests/integrations/test_shutdown.py
    # signals real hypercorn processes).
    flag: ParentFlag = worker_process._kwargs["shutdown_event"]
    hub = Hub()
    await hub.start()
    sub = await hub.subscribe("/news")
    await eventually(lambda: flag.looks >= 2, timeout=2.0)
    assert not sub.closed and not hub.draining
    flag.set = True
    await eventually(lambda: sub.closed, timeout=1.0)
    assert sub.close_reason == CloseReason.SHUTDOWN and hub.draining
    looks = flag.looks
    await asyncio.sleep(3 * hub_module.PARENT_EXIT_POLL)
    assert flag.looks == looks  # once set, the hub stops looking
    await hub.shutdown()


async def test_the_parents_flag_is_polled_no_more_after_shutdown(worker_process: Any) -> None:
    flag: ParentFlag = worker_process._kwargs["shutdown_event"]
    hub = Hub()
    await hub.start()
    await eventually(lambda: flag.looks >= 1, timeout=2.0)
    await hub.shutdown()
    looks = flag.looks
    await asyncio.sleep(3 * hub_module.PARENT_EXIT_POLL)
    assert flag.looks == looks


async def test_a_per_request_stream_binds_the_hub_and_it_watches_the_flag(
    worker_process: Any,
) -> None:
    flag: ParentFlag = worker_process._kwargs["shutdown_event"]
    hub = Hub()
    stream = Subscription("", max_buffer=1024)  # a per-request stream: the hub never starts
    hub.attach(stream)
    flag.set = True
    await eventually(lambda: stream.closed, timeout=1.0)
    assert stream.close_reason == CloseReason.SHUTDOWN
    hub.detach(stream)
    await hub.shutdown()


async def test_the_hub_watches_the_flag_once_however_often_it_is_bound(
    worker_process: Any,
) -> None:
    flag: ParentFlag = worker_process._kwargs["shutdown_event"]
    hub = Hub()
    stream = Subscription("", max_buffer=1024)
    hub.attach(stream)  # binds the hub and starts watching...
    await hub.start()  # ...and so does starting it: still one look per period
    await eventually(lambda: flag.looks >= 1, timeout=2.0)
    looks, started = flag.looks, time.monotonic()
    await asyncio.sleep(20 * hub_module.PARENT_EXIT_POLL)
    periods = (time.monotonic() - started) / hub_module.PARENT_EXIT_POLL
    # A late timer only looks less often (a loaded machine); twice as often is a second watch.
    assert flag.looks - looks <= periods + 1
    hub.detach(stream)
    await hub.shutdown()


@pytest.mark.parametrize(
    "process",
    [
        pytest.param({"target": "myapp.workers", "flag": True}, id="another-launcher"),
        # A `multiprocessing.Process` subclass that overrides run() has no target at all.
        pytest.param({"target": None, "flag": True}, id="no-target"),
        pytest.param({"target": "hypercorn.asyncio.run", "flag": False}, id="no-flag"),
        pytest.param({"target": "hypercorn.asyncio.run", "kwargs": None}, id="no-keywords"),
    ],
)
async def test_a_flag_the_hub_does_not_know_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, process: dict[str, Any]
) -> None:
    import multiprocessing

    flag = ParentFlag()
    flag.set = True
    keywords: dict[str, object] | None = {"shutdown_event": flag if process.get("flag") else 1}
    if "kwargs" in process:
        keywords = process["kwargs"]

    class Process:
        _target = None if process["target"] is None else _launched_by(process["target"])
        _kwargs = keywords

    monkeypatch.setattr(multiprocessing, "current_process", Process)
    monkeypatch.setattr(hub_module, "PARENT_EXIT_POLL", 0.01)
    caplog.set_level(logging.DEBUG)
    hub = Hub()
    await hub.start()
    sub = await hub.subscribe("/news")
    await asyncio.sleep(3 * hub_module.PARENT_EXIT_POLL)
    assert not sub.closed and not hub.draining and flag.looks == 0
    # Nothing was tried on it either (a failing look would be logged by the loop).
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    await hub.shutdown()


async def test_opting_out_leaves_the_parents_flag_alone(worker_process: Any) -> None:
    flag: ParentFlag = worker_process._kwargs["shutdown_event"]
    flag.set = True
    hub = Hub(end_streams_on_signal=False)
    await hub.start()
    sub = await hub.subscribe("/news")
    await asyncio.sleep(3 * hub_module.PARENT_EXIT_POLL)
    assert not sub.closed and flag.looks == 0
    await hub.shutdown()
