"""The Hub's behaviour as a library: channels, ids, history, replay, slow clients, lifecycle."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from ssehub import (
    GAP_EVENT,
    CloseReason,
    EventParser,
    EventTooLarge,
    Hub,
    HubClosed,
    InvalidMessage,
    MemoryBackend,
    Message,
    PublishResult,
    Replay,
    Subscription,
)


async def drain(sub: Subscription) -> list[Message]:
    """Everything queued for ``sub`` right now, parsed."""
    parser = EventParser()
    chunk = sub.take()
    return parser.feed(chunk) if chunk else []


async def test_publish_returns_increasing_ids_and_keeps_explicit_ones() -> None:
    hub = Hub()
    first = await hub.publish("/a", Message("one"))
    second = await hub.publish("/a", "two")
    assert first != second
    prefix1, n1 = first.rsplit("-", 1)
    prefix2, n2 = second.rsplit("-", 1)
    assert prefix1 == prefix2 and int(n2) > int(n1)
    assert await hub.publish("/a", Message("three", id="custom-7")) == "custom-7"
    await hub.shutdown()


async def test_publish_nowait_publishes_at_once_where_the_backend_never_waits() -> None:
    hub = Hub(max_buffer=1024)
    assert hub.publish_nowait("/n", "too early") is None  # not started: await publish
    sub = await hub.subscribe("/n")
    first = hub.publish_nowait("/n", "one")
    assert first is not None and not first.duplicate
    assert hub.publish_nowait("/n", Message("two", id="x2")) == "x2"
    again = hub.publish_nowait("/n", Message("again", id="x2"))
    assert again == "x2" and again is not None and again.duplicate
    both = hub.publish_nowait(["/n", "/m"], {"k": 1})
    assert both is not None
    assert [(m.id, m.data) for m in await drain(sub)] == [
        (first, "one"),
        ("x2", "two"),
        (both, '{"k":1}'),
    ]
    assert hub.published_count("/n") == 3
    with pytest.raises(InvalidMessage, match="resumed"):
        hub.publish_nowait("/n", Message("bad", id=" x"))
    with pytest.raises(EventTooLarge):
        hub.publish_nowait("/n", "y" * 2000)
    with pytest.raises(InvalidMessage, match="non-empty"):
        hub.publish_nowait([], "nowhere")
    assert hub.published_count("/n") == 3  # nothing refused was published
    await hub.shutdown()
    assert hub.publish_nowait("/n", "too late") is None  # publish raises HubClosed


async def test_publish_nowait_leaves_a_backend_that_waits_to_publish() -> None:
    """A subclass of the in-memory backend whose publish does more (as the durable one waits
    for its write) is never bypassed: None, nothing published; publish awaits its own."""
    seen: list[str] = []

    class Recording(MemoryBackend):
        async def publish(
            self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
        ) -> PublishResult:
            seen.append(message.data)
            return await super().publish(channel, message, private=private)

    hub = Hub(backend=Recording())
    await hub.start()
    assert hub.publish_nowait("/w", "now") is None
    assert hub.published_count("/w") == 0
    await hub.publish("/w", "awaited")
    assert seen == ["awaited"]
    await hub.shutdown()


async def test_publish_nowait_off_the_hubs_loop_raises() -> None:
    hub = Hub()
    await hub.start()
    outcome: list[BaseException] = []

    def elsewhere() -> None:
        async def attempt() -> None:
            hub.publish_nowait("/x", "wrong loop")

        try:
            asyncio.run(attempt())
        except RuntimeError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert outcome and "another event loop" in str(outcome[0])
    await hub.shutdown()


async def test_publish_and_broadcast_take_json_data_and_send_it_as_compact_json() -> None:
    hub = Hub()
    sub = await hub.subscribe("/quotes")
    await hub.publish("/quotes", {"price": 42, "name": "café"})
    await hub.broadcast([1, None])
    assert [m.data for m in await drain(sub)] == ['{"price":42,"name":"café"}', "[1,null]"]
    with pytest.raises(InvalidMessage, match="JSON can encode"):
        await hub.publish("/quotes", {1, 2})
    await hub.shutdown()


async def test_channels_are_isolated() -> None:
    hub = Hub()
    a = await hub.subscribe("/a")
    b = await hub.subscribe("/b")
    await hub.publish("/a", "for a")
    await hub.publish("/b", "for b")
    assert [m.data for m in await drain(a)] == ["for a"]
    assert [m.data for m in await drain(b)] == ["for b"]
    await hub.shutdown()


async def test_broadcast_reaches_every_channel_including_ones_with_only_history() -> None:
    hub = Hub()
    a = await hub.subscribe("/a")
    b = await hub.subscribe("/b")
    await hub.publish("/history-only", "old")
    ids = await hub.broadcast(Message("to all", event="news"))
    assert set(ids) == {"/a", "/b", "/history-only"}
    for sub in (a, b):
        (event,) = await drain(sub)
        assert (event.data, event.event, event.id) == ("to all", "news", ids[sub.channel])
    replay = await hub.backend.replay("/history-only", "nonexistent")
    assert [data for _, data in replay.events][-1].endswith(b"event: news\ndata: to all\n\n")
    await hub.shutdown()


async def test_channel_appears_with_first_subscriber_and_goes_with_last() -> None:
    hub = Hub()
    assert not hub.has_channel("/a") and hub.channels() == []
    s1 = await hub.subscribe("/a")
    s2 = await hub.subscribe("/a")
    await hub.subscribe("/b")
    assert hub.channels() == ["/a", "/b"]
    assert hub.client_count("/a") == 2 and hub.client_count() == 3
    assert hub.get_channel("/a") is not None
    hub.unsubscribe(s1)
    hub.unsubscribe(s1)  # harmless twice
    assert hub.client_count("/a") == 1
    hub.unsubscribe(s2)
    assert not hub.has_channel("/a") and hub.get_channel("/a") is None
    await hub.shutdown()


async def test_history_survives_last_subscriber_and_is_bounded_by_count() -> None:
    hub = Hub(history=3)
    sub = await hub.subscribe("/a")
    ids = [await hub.publish("/a", f"m{i}") for i in range(5)]
    hub.unsubscribe(sub)
    back = await hub.subscribe("/a", last_event_id=ids[2])
    assert [m.data for m in await drain(back)] == ["m3", "m4"]
    # ids[0] was trimmed away: the client is told, then gets the three retained events.
    old = await hub.subscribe("/a", last_event_id=ids[0])
    events = await drain(old)
    assert events[0].event == GAP_EVENT
    assert json.loads(events[0].data) == {"last_event_id": ids[0], "replayed": 3}
    assert [m.data for m in events[1:]] == ["m2", "m3", "m4"]
    await hub.shutdown()


async def test_resuming_from_the_newest_trimmed_event_is_not_a_gap() -> None:
    hub = Hub(history=2)
    ids = [await hub.publish("/a", f"m{i}") for i in range(3)]  # m0 trimmed
    sub = await hub.subscribe("/a", last_event_id=ids[0])
    assert [m.data for m in await drain(sub)] == ["m1", "m2"]
    await hub.shutdown()


async def test_history_ttl_expires_old_events() -> None:
    hub = Hub(history_ttl=0.05)
    first = await hub.publish("/a", "old")
    await asyncio.sleep(0.1)
    await hub.publish("/a", "new")
    sub = await hub.subscribe("/a", last_event_id=first)
    events = await drain(sub)
    assert [m.data for m in events] == ["new"]
    await hub.shutdown()


async def test_unknown_id_gets_gap_signal_then_all_retained_events() -> None:
    hub = Hub()
    await hub.publish("/a", "kept")
    sub = await hub.subscribe("/a", last_event_id="never-existed")
    gap, kept = await drain(sub)
    assert gap.event == GAP_EVENT and gap.id is None
    assert json.loads(gap.data)["last_event_id"] == "never-existed"
    assert kept.data == "kept"
    empty = await hub.subscribe("/nothing", last_event_id="x")
    (only,) = await drain(empty)
    assert only.event == GAP_EVENT and json.loads(only.data)["replayed"] == 0
    await hub.shutdown()


class SlowReplayBackend(MemoryBackend):
    """The memory backend, but replay takes a while (as a networked backend's does)."""

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        await asyncio.sleep(0.02)
        result = await super().replay(channel, last_event_id, private=private)
        await asyncio.sleep(0.02)
        return result


async def test_replay_seam_has_no_gap_and_no_duplicate_while_publishing_goes_on() -> None:
    hub = Hub(backend=SlowReplayBackend(), history=10_000)
    published: list[str] = []
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set():
            await hub.publish("/a", f"e{n}")
            published.append(f"e{n}")
            n += 1
            if n % 5 == 0:
                await asyncio.sleep(0)

    task = asyncio.create_task(publisher())
    received: list[str] = []
    parser = EventParser()
    for _ in range(5):
        sub = await hub.subscribe("/a", last_event_id=parser.last_event_id)
        for _ in range(3):
            chunk = await sub.next_chunk()
            assert chunk is not None
            received.extend(m.data for m in parser.feed(chunk) if m.event != GAP_EVENT)
        hub.unsubscribe(sub)
    stop.set()
    await task
    assert received, "nothing was received"
    start = published.index(received[0])
    assert received == published[start : start + len(received)]
    await hub.shutdown()


async def test_slow_subscriber_is_dropped_and_others_are_unaffected() -> None:
    hub = Hub(max_buffer=10_000)
    slow = await hub.subscribe("/a")
    fast = await hub.subscribe("/a")
    parser = EventParser()
    got = 0
    for i in range(2_000):
        await hub.publish("/a", f"event number {i}")
        if i % 50 == 0:
            got += len(parser.feed(fast.take() or b""))
    got += len(parser.feed(fast.take() or b""))
    assert got == 2_000
    assert slow.closed and slow.close_reason == CloseReason.SLOW
    assert slow.pending_bytes == 0  # its buffer was freed at once
    assert await slow.next_chunk() is None
    assert hub.dropped_slow == 1
    await hub.shutdown()


async def test_replayed_history_larger_than_max_buffer_is_delivered() -> None:
    hub = Hub(max_buffer=1_000)
    first = await hub.publish("/a", "start")
    for i in range(100):
        await hub.publish("/a", f"event number {i:04d}")
    sub = await hub.subscribe("/a", last_event_id=first)
    assert len(await drain(sub)) == 100
    assert not sub.closed
    await hub.shutdown()


async def test_keepalive_comment_on_idle_streams_only() -> None:
    # The hub's one timer runs _keepalive_tick every `keepalive` seconds; the test runs the
    # ticks itself, so a loaded machine cannot stretch an interval and make a busy stream idle.
    hub = Hub(keepalive=3600)
    idle = await hub.subscribe("/idle")
    busy = await hub.subscribe("/busy")
    for _ in range(3):
        await hub.publish("/busy", "x")
        hub._keepalive_tick()
        assert idle.take() == b": ping\n\n"
        assert b": ping" not in (busy.take() or b"")
    hub._keepalive_tick()  # a whole interval with no event: now the busy stream is idle too
    assert busy.take() == b": ping\n\n"
    # Nobody writes the streams out: without a short timeout shutdown would wait 5 s for it.
    await hub.shutdown(timeout=0.1)


async def test_keepalive_timer_pings_an_idle_stream_again_and_again() -> None:
    hub = Hub(keepalive=0.05)
    idle = await hub.subscribe("/idle")
    for _ in range(2):  # waits for the timer with a generous bound, not a fixed silence
        assert await asyncio.wait_for(idle.next_chunk(), 10) == b": ping\n\n"
    await hub.shutdown()


async def test_retry_is_sent_once_when_the_stream_opens() -> None:
    hub = Hub(retry=2500)
    sub = await hub.subscribe("/a")
    await hub.publish("/a", Message("x", id="1"))
    assert sub.take() == b"retry: 2500\n\nid: 1\ndata: x\n\n"
    await hub.shutdown()


async def test_hooks_welcome_one_client_and_see_it_leave() -> None:
    left: list[str] = []

    async def welcome(sub: Subscription) -> None:
        sub.send(Message("welcome", event="hello"))

    hub = Hub(on_connect=welcome, on_disconnect=lambda sub: left.append(sub.channel))
    first = await hub.subscribe("/a")
    second = await hub.subscribe("/a")
    await hub.publish("/a", "everyone")
    assert [m.data for m in await drain(first)] == ["welcome", "everyone"]
    assert [m.data for m in await drain(second)] == ["welcome", "everyone"]
    history = await hub.backend.replay("/a", "unknown")
    assert [data for _, data in history.events] == [
        b"id: " + b"%s" % history.events[0][0].encode() + b"\ndata: everyone\n\n"
    ]
    hub.unsubscribe(first)
    assert left == ["/a"]
    await hub.shutdown()


async def test_close_channel_ends_its_streams_and_keeps_history() -> None:
    hub = Hub()
    a = await hub.subscribe("/a")
    b = await hub.subscribe("/b")
    first = await hub.publish("/a", "x")
    await hub.close_channel("/a")
    # What was queued is still written, then the stream ends (at once: a wait here hangs).
    assert await asyncio.wait_for(a.next_chunk(), 1) is not None
    assert await asyncio.wait_for(a.next_chunk(), 1) is None
    assert a.close_reason == CloseReason.CHANNEL_CLOSED and not b.closed
    await hub.publish("/a", "y")
    again = await hub.subscribe("/a", last_event_id=first)
    assert [m.data for m in await drain(again)] == ["y"]
    await hub.shutdown()


async def test_restart_ends_streams_and_keeps_serving() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    await hub.restart()
    assert sub.closed and sub.close_reason == CloseReason.RESTART
    new = await hub.subscribe("/a")
    await hub.publish("/a", "after")
    assert [m.data for m in await drain(new)] == ["after"]
    await hub.shutdown()


async def test_shutdown_refuses_new_work_and_twice_is_harmless() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    await hub.publish("/a", "last")

    async def writer() -> list[bytes]:
        out = []
        while (chunk := await sub.next_chunk()) is not None:
            out.append(chunk)
        hub.unsubscribe(sub)
        return out

    task = asyncio.create_task(writer())
    await asyncio.wait_for(asyncio.gather(hub.shutdown(), hub.shutdown()), 5)
    assert b"data: last" in b"".join(await task)
    assert hub.client_count() == 0
    with pytest.raises(HubClosed):
        await hub.publish("/a", "late")
    with pytest.raises(HubClosed):
        await hub.subscribe("/a")
    await hub.shutdown()


async def test_publish_threadsafe_from_worker_threads() -> None:
    hub = Hub()
    sub = await hub.subscribe("/a")
    results: list[str] = []

    def worker(n: int) -> None:
        for i in range(20):
            results.append(hub.publish_threadsafe("/a", f"{n}:{i}"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        await asyncio.sleep(0.01)
    events = await drain(sub)
    assert len(events) == 80 == len(set(results))
    for n in range(4):  # each thread's events arrive in its own order
        mine = [m.data for m in events if m.data.startswith(f"{n}:")]
        assert mine == [f"{n}:{i}" for i in range(20)]
    with pytest.raises(RuntimeError, match="async method"):
        hub.publish_threadsafe("/a", "from the loop itself")
    await hub.shutdown()


def test_publish_threadsafe_without_a_loop_starts_the_hubs_own() -> None:
    hub = Hub()
    first = hub.publish_threadsafe("/a", "one")
    assert hub.loop is not None and hub.loop.is_running()
    ids = hub.broadcast_threadsafe(Message("all"))
    assert list(ids) == ["/a"] and ids["/a"] != first
    hub.run_threadsafe(hub.shutdown())


def test_threadsafe_calls_after_shutdown_of_the_hubs_own_loop_raise_at_once() -> None:
    hub = Hub()
    hub.publish_threadsafe("/a", "one")
    hub.run_threadsafe(hub.shutdown())
    with pytest.raises(HubClosed):
        hub.publish_threadsafe("/a", "two", timeout=None)  # no wait on a loop that is gone


def test_invalid_settings_and_messages_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="history"):
        Hub(history=-1)
    with pytest.raises(ValueError, match="keepalive"):
        Hub(keepalive=0)
    with pytest.raises(InvalidMessage, match="retry"):
        Hub(retry=-5)
    with pytest.raises(ValueError, match="header"):
        Hub(headers={"X-Bad": "a\r\nInjected: yes"})
    with pytest.raises(InvalidMessage, match="id"):
        Message("x", id="a\nb")


def test_async_use_from_another_loop_is_a_clear_error() -> None:
    hub = Hub()
    hub.publish_threadsafe("/a", "binds the hub to a loop thread of its own")

    async def elsewhere() -> None:
        with pytest.raises(RuntimeError, match="bound to another event loop"):
            await hub.subscribe("/a")
        with pytest.raises(RuntimeError, match="bound to another event loop"):
            await hub.publish("/a", "x")

    asyncio.run(elsewhere())
    hub.run_threadsafe(hub.shutdown())


async def test_client_count_follows_subscribes_resumes_failures_and_unsubscribes() -> None:
    class FailingReplay(MemoryBackend):
        async def replay(
            self, channel: str, last_event_id: str, *, private: bool = False
        ) -> Replay:
            raise ConnectionError("history unreachable")

    hub = Hub(backend=FailingReplay())
    first = await hub.subscribe("/a")
    second = await hub.subscribe("/b")
    assert hub.client_count() == 2 and hub.client_count("/a") == 1
    with pytest.raises(ConnectionError):
        await hub.subscribe("/a", last_event_id="1")
    assert hub.client_count() == 2
    hub.unsubscribe(first)
    hub.unsubscribe(first)  # twice is harmless
    assert hub.client_count() == 1 and hub.client_count("/a") == 0
    await hub.shutdown(timeout=0.1)
    assert second.closed and hub.client_count() == 0


async def test_a_resuming_subscriber_counts_as_a_client_while_it_is_replayed() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    class SlowReplay(MemoryBackend):
        async def replay(
            self, channel: str, last_event_id: str, *, private: bool = False
        ) -> Replay:
            started.set()
            await release.wait()
            return await super().replay(channel, last_event_id, private=private)

    hub = Hub(backend=SlowReplay())
    event_id = await hub.publish("/a", "x")
    task = asyncio.ensure_future(hub.subscribe("/a", last_event_id=event_id))
    replaying = asyncio.ensure_future(started.wait())
    # A subscribe that ends (or fails) without reading history fails the test at once.
    await asyncio.wait([task, replaying], timeout=5, return_when=asyncio.FIRST_COMPLETED)
    replaying.cancel()
    assert started.is_set() and not task.done()
    assert hub.client_count() == 1 and hub.client_count("/a") == 1
    release.set()
    sub = await task
    assert hub.client_count() == 1
    hub.unsubscribe(sub)
    assert hub.client_count() == 0
    await hub.shutdown(timeout=0.1)
