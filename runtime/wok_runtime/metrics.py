"""Prometheus metrics of one service process (its own registry, so tests can build many apps).

Besides HTTP and consumption counters, the domain counters an operator watches are derived
from the events a service publishes (after they are durable in its outbox), so every service
counts its facts the same way: registrations, e-mails sent and failed. Dead letters and
consumer lag come from the consumers.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from wok_contracts import NotificationFailed, NotificationSent, ParticipantRegistered


class PublishedMessage(Protocol):
    @property
    def topic(self) -> str: ...

    @property
    def event_type(self) -> str: ...


# event type published -> (counter name, help)
DOMAIN_COUNTERS: dict[str, tuple[str, str]] = {
    ParticipantRegistered.event_type: ("wok_registrations", "Registrations accepted"),
    NotificationSent.event_type: ("wok_emails_sent", "E-mails handed to the SMTP server"),
    NotificationFailed.event_type: (
        "wok_emails_failed",
        "E-mails given up after the retry limit (dead-lettered)",
    ),
}


class RuntimeMetrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        self.service = service
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
        self._dead_letters = Counter(
            "wok_dead_letters",
            "Messages a consumer put on its dead-letter topic",
            ["service", "consumer"],
            registry=self.registry,
        )
        self._published = Counter(
            "wok_outbox_published",
            "Events published from the outbox, by topic",
            ["service", "topic"],
            registry=self.registry,
        )
        self._published_types = Counter(
            "wok_events_published",
            "Events published from the outbox, by type",
            ["service", "type"],
            registry=self.registry,
        )
        # created with the service label, so a dashboard sees 0 before the first event
        self._domain = {
            event_type: Counter(name, help_text, ["service"], registry=self.registry).labels(
                service
            )
            for event_type, (name, help_text) in DOMAIN_COUNTERS.items()
        }
        self.consumer_lag = Gauge(
            "wok_consumer_lag",
            "Messages on a partition not yet committed by the consumer group",
            ["service", "consumer", "topic", "partition"],
            registry=self.registry,
        )

    def event_outcome(self, consumer: str, event_type: str, outcome: str) -> None:
        self._events.labels(self.service, consumer, event_type, outcome).inc()
        if outcome == "dead_lettered":
            self._dead_letters.labels(self.service, consumer).inc()

    def published(self, message: PublishedMessage) -> None:
        self._published.labels(self.service, message.topic).inc()
        if message.event_type:
            self._published_types.labels(self.service, message.event_type).inc()
        domain = self._domain.get(message.event_type)
        if domain is not None:
            domain.inc()

    def lag(self, consumer: str, topic: str, partition: int, messages: int) -> None:
        self.consumer_lag.labels(self.service, consumer, topic, str(partition)).set(messages)
