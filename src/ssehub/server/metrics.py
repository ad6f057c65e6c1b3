"""Prometheus metrics for ``ssehub serve``, read from the hub's own counters at scrape time.

Nothing here runs when an event is published: the hub already counts what it publishes and
delivers per channel, and `HubCollector` turns those counters into metric families only when
``/metrics`` is scraped.

A scrape stays cheap however many channels there are: only the busiest
``metrics_channels`` channels (by events published; by clients for the per-client series) get
series of their own, and the others are summed into one series labelled
``channel="(other)"``. Picking them is one pass over the counters, so 100k channels cost a few
milliseconds, and the scrape's size is bounded.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ssehub.backends.memory import MemoryBackend
from ssehub.hub import Hub
from ssehub.server.workers import Workers

__all__ = ["OTHER_CHANNELS", "HubCollector", "MetricsSource", "build_registry", "render"]

OTHER_CHANNELS = "(other)"
"""The ``channel`` label of the series summing every channel not shown on its own."""


class MetricsSource(Protocol):
    """What the metrics read (`ssehub.server.app.HubServer` is one): the served hub, the
    rejected publishes by status, and the dashboard's statistics hub."""

    @property
    def hub(self) -> Hub:
        """The hub whose counters are exported."""
        ...

    @property
    def publish_errors(self) -> Mapping[int, int]:
        """Publishes and broadcasts rejected, by HTTP status."""
        ...

    @property
    def stats_hub(self) -> Hub:
        """The hub of the dashboard's statistics stream (its clients are the viewers)."""
        ...

    @property
    def metrics_channels(self) -> int:
        """How many channels get series of their own (the busiest); 0 sums them all."""
        ...

    @property
    def workers(self) -> Workers:
        """Every hub process's numbers (one process unless the backend is shared)."""
        ...


class HubCollector:
    """A Prometheus collector over a served hub, a `MetricsSource` (in a registry of its own).

    Families (all prefixed ``ssehub_``): ``connections_open``, ``channels``,
    ``channel_clients{channel}``, ``events_published_total{channel}``,
    ``events_delivered_total{channel}`` (for channels with subscribers now),
    ``events_replayed_total``, ``clients_dropped_slow_total``, ``publish_errors_total{status}``,
    ``dashboard_viewers``, ``workers`` and, per live hub process sharing the backend (this
    one included, labelled ``worker="host:pid"``), ``worker_connections_open{worker}`` and
    ``worker_events_published_total{worker}``, and with the in-memory backend ``history_bytes``,
    ``history_events``, ``history_channels`` and ``history_evicted_total``. Per-channel series
    cover the busiest ``metrics_channels`` channels; ``channel="(other)"`` sums the rest.
    """

    def __init__(self, server: MetricsSource) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        """Build every family from the hub's counters (called by the registry on scrape)."""
        server = self.server
        hub = server.hub
        top = server.metrics_channels
        names = hub.channels()
        yield GaugeMetricFamily(
            "ssehub_connections_open", "Open event streams.", value=hub.client_count()
        )
        yield GaugeMetricFamily("ssehub_channels", "Channels with subscribers.", value=len(names))
        clients = GaugeMetricFamily(
            "ssehub_channel_clients", "Open event streams per channel.", labels=["channel"]
        )
        delivered = CounterMetricFamily(
            "ssehub_events_delivered",
            "Events handed to subscribers (one per subscriber), per channel with subscribers.",
            labels=["channel"],
        )
        open_channels = [ch for ch in map(hub.get_channel, names) if ch is not None]
        shown = (
            open_channels
            if len(open_channels) <= top
            else heapq.nlargest(top, open_channels, key=len)
        )
        for ch in shown:
            clients.add_metric([ch.name], len(ch))
            delivered.add_metric([ch.name], ch.delivered)
        if len(shown) < len(open_channels):
            listed = {ch.name for ch in shown}
            rest = [ch for ch in open_channels if ch.name not in listed]
            clients.add_metric([OTHER_CHANNELS], sum(len(ch) for ch in rest))
            delivered.add_metric([OTHER_CHANNELS], sum(ch.delivered for ch in rest))
        yield clients
        yield delivered
        published = CounterMetricFamily(
            "ssehub_events_published",
            "Events published, per channel (channels with subscribers or history here); "
            "the total counts every event.",
            labels=["channel"],
        )
        counts = hub.published_counts()
        busiest = (
            counts.items()
            if len(counts) <= top
            else heapq.nlargest(top, counts.items(), key=lambda item: item[1])
        )
        shown_total = 0
        for name, count in busiest:
            published.add_metric([name], count)
            shown_total += count
        if len(busiest) < len(counts) or hub.published_total > shown_total:
            # Every event not in a series of its own, forgotten channels' included: the
            # family sums to the hub's total.
            published.add_metric([OTHER_CHANNELS], hub.published_total - shown_total)
        yield published
        yield CounterMetricFamily(
            "ssehub_events_replayed",
            "Events sent from history to resuming clients.",
            value=hub.replayed,
        )
        yield CounterMetricFamily(
            "ssehub_clients_dropped_slow",
            "Clients disconnected for falling too far behind.",
            value=hub.dropped_slow,
        )
        errors = CounterMetricFamily(
            "ssehub_publish_errors",
            "Publishes and broadcasts rejected, by HTTP status.",
            labels=["status"],
        )
        for status, count in sorted(server.publish_errors.items()):
            errors.add_metric([str(status)], count)
        yield errors
        backend = hub.backend
        if isinstance(backend, MemoryBackend):
            yield GaugeMetricFamily(
                "ssehub_history_bytes",
                "Bytes of history retained (events plus fixed overheads), every channel.",
                value=backend.retained_bytes,
            )
            yield GaugeMetricFamily(
                "ssehub_history_events",
                "Events retained in history.",
                value=backend.retained_events,
            )
            yield GaugeMetricFamily(
                "ssehub_history_channels",
                "Channels with retained history.",
                value=backend.retained_channels,
            )
            yield CounterMetricFamily(
                "ssehub_history_evicted",
                "Events evicted to keep the hub under its history memory bound.",
                value=backend.evicted,
            )
        yield GaugeMetricFamily(
            "ssehub_dashboard_viewers",
            "Open dashboard statistics streams.",
            value=server.stats_hub.client_count(),
        )
        # Every family above is this process's own; these cover every live hub process, each
        # series labelled with its worker (sum them for the whole hub).
        states = server.workers.all()
        yield GaugeMetricFamily(
            "ssehub_workers", "Live hub processes sharing the channels.", value=len(states)
        )
        worker_clients = GaugeMetricFamily(
            "ssehub_worker_connections_open",
            "Open event streams, per hub process (host:pid).",
            labels=["worker"],
        )
        worker_published = CounterMetricFamily(
            "ssehub_worker_events_published",
            "Events published through each hub process (host:pid).",
            labels=["worker"],
        )
        for state in states:
            worker_clients.add_metric([state["worker"]], state["clients"])
            worker_published.add_metric([state["worker"]], state["published"])
        yield worker_clients
        yield worker_published


def build_registry(server: MetricsSource) -> CollectorRegistry:
    """A registry of ``server``'s metrics: the hub's families plus process and GC metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(server))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text exposition of ``registry``, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
