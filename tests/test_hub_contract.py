"""The Hub's contract in detail: what each public method promises, one behaviour per test.

These are fast, in-process tests (no sockets), in the mutation lane of scripts/mutate: each one
pins down a behaviour a user relies on that the broader tests in test_hub.py let slip (see
tests/mutation-survivors.md).

Every test runs twice: on the default backend (memory), and with the durable backend
(`ssehub.SqliteBackend`, on a file of the test's own) as the default, so the durable hub keeps
the whole contract.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ssehub import (
    GAP_EVENT,
    CloseReason,
    EventParser,
    Hub,
    HubClosed,
    MemoryBackend,
    Message,
    Replay,
    Request,
    Subscription,
)
from ssehub.backends.base import Deliver, PublishResult, encode_event
from ssehub.errors import SubscriptionDenied
from ssehub.subscription import ThreadedSubscription
from tests._support.backends import SqliteBackends

CONTRACT_BACKENDS = os.environ.get("SSEHUB_CONTRACT_BACKENDS", "memory,sqlite").split(",")
"""The default backends the contract runs on (``scripts/mutate`` runs it on memory only: the
SQLite backend is the memory backend plus a file, and would double each mutant's time)."""


@pytest.fixture(autouse=True, params=CONTRACT_BACKENDS)
def default_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """The backend a `Hub` made without one gets: memory, or a durable one on a file."""
    if request.param == "memory":
        yield "memory"
        return
    made = SqliteBackends(tmp_path)
    monkeypatch.setattr("ssehub.hub.MemoryBackend", made)
    yield "sqlite"
    made.release()


def events_of(sub: Subscription) -> list[Message]:
    return EventParser().feed(sub.take() or b"")


class RecordingBackend(MemoryBackend):
    """The memory backend, recording the hub's calls to the optional hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.calls.append(("start", (settings["history"], settings["history_ttl"])))
        await super().start(deliver, **settings)

    def watch(self, channel: str) -> None:
        self.calls.append(("watch", channel))

    def unwatch(self, channel: str) -> None:
        self.calls.append(("unwatch", channel))

    async def close(self) -> None:
        self.calls.append(("close", None))


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"history": True}, "history must be a non-negative int"),
        ({"history": 1.5}, "history must be a non-negative int"),
        ({"history_ttl": 0}, "history_ttl must be positive"),
        ({"keepalive": -1}, "keepalive must be positive"),
        ({"max_buffer": 0}, "max_buffer must be a positive number of bytes"),
    ],
)
def test_bad_settings_are_refused_with_what_is_allowed(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Hub(**kwargs)


async def test_settings_reach_the_backend_and_the_subscriptions() -> None:
    backend = RecordingBackend()
    hub = Hub(history=7, history_ttl=30.0, max_buffer=1234, keepalive=None, backend=backend)
    assert (hub.history, hub.history_ttl, hub.max_buffer, hub.keepalive) == (7, 30.0, 1234, None)
    sub = await hub.subscribe("/a")
    assert backend.calls[0] == ("start", (7, 30.0))
    sub.push(b"x" * 1234)
    assert not sub.closed
    sub.push(b"x")
    assert sub.close_reason == CloseReason.SLOW
    await hub.shutdown()


def test_default_headers_and_configured_ones() -> None:
    hub = Hub(
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store", "X-Tag": "x"}
    )
    assert hub.headers == [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("x-accel-buffering", "no"),
        ("Access-Control-Allow-Origin", "*"),
        ("X-Tag", "x"),
    ]


@pytest.mark.parametrize("bad", ["a\rb", "a\nb", "a\0b"])
def test_headers_with_cr_lf_or_nul_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="may not contain CR, LF or NUL"):
        Hub(headers={"X-Bad": bad})
    with pytest.raises(ValueError, match="may not contain CR, LF or NUL"):
        Hub(headers={bad: "value"})


def test_defaults_are_the_documented_ones() -> None:
    hub = Hub()
    assert (hub.history, hub.history_ttl, hub.keepalive) == (1000, None, 15.0)
    assert (hub.max_buffer, hub.retry) == (256 * 1024, None)
    assert isinstance(hub.backend, MemoryBackend)
    assert Hub(retry=2500).retry == 2500


@pytest.mark.parametrize("kwargs", [{"history": 0}, {"max_buffer": 1}, {"keepalive": None}])
def test_smallest_settings_are_allowed(kwargs: dict[str, Any]) -> None:
    Hub(**kwargs)


def test_the_adapters_are_made_once() -> None:
    from ssehub.asgi import ASGIApp
    from ssehub.wsgi import WSGIApp

    hub = Hub()
    assert isinstance(hub.asgi, ASGIApp) and hub.asgi is hub.asgi and hub.asgi.hub is hub
    assert isinstance(hub.wsgi, WSGIApp) and hub.wsgi is hub.wsgi


def test_encode_event_puts_the_assigned_id_before_the_fields() -> None:
    assert encode_event(Message("d", event="e"), "7") == b"id: 7\nevent: e\ndata: d\n\n"
    assert encode_event(Message("d", id="7"), "7") == b"id: 7\ndata: d\n\n"
    with_comment = Message("d\nd2", event="e", retry=5, comment="c")
    assert encode_event(with_comment, "7") == (
        b": c\nid: 7\nretry: 5\nevent: e\ndata: d\ndata: d2\n\n"
    )


# -- publish and introspection ----------------------------------------------------------------


async def test_published_counts_are_per_channel_and_a_copy() -> None:
    hub = Hub()
    assert hub.published_count("/a") == 0
    await hub.publish("/a", "one")
    await hub.publish("/a", "two")
    await hub.publish("/b", "three")
    assert hub.published_count("/a") == 2 and hub.published_count("/b") == 1
    counts = hub.published_counts()
    assert counts == {"/a": 2, "/b": 1}
    counts["/a"] = 99
    assert hub.published_count("/a") == 2
    await hub.shutdown()


async def test_publish_of_a_str_sends_it_as_data() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    event_id = await hub.publish("/a", "plain text")
    (event,) = events_of(sub)
    assert (event.data, event.id, event.event) == ("plain text", event_id, None)
    await hub.shutdown()


async def test_channel_counts_deliveries_and_holds_resuming_clients() -> None:
    hub = Hub()
    await hub.subscribe("/a")
    await hub.subscribe("/a")
    await hub.publish("/a", "x")
    await hub.publish("/a", "y")
    channel = hub.get_channel("/a")
    assert channel is not None
    assert channel.name == "/a" and channel.delivered == 4 and len(channel) == 2
    assert repr(channel) == "<Channel '/a' clients=2>"
    assert hub.client_count("/a") == 2 and hub.client_count("/nowhere") == 0
    await hub.shutdown(timeout=0.01)  # nobody drains these subscriptions


async def test_backend_health_names_the_backend() -> None:
    assert await MemoryBackend().health() == {"ok": True, "backend": "MemoryBackend"}


# -- open_stream: a request becomes a subscription ---------------------------------------------


async def test_open_stream_subscribes_the_request_path_and_keeps_the_request() -> None:
    hub = Hub()
    request = Request("GET", "/events/news", headers={"x": "1"})
    sub = await hub.open_stream(request)
    assert hub.channel_for(request) == "/events/news"
    assert sub.channel == "/events/news" and sub.request is request
    assert type(sub) is Subscription  # drained by an async writer unless threaded=True
    assert sub.last_event_id is None and hub.client_count("/events/news") == 1
    await hub.shutdown()


async def test_open_stream_resumes_from_the_request_last_event_id() -> None:
    hub = Hub()
    first = await hub.publish("/events/a", "one")
    await hub.publish("/events/a", "two")
    request = Request("GET", "/events/a", headers={"last-event-id": first})
    sub = await hub.open_stream(request)
    assert sub.last_event_id == first
    assert [e.data for e in events_of(sub)] == ["two"]
    await hub.shutdown()


async def test_open_stream_uses_channel_name_and_an_explicit_channel_wins() -> None:
    hub = Hub(channel_name=lambda r: "topic-" + r.query.get("t", "none"))
    request = Request("GET", "/x", query={"t": "7"})
    assert hub.channel_for(request) == "topic-7"
    assert (await hub.open_stream(request)).channel == "topic-7"
    assert (await hub.open_stream(request, channel="mine")).channel == "mine"
    await hub.shutdown()


@pytest.mark.parametrize("is_async", [False, True])
async def test_open_stream_asks_authorize_with_the_request(is_async: bool) -> None:
    asked: list[Request] = []

    def allow(request: Request) -> bool:
        asked.append(request)
        return request.headers.get("authorization") == "Bearer ok"

    async def allow_async(request: Request) -> bool:
        return allow(request)

    hub = Hub(authorize=allow_async if is_async else allow)
    denied = Request("GET", "/a")
    with pytest.raises(SubscriptionDenied) as excinfo:
        await hub.open_stream(denied)
    assert str(excinfo.value) == "the authorize hook refused this subscription"
    assert not hub.has_channel("/a")
    allowed = Request("GET", "/a", headers={"authorization": "Bearer ok"})
    assert (await hub.open_stream(allowed)).channel == "/a"
    assert asked == [denied, allowed]
    await hub.shutdown()


async def test_open_stream_with_threaded_gives_a_thread_drained_subscription() -> None:
    hub = Hub()
    await hub.publish("/a", Message("old", id="0"))
    request = Request("GET", "/a", headers={"last-event-id": "0"})
    sub = await hub.open_stream(request, threaded=True)
    assert isinstance(sub, ThreadedSubscription)
    assert (sub.channel, sub.request, sub.last_event_id) == ("/a", request, "0")
    with pytest.raises(RuntimeError) as excinfo:
        await sub.next_chunk()
    assert str(excinfo.value) == "a ThreadedSubscription is drained with next_chunk_blocking()"
    await hub.publish("/a", Message("x", id="1"))
    assert await asyncio.to_thread(sub.next_chunk_blocking, 5) == b"id: 1\ndata: x\n\n"
    await hub.shutdown()


# -- subscribe: the replay seam ----------------------------------------------------------------


class LateFeedBackend(MemoryBackend):
    """A backend whose feed runs behind its history (as Redis's can under load): while a replay
    is read, the feed still delivers events the client already has, then new ones."""

    def __init__(self, late: list[tuple[str, str]]) -> None:
        super().__init__()
        self.late = late
        self.deliver: Deliver | None = None

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.deliver = deliver
        await super().start(deliver, **settings)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        assert self.deliver is not None
        for event_id, data in self.late:
            self.deliver(channel, event_id, Message(data, id=event_id).encode())
        await asyncio.sleep(0)
        return Replay((), found=True)


async def test_events_the_client_has_are_not_sent_again_when_the_feed_runs_behind() -> None:
    backend = LateFeedBackend([("e1", "old"), ("e2", "seen"), ("e3", "new"), ("e4", "newer")])
    hub = Hub(backend=backend)
    await hub.start()
    sub = await hub.subscribe("/a", last_event_id="e2")
    assert [(e.id, e.data) for e in events_of(sub)] == [("e3", "new"), ("e4", "newer")]
    assert hub.client_count("/a") == 1 and sub.last_event_id == "e2"
    await hub.shutdown()


async def test_events_held_during_replay_and_also_replayed_come_once() -> None:
    hub = Hub()
    first = await hub.publish("/a", "zero")
    ids = [await hub.publish("/a", f"m{i}") for i in range(2)]
    hub.backend.replay = _replay_then_deliver(hub, hub.backend.replay, ids)  # type: ignore[method-assign]
    sub = await hub.subscribe("/a", last_event_id=first)
    assert [e.data for e in events_of(sub)] == ["m0", "m1"]
    await hub.shutdown()


def _replay_then_deliver(hub: Hub, replay: Any, ids: Sequence[str]) -> Any:
    async def replay_and_redeliver(channel: str, last_event_id: str) -> Replay:
        result: Replay = await replay(channel, last_event_id)
        for event_id, data in result.events:  # the feed delivers them again meanwhile
            # A feed delivers each event with its position, as the backend gave it.
            hub._deliver(channel, event_id, data, result.head)
        return result

    return replay_and_redeliver


async def test_replayed_counter_adds_up_over_subscriptions() -> None:
    hub = Hub()
    ids = [await hub.publish("/a", f"m{i}") for i in range(4)]
    await hub.subscribe("/a", last_event_id=ids[1])  # 2 replayed
    await hub.subscribe("/a", last_event_id=ids[0])  # 3 replayed
    assert hub.replayed == 5
    gap = await hub.subscribe("/a", last_event_id="unknown")  # 4 replayed after a gap
    assert hub.replayed == 9
    first, *rest = events_of(gap)
    assert first.event == GAP_EVENT and json.loads(first.data)["replayed"] == 4
    assert len(rest) == 4
    await hub.shutdown(timeout=0.01)  # nobody drains these subscriptions


class FailingReplayBackend(RecordingBackend):
    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        raise ConnectionError("history unreachable")


async def test_a_failed_replay_fails_the_subscribe_and_leaves_no_trace() -> None:
    backend = FailingReplayBackend()
    hub = Hub(backend=backend)
    with pytest.raises(ConnectionError, match="unreachable"):
        await hub.subscribe("/a", last_event_id="x")
    assert not hub.has_channel("/a") and hub.client_count() == 0
    assert ("watch", "/a") in backend.calls and backend.calls[-1] == ("unwatch", "/a")
    await hub.shutdown()


async def test_backend_watches_a_channel_while_it_has_local_subscribers() -> None:
    backend = RecordingBackend()
    hub = Hub(backend=backend)
    a1 = await hub.subscribe("/a")
    a2 = await hub.subscribe("/a")
    hub.unsubscribe(a1)
    assert [c for c in backend.calls if c[0] != "start"] == [("watch", "/a")]
    hub.unsubscribe(a2)
    assert [c for c in backend.calls if c[0] != "start"] == [("watch", "/a"), ("unwatch", "/a")]
    await hub.shutdown()


async def test_unsubscribe_calls_an_async_on_disconnect_hook_once() -> None:
    left: list[str] = []
    done = asyncio.Event()

    async def on_disconnect(sub: Subscription) -> None:
        left.append(sub.channel)
        done.set()

    hub = Hub(on_disconnect=on_disconnect)
    sub = await hub.subscribe("/a")
    hub.unsubscribe(sub)
    hub.unsubscribe(sub)
    await asyncio.wait_for(done.wait(), 5)
    assert left == ["/a"] and sub.close_reason == CloseReason.DISCONNECTED
    await hub.shutdown()


# -- lifecycle ---------------------------------------------------------------------------------


async def test_start_binds_the_hub_to_the_running_loop_once() -> None:
    backend = RecordingBackend()
    hub = Hub(backend=backend)
    assert hub.loop is None
    await asyncio.gather(hub.start(), hub.start(), hub.publish("/a", "x"))
    assert hub.loop is asyncio.get_running_loop()
    assert [c for c in backend.calls if c[0] == "start"] == [("start", (1000, None))]
    await hub.shutdown()


class FailingStartBackend(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise ConnectionError("backend down")
        await super().start(deliver, **settings)


async def test_a_failed_start_raises_and_the_next_use_tries_again() -> None:
    backend = FailingStartBackend()
    hub = Hub(backend=backend)
    with pytest.raises(ConnectionError, match="backend down"):
        await hub.publish("/a", "x")
    assert await hub.publish("/a", "y")
    assert backend.attempts == 2
    await hub.shutdown()


async def test_shutdown_ends_streams_as_shutdown_and_closes_the_backend() -> None:
    backend = RecordingBackend()
    reasons: list[str | None] = []
    hub = Hub(backend=backend, on_disconnect=lambda s: reasons.append(s.close_reason))
    subs = [await hub.subscribe("/a"), await hub.subscribe("/b")]
    await asyncio.wait_for(hub.shutdown(), 5)
    assert [s.close_reason for s in subs] == [CloseReason.SHUTDOWN] * 2
    assert reasons == [CloseReason.SHUTDOWN] * 2
    assert hub.client_count() == 0 and hub.channels() == []
    assert backend.calls.count(("close", None)) == 1
    assert hub.closed
    with pytest.raises(HubClosed) as excinfo:
        await hub.publish("/a", "late")
    assert str(excinfo.value) == "the hub is shut down"


async def test_a_hub_shut_down_before_its_first_use_cannot_start() -> None:
    hub = Hub()
    await hub.shutdown()
    with pytest.raises(HubClosed) as excinfo:
        await hub.start()
    assert str(excinfo.value) == "the hub is shut down"


async def test_shutdown_of_a_hub_never_started_does_not_touch_the_backend() -> None:
    backend = RecordingBackend()
    hub = Hub(backend=backend)
    await hub.shutdown()
    assert backend.calls == []


async def test_shutdown_waits_for_writers_to_send_what_is_queued() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    await hub.publish("/a", "last words")
    stopping = asyncio.ensure_future(hub.shutdown(timeout=30))
    await asyncio.sleep(0.05)  # a window for a shutdown that would not wait
    assert not stopping.done() and hub.client_count() == 1
    assert b"last words" in (await sub.next_chunk() or b"")
    sub.writing = True  # the writer is still writing the chunk it took
    await asyncio.sleep(0.05)
    assert not stopping.done()
    sub.writing = False
    await asyncio.wait_for(stopping, 5)  # far sooner than the 30 s timeout
    assert hub.client_count() == 0


async def test_shutdown_gives_up_on_a_writer_after_its_timeout() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    await hub.publish("/a", "never taken")
    await asyncio.wait_for(hub.shutdown(timeout=0.1), 5)
    assert hub.client_count() == 0 and sub.closed


async def test_keepalive_timer_stops_at_shutdown() -> None:
    hub = Hub(keepalive=0.01)
    await hub.start()
    await hub.shutdown()
    assert hub._keepalive_handle is None


def test_the_hubs_own_loop_thread_ends_at_shutdown() -> None:
    hub = Hub()
    hub.publish_threadsafe("/a", "x")
    thread = hub._thread
    assert thread is not None and thread.is_alive() and thread.daemon
    assert thread.name == "ssehub-hub"  # as it shows in thread dumps
    hub.run_threadsafe(hub.shutdown())
    thread.join(10)
    assert not thread.is_alive()
    assert hub.loop is not None and hub.loop.is_closed()


async def test_shutdown_from_another_loop_thread_leaves_that_loop_alone() -> None:
    hub = Hub()
    await hub.start()
    await hub.shutdown()
    assert asyncio.get_running_loop().is_running()  # not stopped by the hub


# -- threads -----------------------------------------------------------------------------------


def test_threadsafe_calls_return_what_the_coroutine_returns() -> None:
    hub = Hub()
    event_id = hub.publish_threadsafe("/a", Message("x", id="own-id"))
    assert event_id == "own-id"
    assert hub.broadcast_threadsafe(Message("y", id="b-1")) == {"/a": "b-1"}
    assert hub.run_threadsafe(hub.backend.channels()) == ["/a"]
    hub.run_threadsafe(hub.shutdown())


async def test_run_threadsafe_from_the_hubs_loop_is_refused_and_closes_the_coroutine() -> None:
    hub = Hub()
    await hub.start()
    coro = hub.publish("/a", "x")
    with pytest.raises(RuntimeError) as excinfo:
        hub.run_threadsafe(coro)
    assert str(excinfo.value) == (
        "called from the hub's own event loop: use the async method instead"
    )
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    await hub.shutdown()


def test_threadsafe_call_after_the_hubs_loop_ended_is_a_clear_error() -> None:
    hub = Hub()

    async def use_then_leave() -> None:
        await hub.publish("/a", "bound to this loop")

    asyncio.run(use_then_leave())
    with pytest.raises(RuntimeError) as excinfo:
        hub.publish_threadsafe("/a", "x")
    assert str(excinfo.value) == "the hub's event loop is not running"


def test_wrong_loop_errors_say_which_loop_and_what_to_do() -> None:
    own = Hub()
    own.publish_threadsafe("/a", "binds the hub to a loop thread of its own")
    elsewhere = Hub()
    ready = threading.Event()
    stop = threading.Event()

    async def bind_and_wait() -> None:
        await elsewhere.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.01)
        await elsewhere.shutdown()

    thread = threading.Thread(target=asyncio.run, args=(bind_and_wait(),))
    thread.start()
    try:
        assert ready.wait(10)

        async def attempt() -> None:
            with pytest.raises(RuntimeError) as excinfo:
                await own.publish("/a", "x")
            assert str(excinfo.value) == (
                "this hub is bound to another event loop (a loop of its own, started by a "
                "*_threadsafe call): a hub serves one loop; call its async methods there, and "
                "use publish_threadsafe() from other threads"
            )
            with pytest.raises(RuntimeError) as excinfo:
                await elsewhere.subscribe("/a")
            assert str(excinfo.value) == (
                "this hub is bound to another event loop: a hub serves one loop; call its "
                "async methods there, and use publish_threadsafe() from other threads"
            )

        asyncio.run(attempt())
    finally:
        stop.set()
        thread.join(10)
        own.run_threadsafe(own.shutdown())


class BlockedReplayBackend(MemoryBackend):
    """A backend whose replay waits until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.replaying = asyncio.Event()
        self.release = asyncio.Event()

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        self.replaying.set()
        await self.release.wait()
        return await super().replay(channel, last_event_id, private=private)


async def test_a_stream_closed_while_it_is_replayed_takes_no_more_events() -> None:
    backend = BlockedReplayBackend()
    hub = Hub(backend=backend)
    first = await hub.publish("/a", "before")
    subscribing = asyncio.ensure_future(hub.subscribe("/a", last_event_id=first))
    await asyncio.wait_for(backend.replaying.wait(), 5)
    assert hub.client_count("/a") == 1  # held while replayed
    await hub.restart()
    await hub.publish("/a", "while closed")  # delivered to the channel, not to the closed sub
    backend.release.set()
    sub = await asyncio.wait_for(subscribing, 5)
    assert sub.close_reason == CloseReason.RESTART
    await hub.shutdown(timeout=0.01)


# -- the memory backend -----------------------------------------------------------------------


async def started_memory(history: int = 1000) -> MemoryBackend:
    backend = MemoryBackend()
    await backend.start(lambda *_: None, history=history, history_ttl=None)
    return backend


async def test_memory_ids_carry_the_boot_time_in_ms_and_count_up() -> None:
    import re
    import time

    before = int(time.time() * 1000)
    backend = await started_memory()
    after = int(time.time() * 1000)
    ids = [await backend.publish("/a", Message(str(i))) for i in range(3)]
    for event_id in ids:
        assert re.fullmatch(r"\d+-\d+", event_id), event_id
        assert before <= int(event_id.split("-")[0]) <= after
    counters = [int(event_id.split("-")[1]) for event_id in ids]
    assert counters == sorted(counters) and len(set(counters)) == 3 and counters[0] > 0


async def test_memory_replay_of_an_unknown_channel_is_not_found_and_empty() -> None:
    backend = await started_memory()
    assert await backend.replay("/never", "x") == Replay((), found=False)


async def test_memory_resume_from_the_newest_event_replays_nothing() -> None:
    backend = await started_memory()
    ids = [await backend.publish("/a", Message(str(i))) for i in range(3)]
    replay = await backend.replay("/a", ids[-1])
    assert (tuple(replay.events), replay.found) == ((), True)
    replay = await backend.replay("/a", ids[0])
    assert replay.found and [i for i, _ in replay.events] == ids[1:]


async def test_history_of_one_keeps_the_newest_event() -> None:
    hub = Hub(history=1)
    first = await hub.publish("/a", "one")
    await hub.publish("/a", "two")
    sub = await hub.subscribe("/a", last_event_id=first)
    assert [e.data for e in events_of(sub)] == ["two"]
    await hub.shutdown(timeout=0.01)


async def test_history_of_zero_keeps_nothing_and_a_resume_is_told_so() -> None:
    hub = Hub(history=0)
    first = await hub.publish("/a", "one")
    assert await hub.backend.channels() == []
    sub = await hub.subscribe("/a", last_event_id=first)
    (gap,) = events_of(sub)
    assert gap.event == GAP_EVENT and json.loads(gap.data)["replayed"] == 0
    await hub.shutdown(timeout=0.01)


async def test_every_slow_drop_is_counted() -> None:
    hub = Hub(max_buffer=30)
    subs = [await hub.subscribe("/a") for _ in range(2)]
    await hub.publish("/a", Message("fits", id="1"))  # 18 bytes: each buffer holds it
    await hub.publish("/a", Message("fits too", id="2"))  # 22 more: past 30, never taken
    assert [s.close_reason for s in subs] == [CloseReason.SLOW] * 2
    assert hub.dropped_slow == 2
    await hub.shutdown(timeout=0.01)


async def test_async_disconnect_hooks_are_kept_alive_until_they_finish() -> None:
    release = asyncio.Event()

    async def on_disconnect(sub: Subscription) -> None:
        await release.wait()

    hub = Hub(on_disconnect=on_disconnect)
    hub.unsubscribe(await hub.subscribe("/a"))
    (task,) = hub._tasks  # a strong reference, so the running hook is not collected
    release.set()
    await asyncio.wait_for(task, 5)
    await asyncio.sleep(0)  # done callbacks run on the next turn
    assert hub._tasks == set()
    await hub.shutdown()


async def test_a_keepalive_tick_after_shutdown_does_not_rearm_the_timer() -> None:
    hub = Hub(keepalive=3600)
    await hub.start()
    await hub.shutdown()
    hub._keepalive_tick()
    assert hub._keepalive_handle is None


class StuckBackend(MemoryBackend):
    """A backend whose publish never completes (a hung network store)."""

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_threadsafe_calls_give_up_after_their_timeout() -> None:
    import concurrent.futures
    import time

    hub = Hub(backend=StuckBackend())
    hub.run_threadsafe(hub.subscribe("/a"))  # a channel for broadcast to publish to
    for call in (
        lambda: hub.publish_threadsafe("/a", "x", timeout=0.1),
        lambda: hub.broadcast_threadsafe("x", timeout=0.1),
        lambda: hub.run_threadsafe(asyncio.Event().wait(), timeout=0.1),
    ):
        started = time.monotonic()
        with pytest.raises((TimeoutError, concurrent.futures.TimeoutError)):
            call()
        assert time.monotonic() - started < 5  # its own timeout, not the 10 s default
    hub.run_threadsafe(hub.shutdown(timeout=0.01))
