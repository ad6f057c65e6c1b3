"""The hub as a library, the cases scripts/mutate showed untested: observers in the counts and
listings, resuming where history is gone, backends that return plain ids, the thread-based
API's refusals under green threads and after shutdown.

In-process and fast: no socket, no server.
"""

from __future__ import annotations

import asyncio
import sys
import types
from typing import Any

import pytest

from ssehub import (
    GAP_EVENT,
    EventParser,
    Hub,
    HubClosed,
    InvalidMessage,
    MemoryBackend,
    Message,
    PublishResult,
    Subscription,
    UnsupportedServer,
)
from ssehub.backends.base import Deliver, Position


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


class _LaggingFeed(MemoryBackend):
    """Retains at once, delivers only on `flush`: the live feed runs behind history."""

    def __init__(self) -> None:
        super().__init__()
        self.queued: list[tuple[str | tuple[str, ...], str, bytes, Position | None, bool]] = []

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.hub_deliver = deliver

        def later(
            channel: str | tuple[str, ...],
            event_id: str,
            data: bytes,
            position: Position | None = None,
            private: bool = False,
            /,
        ) -> None:
            self.queued.append((channel, event_id, data, position, private))

        await super().start(later, **settings)

    def flush(self) -> None:
        queued, self.queued = self.queued, []
        for channel, event_id, data, position, private in queued:
            self.hub_deliver(channel, event_id, data, position, private)


def _data(sub: Subscription) -> list[str]:
    return [m.data for m in _events(sub) if m.event is None]


async def test_a_resumed_stream_gets_each_event_once_while_the_feed_catches_up() -> None:
    backend = _LaggingFeed()
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
