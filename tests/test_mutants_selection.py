"""Streams that read several channels, and private events: the cases scripts/mutate showed
untested (what a stream keeps of what it asked for, its hooks and counters, leaving, a replay
that fails, a feed behind history, backends with other positions or none).

In-process and fast: no socket, no server.
"""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from ssehub import (
    GAP_EVENT,
    Access,
    BackendUnavailable,
    CloseReason,
    EventParser,
    Hub,
    MemoryBackend,
    Message,
    Replay,
    Request,
    Subscription,
    SubscriptionDenied,
    ThreadedSubscription,
)
from ssehub.errors import InvalidSelector
from ssehub.selectors import Selectors
from tests._support.backends import (
    During,
    EpochPositions,
    LaggingEpochPositions,
    LaggingFeed,
    NoPositions,
    PublishDuringReplay,
)


def events_of(sub: Subscription) -> list[Message]:
    return EventParser().feed(sub.take() or b"")


def datas(sub: Subscription) -> list[str]:
    return [m.data for m in events_of(sub) if m.event != GAP_EVENT]


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(keepalive=None, end_streams_on_signal=False)
    yield h
    await h.shutdown(timeout=0.1)


def later() -> float:
    return time.time() + 60


# -- what a stream keeps of what it asked for ----------------------------------------------


async def test_a_stream_with_an_expiry_keeps_everything_else_it_asked_for(hub: Hub) -> None:
    start = await hub.publish("/a", "seen")
    await hub.publish("/a", "secret", private=True)
    request = Request("GET", "/a")
    sub = await hub.subscribe(
        "/a", last_event_id=start, request=request, threaded=True, private=["/a"], expires=later()
    )
    assert isinstance(sub, ThreadedSubscription)
    assert (sub.request, sub.last_event_id) == (request, start)
    assert datas(sub) == ["secret"]
    watcher = await hub.subscribe("/a", observer=True, expires=later())
    assert hub.observer_count() == 1
    assert hub.client_count("/a") == 1
    await hub.publish("/a", "live")
    assert datas(watcher) == ["live"]


async def test_a_multi_channel_stream_keeps_its_request_resume_id_and_writer(hub: Hub) -> None:
    start = await hub.publish("/a", "seen")
    await hub.publish("/b", "missed")
    request = Request("GET", "/events")
    sub = await hub.subscribe(
        ["/a", "/b"], last_event_id=start, request=request, threaded=True, private=["/b"]
    )
    assert type(sub) is ThreadedSubscription
    assert (sub.request, sub.last_event_id, sub.channel) == (request, start, "/a /b")
    assert sub.selectors is not None and sub.selectors.names == {"/a", "/b"}
    assert sub.private is not None and sub.private.matches("/b")
    assert datas(sub) == ["missed"]
    plain = await hub.subscribe(["/a", "/b"])
    assert type(plain) is Subscription
    assert plain.last_event_id is None and plain.request is None
    wild = await hub.subscribe(["/r/{id}", "/a"])
    assert wild.channel == "/r/{id} /a"


async def test_one_exact_name_in_a_list_is_a_plain_single_channel_stream(hub: Hub) -> None:
    sub = await hub.subscribe(["/a"])
    assert (sub.channel, sub.selectors) == ("/a", None)
    assert hub.client_count("/a") == 1


async def test_an_observer_watches_one_channel_only(hub: Hub) -> None:
    with pytest.raises(ValueError, match=r"^an observer watches one channel$"):
        await hub.subscribe(["/a", "/b"], observer=True)
    with pytest.raises(ValueError, match=r"^an observer watches one channel$"):
        await hub.subscribe(["/a"], observer=True)
    assert hub.client_count() == 0


async def test_subscribing_to_no_selector_says_so(hub: Hub) -> None:
    with pytest.raises(InvalidSelector, match=r"^subscribe to at least one channel selector$"):
        await hub.subscribe([])


async def test_the_selectors_given_as_selectors_are_used_as_they_are(hub: Hub) -> None:
    selectors = Selectors(["/a", "/r/{id}"])
    sub = await hub.subscribe(selectors)
    assert sub.selectors is selectors


# -- hooks, counters, retry ----------------------------------------------------------------


async def test_a_multi_channel_stream_is_welcomed_counted_and_seen_leaving_once() -> None:
    connected: list[Subscription] = []
    left: list[Subscription] = []
    hub = Hub(
        keepalive=None,
        end_streams_on_signal=False,
        retry=1500,
        on_connect=connected.append,
        on_disconnect=left.append,
    )
    try:
        sub = await hub.subscribe(["/a", "/b"])
        wild = await hub.subscribe(["/r/{id}"])
        assert connected == [sub, wild]
        assert EventParser().feed(sub.take() or b"") == []  # the retry line only
        assert hub.client_count() == 2
        for stream in (sub, wild, sub, wild):  # leaving twice is harmless
            hub.unsubscribe(stream)
        assert left == [sub, wild]
        assert hub.client_count() == 0
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_multi_channel_stream_opens_with_the_retry_line() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False, retry=1500)
    try:
        sub = await hub.subscribe(["/a", "/b"])
        assert sub.take() == b"retry: 1500\n\n"
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_slow_multi_channel_stream_is_dropped_and_counted() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False, max_buffer=100)
    try:
        sub = await hub.subscribe(["/a", "/r/{id}"])
        for _ in range(3):
            await hub.publish("/a", "x" * 60)
        assert sub.close_reason == CloseReason.SLOW
        assert hub.dropped_slow == 1
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_multi_channel_event_is_counted_once_per_subscriber_in_one_channel(
    hub: Hub,
) -> None:
    on_a = await hub.subscribe("/a")
    on_b = await hub.subscribe("/b")
    both = await hub.subscribe(["/a", "/b"])
    await hub.publish(["/a", "/b"], "together")
    for sub in (on_a, on_b, both):
        assert datas(sub) == ["together"]
    a, b = hub.get_channel("/a"), hub.get_channel("/b")
    assert a is not None and b is not None
    assert (a.delivered, b.delivered) == (2, 1)  # `both` counts in the first channel it reads


async def test_observers_get_multi_channel_events_but_not_private_ones(hub: Hub) -> None:
    watcher = await hub.subscribe("/b", observer=True)
    await hub.publish(["/a", "/b"], "together")
    await hub.publish("/b", "hidden", private=True)
    await hub.publish(["/a", "/b"], "hidden too", private=True)
    assert datas(watcher) == ["together"]


class _WatchAll(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.watching_all: list[bool] = []

    def watch_all(self, on: bool) -> None:
        self.watching_all.append(on)


async def test_the_backend_is_asked_for_every_channel_while_a_wild_stream_is_open() -> None:
    backend = _WatchAll()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        exact = await hub.subscribe(["/a", "/b"])
        assert backend.watching_all == []
        first = await hub.subscribe(["*"])
        assert backend.watching_all == [True]
        second = await hub.subscribe(["/r/{id}"])
        assert backend.watching_all == [True]
        hub.unsubscribe(first)
        hub.unsubscribe(exact)
        assert backend.watching_all == [True]
        hub.unsubscribe(second)
        assert backend.watching_all == [True, False]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_restart_and_shutdown_end_wild_and_attached_streams_with_their_reason() -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    wild = await hub.subscribe(["*"])
    attached = Subscription("/per-request", max_buffer=1024)
    hub.attach(attached)
    await hub.restart()
    assert (wild.close_reason, attached.close_reason) == (CloseReason.RESTART,) * 2
    hub.unsubscribe(wild)
    hub.detach(attached)
    wild = await hub.subscribe(["*"])
    attached = Subscription("/per-request", max_buffer=1024)
    hub.attach(attached)
    await hub.shutdown(timeout=0.1)
    assert (wild.close_reason, attached.close_reason) == (CloseReason.SHUTDOWN,) * 2


# -- leaving -------------------------------------------------------------------------------


async def test_a_stream_that_left_is_not_kept_alive_by_the_hub() -> None:
    # A resumed stream is marked "trailing" in its channels while its replay is ahead of the
    # feed; leaving must forget every mark, or the hub would keep each such stream forever.
    backend = LaggingFeed()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        stay = await hub.subscribe(["/a", "/b"])  # keeps the channels open
        first = await hub.publish("/a", "e0")
        backend.flush()
        await hub.publish(["/a", "/b"], "e1")
        for selection in ("/a", ["/a", "/b"], ["/{x}"]):
            sub = await hub.subscribe(selection, last_event_id=first)
            assert datas(sub) == ["e1"]
            hub.unsubscribe(sub)
            holders = [ref for ref in gc.get_referrers(sub) if isinstance(ref, dict)]
            assert holders == [], selection
        backend.flush()
        assert datas(stay) == ["e0", "e1"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_leaving_cancels_only_the_expiry_of_the_stream_that_left(hub: Hub) -> None:
    plain = await hub.subscribe("/a")
    expiring = await hub.subscribe("/a", expires=later())
    hub.unsubscribe(plain)  # it has no expiry timer; the other one's stays
    assert not expiring.closed
    hub.unsubscribe(expiring)
    assert expiring.close_reason == CloseReason.DISCONNECTED


class _FailingReplay(MemoryBackend):
    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        raise BackendUnavailable("history is out of reach")


@pytest.mark.parametrize("selection", [["/a", "/b"], ["/r/{id}", "/a"]])
async def test_a_resume_whose_replay_fails_leaves_nothing_behind(selection: list[str]) -> None:
    left: list[Subscription] = []
    hub = Hub(
        backend=_FailingReplay(),
        keepalive=None,
        end_streams_on_signal=False,
        on_disconnect=left.append,
    )
    try:
        live = await hub.subscribe("/a")
        with pytest.raises(BackendUnavailable, match="history is out of reach"):
            await hub.subscribe(selection, last_event_id="1-1")
        assert hub.client_count() == 1
        assert hub.channels() == ["/a"]
        assert left == []
        await hub.publish("/a", "after")
        assert datas(live) == ["after"]
        hub.unsubscribe(live)
        assert hub.channels() == []
    finally:
        await hub.shutdown(timeout=0.1)


# -- resuming while events keep coming -----------------------------------------------------


async def test_live_events_reach_wild_streams_while_another_one_is_being_resumed() -> None:
    backend = PublishDuringReplay()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        start = await hub.publish("/r/1", "seen")
        joined: list[Subscription] = []

        async def join() -> None:  # another client, while the resume is under way
            joined.append(await hub.subscribe(["*"]))

        backend.after = [join, ("/r/2", "during", False)]
        resumed = await hub.subscribe(["/r/{n}"], last_event_id=start)
        assert datas(resumed) == ["during"]
        assert datas(joined[0]) == ["during"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_private_events_published_during_a_resume_reach_only_readers() -> None:
    backend = PublishDuringReplay()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        during: list[During] = [("/a", "secret", True)]  # in the replay, and held: once
        after: list[During] = [(("/a", "/b"), "secret too", True)]  # held only
        start = await hub.publish("/a", "seen")
        for selection, private, expected in [
            (["/a", "/b"], ["/a"], ["secret", "secret too"]),
            (["/a", "/b"], None, []),
            ("/a", ["/a"], ["secret", "secret too"]),
        ]:
            backend.before, backend.after = list(during), list(after)
            sub = await hub.subscribe(selection, last_event_id=start, private=private)
            assert datas(sub) == expected, selection
            hub.unsubscribe(sub)
            start = await hub.publish("/a", "seen")  # the next round resumes from here
    finally:
        await hub.shutdown(timeout=0.1)


@pytest.mark.parametrize("selection", ["/a", ["/a", "/b"], ["/{x}"]])
async def test_without_positions_a_resume_during_publishes_gets_each_event_once(
    selection: str | list[str],
) -> None:
    backend = NoPositions()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        start = await hub.publish("/a", "seen")
        await hub.publish("/a", "missed")
        backend.before = [
            ("/a", "during", False),
            (("/a", "/b"), "during both", False),
            ("/a", "during, private", True),
        ]
        backend.after = [("/a", "after", False)]
        sub = await hub.subscribe(selection, last_event_id=start, private=["/a"])
        await hub.publish("/a", "live")
        assert datas(sub) == [
            "missed",
            "during",
            "during both",
            "during, private",
            "after",
            "live",
        ]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_feed_behind_history_sends_each_event_once_to_multi_channel_streams() -> None:
    backend = LaggingFeed()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        before = await hub.subscribe(["/a", "/b"])
        first = await hub.publish("/a", "e0")
        backend.flush()
        await hub.publish("/b", "e1")
        await hub.publish(["/a", "/b"], "e2")  # retained, not yet delivered
        resumed = await hub.subscribe(["/a", "/b"], last_event_id=first)
        wild = await hub.subscribe(["/{x}"], last_event_id=first)
        single = await hub.subscribe("/a", last_event_id=first)
        after = await hub.subscribe(["/{x}"])  # after the resumed ones: it gets the feed's
        after_exact = await hub.subscribe(["/a", "/b"])
        assert datas(resumed) == ["e1", "e2"]
        assert datas(wild) == ["e1", "e2"]
        assert datas(single) == ["e2"]
        backend.flush()  # the feed catches up: e1 and e2 again, not for the resumed ones
        assert (datas(resumed), datas(wild), datas(single)) == ([], [], [])
        await hub.publish("/b", "e3")
        await hub.publish(["/a", "/b"], "e4")
        backend.flush()
        assert datas(before) == ["e0", "e1", "e2", "e3", "e4"]
        assert datas(resumed) == ["e3", "e4"]
        assert datas(wild) == ["e3", "e4"]
        assert datas(single) == ["e4"]
        assert datas(after) == ["e1", "e2", "e3", "e4"]
        assert datas(after_exact) == ["e1", "e2", "e3", "e4"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_positions_of_several_channels_are_compared_by_their_order_alone() -> None:
    # Redis positions carry each channel's own epoch first (tests/_support/backends.EPOCHS): a
    # stream reading several channels must compare them by their last item, the publish order,
    # or it would get some events twice and miss others.
    backend = EpochPositions()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        first = await hub.publish("/b", "e0")
        backend.before = [("/a", "during", False)]  # in the replay, and held: once
        backend.after = [("/b", "after", False)]  # held only
        resumed = await hub.subscribe(["/a", "/b"], last_event_id=first)
        assert datas(resumed) == ["during", "after"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_with_a_feed_behind_history_positions_are_compared_by_their_order_alone() -> None:
    backend = LaggingEpochPositions()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        first = await hub.publish("/b", "e0")
        backend.flush()
        await hub.publish("/a", "e1")
        await hub.publish("/b", "e2")
        resumed = await hub.subscribe(["/a", "/b"], last_event_id=first)
        assert datas(resumed) == ["e1", "e2"]
        backend.flush()  # replayed already
        assert datas(resumed) == []
        await hub.publish("/b", "e3")
        backend.flush()
        assert datas(resumed) == ["e3"]
    finally:
        await hub.shutdown(timeout=0.1)


# -- from a request ------------------------------------------------------------------------


class _Asked:
    """A two-argument authorize hook that records what it was asked and grants ``grant``."""

    def __init__(self, grant: Any = True) -> None:
        self.grant = grant
        self.calls: list[tuple[Request, list[str]]] = []

    def __call__(self, request: Request, channels: Sequence[str]) -> Any:
        self.calls.append((request, list(channels)))
        return self.grant


@pytest.mark.parametrize(
    ("channel", "asked"),
    [
        ("/news", ["/news"]),
        (["/a", "/r/{id}"], ["/a", "/r/{id}"]),
        (Selectors(["/a", "/r/{id}"]), ["/a", "/r/{id}"]),
    ],
)
async def test_a_two_argument_hook_is_asked_with_the_request_and_the_selectors_as_text(
    channel: str | list[str] | Selectors, asked: list[str]
) -> None:
    hook = _Asked()
    hub = Hub(authorize=hook, keepalive=None, end_streams_on_signal=False)
    try:
        request = Request("GET", "/events")
        await hub.open_stream(request, channel=channel)
        assert hook.calls == [(request, asked)]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_hook_that_grants_no_channel_refuses_the_stream() -> None:
    hub = Hub(authorize=_Asked(Access(channels=[])), keepalive=None, end_streams_on_signal=False)
    try:
        with pytest.raises(SubscriptionDenied, match=r"^the authorize hook allowed no channel$"):
            await hub.open_stream(Request("GET", "/events/a"))
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_hook_may_narrow_the_stream_to_selectors_it_returns() -> None:
    hub = Hub(authorize=_Asked(Selectors(["/b"])), keepalive=None, end_streams_on_signal=False)
    try:
        sub = await hub.open_stream(Request("GET", "/events"), channel=["/a", "/b"])
        await hub.publish("/a", "no")
        await hub.publish("/b", "yes")
        assert datas(sub) == ["yes"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_an_expiring_access_keeps_the_requests_resume_id_and_writer() -> None:
    hub = Hub(
        authorize=_Asked(Access(expires=later(), private=["/a"])),
        keepalive=None,
        end_streams_on_signal=False,
    )
    try:
        start = await hub.publish("/a", "seen")
        await hub.publish("/a", "secret", private=True)
        request = Request("GET", "/events/a", headers={"last-event-id": start})
        sub = await hub.open_stream(request, channel="/a", threaded=True)
        assert isinstance(sub, ThreadedSubscription)
        assert (sub.request, sub.last_event_id) == (request, start)
        assert datas(sub) == ["secret"]
        assert not sub.closed
    finally:
        await hub.shutdown(timeout=0.1)


async def test_open_stream_passes_the_private_channels_it_was_given(hub: Hub) -> None:
    sub = await hub.open_stream(Request("GET", "/events/a"), channel="/a", private=["/a"])
    await hub.publish("/a", "secret", private=True)
    assert datas(sub) == ["secret"]


def _no_signature(request: Request) -> bool:
    return True


_no_signature.__signature__ = "not a signature"  # type: ignore[attr-defined]


async def test_a_hook_whose_signature_cannot_be_read_is_asked_with_the_request_only() -> None:
    hub = Hub(authorize=_no_signature, keepalive=None, end_streams_on_signal=False)
    try:
        sub = await hub.open_stream(Request("GET", "/events/a"))
        assert sub.channel == "/events/a"
    finally:
        await hub.shutdown(timeout=0.1)
