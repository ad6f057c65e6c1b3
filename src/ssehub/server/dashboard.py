"""The live dashboard: its page, and the statistics feed the page reads.

The page (``dashboard.html``) subscribes to `STATS_PATH` with ``EventSource``. That feed runs on
a hub of its own (`Dashboard.stats_hub`), so it never shows up in the served hub's
``/channels``, metrics or broadcasts. While someone watches, a `stats` snapshot is published
there every ``interval`` seconds; with no viewer, nothing runs.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Mapping
from importlib import resources
from typing import Any

from ssehub.errors import HubClosed
from ssehub.hub import Hub
from ssehub.server._json import dumps
from ssehub.subscription import Subscription
from ssehub.wire import Message

__all__ = ["MAX_ROWS", "STATS_PATH", "Dashboard"]

STATS_PATH = "/dashboard/stats"
"""The dashboard's live statistics stream (served by a hub of its own, not listed in /channels)."""

MAX_ROWS = 500
"""The most channels a snapshot lists (the busiest first)."""


class Dashboard:
    """The dashboard of ``hub``: the page, `stats` snapshots, and their feed on `stats_hub`.

    Args:
        hub: the hub the dashboard shows.
        publish_errors: rejected publishes by HTTP status, read live at each snapshot.
        interval: seconds between snapshots while someone watches.
    """

    def __init__(self, hub: Hub, publish_errors: Mapping[int, int], interval: float = 1.0) -> None:
        self.hub = hub
        self.publish_errors = publish_errors
        self.interval = interval
        self.stats_hub = Hub(
            history=0,
            keepalive=15.0,
            on_connect=self._viewer_joined,
            end_streams_on_signal=False,  # the server ends it in its own order
        )
        """A separate hub for the statistics stream, so it never shows up in ``/channels``,
        metrics or broadcasts."""
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._prev: dict[str, int] = {}
        self._prev_delivered: dict[str, int] = {}
        self._prev_time = time.monotonic()
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

    def stats(self) -> dict[str, Any]:
        """A snapshot for the dashboard: every channel's clients, totals and rates per second.

        Rates are measured since the previous snapshot. At most `MAX_ROWS` channels are listed
        (the busiest first); ``total_channels`` says how many there are.
        """
        hub = self.hub
        now = time.monotonic()
        elapsed = max(now - self._prev_time, 1e-6)
        published = hub.published_counts()
        prev = self._prev
        prev_delivered = self._prev_delivered
        delivered: dict[str, int] = {}
        names = set(hub.channels())
        names.update(name for name, count in published.items() if prev.get(name) != count)
        # One cheap key per channel, then rows only for the MAX_ROWS shown: a snapshot of 100k
        # channels must not hold the loop.
        keys: list[tuple[int, float, str, int, int]] = []
        for name in names:
            ch = hub.get_channel(name)
            sent = ch.delivered if ch is not None else 0
            delivered[name] = sent
            count = published.get(name, 0)
            rate = max(count - prev.get(name, count), 0) / elapsed
            keys.append((len(ch) if ch is not None else 0, rate, name, count, sent))
        shown = heapq.nsmallest(MAX_ROWS, keys, key=lambda k: (-k[0], -k[1], k[2]))
        rows: list[dict[str, Any]] = [
            {
                "channel": name,
                "clients": clients,
                "published": count,
                "rate": round(rate, 2),
                "delivery_rate": round(max(sent - prev_delivered.get(name, sent), 0) / elapsed, 2),
            }
            for clients, rate, name, count, sent in shown
        ]
        self._prev = published
        self._prev_delivered = delivered
        self._prev_time = now
        return {
            "time": time.time(),
            "clients": hub.client_count(),
            "total_channels": len(keys),
            "channels": rows,
            "published": hub.published_total,
            "replayed": hub.replayed,
            "dropped_slow": hub.dropped_slow,
            "publish_errors": sum(self.publish_errors.values()),
        }

    def _snapshot(self) -> Message:
        return Message(dumps(self.stats()).decode(), event="stats")

    def _viewer_joined(self, sub: Subscription) -> None:
        # The stats hub's on_connect hook: a new viewer sees a snapshot at once, and the
        # feed starts if it is not running.
        sub.send(self._snapshot())
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._feed())

    async def _feed(self) -> None:
        stats_hub = self.stats_hub
        while not self._stopped and not stats_hub.closed:
            await asyncio.sleep(self.interval)
            if not stats_hub.client_count():
                return
            try:
                await stats_hub.publish(STATS_PATH, self._snapshot())
            except HubClosed:
                return
