"""Prometheus metrics of one bridge, in its own registry, read from the hub at scrape time.

The hot path only bumps plain integers (:class:`~zmqmon_bridge.hub.Counters`); this collector
turns them into metric families when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from zmqmon_bridge.hub import Hub
from zmqmon_bridge.protocol import ERROR_CODES

__all__ = ["CONTENT_TYPE", "BridgeMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Collector:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def describe(self) -> list[Any]:
        return []  # no eager describe: values come from the hub at collect time

    def collect(self) -> Iterator[Any]:
        hub = self.hub
        c = hub.counters
        yield GaugeMetricFamily(
            "zmqmon_bridge_connections", "Open WebSocket connections", value=len(hub.connections)
        )
        yield GaugeMetricFamily(
            "zmqmon_bridge_subscriptions",
            "Subscriptions held by all connections",
            value=hub.subscription_count,
        )
        refs = hub.upstream.refcounts  # counts only: prefixes name executions (data)
        yield GaugeMetricFamily(
            "zmqmon_bridge_upstream_prefixes",
            "ZMQ prefixes the bridge's SUB socket holds (heartbeat aside)",
            value=len(refs),
        )
        yield GaugeMetricFamily(
            "zmqmon_bridge_upstream_holders",
            "Subscriptions holding those prefixes",
            value=sum(refs.values()),
        )
        yield GaugeMetricFamily(
            "zmqmon_bridge_upstream_alive",
            "1 if the event stream spoke recently (any message)",
            value=1 if hub.alive() else 0,
        )
        yield GaugeMetricFamily(
            "zmqmon_bridge_buffered_events",
            "Live events held ahead of gaps (all lanes; bounded)",
            value=sum(lane.buffered for lane in hub.lanes.values()),
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_events_in", "Events received from ZeroMQ", value=c.events_in
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_events_out", "Event deliveries to clients", value=c.events_out
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_malformed_messages",
            "Messages from ZeroMQ that were not [topic, payload]: never relayed",
            value=hub.upstream.malformed,
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_skipped_live",
            "Live events not decoded: their execution was being caught up from the store",
            value=c.skipped_live,
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_snapshots_out",
            "State-mode snapshot messages sent (backlogs replaced)",
            value=c.snapshots_out,
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_drops", "Events or messages dropped (invalid, unrepaired)", value=c.drops
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_slow_client_closes",
            "Connections closed with 1013 (send queue full)",
            value=c.slow_closes,
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_rate_limit_closes",
            "Connections closed with 1008 (rate limit)",
            value=c.rate_closes,
        )
        yield CounterMetricFamily(
            "zmqmon_bridge_gap_repairs", "Gap or tail repairs from the store", value=c.gap_fetches
        )
        errors = CounterMetricFamily(
            "zmqmon_bridge_errors", "Error messages sent, by code", labels=["code"]
        )
        for code in ERROR_CODES:
            errors.add_metric([code], c.errors.get(code, 0))
        yield errors


class BridgeMetrics:
    """The registry of one bridge; :meth:`render` is the ``/metrics`` body."""

    def __init__(self, hub: Hub) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(hub))

    def render(self) -> bytes:
        """Prometheus text exposition."""
        return bytes(generate_latest(self.registry))
