"""The reporting service end to end in one process: FastStream's test broker, in-memory stores."""

import gc
from dataclasses import dataclass, field

from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from httpx import ASGITransport, AsyncClient

from wok_contracts import AggregateSnapshot, RegistrationStatus, decode_envelope
from wok_contracts.topics import (
    EXCHANGE_AGGREGATES,
    NOTIFICATION_EVENTS,
    REGISTRATION_EVENTS,
    dead_letter_topic,
)
from wok_reporting.domain import (
    CONFIRMATIONS_SENT,
    DIALOGUE_EVENTS,
    MUNICIPALITIES,
    PROGRAM,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
)
from wok_runtime.consumer import DLQ_REASON

DEAD_LETTERS = dead_letter_topic("reporting")


@dataclass
class Received:
    """Messages one topic received: (headers, raw value)."""

    messages: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def snapshots(self, key: str) -> list[AggregateSnapshot]:
        return [
            decode_envelope(value).data
            for headers, value in self.messages
            if headers.get("key") == key
        ]


def listen(broker: KafkaBroker, topic: str) -> Received:
    """A test subscriber that keeps what arrives on `topic` (add before the broker starts)."""
    received = Received()

    @broker.subscriber(topic)
    async def keep(message: KafkaMessage) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        headers = {name: value.decode() for name, value in raw.headers}
        headers["key"] = (raw.key or b"").decode()
        received.messages.append((headers, raw.value or b""))

    return received


async def test_a_duplicate_registration_under_a_new_event_id_is_counted_once(
    service, events
) -> None:
    aggregates = listen(service.runtime.broker, EXCHANGE_AGGREGATES)
    ags = events.KAISERSLAUTERN
    dialogue_event = events.dialogue_event_scheduled(ags)
    registrations = [
        events.participant_registered(
            dialogue_event_id=dialogue_event.dialogue_event_id,
            status=RegistrationStatus.WAITLISTED if index == 5 else RegistrationStatus.CONFIRMED,
        )
        for index in range(6)
    ]

    async with TestKafkaBroker(service.runtime.broker) as broker:
        for data in [events.municipality_registered(ags), dialogue_event, *registrations]:
            await broker.publish(
                events.envelope(data).to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode()
            )
        # The same registration announced again, as a producer replay would: a new event id.
        again = events.envelope(registrations[0])
        assert again.id != events.envelope(registrations[0]).id
        await broker.publish(again.to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode())
        await broker.publish(
            events.envelope(
                events.notification_sent(
                    registration_id=registrations[0].registration_id,
                    dialogue_event_id=dialogue_event.dialogue_event_id,
                )
            ).to_json_bytes(),
            topic=NOTIFICATION_EVENTS,
            key=ags.encode(),
        )
        await service.publisher.publish_changes()

    program = aggregates.snapshots(PROGRAM)[-1]
    assert program.metrics[REGISTRATIONS_TOTAL] == 6
    assert program.metrics[MUNICIPALITIES] == 1
    assert program.metrics[DIALOGUE_EVENTS] == 1
    # 5 confirmed and 1 waitlisted: the 1 is withheld, and so is the 5 that would reveal it.
    assert program.metrics[REGISTRATIONS_CONFIRMED] is None
    assert program.metrics[REGISTRATIONS_WAITLISTED] is None
    assert program.metrics[CONFIRMATIONS_SENT] is None
    assert set(program.suppressed) == {
        REGISTRATIONS_CONFIRMED,
        REGISTRATIONS_WAITLISTED,
        CONFIRMATIONS_SENT,
    }
    municipality = aggregates.snapshots(f"municipality:{ags}")[-1]
    assert municipality.scope_key == ags
    assert municipality.metrics[REGISTRATIONS_TOTAL] == 6


async def test_a_malformed_message_is_dead_lettered_and_the_next_one_still_counts(
    service, events
) -> None:
    dead_letters = listen(service.runtime.broker, DEAD_LETTERS)
    ags = events.KAISERSLAUTERN
    dialogue_event = events.dialogue_event_scheduled(ags)
    before = [
        events.participant_registered(dialogue_event_id=dialogue_event.dialogue_event_id)
        for _ in range(5)
    ]
    after = events.participant_registered(dialogue_event_id=dialogue_event.dialogue_event_id)

    async with TestKafkaBroker(service.runtime.broker) as broker:
        for data in before:
            await broker.publish(
                events.envelope(data).to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode()
            )
        await broker.publish(b"{not json", topic=REGISTRATION_EVENTS, key=ags.encode())
        await broker.publish(
            events.envelope(after).to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode()
        )
        await service.publisher.publish_changes()

    assert len(dead_letters.messages) == 1
    headers, value = dead_letters.messages[0]
    assert value == b"{not json"
    assert headers[DLQ_REASON].startswith("not JSON")
    assert headers["wok-dlq-topic"] == REGISTRATION_EVENTS
    assert headers["key"] == ags
    program = await service.publisher.current(PROGRAM)
    assert program is not None
    assert program.metrics[REGISTRATIONS_TOTAL] == 6


async def test_the_federal_office_reads_what_was_published(service, events) -> None:
    ags = events.KAISERSLAUTERN
    dialogue_event = events.dialogue_event_scheduled(ags)

    async with TestKafkaBroker(service.runtime.broker) as broker:
        for _ in range(7):
            data = events.participant_registered(dialogue_event_id=dialogue_event.dialogue_event_id)
            await broker.publish(
                events.envelope(data).to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode()
            )
        published = await service.publisher.publish_changes()

    transport = ASGITransport(app=service.app)
    async with AsyncClient(transport=transport, base_url="http://reporting") as client:
        auth = {"Authorization": f"Bearer {service.federal_key}"}
        program = await client.get("/v1/aggregates/program", headers=auth)
        municipality = await client.get(f"/v1/aggregates/municipalities/{ags}", headers=auth)

    assert program.status_code == 200
    assert program.json()["metrics"][REGISTRATIONS_TOTAL] == 7
    assert program.json()["sequence"] == published[0].sequence
    assert municipality.status_code == 200
    assert municipality.json()["scope"] == "municipality"
    assert municipality.json()["scope_key"] == ags


async def test_the_projection_stores_its_batches_with_cycle_collection_paused(
    service, events
) -> None:
    """A consumed batch's objects are not promoted into full collections of the whole heap
    (a third of the projection's CPU on `bench/projection.py`); the collector runs again
    once the batch is stored."""
    ags = events.KAISERSLAUTERN
    collecting: list[bool] = []
    record_batches = service.projections.record_batches

    async def noting(batches):  # type: ignore[no-untyped-def]
        collecting.append(gc.isenabled())
        await record_batches(batches)

    service.projections.record_batches = noting
    async with TestKafkaBroker(service.runtime.broker) as broker:
        for data in (events.municipality_registered(ags), events.dialogue_event_scheduled(ags)):
            await broker.publish(
                events.envelope(data).to_json_bytes(), topic=REGISTRATION_EVENTS, key=ags.encode()
            )

    assert collecting == [True, False]  # the first batch reads the stored offset: collecting
    assert gc.isenabled()
    assert len(await service.projections.municipality_facts({ags})) == 1
