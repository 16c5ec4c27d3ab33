"""Prometheus metrics of one service process (its own registry, so tests can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class RuntimeMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"service": service}
        self.http_requests = Counter(
            "wok_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        ).labels
        self.http_latency = Histogram(
            "wok_http_request_seconds",
            "HTTP request duration",
            ["route"],
            registry=self.registry,
        ).labels
        self._events = Counter(
            "wok_events_consumed",
            "Consumed events by consumer, type and outcome",
            ["service", "consumer", "type", "outcome"],
            registry=self.registry,
        )
        self._published = Counter(
            "wok_outbox_published",
            "Events published from the outbox, by topic",
            ["service", "topic"],
            registry=self.registry,
        )
        self._labels = labels

    def event_outcome(self, consumer: str, event_type: str, outcome: str) -> None:
        self._events.labels(self._labels["service"], consumer, event_type, outcome).inc()

    def published(self, topic: str) -> None:
        self._published.labels(self._labels["service"], topic).inc()
