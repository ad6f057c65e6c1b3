"""The hub as a library, the cases scripts/mutate showed untested: observers in the counts and
listings, resuming where history is gone, backends that return plain ids, the thread-based
API's refusals under green threads and after shutdown.

In-process and fast: no socket, no server.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from typing import Any

import pytest

import ssehub.hub
from ssehub import (
    GAP_EVENT,
    CloseReason,
    EventParser,
    Hub,
    HubClosed,
    InvalidMessage,
    MemoryBackend,
    Message,
    PublishResult,
    Replay,
    Subscription,
    UnsupportedServer,
)
from ssehub.backends.base import Backend, Deliver, encode_event
from ssehub.resume import order
from tests._support.backends import LaggingFeed


def _events(sub: Subscription) -> list[Message]:
    chunk = sub.take()
    return EventParser().feed(chunk) if chunk else []


# -- observers ---------------------------------------------------------------------------


async def test_observers_are_counted_apart_and_leave_no_channel_listed() -> None:
    hub = Hub()
    watchers = [await hub.subscribe("/watched", observer=True) for _ in range(2)]
    assert hub.observer_count() == 2
    assert hub.channels() == []
    assert not hub.has_channel("/watched")
    assert hub.get_channel("/watched") is None
    client = await hub.subscribe("/news")
    assert hub.channels() == ["/news"]
    assert hub.has_channel("/news")
    assert not hub.has_channel("/other")
    hub.unsubscribe(watchers[0])
    assert hub.observer_count() == 1
    hub.unsubscribe(watchers[1])
    assert hub.observer_count() == 0
    assert hub.channels() == ["/news"]
    hub.unsubscribe(client)
    assert hub.channels() == []
    await hub.shutdown()


async def test_an_observer_ignores_a_resume_id_and_gets_live_events_only() -> None:
    hub = Hub()
    first = await hub.publish("/a", "before")
    watcher = await hub.subscribe("/a", last_event_id=first, observer=True)
    assert watcher.last_event_id is None
    await hub.publish("/a", "live")
    assert [m.data for m in _events(watcher)] == ["live"]
    await hub.shutdown()


# -- resuming where history is gone ------------------------------------------------------


async def test_resuming_on_a_live_channel_whose_history_is_gone_gets_the_gap_then_live() -> None:
    hub = Hub(history_bytes=1)  # every event is trimmed at once
    listener = await hub.subscribe("/a")
    await hub.publish("/a", "first")
    assert listener.take()
    resumed = await hub.subscribe("/a", last_event_id="0-0")
    await hub.publish("/a", "second")
    events = _events(resumed)
    assert [(m.event, m.data) for m in events][1:] == [(None, "second")]
    assert events[0].event == GAP_EVENT
    assert [m.data for m in _events(listener)] == ["second"]
    await hub.shutdown()


async def test_a_channel_whose_history_is_trimmed_away_at_once_publishes_fine() -> None:
    hub = Hub(history_bytes=1)
    result = await hub.publish("/nobody", "x")
    assert not result.duplicate
    assert hub.published_count("/nobody") == 0
    await hub.shutdown()


async def test_resumed_says_whether_history_held_the_id_and_is_none_without_a_resume() -> None:
    hub = Hub()
    first = await hub.publish("/a", "one")
    await hub.publish("/a", "two")
    fresh = await hub.subscribe("/a")
    held = await hub.subscribe("/a", last_event_id=first)
    gone = await hub.subscribe("/a", last_event_id="not-in-history")
    assert fresh.resumed is None
    assert held.resumed is True
    assert [m.data for m in _events(held)] == ["two"]
    assert gone.resumed is False
    events = _events(gone)
    assert events[0].event == GAP_EVENT
    assert [m.data for m in events[1:]] == ["one", "two"]
    await hub.shutdown()


def test_a_stream_made_without_the_hub_has_no_payload_and_did_not_resume() -> None:
    # A per-request `EventStream`'s subscription: `Hub.subscribe` sets neither.
    sub = Subscription("/per-request", max_buffer=1024)
    assert (sub.payload, sub.resumed, sub.last_event_id) == (None, None, None)


# -- a backend that returns plain ids ----------------------------------------------------


class _PlainIds(MemoryBackend):
    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        result = await super().publish(channel, message, private=private)
        return str(result)  # type: ignore[return-value]  # an older backend's plain str


async def test_a_backends_plain_str_id_comes_back_as_a_publish_result() -> None:
    hub = Hub(backend=_PlainIds())
    result = await hub.publish("/a", Message("x", id="k1"))
    assert isinstance(result, PublishResult)
    assert (result, result.duplicate) == ("k1", False)
    assert hub.published_total == 1
    await hub.shutdown()


# -- the thread-based API ----------------------------------------------------------------


def test_the_thread_based_api_after_shutdown_says_the_hub_is_shut_down() -> None:
    hub = Hub()

    async def run() -> None:
        await hub.publish("/a", "x")
        await hub.shutdown()

    asyncio.run(run())
    with pytest.raises(HubClosed) as caught:
        hub.publish_threadsafe("/a", "y", timeout=5)
    assert str(caught.value) == "the hub is shut down"


def _fake(name: str, check: str, patched: str) -> types.ModuleType:
    module = types.ModuleType(name)
    setattr(module, check, lambda what: what == patched)
    return module


@pytest.mark.parametrize(
    ("green", "module"),
    [
        ("gevent", _fake("gevent.monkey", "is_module_patched", "threading")),
        ("eventlet", _fake("eventlet.patcher", "is_monkey_patched", "thread")),
    ],
)
def test_the_thread_based_api_refuses_green_threads_and_says_what_to_use(
    monkeypatch: pytest.MonkeyPatch, green: str, module: types.ModuleType
) -> None:
    monkeypatch.setitem(sys.modules, module.__name__, module)
    hub = Hub()
    with pytest.raises(UnsupportedServer) as caught:
        hub.publish_threadsafe("/a", "x", timeout=5)
    assert str(caught.value) == (
        "ssehub's thread-based API (publish_threadsafe, the WSGI, Flask and Django sync "
        f"integrations) does not run under {green}'s monkey-patching (e.g. gunicorn -k "
        f"{green}): use threads (gunicorn -k gthread, waitress) or an ASGI server with the "
        "async integrations"
    )


@pytest.mark.parametrize(
    "module",
    [
        _fake("gevent.monkey", "is_module_patched", "socket"),
        _fake("eventlet.patcher", "is_monkey_patched", "socket"),
    ],
)
def test_green_libraries_that_left_threads_alone_are_fine(
    monkeypatch: pytest.MonkeyPatch, module: types.ModuleType
) -> None:
    monkeypatch.setitem(sys.modules, module.__name__, module)
    hub = Hub()
    try:
        assert hub.publish_threadsafe("/a", "x", timeout=5)
    finally:
        hub.run_threadsafe(hub.shutdown(), timeout=5)


# -- streams attached to the hub (per-request EventStreams) ------------------------------


async def test_shutdown_ends_attached_streams_and_not_detached_ones() -> None:
    hub = Hub()
    await hub.start()
    kept = Subscription("/kept", max_buffer=1024)
    gone = Subscription("/gone", max_buffer=1024)
    hub.attach(kept)
    hub.attach(gone)
    hub.detach(gone)
    hub.detach(gone)  # a writer may end twice: harmless
    await hub.shutdown()
    assert kept.closed
    assert not gone.closed


async def test_a_single_process_backend_reports_its_own_state_only() -> None:
    state = {"worker": "w1", "clients": 3}
    assert await MemoryBackend().report("w1", state, 5.0) == [state]


# -- ids and counters --------------------------------------------------------------------


async def test_an_id_with_edge_whitespace_is_refused_with_why() -> None:
    hub = Hub()
    with pytest.raises(InvalidMessage) as caught:
        await hub.publish("/a", Message("x", id=" 1"))
    assert str(caught.value) == (
        "id ' 1' cannot be resumed from: it starts or ends with a space or tab, which HTTP "
        "strips from Last-Event-ID"
    )
    await hub.shutdown()


async def test_a_channel_keeps_its_published_count_while_its_history_is_retained() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    await hub.publish("/a", "one")
    await hub.publish("/a", "two")
    hub.unsubscribe(sub)
    assert hub.published_count("/a") == 2
    await hub.shutdown()


# -- a feed that runs behind history (as Redis's may under load) -------------------------


def _data(sub: Subscription) -> list[str]:
    return [m.data for m in _events(sub) if m.event is None]


async def test_a_resumed_stream_gets_each_event_once_while_the_feed_catches_up() -> None:
    backend = LaggingFeed()
    hub = Hub(backend=backend)
    before = await hub.subscribe("/a")
    first = await hub.publish("/a", "e0")
    backend.flush()
    await hub.publish("/a", "e1")
    await hub.publish("/a", "e2")  # retained, not yet delivered
    resumed = await hub.subscribe("/a", last_event_id=first)
    after = await hub.subscribe("/a")
    assert _data(resumed) == ["e1", "e2"]  # from history
    backend.flush()  # the feed catches up: e1 and e2 again, not for `resumed`
    await hub.publish("/a", "e3")
    backend.flush()
    assert _data(before) == ["e0", "e1", "e2", "e3"]
    assert _data(resumed) == ["e3"]
    assert _data(after) == ["e1", "e2", "e3"]
    channel = hub.get_channel("/a")
    assert channel is not None
    assert channel.delivered == 1 + 2 * 2 + 3
    await hub.shutdown()


# -- a broadcast over many channels shares the loop --------------------------------------


class _SlowPublish(MemoryBackend):
    """Each publish takes ``cost`` seconds on the loop's clock (``slowed``), none in fact."""

    def __init__(self, cost: float) -> None:
        super().__init__()
        self.cost = cost
        self.slowed = 0.0

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        self.slowed += self.cost
        return await super().publish(channel, message, private=private)


@pytest.mark.parametrize(
    ("cost", "yields"),
    [
        (0.01, [128, 256]),  # a slice is 100 publishes: used up by the 128th, then the 256th
        (0.02, [64, 128, 192, 256]),  # 50 publishes: used up at each check
    ],
)
async def test_a_broadcast_lets_other_work_run_each_time_its_slice_is_used_up(
    monkeypatch: pytest.MonkeyPatch, cost: float, yields: list[int]
) -> None:
    # A slice of a second, far longer than the publishes take in fact, even on a busy
    # machine: only the slow publishes use it up. The loop is checked every 64 channels.
    monkeypatch.setattr(ssehub.hub, "BROADCAST_SLICE", 1.0)
    backend = _SlowPublish(cost)
    loop = asyncio.get_running_loop()
    real_time = loop.time
    monkeypatch.setattr(loop, "time", lambda: real_time() + backend.slowed)
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    channels = [f"/c{n}" for n in range(300)]
    for channel in channels:  # channels with history only
        await hub.publish(channel, "first")
    listener = await hub.subscribe("/live")  # and one with a subscriber only
    before = hub.published_total
    seen: list[int] = []

    async def other_work() -> None:
        while True:
            seen.append(hub.published_total - before)
            await asyncio.sleep(0)

    task = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    started = time.monotonic()
    ids = await hub.broadcast("to all")
    elapsed = time.monotonic() - started
    task.cancel()
    assert seen == [0, *yields]
    assert elapsed < 1.0  # it yields for one turn of the loop, not for a while
    assert list(ids) == ["/live", *channels]
    assert len(set(ids.values())) == len(channels) + 1
    (event,) = _events(listener)
    assert (event.id, event.data) == (ids["/live"], "to all")
    replay = await backend.replay("/c299", "unknown")
    assert [event_id for event_id, _ in replay.events][-1] == ids["/c299"]
    await hub.shutdown()


# -- shutdown, errors, counters ------------------------------------------------------------


@pytest.mark.parametrize("kind", ["attached", "wild"])
async def test_shutdown_waits_for_the_writer_of_any_stream_and_then_returns_at_once(
    kind: str,
) -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    if kind == "attached":  # a per-request stream, in no channel
        sub = Subscription("/per-request", max_buffer=1024)
        hub.attach(sub)
        await hub.start()
    else:
        sub = await hub.subscribe(["/r/{id}"])
    sub.push(b"data: last words\n\n")
    stopping = asyncio.ensure_future(hub.shutdown(timeout=30))
    await asyncio.sleep(0.05)  # a window for a shutdown that would not wait
    assert not stopping.done()
    assert sub.take() == b"data: last words\n\n"
    started = time.monotonic()
    await asyncio.wait_for(stopping, 5)
    assert time.monotonic() - started < 0.5  # it polls every 10 ms; 0.5 s leaves room
    assert sub.close_reason == CloseReason.SHUTDOWN


async def test_shutdown_with_nothing_queued_returns_at_once() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    await hub.subscribe("/a")
    await hub.subscribe(["/a", "/b"])
    started = time.monotonic()
    await hub.shutdown()
    assert time.monotonic() - started < 0.5  # a turn or two of 10 ms; 0.5 s leaves room
    assert hub.client_count() == 0


async def test_publishing_to_no_channel_says_what_is_allowed() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    with pytest.raises(InvalidMessage) as caught:
        await hub.publish([], "x")
    assert str(caught.value) == "channels must be non-empty names, got []"
    await hub.shutdown(timeout=0.1)


async def test_a_multi_channel_publish_counts_in_every_channel_it_reached() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    await hub.subscribe("/b")
    await hub.publish(["/a", "/b"], "together")
    await hub.publish(["/b", "/b"], "once")
    assert hub.published_counts() == {"/a": 1, "/b": 2}
    assert hub.published_total == 2
    await hub.shutdown(timeout=0.1)


async def test_observers_are_pinged_on_idle_channels() -> None:
    hub = Hub(keepalive=60, end_streams_on_signal=False)
    watcher = await hub.subscribe("/a", observer=True)
    hub._keepalive_tick()  # what the keep-alive timer runs (its timing is tested elsewhere)
    assert watcher.take() == b": ping\n\n"
    await hub.shutdown(timeout=0.1)


# -- the smallest backend: the Backend interface's defaults ---------------------------------


class _AbstractOnly(Backend):
    """A backend with the abstract methods only: no history, no resume of several channels."""

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.deliver = deliver
        self.count = 0

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> str:
        self.count += 1
        event_id = str(self.count)
        self.deliver(channel, event_id, encode_event(message, event_id))
        return event_id

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        return Replay((), found=False)

    async def channels(self) -> list[str]:
        return []


async def test_a_backend_without_history_forgets_a_channels_count_with_its_last_client() -> None:
    hub = Hub(backend=_AbstractOnly(), keepalive=None, end_streams_on_signal=False)
    sub = await hub.subscribe("/a")
    await hub.publish("/a", "x")
    assert hub.published_count("/a") == 1
    hub.unsubscribe(sub)
    assert hub.published_count("/a") == 0
    await hub.shutdown(timeout=0.1)


async def test_a_backend_that_cannot_resume_several_channels_says_so() -> None:
    hub = Hub(backend=_AbstractOnly(), keepalive=None, end_streams_on_signal=False)
    with pytest.raises(NotImplementedError) as caught:
        await hub.subscribe(["/a", "/b"], last_event_id="1")
    assert str(caught.value) == "_AbstractOnly cannot resume several channels"
    assert hub.client_count() == 0
    await hub.shutdown(timeout=0.1)


def test_the_cross_channel_order_of_a_position_is_its_last_item() -> None:
    assert order((7,)) == 7
    assert order((3, 1_700_000_000_000, 42)) == 42
