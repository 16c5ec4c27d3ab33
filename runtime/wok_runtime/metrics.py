"""Prometheus metrics of one service process (its own registry, so tests can build many apps).

Besides HTTP and consumption counters, the domain counters an operator watches are derived
from the events a service publishes (after they are durable in its outbox), so every service
counts its facts the same way: registrations, e-mails sent and failed. Dead letters and
consumer lag come from the consumers. The MongoDB commands a process sends are counted by
command and collection (`MongoCommandCounter`, a PyMongo command listener on the runtime's
client).
"""

from __future__ import annotations

import collections
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

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


# commands started and not yet answered, kept at most (a command whose answer never comes,
# e.g. its task cancelled, must not make the map grow for ever)
PENDING_COMMANDS_KEPT = 10_000


class MongoCommandCounter(CommandListener):
    """Counts the MongoDB commands of one client by command name and collection, and the
    failed ones (an error answer or a lost connection), as `wok_mongo_commands_total` and
    `wok_mongo_command_failures_total`, with the time until their answers
    (`wok_mongo_command_seconds_total`, waiting for the server included). Only names go
    into the labels, never a command's arguments. It runs on the event loop for every
    command, so it does little there: plain numbers in dictionaries, turned into metrics
    when /metrics is read (a collector); about 1 µs per command, besides PyMongo's own
    event objects (about 2.5 µs)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._sent: dict[tuple[str, str], int] = {}
        self._failed: dict[tuple[str, str], int] = {}
        self._seconds: dict[tuple[str, str], float] = {}
        self._pending: dict[int, tuple[str, str]] = {}
        registry.register(self)

    @staticmethod
    def labels_of(command_name: str, command: Any) -> tuple[str, str]:
        """(command, collection); the collection is "" for commands on the database."""
        target = command.get(command_name)
        if isinstance(target, str):
            return command_name, target
        if command_name == "getMore":
            collection = command.get("collection")
            return command_name, collection if isinstance(collection, str) else ""
        return command_name, ""

    def started(self, event: CommandStartedEvent) -> None:
        key = self.labels_of(event.command_name, event.command)
        self._sent[key] = self._sent.get(key, 0) + 1
        if len(self._pending) >= PENDING_COMMANDS_KEPT:
            self._pending.clear()
        self._pending[event.request_id] = key

    def succeeded(self, event: CommandSucceededEvent) -> None:
        key = self._pending.pop(event.request_id, None)
        if key is not None:
            self._seconds[key] = self._seconds.get(key, 0.0) + event.duration_micros / 1e6

    def failed(self, event: CommandFailedEvent) -> None:
        key = self._pending.pop(event.request_id, None) or (event.command_name, "")
        self._failed[key] = self._failed.get(key, 0) + 1
        self._seconds[key] = self._seconds.get(key, 0.0) + event.duration_micros / 1e6

    def counts(self) -> collections.Counter[tuple[str, str]]:
        """The commands sent so far by (command, collection): a copy, so two readings
        subtract to what was sent in between."""
        return collections.Counter(self._sent)

    def _families(self, *, with_samples: bool) -> list[CounterMetricFamily]:
        families = []
        for name, help_text, counts in (
            (
                "wok_mongo_commands",
                "MongoDB commands sent, by command name and collection",
                self._sent,
            ),
            (
                "wok_mongo_command_failures",
                "MongoDB commands that failed (error answer or lost connection), by command "
                "name and collection",
                self._failed,
            ),
            (
                "wok_mongo_command_seconds",
                "Time from sending MongoDB commands to their answers (waiting included), "
                "by command name and collection",
                self._seconds,
            ),
        ):
            family = CounterMetricFamily(name, help_text, labels=["command", "collection"])
            if with_samples:
                for (command, collection), value in list(counts.items()):
                    family.add_metric([command, collection], value)
            families.append(family)
        return families

    def describe(self) -> list[CounterMetricFamily]:
        return self._families(with_samples=False)

    def collect(self) -> list[CounterMetricFamily]:
        return self._families(with_samples=True)


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
        self.mongo_commands = MongoCommandCounter(self.registry)

    def event_outcome(self, consumer: str, event_type: str, outcome: str, n: int = 1) -> None:
        self._events.labels(self.service, consumer, event_type, outcome).inc(n)
        if outcome == "dead_lettered":
            self._dead_letters.labels(self.service, consumer).inc(n)

    def published(self, message: PublishedMessage) -> None:
        self._published.labels(self.service, message.topic).inc()
        if message.event_type:
            self._published_types.labels(self.service, message.event_type).inc()
        domain = self._domain.get(message.event_type)
        if domain is not None:
            domain.inc()

    def lag(self, consumer: str, topic: str, partition: int, messages: int) -> None:
        self.consumer_lag.labels(self.service, consumer, topic, str(partition)).set(messages)
