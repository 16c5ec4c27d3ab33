"""Nothing lost, nothing double counted, bad input kept: the consumers on the real broker.

A municipality's own system publishes straight to `registration.events.v1` here, with a
plain Kafka producer, as DESIGN.md section 2 allows.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import (
    accounts_for,
    eventually,
    latest_snapshot,
    program_registrations,
    read_topic,
)
from wok_cli.devstack import EmbeddedStack
from wok_contracts import (
    DialogueEventScheduled,
    Envelope,
    MunicipalityRegistered,
    ParticipantRegistered,
    new_envelope,
)

SOURCE = "/municipal-system/e2e"


def topic(stack: EmbeddedStack, name: str) -> str:
    return f"{stack.settings.topic_prefix}{name}"


async def publish(producer: AIOKafkaProducer, stack: EmbeddedStack, value: bytes, ags: str) -> None:
    await producer.send_and_wait(
        topic(stack, "registration.events.v1"),
        value,
        key=ags.encode(),
        headers=[("content-type", b"application/cloudevents+json")],
    )


def municipality_with_event(ags: str) -> tuple[Envelope[Any], Envelope[Any], str]:
    event_id = str(uuid.uuid4())
    starts = datetime.now(UTC) + timedelta(days=30)
    onboarded = new_envelope(
        MunicipalityRegistered(ags=ags, name=f"Gemeinde {ags}", kind="town", land=ags[:2]),
        source=SOURCE,
        municipality=ags,
    )
    scheduled = new_envelope(
        DialogueEventScheduled(
            dialogue_event_id=event_id,
            ags=ags,
            title="Bürgerdialog",
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            format="online",
            capacity=10_000,
            registration_deadline=starts - timedelta(days=1),
        ),
        source=SOURCE,
        municipality=ags,
    )
    return onboarded, scheduled, event_id


def registration(ags: str, event_id: str) -> Envelope[Any]:
    return new_envelope(
        ParticipantRegistered(
            registration_id=str(uuid.uuid4()),
            dialogue_event_id=event_id,
            ags=ags,
            status="confirmed",
            sector="civil_society",
        ),
        source=SOURCE,
        municipality=ags,
    )


async def program_total(stack: EmbeddedStack) -> int:
    return await program_registrations(
        stack.kafka_bootstrap, topic(stack, "exchange.aggregates.v1")
    )


async def municipality_snapshot(stack: EmbeddedStack, ags: str) -> dict[str, Any] | None:
    return await latest_snapshot(
        stack.kafka_bootstrap, topic(stack, "exchange.aggregates.v1"), f"municipality:{ags}"
    )


async def counted_exactly(stack: EmbeddedStack, *, ags: str, before: int, added: int) -> None:
    """The program total grows by exactly `added` and stays there; the municipality's own
    snapshot shows the same figure (or withholds it, see `accounts_for`)."""
    await eventually(
        lambda: program_total(stack),
        lambda total: total >= before + added,
        timeout_s=120,
        what=f"{added} more registrations in the program aggregate",
    )
    await asyncio.sleep(1.0)  # more than a snapshot interval: nothing else arrives late
    assert await program_total(stack) == before + added
    expected = {"registrations_total": added, "municipalities": 1, "dialogue_events": 1}
    assert accounts_for(await municipality_snapshot(stack, ags), expected)


async def test_the_same_events_delivered_twice_are_counted_once(
    stack: EmbeddedStack, producer: AIOKafkaProducer
) -> None:
    ags = unique_ags()
    before = await program_total(stack)
    onboarded, scheduled, event_id = municipality_with_event(ags)
    registrations = [registration(ags, event_id) for _ in range(7)]
    for envelope in [onboarded, scheduled, *registrations]:
        await publish(producer, stack, envelope.to_json_bytes(), ags)
    for envelope in [onboarded, scheduled, *registrations]:  # redelivered as they were
        await publish(producer, stack, envelope.to_json_bytes(), ags)
    # the same registration announced again under a new event id
    again = registrations[0].model_copy(update={"id": str(uuid.uuid4())})
    await publish(producer, stack, again.to_json_bytes(), ags)
    # a later registration proves the duplicates before it were processed, not pending
    await publish(producer, stack, registration(ags, event_id).to_json_bytes(), ags)

    await counted_exactly(stack, ags=ags, before=before, added=8)


async def test_a_malformed_message_is_dead_lettered_and_the_next_one_counted(
    stack: EmbeddedStack, producer: AIOKafkaProducer
) -> None:
    ags = unique_ags()
    before = await program_total(stack)
    onboarded, scheduled, event_id = municipality_with_event(ags)
    for envelope in (onboarded, scheduled):
        await publish(producer, stack, envelope.to_json_bytes(), ags)
    poison = f'{{"broken": "{uuid.uuid4()}"'.encode()
    await publish(producer, stack, poison, ags)
    for _ in range(5):
        await publish(producer, stack, registration(ags, event_id).to_json_bytes(), ags)

    await counted_exactly(stack, ags=ags, before=before, added=5)
    for consumer in ("reporting", "notification", "assessment"):
        dead = await eventually(
            lambda consumer=consumer: read_topic(  # type: ignore[misc]
                stack.kafka_bootstrap, topic(stack, f"dead-letter.{consumer}.v1")
            ),
            lambda records: any(record.value == poison for record in records),
            what=f"the poison message in {consumer}'s dead letters",
        )
        [record] = [record for record in dead if record.value == poison]
        headers = dict(record.headers)
        assert headers["wok-dlq-reason"].startswith(b"not JSON")
        assert headers["wok-dlq-topic"] == b"registration.events.v1"
        assert headers["content-type"] == b"application/cloudevents+json"
        assert record.key == ags.encode()


async def test_a_consumer_killed_mid_stream_loses_nothing_and_counts_nothing_twice(
    stack: EmbeddedStack, producer: AIOKafkaProducer
) -> None:
    ags = unique_ags()
    before = await program_total(stack)
    onboarded, scheduled, event_id = municipality_with_event(ags)
    for envelope in (onboarded, scheduled):
        await publish(producer, stack, envelope.to_json_bytes(), ags)
    total = 400

    async def play() -> None:
        for _ in range(total):
            await publish(producer, stack, registration(ags, event_id).to_json_bytes(), ags)
            await asyncio.sleep(0.002)

    playing = asyncio.create_task(play())
    await eventually(
        lambda: program_total(stack),
        lambda counted: counted >= before + 50,
        what="reporting under way",
    )
    assert stack.kill_service("reporting", signal.SIGKILL) == -signal.SIGKILL
    await playing
    await asyncio.to_thread(stack.restart_service, "reporting")

    await counted_exactly(stack, ags=ags, before=before, added=total)
