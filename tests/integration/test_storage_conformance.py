"""Storage conformance (DESIGN.md section 8): every query and update shape the runtime relies
on, run against the embedded MongoDB wire server (nx-27017), with the stored result checked.

nx-27017 has answered some shapes wrongly without an error (array updates, some
accumulators), so each shape here asserts what was actually stored, not just that the call
returned. A shape that a repository starts to use belongs here first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import DuplicateKeyError

from wok_contracts import (
    DialogueEventScheduled,
    MunicipalityRegistered,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    decode_envelope,
    new_envelope,
)
from wok_runtime.mongo import (
    PROCESSED_COLLECTION,
    PROCESSED_RETENTION_S,
    MongoProcessedStore,
    mongo_client,
)
from wok_runtime.outbox import (
    OUTBOX_FIELD,
    PENDING_FIELD,
    MongoOutboxSource,
    OutboundEvent,
    OutboxRelay,
    PendingMessage,
    outbox_update,
    pending_messages,
    with_outbox,
)

REGISTRATION_EVENTS = "registration.events.v1"
KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
TRIER = "07211000"
STARTS_AT = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    """A fresh database per test, through the same client settings the services use."""
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_conformance_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


def registered(ags: str, name: str) -> OutboundEvent:
    data = MunicipalityRegistered(ags=ags, name=name, kind="city", land=ags[:2])
    return OutboundEvent(
        REGISTRATION_EVENTS, new_envelope(data, source="/wok/registration", municipality=ags)
    )


def scheduled(dialogue_event_id: str, *, capacity: int) -> OutboundEvent:
    data = DialogueEventScheduled(
        dialogue_event_id=dialogue_event_id,
        ags=KAISERSLAUTERN,
        title="Dialog: Begegnung im Quartier",
        starts_at=STARTS_AT,
        ends_at=STARTS_AT + timedelta(hours=2),
        format="online",
        capacity=capacity,
        registration_deadline=STARTS_AT - timedelta(days=10),
    )
    return OutboundEvent(
        REGISTRATION_EVENTS,
        new_envelope(data, source="/wok/registration", municipality=KAISERSLAUTERN),
    )


def participant(registration_id: str, dialogue_event_id: str) -> OutboundEvent:
    data = ParticipantRegistered(
        registration_id=registration_id,
        dialogue_event_id=dialogue_event_id,
        ags=KAISERSLAUTERN,
        status=RegistrationStatus.CONFIRMED,
        sector=Sector.RESIDENT,
    )
    return OutboundEvent(
        REGISTRATION_EVENTS,
        new_envelope(data, source="/wok/registration", municipality=KAISERSLAUTERN),
    )


def ids(events: list[OutboundEvent]) -> list[str]:
    return [event.envelope.id for event in events]


@dataclass
class RecordingPublisher:
    messages: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    failures_left: int = 0

    async def send_all(self, messages: Sequence[PendingMessage]) -> list[Awaitable[object]]:
        """As `KafkaPublisher.send_all`: after a failed hand-over, the rest of its key waits."""
        acks: list[Awaitable[object]] = []
        failed: set[str] = set()
        for message in messages:
            outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            if self.failures_left or message.key in failed:
                self.failures_left = max(0, self.failures_left - 1)
                failed.add(message.key)
                outcome.set_exception(ConnectionError("broker away"))
            else:
                self.messages.append((message.topic, message.key, message.value, message.headers))
                outcome.set_result(None)
            acks.append(outcome)
        return acks

    @property
    def event_ids(self) -> list[str]:
        return [decode_envelope(value).id for _, _, value, _ in self.messages]


# The transactional outbox


async def test_with_outbox_insert_stores_the_map_and_the_pending_counter(database: Any) -> None:
    events = [registered(KAISERSLAUTERN, "Kaiserslautern"), registered(KAISERSLAUTERN, "KL")]
    document = with_outbox({"_id": KAISERSLAUTERN, "name": "Kaiserslautern", "land": "07"}, events)

    await database.municipalities.insert_one(document)
    stored = await database.municipalities.find_one({"_id": KAISERSLAUTERN})

    assert stored == document
    assert stored[PENDING_FIELD] == 2
    assert [m.event_id for m in pending_messages(stored)] == ids(events)
    for message in pending_messages(stored):
        assert decode_envelope(message.value).id == message.event_id


async def test_outbox_update_sets_nested_keys_and_increments_on_an_existing_document(
    database: Any,
) -> None:
    first = registered(KAISERSLAUTERN, "Kaiserslautern")
    await database.municipalities.insert_one(with_outbox({"_id": KAISERSLAUTERN}, [first]))
    later = [registered(KAISERSLAUTERN, "Stadt KL"), registered(KAISERSLAUTERN, "KL")]

    result = await database.municipalities.update_one(
        {"_id": KAISERSLAUTERN},
        outbox_update(later, set_fields={"name": "Stadt KL", "profile.population": 99_000}),
    )
    stored = await database.municipalities.find_one({"_id": KAISERSLAUTERN})

    assert (result.matched_count, result.modified_count) == (1, 1)
    assert stored["name"] == "Stadt KL"
    assert stored["profile"] == {"population": 99_000}
    assert stored[PENDING_FIELD] == 3
    assert isinstance(stored[OUTBOX_FIELD], dict)
    assert [m.event_id for m in pending_messages(stored)] == ids([first, *later])
    assert all(isinstance(entry, dict) for entry in stored[OUTBOX_FIELD].values())


async def test_outbox_source_finds_pending_documents_and_marks_events_published(
    database: Any,
) -> None:
    collection = database.municipalities
    kaiserslautern = [registered(KAISERSLAUTERN, "KL"), registered(KAISERSLAUTERN, "KL 2")]
    await collection.insert_one(with_outbox({"_id": KAISERSLAUTERN}, kaiserslautern))
    await collection.insert_one(with_outbox({"_id": MAINZ}, [registered(MAINZ, "Mainz")]))
    await collection.insert_one(with_outbox({"_id": TRIER}, []))
    source = MongoOutboxSource(collection)

    pending = await source.documents_with_pending(10)
    assert sorted(document["_id"] for document in pending) == [KAISERSLAUTERN, MAINZ]
    assert len(await source.documents_with_pending(1)) == 1

    for document in pending:
        for message in pending_messages(document):
            await source.mark_published(message)
            # a second mark (a relay that crashed after marking) must not count down twice
            await source.mark_published(message)

    assert await source.documents_with_pending(10) == []
    async for stored in collection.find({}):
        assert stored[PENDING_FIELD] == 0, stored["_id"]
        assert stored[OUTBOX_FIELD] == {}, stored["_id"]


async def test_the_relay_publishes_every_event_once_over_mongodb(database: Any) -> None:
    collection = database.municipalities
    kaiserslautern = [registered(KAISERSLAUTERN, "KL"), registered(KAISERSLAUTERN, "KL 2")]
    await collection.insert_one(with_outbox({"_id": KAISERSLAUTERN}, kaiserslautern[:1]))
    await collection.update_one(
        {"_id": KAISERSLAUTERN}, outbox_update(kaiserslautern[1:], set_fields={"name": "KL 2"})
    )
    mainz = [registered(MAINZ, "Mainz")]
    await collection.insert_one(with_outbox({"_id": MAINZ}, mainz))
    publisher = RecordingPublisher(failures_left=1)
    relay = OutboxRelay(sources=[MongoOutboxSource(collection)], publisher=publisher, batch_size=1)

    with pytest.raises(ConnectionError):
        await relay.drain_once()
    assert await collection.count_documents({PENDING_FIELD: {"$gt": 0}}) == 2

    assert await relay.drain_once() == 3
    assert await relay.drain_once() == 0

    assert sorted(publisher.event_ids) == sorted(ids(kaiserslautern + mainz))
    assert [i for i in publisher.event_ids if i not in ids(mainz)] == ids(kaiserslautern)
    assert {key for _, key, _, _ in publisher.messages} == {KAISERSLAUTERN, MAINZ}
    async for stored in collection.find({}):
        assert (stored[PENDING_FIELD], stored[OUTBOX_FIELD]) == (0, {}), stored["_id"]


# Idempotent consumption


async def test_processed_store_marks_ids_once_under_a_ttl_index(database: Any) -> None:
    store = MongoProcessedStore(database)
    await store.ensure_indexes()
    await store.ensure_indexes()  # every start runs it again

    indexes = await database[PROCESSED_COLLECTION].index_information()
    ttl = [spec for spec in indexes.values() if spec["key"] == [("processed_at", 1)]]
    assert [spec.get("expireAfterSeconds") for spec in ttl] == [PROCESSED_RETENTION_S]

    assert not await store.seen("reporting", "event-1")
    await store.mark("reporting", "event-1")
    await store.mark("reporting", "event-1")  # a redelivery after a crash before the commit

    assert await store.seen("reporting", "event-1")
    assert not await store.seen("notification", "event-1")
    assert await database[PROCESSED_COLLECTION].count_documents({}) == 1
    stored = await database[PROCESSED_COLLECTION].find_one({"_id": "reporting:event-1"})
    assert isinstance(stored["processed_at"], datetime)
    assert abs(stored["processed_at"] - datetime.now(UTC)) < timedelta(minutes=1)


# Shapes the services' repositories build on


@pytest.mark.parametrize("guard", ["count-below-capacity", "places-left"])
async def test_200_concurrent_takers_of_50_seats_get_exactly_50(database: Any, guard: str) -> None:
    capacity, takers = 50, 200
    dialogue_event_id = f"dlg-{guard}"
    event = scheduled(dialogue_event_id, capacity=capacity)
    await database.dialogue_events.insert_one(
        with_outbox(
            {
                "_id": dialogue_event_id,
                "capacity": capacity,
                "confirmed_count": 0,
                "places_left": capacity,
                "seats": {},
            },
            [event],
        )
    )

    async def take(taker: str) -> dict[str, Any] | None:
        condition: dict[str, Any] = {"_id": dialogue_event_id, f"seats.{taker}": {"$exists": False}}
        update = outbox_update(
            [participant(taker, dialogue_event_id)], set_fields={f"seats.{taker}": "confirmed"}
        )
        if guard == "count-below-capacity":
            condition["confirmed_count"] = {"$lt": capacity}
            update["$inc"]["confirmed_count"] = 1
        else:
            condition["places_left"] = {"$gte": 1}
            update["$inc"]["places_left"] = -1
        document: dict[str, Any] | None = await database.dialogue_events.find_one_and_update(
            condition, update, return_document=ReturnDocument.AFTER
        )
        return document

    results = await asyncio.gather(*(take(f"reg-{n:03d}") for n in range(takers)))
    winners = [f"reg-{n:03d}" for n, result in enumerate(results) if result is not None]

    stored = await database.dialogue_events.find_one({"_id": dialogue_event_id})
    assert len(winners) == capacity
    assert sorted(stored["seats"]) == sorted(winners)
    assert stored["confirmed_count" if guard == "count-below-capacity" else "places_left"] == (
        capacity if guard == "count-below-capacity" else 0
    )
    assert stored[PENDING_FIELD] == capacity + 1
    assert len(stored[OUTBOX_FIELD]) == capacity + 1
    # the guard on the map key refuses the same taker twice, even with seats left
    assert await take(winners[0]) is None


async def test_a_unique_index_refuses_a_duplicate(database: Any) -> None:
    await database.municipalities.create_index("key_hash", unique=True)
    await database.municipalities.insert_one({"_id": KAISERSLAUTERN, "key_hash": "h-1"})

    with pytest.raises(DuplicateKeyError):
        await database.municipalities.insert_one({"_id": MAINZ, "key_hash": "h-1"})
    with pytest.raises(DuplicateKeyError):
        await database.municipalities.insert_one({"_id": KAISERSLAUTERN, "key_hash": "h-2"})

    await database.municipalities.insert_one({"_id": MAINZ, "key_hash": "h-2"})
    assert await database.municipalities.count_documents({}) == 2
    with pytest.raises(DuplicateKeyError):
        await database.municipalities.update_one({"_id": MAINZ}, {"$set": {"key_hash": "h-1"}})
    assert (await database.municipalities.find_one({"_id": MAINZ}))["key_hash"] == "h-2"


async def test_an_upsert_by_string_id_with_set_creates_then_updates(database: Any) -> None:
    projections = database.projections

    created = await projections.update_one(
        {"_id": "program"}, {"$set": {"scope": "program", "metrics.registrations": 1}}, upsert=True
    )
    updated = await projections.update_one(
        {"_id": "program"},
        {"$set": {"metrics.registrations": 2, "metrics.events": 1}, "$inc": {"sequence": 1}},
        upsert=True,
    )

    assert created.upserted_id == "program"
    assert updated.upserted_id is None and updated.matched_count == 1
    assert await projections.find_one({"_id": "program"}) == {
        "_id": "program",
        "scope": "program",
        "metrics": {"registrations": 2, "events": 1},
        "sequence": 1,
    }
    assert await projections.count_documents({}) == 1


async def test_bulk_upserts_by_string_id(database: Any) -> None:
    projections = database.projections
    requests = [
        UpdateOne({"_id": f"land:{land}"}, {"$inc": {"registrations": 1}}, upsert=True)
        for land in ("07", "09", "07")
    ]

    await projections.bulk_write(requests, ordered=True)

    stored = {d["_id"]: d["registrations"] async for d in projections.find({})}
    assert stored == {"land:07": 2, "land:09": 1}


async def test_find_with_in_on_the_id_and_on_a_field(database: Any) -> None:
    await database.municipalities.insert_many(
        [
            {"_id": KAISERSLAUTERN, "land": "07"},
            {"_id": MAINZ, "land": "07"},
            {"_id": "09162000", "land": "09"},
            {"_id": "11000000", "land": "11"},
        ]
    )

    by_id = [d["_id"] async for d in database.municipalities.find({"_id": {"$in": [MAINZ, TRIER]}})]
    by_land = [
        d["_id"] async for d in database.municipalities.find({"land": {"$in": ["09", "11"]}})
    ]

    assert by_id == [MAINZ]
    assert sorted(by_land) == ["09162000", "11000000"]
    assert await database.municipalities.count_documents({"land": "07"}) == 2


async def test_sort_and_limit(database: Any) -> None:
    await database.snapshots.insert_many(
        [{"_id": f"s-{n}", "scope_key": "07", "sequence": n} for n in (3, 1, 5, 4, 2)]
    )

    newest = [
        d["sequence"]
        async for d in database.snapshots.find({"scope_key": "07"}).sort("sequence", -1).limit(3)
    ]
    oldest = [d["_id"] async for d in database.snapshots.find({}).sort("sequence", 1).limit(2)]

    assert newest == [5, 4, 3]
    assert oldest == ["s-1", "s-2"]
