"""Reporting's batch sink on the real nx-27017: facts, digests and offsets of a batch."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import RegistrationStatus
from wok_reporting.adapters.mongo import MongoActivityRepository, MongoProjectionRepository
from wok_reporting.batches import ProjectionSink
from wok_reporting.domain import REGISTRATIONS_TOTAL, count
from wok_reporting.handlers import Projector
from wok_runtime.batch import Item, PartitionBatch
from wok_runtime.consumer import Record
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import MongoOutboxSource, pending_messages

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_reporting_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


def partition_batch(envelopes: list, *, first_offset: int, partition: int = 1) -> PartitionBatch:
    items = tuple(
        Item(
            record=Record(
                topic="registration.events.v1",
                partition=partition,
                offset=first_offset + n,
                key=b"07312000",
                value=envelope.to_json_bytes(),
            ),
            envelope=envelope,
        )
        for n, envelope in enumerate(envelopes)
    )
    return PartitionBatch(
        topic="registration.events.v1",
        partition=partition,
        last_offset=first_offset + len(envelopes) - 1,
        items=items,
    )


async def test_a_batch_stores_facts_digests_and_its_offset_once(database, events) -> None:
    changes: list[int] = []
    projector = Projector(
        projections=MongoProjectionRepository(database),
        activities=MongoActivityRepository(database),
        on_change=lambda: changes.append(1),
    )
    sink = ProjectionSink(projector)
    ags = events.KAISERSLAUTERN
    dialogue = events.dialogue_event_scheduled(ags)
    payloads = [
        events.municipality_registered(ags, name="Kaiserslautern"),
        dialogue,
        *(
            events.participant_registered(
                dialogue_event_id=dialogue.dialogue_event_id, status=RegistrationStatus.CONFIRMED
            )
            for _ in range(6)
        ),
    ]
    envelopes = [
        events.envelope(data, time=T0 + timedelta(minutes=n)) for n, data in enumerate(payloads)
    ]
    batch = partition_batch(envelopes, first_offset=100)

    await sink.store([batch])
    await sink.store([batch])  # stored again (a rewind): nothing new
    renamed = events.envelope(
        events.profile_updated(ags, name="Kaiserslautern (Stadt)", kind="city"),
        time=T0 + timedelta(hours=1),
    )
    await sink.store([partition_batch([renamed, envelopes[1]], first_offset=108)])

    assert await sink.stored_offset("registration.events.v1", 1) == 109
    projection = await MongoProjectionRepository(database).load()
    assert count(projection)[REGISTRATIONS_TOTAL] == 6
    assert len(projection.dialogue_events) == 1
    assert projection.municipality_name(ags) == "Kaiserslautern (Stadt)"
    activities = MongoActivityRepository(database)
    digests = await activities.all()
    assert [d.kind.value for d in digests] == [
        "municipality_joined",
        "dialogue_event_scheduled",
        "profile_updated",
    ]
    # Named as the municipality was called at each event's time, itself in the same batch.
    assert [d.municipality_name for d in digests] == ["Kaiserslautern"] * 2 + [
        "Kaiserslautern (Stadt)"
    ]
    pending = await MongoOutboxSource(activities.collection).documents_with_pending(10)
    assert sum(len(pending_messages(document)) for document in pending) == 3
    assert changes == [1, 1, 1]


async def test_only_a_batch_with_digests_sends_the_relay_looking_for_them(database, events) -> None:
    """A batch of registrations alone has nothing for the outbox relay: waking it would cost
    a database read per batch for nothing."""
    changes: list[str] = []
    projector = Projector(
        projections=MongoProjectionRepository(database),
        activities=MongoActivityRepository(database),
        on_change=lambda: changes.append("facts"),
        on_digests=lambda: changes.append("digests"),
    )
    sink = ProjectionSink(projector)
    ags = events.KAISERSLAUTERN
    dialogue = events.dialogue_event_scheduled(ags)
    first = [
        events.envelope(events.municipality_registered(ags, name="Kaiserslautern"), time=T0),
        events.envelope(dialogue, time=T0 + timedelta(minutes=1)),
    ]
    await sink.store([partition_batch(first, first_offset=0, partition=2)])
    assert changes == ["facts", "digests"]

    registrations = [
        events.envelope(
            events.participant_registered(
                dialogue_event_id=dialogue.dialogue_event_id,
                status=RegistrationStatus.CONFIRMED,
            ),
            time=T0 + timedelta(minutes=2 + n),
        )
        for n in range(5)
    ]
    await sink.store([partition_batch(registrations, first_offset=2, partition=2)])
    assert changes == ["facts", "digests", "facts"]
    projection = await MongoProjectionRepository(database).load()
    assert count(projection)[REGISTRATIONS_TOTAL] == 5
