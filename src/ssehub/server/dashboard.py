"""The live dashboard: its page, and the statistics feed the page reads.

The page (``dashboard.html``) reads `STATS_PATH` as a stream. That feed runs on a hub of its own
(`Dashboard.stats_hub`), so it never shows up in the served hub's ``/channels``, metrics or
broadcasts. While someone watches, a snapshot is published there every ``interval`` seconds;
with no viewer, nothing runs. A viewer who arrives while the feed runs gets the last snapshot at
once; nothing is computed for it.

A snapshot never stalls the streams, however many channels there are: the totals are counters
the hub and the backend keep as they go (O(1)), and the one pass over the channels that the
rows need (rates per channel, the `MAX_ROWS` busiest picked with a heap) runs in slices of at
most `SNAPSHOT_SLICE` seconds, letting the event loop serve streams and publishes in between.
The snapshot is built once per interval for every viewer together.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from ssehub.backends.memory import MemoryBackend
from ssehub.errors import BackendUnavailable, HubClosed
from ssehub.hub import Hub
from ssehub.server._json import dumps
from ssehub.server.workers import Workers
from ssehub.subscription import Subscription
from ssehub.wire import Message

__all__ = ["MAX_ROWS", "RATE_POINTS", "SNAPSHOT_SLICE", "STATS_PATH", "WATCH_PREFIX", "Dashboard"]

STATS_PATH = "/dashboard/stats"
"""The dashboard's live statistics stream (served by a hub of its own, not listed in /channels)."""

WATCH_PREFIX = "/dashboard/watch"
"""``GET /dashboard/watch/events/<channel>``: the dashboard's live view of a channel, a stream
that is not a client of it (`Hub.subscribe` with ``observer=True``)."""

MAX_ROWS = 500
"""The most channels a snapshot lists (the most clients first, then the busiest, then the
largest history)."""

SNAPSHOT_SLICE = 0.001
"""Seconds a snapshot may compute before it lets the event loop run other work."""

RATE_POINTS = 60
"""Hub-wide events/s figures kept for the sparkline (one per snapshot)."""

_CHECK_EVERY = 63  # channels between two looks at the clock (a power of two, minus one)

# A row's key, larger is shown first: (clients, events/s, retained bytes, name); -1 bytes
# when the backend keeps history elsewhere (Redis).
_Key = tuple[int, float, int, str]


class Dashboard:
    """The dashboard of ``hub``: the page, snapshots, and their feed on `stats_hub`.

    Args:
        hub: the hub the dashboard shows.
        publish_errors: rejected publishes by HTTP status, read live at each snapshot.
        interval: seconds between snapshots while someone watches.
        workers: every hub process's numbers (``--workers``); None for this process alone.
        started: when the server started (Unix time), for the uptime.
        version: the ssehub version shown.
        health: the backend's health report, awaited once per snapshot (default: the
            backend's own ``health``).
    """

    def __init__(
        self,
        hub: Hub,
        publish_errors: Mapping[int, int],
        interval: float = 1.0,
        *,
        workers: Workers | None = None,
        started: float | None = None,
        version: str = "unknown",
        health: Callable[[], Any] | None = None,
    ) -> None:
        self.hub = hub
        self.publish_errors = publish_errors
        self.interval = interval
        self.workers = workers
        self.started = time.time() if started is None else started
        self.version = version
        self._health = health if health is not None else hub.backend.health
        self.stats_hub = Hub(
            history=0,
            keepalive=15.0,
            on_connect=self._viewer_joined,
            end_streams_on_signal=False,  # the server ends it in its own order
        )
        """A separate hub for the statistics stream, so it never shows up in ``/channels``,
        metrics or broadcasts."""
        self.last: dict[str, Any] | None = None
        """The last snapshot published (None before the first)."""
        self.cost = (0.0, 0.0)
        """(seconds of work, longest slice) of the last snapshot."""
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._prev: dict[str, int] = {}
        self._prev_delivered: dict[str, int] = {}
        self._prev_time = 0.0
        self._prev_total = 0
        self._rates: deque[float] = deque(maxlen=RATE_POINTS)
        self._page: bytes | None = None

    def page(self) -> bytes:
        """The dashboard's HTML page (read from the package once)."""
        if self._page is None:
            self._page = resources.files("ssehub.server").joinpath("dashboard.html").read_bytes()
        return self._page

    def stop(self) -> None:
        """Stop publishing snapshots (the stats hub itself is shut down by its owner)."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()

    async def snapshot(self) -> dict[str, Any]:
        """A new snapshot: totals, the backend's state, every worker, and the channel rows.

        Rows cover every channel with subscribers or retained history on this process, with
        clients, events published, events/s and deliveries/s since the previous snapshot, and
        the history retained (events and bytes, when the backend keeps it in this process).
        At most `MAX_ROWS` are listed; ``total_channels`` says how many there are. Yields to
        the event loop every `SNAPSHOT_SLICE` seconds of work.
        """
        try:
            backend = await asyncio.wait_for(self._health(), max(self.interval, 0.5))
        except (TimeoutError, BackendUnavailable, OSError) as exc:
            backend = {"ok": False, "error": str(exc) or type(exc).__name__}
        backend = {**backend, "backend": _backend_name(self.hub)}
        snapshot = await self._channels_snapshot()
        snapshot["backend"] = backend
        return snapshot

    async def _channels_snapshot(self) -> dict[str, Any]:
        hub = self.hub
        backend = hub.backend
        loop = asyncio.get_running_loop()
        work = 0.0
        longest = 0.0
        began = loop.time()
        now = time.monotonic()
        fresh = now - self._prev_time <= 3 * self.interval + 1.0
        elapsed = max(now - self._prev_time, 1e-6) if fresh else 0.0
        # Copies made by one C call each (a millisecond for 100k channels): the rows are
        # computed from them across several loop iterations, while the hub's own dicts change.
        published = hub.published_counts()
        subscribed = hub.channels()
        prev = self._prev if fresh else {}
        prev_delivered = self._prev_delivered if fresh else {}
        delivered: dict[str, int] = {}
        # The MAX_ROWS best rows so far, the least of them first (larger keys are better): one
        # comparison per channel, no sort of every channel.
        best: list[_Key] = []
        total = len(published)
        every = itertools.chain(published.items(), ((name, -1) for name in subscribed))
        get_channel = hub.get_channel
        retained = backend.retained
        prev_get = prev.get
        per_second = 1 / elapsed if elapsed else 0.0
        push, replace = heapq.heappush, heapq.heapreplace
        for count, (name, sent_count) in enumerate(every, 1):
            if not count & _CHECK_EVERY:
                spent = loop.time() - began
                if spent >= SNAPSHOT_SLICE:
                    work += spent
                    longest = max(longest, spent)
                    await asyncio.sleep(0)
                    began = loop.time()
            if sent_count < 0:  # a channel with subscribers: listed already if it published
                if name in published:
                    continue
                sent_count = 0
                total += 1
            ch = get_channel(name)
            if ch is not None:
                delivered[name] = ch.delivered
                clients = len(ch)
            else:
                clients = 0
            held = retained(name)
            key = (
                clients,
                (sent_count - prev_get(name, sent_count)) * per_second,
                held[1] if held is not None else -1,
                name,
            )
            if len(best) < MAX_ROWS:
                push(best, key)
            elif key > best[0]:
                replace(best, key)
        # The most clients first, then the busiest, then the largest history, then by name.
        best.sort(key=lambda k: (-k[0], -k[1], -k[2], k[3]))
        rows: list[dict[str, Any]] = []
        for clients, rate, size, name in best:
            sent = delivered.get(name, 0)
            held = retained(name)
            rows.append(
                {
                    "channel": name,
                    "clients": clients,
                    "published": published.get(name, 0),
                    "rate": round(rate, 2),
                    "delivery_rate": round(
                        max(sent - prev_delivered.get(name, sent), 0) * per_second, 2
                    ),
                    "retained_events": held[0] if held is not None else None,
                    "retained_bytes": size if held is not None else None,
                }
            )
        total_rate = (hub.published_total - self._prev_total) / elapsed if elapsed else 0.0
        self._rates.append(round(total_rate, 2))
        self._prev = published
        self._prev_delivered = delivered
        self._prev_time = now
        self._prev_total = hub.published_total
        spent = loop.time() - began
        work += spent
        self.cost = (work, max(longest, spent))
        snapshot: dict[str, Any] = {
            "time": time.time(),
            "version": self.version,
            "uptime": round(time.time() - self.started, 1),
            "clients": hub.client_count(),
            "total_channels": total,
            "channels": rows,
            "published": hub.published_total,
            "rate": round(total_rate, 2),
            "rates": list(self._rates),
            "replayed": hub.replayed,
            "dropped_slow": hub.dropped_slow,
            "publish_errors": sum(self.publish_errors.values()),
            "snapshot_ms": round(work * 1000, 2),
        }
        if isinstance(backend, MemoryBackend):
            snapshot["retained_events"] = backend.retained_events
            snapshot["retained_bytes"] = backend.retained_bytes
            snapshot["retained_channels"] = backend.retained_channels
        workers = self.workers
        if workers is not None:
            states = workers.all()
            snapshot["worker"] = workers.name
            snapshot["workers"] = states
            snapshot["totals"] = workers.totals(states)
            snapshot["workers_error"] = workers.error
        return snapshot

    def _message(self, snapshot: dict[str, Any]) -> Message:
        return Message(dumps(snapshot).decode(), event="stats")

    def _viewer_joined(self, sub: Subscription) -> None:
        # The stats hub's on_connect hook: a viewer who joins a running feed gets the last
        # snapshot at once; otherwise the feed starts and publishes its first one now. Either
        # way nothing is computed here, so opening the page repeatedly costs the hub nothing.
        if self._task is not None and not self._task.done():
            if self.last is not None:
                sub.send(self._message(self.last))
            return
        self._task = asyncio.ensure_future(self._feed())

    async def _feed(self) -> None:
        stats_hub = self.stats_hub
        while not self._stopped and not stats_hub.closed:
            started = time.monotonic()
            snapshot = await self.snapshot()
            if not stats_hub.client_count():
                self.last = None
                return
            self.last = snapshot
            try:
                await stats_hub.publish(STATS_PATH, self._message(snapshot))
            except HubClosed:
                return
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def _backend_name(hub: Hub) -> str:
    name = type(hub.backend).__name__
    return {"MemoryBackend": "memory", "RedisBackend": "redis", "SqliteBackend": "sqlite"}.get(
        name, name
    )
