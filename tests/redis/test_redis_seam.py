"""The Redis replay/live seam: a resuming client gets every event after its id exactly once.

Two publishers publish as fast as they can to one channel through hub A while clients resume
with ``Last-Event-ID`` on hub A (the publishing hub) and on hub B (another hub on the same
Redis). The Redis stream is the order of truth: each resume must receive exactly the events
that follow its id in the stream, contiguous and once each, whatever the timing of the replay
(read on one connection) against the feed (pub/sub, on another).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as aioredis

from ssehub import EventParser, Hub, Subscription
from ssehub.redis import RedisBackend

if TYPE_CHECKING:
    from tests.redis.conftest import HubPair

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(120)]

CHANNEL = "/events/seam"
RESUMES_PER_HUB = 150
"""Resumes on each hub: 300 in all."""
EVENTS_PER_RESUME = 12
"""A resume reads until it has this many events (or for `READ_SECONDS`)."""
READ_SECONDS = 1.0


@dataclass
class Outcome:
    """What the resumes of one hub saw."""

    resumes: int = 0
    with_duplicate: int = 0
    with_gap: int = 0
    examples: list[str] = field(default_factory=list)


async def read_events(sub: Subscription, count: int, seconds: float) -> list[str]:
    """The ids of the events ``sub`` holds, until ``count`` arrived or ``seconds`` passed."""
    parser = EventParser()
    ids: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while len(ids) < count:
                chunk = await sub.next_chunk()
                if chunk is None:
                    break
                # A gap notice counts as a gap: the client is told it missed something.
                ids.extend(f"<{m.event}>" if m.event else m.id or "" for m in parser.feed(chunk))
    return ids


def judge(order: list[str], resume_id: str, got: list[str], outcome: Outcome) -> None:
    """Count a duplicate or a gap in ``got``, the ids received after resuming at ``resume_id``."""
    outcome.resumes += 1
    if len(set(got)) != len(got):
        outcome.with_duplicate += 1
        if len(outcome.examples) < 3:
            outcome.examples.append(f"duplicate after {resume_id}: {got}")
    start = order.index(resume_id) + 1
    unique = list(dict.fromkeys(got))
    if unique != order[start : start + len(unique)]:
        outcome.with_gap += 1
        if len(outcome.examples) < 3:
            outcome.examples.append(f"gap after {resume_id}: {got} vs {order[start:]}")


async def run_seam(a: Hub, b: Hub, url: str, prefix: str) -> dict[str, Outcome]:
    """Publish from two tasks on hub A while clients resume on A and on B; judge each resume."""
    published: list[str] = []
    stop = asyncio.Event()

    async def publisher(name: str) -> None:
        n = 0
        while not stop.is_set():
            published.append(await a.publish(CHANNEL, f"{name}{n}"))
            n += 1
            if n % 8 == 0:
                await asyncio.sleep(0)  # let the feed and the resumes run between bursts

    resumes: list[tuple[str, str, list[str]]] = []  # (hub name, resume id, ids received)
    rng = random.Random(11)

    async def resumer(name: str, hub: Hub, count: int) -> None:
        for _ in range(count):
            # A recent id: the replay is short, and the feed carries events it also holds.
            resume_id = published[-1 - rng.randrange(min(len(published), 20))]
            sub = await hub.subscribe(CHANNEL, last_event_id=resume_id)
            try:
                got = await read_events(sub, EVENTS_PER_RESUME, READ_SECONDS)
            finally:
                hub.unsubscribe(sub)
            resumes.append((name, resume_id, got))

    tasks = [asyncio.ensure_future(publisher(p)) for p in ("p", "q")]
    async with asyncio.timeout(10):
        while len(published) < 40:
            await asyncio.sleep(0.01)
    await asyncio.gather(
        *(resumer("A", a, RESUMES_PER_HUB // 2) for _ in range(2)),
        *(resumer("B", b, RESUMES_PER_HUB // 2) for _ in range(2)),
    )
    stop.set()
    await asyncio.gather(*tasks)

    backend = a.backend
    assert isinstance(backend, RedisBackend)
    admin = aioredis.Redis.from_url(url)
    try:
        entries = await admin.xrange(backend.stream_key(CHANNEL), "-", "+")
    finally:
        await admin.aclose()
    order = [sid.decode() for sid, _ in entries]  # type: ignore[union-attr]
    assert order == sorted(published, key=lambda s: tuple(map(int, s.split("-"))))
    outcomes = {"A": Outcome(), "B": Outcome()}
    for name, resume_id, got in resumes:
        judge(order, resume_id, got, outcomes[name])
    return outcomes


async def test_resumes_on_the_publishing_hub_and_another_get_each_missed_event_once(
    hubs: HubPair,
) -> None:
    a = await hubs.hub(history=100_000, keepalive=None)
    b = await hubs.hub(history=100_000, keepalive=None)
    outcomes = await run_seam(a, b, hubs.url, hubs.prefix)
    for name, outcome in outcomes.items():
        per_100 = 100 * outcome.with_duplicate / outcome.resumes
        print(
            f"hub {name}: {outcome.resumes} resumes, {outcome.with_duplicate} with a duplicate "
            f"({per_100:.1f} per 100), {outcome.with_gap} with a gap"
        )
    for outcome in outcomes.values():
        assert outcome.resumes == RESUMES_PER_HUB
        assert (outcome.with_duplicate, outcome.with_gap) == (0, 0), outcome.examples
