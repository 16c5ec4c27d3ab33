"""Topic names (DESIGN.md section 4). A deployment may prefix them all alike."""

from __future__ import annotations

from dataclasses import dataclass

REGISTRATION_EVENTS = "registration.events.v1"
ASSESSMENT_EVENTS = "assessment.events.v1"
NOTIFICATION_EVENTS = "notification.events.v1"
EXCHANGE_ACTIVITY = "exchange.activity.v1"
EXCHANGE_AGGREGATES = "exchange.aggregates.v1"
# Peer matchmaking (the exchange service): suggestions and shared activity, key = recipient AGS.
EXCHANGE_PEERS = "exchange.peers.v1"

DOMAIN_TOPICS = (REGISTRATION_EVENTS, ASSESSMENT_EVENTS, NOTIFICATION_EVENTS)
EXCHANGE_TOPICS = (EXCHANGE_ACTIVITY, EXCHANGE_AGGREGATES, EXCHANGE_PEERS)
ALL_TOPICS = DOMAIN_TOPICS + EXCHANGE_TOPICS


def dead_letter_topic(consumer: str) -> str:
    """The dead-letter topic of one consumer (its group name), e.g. `dead-letter.reporting.v1`."""
    return f"dead-letter.{consumer}.v1"


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is provisioned; tansu cannot add partitions later, so create them up front."""

    name: str
    partitions: int = 4
    compacted: bool = False


def topic_specs(consumers: tuple[str, ...] = (), *, partitions: int = 4) -> list[TopicSpec]:
    specs = [
        TopicSpec(name, partitions) for name in (*DOMAIN_TOPICS, EXCHANGE_ACTIVITY, EXCHANGE_PEERS)
    ]
    specs.append(TopicSpec(EXCHANGE_AGGREGATES, partitions, compacted=True))
    specs.extend(TopicSpec(dead_letter_topic(consumer), partitions=1) for consumer in consumers)
    return specs


def prefixed(prefix: str, topic: str) -> str:
    return f"{prefix}{topic}"
