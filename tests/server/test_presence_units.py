"""`ssehub.server.presence.Presence` in one process, without sockets: what it lists, what it
announces and in which order, its bounds, and how it shares its list through a backend."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import pytest

from ssehub import EventParser, Hub, MemoryBackend, Message, Subscription
from ssehub.backends.base import PublishResult
from ssehub.errors import BackendUnavailable
from ssehub.server.presence import (
    MAX_LIMIT,
    PRESENCE_CHANNEL,
    PRESENCE_EVENT,
    Presence,
    parse_limit,
)
from ssehub.server.routing import HTTPError
from tests._support.waiting import eventually


class SharedMemory(MemoryBackend):
    """An in-memory backend that pretends to be shared, recording what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shares: list[tuple[dict[str, str | None], bool]] = []
        self.others: list[list[str]] = []
        self.down = False
        self.retired: list[str] = []

    @property
    def shared(self) -> bool:
        return True

    async def share_presence(
        self,
        worker: str,
        changes: Mapping[str, str | None],
        ttl: float,
        *,
        reset: bool = False,
    ) -> None:
        if self.down:
            raise BackendUnavailable("down")
        self.shares.append((dict(changes), reset))

    async def presence(
        self, exclude: str, ttl: float, *, page: int = 1000
    ) -> AsyncGenerator[list[str], None]:
        if self.down:
            raise BackendUnavailable("down")
        for found in self.others:
            yield found

    async def retire_presence(self, worker: str) -> None:
        self.retired.append(worker)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    h = Hub(keepalive=None, end_streams_on_signal=False)
    yield h
    await h.shutdown(timeout=0.1)


def announced(reader: Subscription) -> list[dict[str, Any]]:
    return [
        json.loads(m.data)
        for m in EventParser().feed(reader.take() or b"")
        if m.event == PRESENCE_EVENT
    ]


async def test_joins_and_leaves_are_private_events_in_order(hub: Hub) -> None:
    presence = Presence(hub, "here:1")
    presence.start()
    allowed = await hub.subscribe(PRESENCE_CHANNEL, private=[PRESENCE_CHANNEL])
    everything = await hub.subscribe(["*"])  # no private grant: sees none of them
    sub = await hub.subscribe(["/a", "/rooms/{id}"], payload={"name": "ann"})
    presence.join(sub)
    presence.join(sub)  # noted once
    hub.unsubscribe(sub)
    await eventually(lambda: allowed.pending_bytes > 0 and not presence.pending)
    joined, left = announced(allowed)
    assert joined == {
        "id": joined["id"],
        "selectors": ["/a", "/rooms/{id}"],
        "payload": {"name": "ann"},
        "active": True,
        "hub": "here:1",
    }
    assert left == {**joined, "active": False}
    assert announced(everything) == []
    assert len(presence) == 0
    await presence.stop()


async def test_a_closed_subscription_or_a_stopped_presence_notes_nothing(hub: Hub) -> None:
    presence = Presence(hub, "here:1")
    closed = await hub.subscribe("/a")
    hub.unsubscribe(closed)
    presence.join(closed)
    assert len(presence) == 0
    await presence.stop()
    presence.join(await hub.subscribe("/b"))
    assert len(presence) == 0


async def test_listing_filters_by_channel_and_cuts_at_the_limit(hub: Hub) -> None:
    presence = Presence(hub, "here:1")
    for selection in ("/a", ["/a", "/b"], ["/rooms/{id}"], ["*"], "/c"):
        presence.join(await hub.subscribe(selection))
    found, cut = await presence.subscriptions()
    assert len(found) == 5 and not cut
    found, cut = await presence.subscriptions("/a")
    assert [e["selectors"] for e in found] == [["/a"], ["/a", "/b"], ["*"]] and not cut
    found, cut = await presence.subscriptions("/rooms/7")
    assert [e["selectors"] for e in found] == [["/rooms/{id}"], ["*"]]
    found, cut = await presence.subscriptions(None, limit=2)
    assert len(found) == 2 and cut
    found, cut = await presence.subscriptions("/a", limit=3)
    assert len(found) == 3 and not cut


async def test_other_hubs_entries_follow_this_hubs_once_each_and_bad_ones_are_skipped(
    hub: Hub,
) -> None:
    backend = SharedMemory()
    shared_hub = Hub(keepalive=None, end_streams_on_signal=False, backend=backend)
    try:
        presence = Presence(shared_hub, "here:1")
        presence.join(await shared_hub.subscribe("/a"))
        other = {"id": "x", "selectors": ["/rooms/{id}"], "payload": 1, "hub": "there:2"}
        backend.others = [
            [json.dumps(other), "not json", json.dumps({"id": 3}), json.dumps(["list"])],
            [json.dumps(other), json.dumps({"id": "y", "selectors": ["/{"], "hub": "t"})],
        ]
        found, cut = await presence.subscriptions()
        assert [e["id"] for e in found][1:] == ["x", "y"] and not cut
        assert found[1] == {**other, "active": True}
        found, _ = await presence.subscriptions("/rooms/1")
        assert [e["id"] for e in found] == ["x"]  # "/{" is no selector: it matches nothing
        backend.down = True
        with pytest.raises(HTTPError) as refused:
            await presence.answer(None, {})
        assert refused.value.status == 503
    finally:
        await shared_hub.shutdown(timeout=0.1)


async def test_the_list_is_shared_in_changes_and_in_full_after_a_failure() -> None:
    backend = SharedMemory()
    hub = Hub(keepalive=None, end_streams_on_signal=False, backend=backend)
    try:
        presence = Presence(hub, "here:1")
        first = await hub.subscribe("/a")
        presence.join(first)
        await presence.share_once()  # the first share is a full one
        [first_entry], _ = await presence.subscriptions()
        (changes, reset), *_ = backend.shares
        assert reset and changes == {
            first_entry["id"]: json.dumps(first_entry, separators=(",", ":"))
        }
        presence.join(await hub.subscribe("/b"))
        hub.unsubscribe(first)
        [second_entry], _ = await presence.subscriptions()
        await presence.share_once()
        changes, reset = backend.shares[-1]
        assert not reset
        assert changes.keys() == {first_entry["id"], second_entry["id"]}
        assert changes[first_entry["id"]] is None
        backend.down = True
        presence.join(await hub.subscribe("/c"))
        await presence.share_once()
        assert presence.error == "down"
        backend.down = False
        await presence.share_once()
        changes, reset = backend.shares[-1]
        assert reset and len(changes) == 2 and presence.error is None
        # Stopping announces every open stream's leave (other hubs' readers get them) and
        # withdraws the list. (Nothing was published before it started.)
        reader = await hub.subscribe(PRESENCE_CHANNEL, private=[PRESENCE_CHANNEL])
        presence.start()
        await presence.stop()
        events = [(e["selectors"], e["active"]) for e in announced(reader)]
        assert events == [
            (["/a"], True),
            (["/b"], True),
            (["/a"], False),
            (["/c"], True),
            (["/b"], False),
            (["/c"], False),
        ]
        assert backend.retired == ["here:1"]
    finally:
        await hub.shutdown(timeout=0.1)


async def test_events_past_the_pending_bound_are_dropped_and_counted(hub: Hub) -> None:
    presence = Presence(hub, "here:1", max_pending=3)  # not started: nothing is published
    for _ in range(5):
        presence.join(await hub.subscribe("/a"))
    assert presence.pending == 3 and presence.dropped == 2


def test_the_limit_is_a_whole_number_up_to_the_maximum() -> None:
    assert parse_limit({}) == 1000
    assert parse_limit({"limit": "1"}) == 1
    assert parse_limit({"limit": str(MAX_LIMIT)}) == MAX_LIMIT
    for bad in ("0", str(MAX_LIMIT + 1), "", " 5", "+5", "٣", "1e3"):
        with pytest.raises(HTTPError) as refused:
            parse_limit({"limit": bad})
        assert refused.value.status == 400


class NoPrivateEvents(MemoryBackend):
    """A backend that cannot publish private events (a third-party one, say)."""

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> PublishResult:
        if private:
            raise NotImplementedError("no private events here")
        return await super().publish(channel, message)


async def test_a_backend_without_private_events_drops_them_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = Hub(keepalive=None, end_streams_on_signal=False, backend=NoPrivateEvents())
    try:
        presence = Presence(hub, "here:1")
        presence.start()
        for _ in range(3):
            presence.join(await hub.subscribe("/a"))
        await eventually(lambda: presence.dropped == 3)
        assert len(presence) == 3 and presence.pending == 0
        failures = [r for r in caplog.records if "presence_publish_failed" in r.getMessage()]
        assert len(failures) == 1 and "no private events here" in failures[0].getMessage()
        await presence.stop()
    finally:
        await hub.shutdown(timeout=0.1)
