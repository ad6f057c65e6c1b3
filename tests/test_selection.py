"""One stream, several channels: selectors, one event to several channels, private events, and
one Last-Event-ID that resumes the whole subscription exactly (the in-memory backend).

Fast, in-process tests (no sockets); the HTTP, Redis and browser sides are tested elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssehub import (
    GAP_EVENT,
    Access,
    CloseReason,
    EventParser,
    Hub,
    MemoryBackend,
    Message,
    Request,
    Subscription,
)
from ssehub._serving import Answer, open_stream
from ssehub.errors import InvalidMessage, InvalidSelector, InvalidToken, SubscriptionDenied
from ssehub.resume import Replay
from ssehub.selectors import Selectors
from tests._support.properties import property_settings
from tests._support.waiting import eventually


def events_of(sub: Subscription) -> list[Message]:
    return EventParser().feed(sub.take() or b"")


def datas(sub: Subscription) -> list[str]:
    return [m.data for m in events_of(sub) if m.event != GAP_EVENT]


@pytest.fixture
async def hub() -> Any:
    h = Hub(keepalive=None, end_streams_on_signal=False)
    yield h
    await h.shutdown(timeout=0.1)


async def test_one_stream_reads_every_named_channel_in_publish_order(hub: Hub) -> None:
    sub = await hub.subscribe(["/a", "/b"])
    await hub.publish("/a", "a1")
    await hub.publish("/c", "c1")
    await hub.publish("/b", "b1")
    await hub.publish("/a", "a2")
    assert datas(sub) == ["a1", "b1", "a2"]
    assert sub.selectors is not None and sub.selectors.names == {"/a", "/b"}
    assert hub.client_count() == 1
    assert hub.client_count("/a") == 1 and hub.client_count("/b") == 1


async def test_one_event_published_to_several_channels_reaches_each_subscriber_once(
    hub: Hub,
) -> None:
    both = await hub.subscribe(["/a", "/b"])
    only_b = await hub.subscribe("/b")
    wild = await hub.subscribe(["*"])
    event_id = await hub.publish(["/a", "/b"], "together")
    for sub in (both, only_b, wild):
        got = events_of(sub)
        assert [(m.id, m.data) for m in got] == [(event_id, "together")]
    # Each channel's history holds it: a single-channel resume of either replays it.
    replay = await hub.backend.replay("/a", "unknown")
    assert [data for _, data in replay.events] == [
        b"id: " + event_id.encode() + b"\ndata: together\n\n"
    ]


async def test_publishing_to_a_list_refuses_an_empty_list_or_empty_names(hub: Hub) -> None:
    with pytest.raises(InvalidMessage):
        await hub.publish([], "x")
    with pytest.raises(InvalidMessage):
        await hub.publish(["/a", ""], "x")


async def test_uri_templates_and_star_match_channels_that_appear_later(hub: Hub) -> None:
    rooms = await hub.subscribe(["/rooms/{id}"])
    every = await hub.subscribe(["*"])
    await hub.publish("/rooms/1", "r1")
    await hub.publish("/rooms/1/members", "deep")
    await hub.publish("/news", "n")
    await hub.publish("/rooms/2", "r2")
    assert datas(rooms) == ["r1", "r2"]
    assert datas(every) == ["r1", "deep", "n", "r2"]
    assert hub.client_count() == 2
    hub.unsubscribe(rooms)
    hub.unsubscribe(every)
    assert hub.client_count() == 0
    assert hub.channels() == []


async def test_a_channels_client_count_includes_the_streams_that_read_it_through_a_selector(
    hub: Hub,
) -> None:
    # The publish answers' "clients" come from here: a stream on "*" or a template is a client
    # of every channel it matches, once, as is one that names the channel among others.
    await hub.subscribe("/rooms/1")
    await hub.subscribe(["/rooms/{id}"])
    await hub.subscribe(["*"])
    await hub.subscribe(["/rooms/1", "/rooms/{id}"])
    await hub.subscribe(["/news", "/rooms/1"])
    assert hub.client_count("/rooms/1") == 5
    assert hub.client_count("/rooms/2") == 3
    assert hub.client_count("/news") == 2
    assert hub.client_count("/rooms/1/members") == 1
    assert hub.client_count() == 5


async def test_a_mixed_subscription_gets_an_event_once_even_when_two_selectors_match(
    hub: Hub,
) -> None:
    sub = await hub.subscribe(["/rooms/1", "/rooms/{id}"])
    await hub.publish("/rooms/1", "one")
    await hub.publish(["/rooms/1", "/rooms/2"], "both")
    assert datas(sub) == ["one", "both"]


async def test_leaving_frees_every_channel_the_stream_was_registered_in(hub: Hub) -> None:
    sub = await hub.subscribe(["/a", "/b", "/c"])
    assert sorted(hub.channels()) == ["/a", "/b", "/c"]
    hub.unsubscribe(sub)
    assert hub.channels() == []
    assert hub.client_count() == 0
    hub.unsubscribe(sub)  # twice is harmless
    assert hub.client_count() == 0


async def test_keepalive_pings_a_multi_channel_stream_once_per_tick() -> None:
    hub = Hub(keepalive=60, end_streams_on_signal=False)
    try:
        sub = await hub.subscribe(["/a", "/b", "/c"])
        wild = await hub.subscribe(["/x/{id}"])
        hub._keepalive_tick()
        assert sub.take() == b": ping\n\n"
        assert wild.take() == b": ping\n\n"
    finally:
        await hub.shutdown(timeout=0.1)


async def test_bad_selectors_are_refused_with_a_typed_error(hub: Hub) -> None:
    with pytest.raises(InvalidSelector):
        await hub.subscribe([])
    with pytest.raises(InvalidSelector):
        await hub.subscribe([""])


# -- resume --------------------------------------------------------------------------------


async def test_one_last_event_id_resumes_every_channel_in_order(hub: Hub) -> None:
    first = await hub.subscribe(["/a", "/b", "/c"])
    for name, data in [("/a", "1"), ("/b", "2"), ("/c", "3")]:
        await hub.publish(name, data)
    seen = events_of(first)
    last = seen[-2].id  # the client saw "1", "2", "3" and kept the id of "2": it resumes there
    hub.unsubscribe(first)
    await hub.publish("/b", "4")
    await hub.publish("/x", "not mine")
    await hub.publish(["/a", "/c"], "5")
    await hub.publish("/c", "6")
    again = await hub.subscribe(["/a", "/b", "/c"], last_event_id=last)
    got = events_of(again)
    assert [m.event for m in got] == [None] * 4  # no gap notice: nothing was lost
    assert [m.data for m in got] == ["3", "4", "5", "6"]


async def test_resume_with_a_publisher_chosen_id_finds_its_place(hub: Hub) -> None:
    await hub.publish("/a", Message("a", id="order-1"))
    await hub.publish("/b", Message("b", id="order-2"))
    await hub.publish("/a", Message("c", id="order-3"))
    sub = await hub.subscribe(["/a", "/b"], last_event_id="order-2")
    assert datas(sub) == ["c"]


async def test_resume_after_a_wild_subscription_replays_matching_channels_only(hub: Hub) -> None:
    await hub.publish("/rooms/1", "r1")
    start = await hub.publish("/news", "n1")
    await hub.publish("/rooms/2", "r2")
    await hub.publish("/rooms/2/deep", "no")
    await hub.publish("/news", "n2")
    sub = await hub.subscribe(["/rooms/{id}"], last_event_id=start)
    assert datas(sub) == ["r2"]


async def test_an_unknown_id_gets_the_gap_notice_and_everything_retained(hub: Hub) -> None:
    await hub.publish("/a", "1")
    await hub.publish("/b", "2")
    sub = await hub.subscribe(["/a", "/b"], last_event_id="never-sent")
    got = events_of(sub)
    assert got[0].event == GAP_EVENT
    assert json.loads(got[0].data) == {"last_event_id": "never-sent", "replayed": 2}
    assert [m.data for m in got[1:]] == ["1", "2"]


async def test_a_channel_that_lost_events_after_the_id_gives_the_gap_notice() -> None:
    hub = Hub(history=2, keepalive=None, end_streams_on_signal=False)
    try:
        start = await hub.publish("/a", "a0")
        for n in range(3):
            await hub.publish("/b", f"b{n}")  # b0 is trimmed: published after `start`
        sub = await hub.subscribe(["/a", "/b"], last_event_id=start)
        got = events_of(sub)
        assert got[0].event == GAP_EVENT
        assert [m.data for m in got[1:]] == ["b1", "b2"]
        # A channel trimmed only before the id is no gap.
        again = await hub.subscribe(["/a", "/b"], last_event_id=got[-1].id)
        assert events_of(again) == []
    finally:
        await hub.shutdown(timeout=0.1)


async def test_an_id_from_an_earlier_process_is_a_gap() -> None:
    before = Hub(keepalive=None, end_streams_on_signal=False)
    old_id = await before.publish("/a", "old")
    await before.shutdown(timeout=0.1)
    await asyncio.sleep(0.002)  # the next process starts at a later millisecond
    hub = Hub(keepalive=None, end_streams_on_signal=False)
    try:
        await hub.publish("/a", "new")
        sub = await hub.subscribe(["/a", "/b"], last_event_id=old_id)
        got = events_of(sub)
        assert got[0].event == GAP_EVENT
        assert [m.data for m in got[1:]] == ["new"]
    finally:
        await hub.shutdown(timeout=0.1)


class InterleavingBackend(MemoryBackend):
    """Memory history, with publishes landing while the replay is read (as on Redis, where the
    read is a round trip): ``before`` go into history and the held live events alike, ``after``
    only into the held live events."""

    def __init__(self) -> None:
        super().__init__()
        self.before: list[tuple[str | tuple[str, ...], str]] = []
        self.after: list[tuple[str | tuple[str, ...], str]] = []

    async def replay_selected(
        self, selectors: Selectors, last_event_id: str, *, private: Selectors | None = None
    ) -> Replay:
        for channel, data in self.before:
            await self.publish(channel, Message(data))
        replay = await super().replay_selected(selectors, last_event_id, private=private)
        await asyncio.sleep(0)
        for channel, data in self.after:
            await self.publish(channel, Message(data))
        return replay


async def test_events_published_during_the_resume_arrive_once_in_order() -> None:
    backend = InterleavingBackend()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        start = await hub.publish("/a", "seen")
        await hub.publish("/b", "missed")
        backend.before = [("/a", "during-1"), (("/a", "/b"), "during-2")]
        backend.after = [("/b", "after-1"), ("/z", "other"), (("/b", "/a"), "after-2")]
        sub = await hub.subscribe(["/a", "/b"], last_event_id=start)
        backend.before = backend.after = []
        await hub.publish("/a", "live")
        assert datas(sub) == ["missed", "during-1", "during-2", "after-1", "after-2", "live"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_wild_subscription_resumes_exactly_while_publishers_run() -> None:
    backend = InterleavingBackend()
    hub = Hub(backend=backend, keepalive=None, end_streams_on_signal=False)
    try:
        start = await hub.publish("/r/1", "seen")
        await hub.publish("/r/2", "missed")
        backend.before = [("/r/3", "during")]
        backend.after = [("/r/1", "after"), ("/q/1", "other")]
        sub = await hub.subscribe(["/r/{n}"], last_event_id=start)
        backend.before = backend.after = []
        await hub.publish("/r/9", "live")
        assert datas(sub) == ["missed", "during", "after", "live"]
    finally:
        await hub.shutdown(timeout=0.1)


@property_settings(60)
@given(
    publishes=st.lists(
        st.tuples(
            st.lists(st.sampled_from(["/a", "/b", "/c", "/r/1", "/r/2"]), min_size=1, max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    ),
    selectors=st.sampled_from([["/a", "/b"], ["/a", "/r/{n}"], ["*"], ["/c", "/r/2", "/b"]]),
    cut=st.integers(min_value=0, max_value=24),
)
def test_resume_gives_every_missed_matching_event_once_in_publish_order(
    publishes: list[tuple[list[str], bool]], selectors: list[str], cut: int
) -> None:
    async def scenario() -> None:
        hub = Hub(keepalive=None, end_streams_on_signal=False)
        try:
            matcher = Selectors(selectors)
            sub = await hub.subscribe(selectors)
            expected: list[str] = []
            for index, (channels, _) in enumerate(publishes):
                await hub.publish(channels, f"e{index}")
                if any(matcher.matches(name) for name in channels):
                    expected.append(f"e{index}")
            got = events_of(sub)
            assert [m.data for m in got] == expected
            if not got:
                return
            keep = min(cut, len(got) - 1)
            hub.unsubscribe(sub)
            more: list[str] = []
            for index, (channels, _) in enumerate(publishes):
                await hub.publish(channels, f"m{index}")
                if any(matcher.matches(name) for name in channels):
                    more.append(f"m{index}")
            again = await hub.subscribe(selectors, last_event_id=got[keep].id)
            assert datas(again) == expected[keep + 1 :] + more
        finally:
            await hub.shutdown(timeout=0.1)

    asyncio.run(scenario())


# -- private events --------------------------------------------------------------------------


async def test_private_events_reach_only_subscribers_allowed_to_read_them(hub: Hub) -> None:
    public = await hub.subscribe("/secret")
    allowed = await hub.subscribe("/secret", private=["/secret"])
    wild = await hub.subscribe(["*"])
    wild_allowed = await hub.subscribe(["*"], private=["/sec{x}"])
    multi = await hub.subscribe(["/secret", "/news"], private=["/news"])
    await hub.publish("/secret", "hidden", private=True)
    await hub.publish("/secret", "open")
    assert datas(public) == ["open"]
    assert datas(allowed) == ["hidden", "open"]
    assert datas(wild) == ["open"]
    assert datas(wild_allowed) == ["hidden", "open"]
    assert datas(multi) == ["open"]


async def test_private_events_are_never_replayed_to_others(hub: Hub) -> None:
    start = await hub.publish("/secret", "start")
    await hub.publish("/secret", "hidden", private=True)
    await hub.publish(["/secret", "/other"], "hidden-too", private=True)
    await hub.publish("/secret", "open")
    for selection in ("/secret", ["/secret", "/other"], ["*"]):
        sub = await hub.subscribe(selection, last_event_id=start)
        assert datas(sub) == ["open"], selection
    reader = await hub.subscribe("/secret", last_event_id=start, private=["/secret"])
    assert datas(reader) == ["hidden", "hidden-too", "open"]
    other = await hub.subscribe(["/secret", "/other"], last_event_id=start, private=["/other"])
    assert datas(other) == ["hidden-too", "open"]


# -- from a request ------------------------------------------------------------------------


async def test_channel_query_parameters_select_channels(hub: Hub) -> None:
    request = Request(
        "GET",
        "/events",
        query={"channel": "/a"},
        params=(("channel", "/a"), ("x", "1"), ("channel", "/b/{id}")),
    )
    assert hub.channel_for(request) == ["/a", "/b/{id}"]
    sub = await hub.open_stream(request)
    await hub.publish("/b/7", "b7")
    await hub.publish("/a", "a")
    assert datas(sub) == ["b7", "a"]
    assert hub.channel_for(Request("GET", "/events/news")) == "/events/news"


async def test_a_two_argument_authorize_hook_narrows_the_selectors() -> None:
    asked: list[Sequence[str]] = []

    def authorize(request: Request, channels: Sequence[str]) -> list[str]:
        asked.append(channels)
        return [name for name in channels if not name.startswith("/admin")]

    hub = Hub(authorize=authorize, keepalive=None, end_streams_on_signal=False)
    try:
        request = Request(
            "GET", "/events", params=(("channel", "/news"), ("channel", "/admin/log"))
        )
        sub = await hub.open_stream(request)
        assert asked == [["/news", "/admin/log"]]
        await hub.publish("/admin/log", "no")
        await hub.publish("/news", "yes")
        assert datas(sub) == ["yes"]
        refused = Request("GET", "/events", params=(("channel", "/admin/x"),))
        with pytest.raises(SubscriptionDenied):
            await hub.open_stream(refused)
    finally:
        await hub.shutdown(timeout=0.1)


async def test_an_access_grants_private_events_and_ends_the_stream_at_its_expiry() -> None:
    def authorize(request: Request, channels: Sequence[str]) -> Access:
        # Nothing below awaits the loop before the check that the stream is open: 0.1 s is
        # ample, even on a busy machine.
        return Access(channels=["/a", "/b"], private=["/b"], expires=time.time() + 0.1)

    hub = Hub(authorize=authorize, keepalive=None, end_streams_on_signal=False)
    try:
        sub = await hub.open_stream(Request("GET", "/events", params=(("channel", "*"),)))
        assert sub.selectors is not None and sub.selectors.names == {"/a", "/b"}
        await hub.publish("/b", "secret", private=True)
        await hub.publish("/a", "hidden from it", private=True)
        assert datas(sub) == ["secret"]
        assert not sub.closed
        await eventually(lambda: sub.closed, timeout=5)
        assert sub.close_reason == CloseReason.EXPIRED
        hub.unsubscribe(sub)
        assert hub.client_count() == 0
    finally:
        await hub.shutdown(timeout=0.1)


async def test_an_access_payload_is_carried_to_the_subscription_with_or_without_expiry() -> None:
    # A token's payload claim, say: presence shows it with the subscription.
    def authorize(request: Request, channels: Sequence[str]) -> Access:
        expires = time.time() + 60 if request.query.get("exp") else None
        return Access(payload={"name": request.query["who"]}, expires=expires)

    hub = Hub(authorize=authorize, keepalive=None, end_streams_on_signal=False)
    try:
        one = await hub.open_stream(Request("GET", "/events/a", query={"who": "ann"}))
        several = await hub.open_stream(
            Request(
                "GET",
                "/events",
                query={"who": "bob", "exp": "1"},
                params=(("channel", "/a"), ("channel", "/rooms/{id}")),
            )
        )
        assert one.payload == {"name": "ann"}
        assert several.payload == {"name": "bob"}
        assert several.selectors is not None
    finally:
        await hub.shutdown(timeout=0.1)


async def test_a_subscription_has_no_payload_unless_given_one(hub: Hub) -> None:
    assert (await hub.subscribe("/a")).payload is None
    assert (await hub.subscribe(["/a", "/b"], payload=[1, 2])).payload == [1, 2]
    assert (await hub.open_stream(Request("GET", "/events/a"), payload="p")).payload == "p"


async def test_a_broadcast_skips_the_channels_it_excludes(hub: Hub) -> None:
    reserved = await hub.subscribe("/subscriptions")
    user = await hub.subscribe("/a")
    await hub.publish("/b", "history only")
    ids = await hub.broadcast("to all", exclude=("/subscriptions", "/never"))
    assert sorted(ids) == ["/a", "/b"]
    assert datas(user) == ["to all"]
    assert datas(reserved) == []


async def test_an_expiry_already_past_ends_the_stream_at_once(hub: Hub) -> None:
    sub = await hub.subscribe("/a", expires=time.time() - 1)
    assert sub.close_reason == CloseReason.EXPIRED


async def test_leaving_before_the_expiry_cancels_its_timer(hub: Hub) -> None:
    sub = await hub.subscribe(["/a", "/b"], expires=time.time() + 60)
    assert len(hub._expiry) == 1
    hub.unsubscribe(sub)
    assert hub._expiry == {}
    assert sub.close_reason == CloseReason.DISCONNECTED


async def test_bad_tokens_and_bad_selectors_are_answered_401_and_400() -> None:
    def authorize(request: Request) -> bool:
        if request.headers.get("authorization") == "Bearer bad":
            raise InvalidToken("the token's signature does not verify")
        return True

    hub = Hub(authorize=authorize, keepalive=None, end_streams_on_signal=False)
    try:
        bad_token = Request("GET", "/events/a", headers={"authorization": "Bearer bad"})
        answer = await open_stream(hub, bad_token)
        assert isinstance(answer, Answer)
        assert answer.status == 401
        assert json.loads(answer.body) == {"error": "the token's signature does not verify"}
        assert ("www-authenticate", "Bearer") in answer.headers
        bad_selector = Request("GET", "/events", params=(("channel", ""),))
        answer = await open_stream(hub, bad_selector)
        assert isinstance(answer, Answer)
        assert answer.status == 400
        assert "empty" in json.loads(answer.body)["error"]
        assert hub.client_count() == 0
    finally:
        await hub.shutdown(timeout=0.1)
