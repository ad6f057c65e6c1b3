"""Prometheus metrics for ``ssehub serve``, read from the hub's own counters at scrape time.

Nothing here runs when an event is published: the hub already counts what it publishes and
delivers per channel, and `HubCollector` turns those counters into metric families only when
``/metrics`` is scraped. Ten thousand channels cost nothing per publish, only a longer scrape.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from ssehub.hub import Hub

__all__ = ["HubCollector", "MetricsSource", "build_registry", "render"]


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


class HubCollector:
    """A Prometheus collector over a served hub, a `MetricsSource` (in a registry of its own).

    Families (all prefixed ``ssehub_``): ``connections_open``, ``channels``,
    ``channel_clients{channel}``, ``events_published_total{channel}``,
    ``events_delivered_total{channel}`` (for channels with subscribers now),
    ``events_replayed_total``, ``clients_dropped_slow_total``, ``publish_errors_total{status}``,
    ``dashboard_viewers``.
    """

    def __init__(self, server: MetricsSource) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        """Build every family from the hub's counters (called by the registry on scrape)."""
        server = self.server
        hub = server.hub
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
        for name in names:
            ch = hub.get_channel(name)
            if ch is None:
                continue
            clients.add_metric([name], len(ch))
            delivered.add_metric([name], ch.delivered)
        yield clients
        yield delivered
        published = CounterMetricFamily(
            "ssehub_events_published", "Events published, per channel.", labels=["channel"]
        )
        for name, count in hub.published_counts().items():
            published.add_metric([name], count)
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
        yield GaugeMetricFamily(
            "ssehub_dashboard_viewers",
            "Open dashboard statistics streams.",
            value=server.stats_hub.client_count(),
        )


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
