"""The seam in the hub, driven through arbitrary interleavings: each resume gets each event once.

Hypothesis draws a schedule of steps: publish, start a resume (``Hub.subscribe`` with a
``Last-Event-ID``), let a pending replay read history, let the feed deliver one event, let the
loop run. It runs against the memory backend (whose replay is made to wait for its step) and a
fake backend shaped like Redis: history and the feed are separate, the feed lags behind history
by any number of events, and replays read history at any moment. Whatever the schedule, every
resumed subscriber must end up with exactly the events published after its id, once each, in
publish order, and a gap notice exactly when history no longer held its id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ssehub import GAP_EVENT, EventParser, Hub, MemoryBackend, Message, Replay, Subscription
from ssehub.backends.base import Backend, Deliver, PublishResult, encode_event
from tests._support.properties import property_settings

CHANNEL = "/seam"


class GatedMemoryBackend(MemoryBackend):
    """The memory backend, whose replays wait until the schedule lets them read history."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: deque[asyncio.Future[None]] = deque()

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        gate = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        await gate
        return await super().replay(channel, last_event_id, private=private)

    def read_one(self) -> bool:
        if not self.gates:
            return False
        self.gates.popleft().set_result(None)
        return True

    def feed_one(self) -> bool:
        return False  # the memory backend delivers as it publishes


class LaggingBackend(Backend):
    """History and a feed apart, as on Redis: the feed delivers when the schedule says so."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.history: list[tuple[int, str, bytes]] = []  # (position, id, bytes), oldest first
        self.trimmed: tuple[int, str] | None = None
        self.feed: deque[tuple[str, bytes, int]] = deque()
        self.replays: deque[tuple[asyncio.Future[Replay], str]] = deque()
        self.deliver: Deliver | None = None
        self.next = 0

    async def start(self, deliver: Deliver, **settings: Any) -> None:
        self.deliver = deliver

    async def publish(
        self, channel: str | tuple[str, ...], message: Message, *, private: bool = False
    ) -> str:
        position = self.next
        self.next += 1
        # Ids in no particular order: the seam may never compare them.
        event_id = message.id or f"{(position * 7919) % 1009}-{position}"
        data = encode_event(message, event_id)
        self.history.append((position, event_id, data))
        if len(self.history) > self.keep:
            dropped = self.history.pop(0)
            self.trimmed = (dropped[0], dropped[1])
        self.feed.append((event_id, data, position))
        return PublishResult(event_id)

    async def replay(self, channel: str, last_event_id: str, *, private: bool = False) -> Replay:
        future: asyncio.Future[Replay] = asyncio.get_running_loop().create_future()
        self.replays.append((future, last_event_id))
        return await future

    async def channels(self) -> list[str]:
        return [CHANNEL] if self.history else []

    def read_one(self) -> bool:
        if not self.replays:
            return False
        future, last_event_id = self.replays.popleft()
        head = (self.history[-1][0],) if self.history else None
        ids = [event_id for _, event_id, _ in self.history]
        if last_event_id in ids:
            after = self.history[ids.index(last_event_id) + 1 :]
            replay = Replay([(i, d) for _, i, d in after], found=True, head=head)
        elif self.trimmed is not None and self.trimmed[1] == last_event_id:
            replay = Replay([(i, d) for _, i, d in self.history], found=True, head=head)
        else:
            replay = Replay([(i, d) for _, i, d in self.history], found=False, head=head)
        future.set_result(replay)
        return True

    def feed_one(self) -> bool:
        if not self.feed:
            return False
        event_id, data, position = self.feed.popleft()
        assert self.deliver is not None
        self.deliver(CHANNEL, event_id, data, (position,))
        return True


@dataclass
class Resumed:
    """One resume of the schedule: the id it resumed from, and what it was owed."""

    last_event_id: str
    sub: Subscription | None = None


STEPS = st.lists(
    st.one_of(
        st.just(("publish", 0)),
        st.just(("read", 0)),
        st.just(("feed", 0)),
        st.just(("tick", 0)),
        st.tuples(st.just("resume"), st.integers(0, 12)),  # back from the newest, 12: unknown
    ),
    max_size=60,
)


async def run_schedule(
    backend: GatedMemoryBackend | LaggingBackend, steps: list[tuple[str, int]]
) -> tuple[list[str], list[tuple[Resumed, list[Message]]]]:
    hub = Hub(backend=backend, keepalive=None, history=10_000)
    await hub.start()
    published: list[str] = []
    resumes: list[tuple[Resumed, asyncio.Task[Subscription]]] = []
    n = 0
    for step, arg in steps:
        if step == "publish":
            published.append(await hub.publish(CHANNEL, f"e{n}"))
            n += 1
        elif step == "read":
            backend.read_one()
        elif step == "feed":
            backend.feed_one()
        elif step == "resume":
            known = arg < min(12, len(published))
            last = published[-1 - arg] if known else "unknown-id"
            resumed = Resumed(last)
            task = asyncio.ensure_future(hub.subscribe(CHANNEL, last_event_id=last))
            resumes.append((resumed, task))
        for _ in range(3):
            await asyncio.sleep(0)
    # The rest of the schedule: every replay reads, the feed catches up, one more publish.
    async with asyncio.timeout(10):
        while backend.read_one() or backend.feed_one() or not all(t.done() for _, t in resumes):
            await asyncio.sleep(0)
        published.append(await hub.publish(CHANNEL, "last"))
        while backend.feed_one():
            await asyncio.sleep(0)
    results = []
    for resumed, task in resumes:
        sub = task.result()
        data = sub.take() or b""
        results.append((resumed, EventParser().feed(data)))
    await hub.shutdown(timeout=0.1)
    return published, results


def check(published: list[str], results: list[tuple[Resumed, list[Message]]], keep: int) -> None:
    # An event among the newest `keep` (the schedule's last publish aside) was in history
    # whenever a replay read it: resuming from it must not see a gap.
    surely_retained = len(published) - 1 - keep
    for resumed, events in results:
        got = [m.id for m in events if m.event != GAP_EVENT]
        gaps = [m for m in events if m.event == GAP_EVENT]
        start = None
        if resumed.last_event_id in published:
            start = published.index(resumed.last_event_id) + 1
        if not gaps:
            assert start is not None, "an unknown id must get the gap notice"
            assert got == published[start:]
            continue
        assert start is None or start - 1 < surely_retained, "a gap with the id in history"
        assert len(gaps) == 1 and events[0].event == GAP_EVENT
        # What history held when the replay read it, then every later event: once each, in
        # order, and nothing from before the resume id.
        assert got == published[len(published) - len(got) :]
        assert published[-1] in got
        if start is not None:
            assert len(got) <= len(published) - start


@property_settings(150)
@given(STEPS)
def test_resumes_on_the_memory_backend_get_every_later_event_once(
    steps: list[tuple[str, int]],
) -> None:
    published, results = asyncio.run(run_schedule(GatedMemoryBackend(), steps))
    check(published, results, keep=10_000)


@property_settings(200)
@given(STEPS, st.integers(3, 40))
def test_resumes_with_a_lagging_feed_get_every_later_event_once(
    steps: list[tuple[str, int]], keep: int
) -> None:
    backend = LaggingBackend(keep)
    published, results = asyncio.run(run_schedule(backend, steps))
    check(published, results, keep=keep)
