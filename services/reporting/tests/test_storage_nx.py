"""Every query and update shape of the reporting repositories, against the embedded nx-27017.

nx-27017 gives wrong answers silently for some shapes (DESIGN.md section 8), so each shape
the repositories use is run here and its stored result asserted (the root conftest starts
the server).
"""

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from wok_contracts import ActivityDigest, ActivityKind, AggregateScope, AggregateSnapshot
from wok_reporting.adapters.mongo import (
    CHUNK_WINDOW,
    POSITION_EVERY,
    MongoActivityRepository,
    MongoProjectionRepository,
    MongoSnapshotRepository,
)
from wok_reporting.adapters.repository import FactBatch, StoredSnapshot
from wok_reporting.domain import MUNICIPALITY, REGISTRATION, Fact
from wok_runtime.metrics import MongoCommandCounter
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import MongoOutboxSource, pending_messages

T0 = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_reporting_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


def fact(event_id: str, fields: dict, *, at: datetime = T0, entity: str = REGISTRATION) -> Fact:
    return Fact(
        entity=entity,
        entity_id="07312000" if entity == MUNICIPALITY else "registration-1",
        ags="07312000",
        event_id=event_id,
        event_type="registration.participant.registered.v1",
        time=at,
        fields=fields,
    )


async def test_facts_are_kept_per_entity_and_event_and_fold_into_one_row(database) -> None:
    projections = MongoProjectionRepository(database)
    registered = fact(
        "e-1", {"dialogue_event_id": "d-1", "status": "confirmed", "sector": "business"}
    )
    cancelled = fact("e.2$", {"status": "cancelled", "erased": True}, at=T0 + timedelta(seconds=1))

    await projections.record(registered)
    await projections.record(cancelled)
    await projections.record(registered)  # delivered again

    (row,) = (await projections.load()).registrations
    assert (row.status, row.sector, row.erased) == ("cancelled", "business", True)
    assert row.event_time == T0 + timedelta(seconds=1)
    # Stored three times, one fact each: the same event id is one fact when loaded.
    assert await database["fact_chunks"].count_documents({"kind": "loose"}) == 3
    assert sorted(f.event_id for f in await projections.facts()) == ["e-1", "e.2$"]
    assert {f.time for f in await projections.facts()} == {T0, T0 + timedelta(seconds=1)}

    named = fact("m-1", {"name": "Kaiserslautern", "kind": "city"}, entity=MUNICIPALITY)
    await projections.record(named)
    assert await projections.municipality_name("07312000", as_of=T0) == "Kaiserslautern"
    assert await projections.municipality_name("07312000", as_of=T0 - timedelta(1)) == "07312000"

    await projections.replace_all([registered])
    assert [f.event_id for f in await projections.facts()] == ["e-1"]
    (row,) = (await projections.load()).registrations
    assert row.status == "confirmed"


async def test_a_digest_is_stored_once_with_its_outbox(database) -> None:
    activities = MongoActivityRepository(database)
    digest = ActivityDigest(
        municipality="07312000",
        municipality_name="Kaiserslautern",
        kind=ActivityKind.DIALOGUE_EVENT_CANCELLED,
        text_de="Kaiserslautern hat eine Dialogveranstaltung abgesagt.",
        text_en="Kaiserslautern cancelled a dialogue event.",
        occurred_at=T0,
        subject_id="d-1",
        source_event_id="source-1",
    )
    quiet = digest.model_copy(
        update={"source_event_id": "source-0", "occurred_at": T0 - timedelta(1)}
    )

    assert await activities.add(digest, correlation_id="c-1", publish=True)
    assert not await activities.add(digest, correlation_id="c-1", publish=True)
    assert await activities.add(quiet, correlation_id="c-0", publish=False)

    source = MongoOutboxSource(activities.collection)
    (pending,) = await source.documents_with_pending(10)
    (message,) = pending_messages(pending)
    assert (message.topic, message.key) == ("exchange.activity.v1", "07312000")
    await source.mark_published(message)
    assert await source.documents_with_pending(10) == []
    assert [d.source_event_id for d in await activities.recent(5)] == ["source-1", "source-0"]
    assert [d.source_event_id for d in await activities.all()] == ["source-0", "source-1"]
    assert (await activities.all())[1] == digest


async def test_every_stored_snapshot_is_listed(database) -> None:
    snapshots = MongoSnapshotRepository(database)
    for scope, key in ((AggregateScope.PROGRAM, "program"), (AggregateScope.LAND, "07")):
        payload = AggregateSnapshot(
            scope=scope,
            scope_key=key,
            sequence=1,
            as_of=T0,
            generated_at=T0,
            metrics={"registrations_total": 7},
            daily_registrations={"2026-11-01": 7, "2026-11-02": None},
            suppressed=["daily_registrations:2026-11-02"],
        )
        scope_id = "program" if key == "program" else f"land:{key}"
        stored = StoredSnapshot(scope_id=scope_id, snapshot=payload, published=False)
        assert await snapshots.save(stored, previous_sequence=None)

    listed = sorted(await snapshots.all(), key=lambda s: s.scope_id)

    assert [s.scope_id for s in listed] == ["land:07", "program"]
    assert listed[0].snapshot.daily_registrations == {"2026-11-01": 7, "2026-11-02": None}


def land_snapshot(key: str, sequence: int, total: int = 7) -> AggregateSnapshot:
    return AggregateSnapshot(
        scope=AggregateScope.LAND,
        scope_key=key,
        sequence=sequence,
        as_of=T0,
        generated_at=T0,
        metrics={"registrations_total": total},
    )


async def test_a_rounds_snapshots_are_stored_in_one_write_unless_another_writer_was_first(
    database,
) -> None:
    snapshots = MongoSnapshotRepository(database)
    for key in ("01", "02", "03", "06"):
        stored = StoredSnapshot(f"land:{key}", land_snapshot(key, 1), published=True)
        assert await snapshots.save(stored, previous_sequence=None)

    # land:01 and land:02 replaced; land:03 was replaced by another writer meanwhile and
    # land:06 inserted by one (both refused); land:04 and land:05 new
    other = StoredSnapshot("land:03", land_snapshot("03", 2, total=99), published=False)
    assert await snapshots.save(other, previous_sequence=1)
    saved = await snapshots.save_all(
        [
            (StoredSnapshot("land:01", land_snapshot("01", 2), published=False), 1),
            (StoredSnapshot("land:02", land_snapshot("02", 2), published=False), 1),
            (StoredSnapshot("land:03", land_snapshot("03", 2), published=False), 1),
            (StoredSnapshot("land:04", land_snapshot("04", 1), published=False), None),
            (StoredSnapshot("land:05", land_snapshot("05", 1), published=False), None),
            (StoredSnapshot("land:06", land_snapshot("06", 1, total=5), published=False), None),
        ]
    )
    assert saved == {"land:01", "land:02", "land:04", "land:05"}
    again = await snapshots.save_all(
        [(StoredSnapshot("land:01", land_snapshot("01", 1), published=False), None)]
    )
    assert again == set()
    assert await snapshots.save_all([]) == set()

    stored = {s.scope_id: s for s in await snapshots.all()}
    assert {scope: s.snapshot.sequence for scope, s in stored.items()} == {
        "land:01": 2,
        "land:02": 2,
        "land:03": 2,
        "land:04": 1,
        "land:05": 1,
        "land:06": 1,
    }
    assert stored["land:03"].snapshot.metrics == {"registrations_total": 99}  # not ours
    assert stored["land:06"].published  # the other writer's, untouched
    assert not any(s.published for scope, s in stored.items() if scope != "land:06")


async def test_a_rounds_snapshots_are_marked_published_in_one_write(database) -> None:
    snapshots = MongoSnapshotRepository(database)
    for scope_id, key in (("program", "program"), ("land:07", "07"), ("land:09", "09")):
        payload = AggregateSnapshot(
            scope=AggregateScope.PROGRAM if key == "program" else AggregateScope.LAND,
            scope_key=key,
            sequence=2,
            as_of=T0,
            generated_at=T0,
            metrics={"registrations_total": 7},
        )
        stored = StoredSnapshot(scope_id=scope_id, snapshot=payload, published=False)
        assert await snapshots.save(stored, previous_sequence=None)

    # land:09 was replaced meanwhile (sequence 2 is no longer stored): not marked
    await snapshots.mark_all_published([("program", 2), ("land:07", 2), ("land:09", 1)])
    await snapshots.mark_all_published([])

    published = {s.scope_id: s.published for s in await snapshots.all()}
    assert published == {"program": True, "land:07": True, "land:09": False}


# --- the batch path: chunks with offsets, positions, rebuild generations, legacy data ------


def batch_of(partition: int, last_offset: int, *facts: Fact) -> FactBatch:
    return FactBatch(
        topic="registration.events.v1", partition=partition, last_offset=last_offset, facts=facts
    )


def registration(n: int, status: str = "confirmed", *, event_id: str | None = None) -> Fact:
    return Fact(
        entity=REGISTRATION,
        entity_id=f"registration-{n}",
        ags="07312000",
        event_id=event_id or f"event-{n}-{status}",
        event_type="registration.participant.registered.v1",
        time=T0 + timedelta(seconds=n),
        fields={"dialogue_event_id": "d-1", "status": status, "sector": "business", "n": 1.5},
    )


async def test_a_batch_is_one_chunk_per_partition_with_its_offset(database) -> None:
    projections = MongoProjectionRepository(database)
    assert await projections.stored_offset("registration.events.v1", 0) is None

    await projections.record_batches(
        [batch_of(0, 41, registration(1), registration(2)), batch_of(3, 7, registration(3))]
    )
    await projections.record_batches([batch_of(0, 45)])  # only skipped records: offset only
    # The same event once more at another offset (a producer retry): one fact.
    await projections.record_batches([batch_of(3, 9, registration(3), registration(4))])

    assert await database["fact_chunks"].count_documents({"kind": "live"}) == 4
    restarted = MongoProjectionRepository(database)
    assert await restarted.stored_offset("registration.events.v1", 0) == 45
    assert await restarted.stored_offset("registration.events.v1", 3) == 9
    assert await restarted.stored_offset("registration.events.v1", 1) is None
    assert sorted(f.event_id for f in await restarted.facts()) == [
        "event-1-confirmed",
        "event-2-confirmed",
        "event-3-confirmed",
        "event-4-confirmed",
    ]
    rows = (await restarted.load()).registrations
    assert [(r.registration_id, r.status, r.sector) for r in rows] == [
        (f"registration-{n}", "confirmed", "business") for n in (1, 2, 3, 4)
    ]
    assert {f.fields["n"] for f in await restarted.facts()} == {1.5}
    assert {f.time for f in await restarted.facts()} == {
        T0 + timedelta(seconds=n) for n in (1, 2, 3, 4)
    }


async def test_the_offset_is_found_when_the_position_hint_was_not_written(database) -> None:
    """A crash between the chunk and its position hint: the chunk is the truth."""
    projections = MongoProjectionRepository(database)
    await projections.record_batches([batch_of(2, 10, registration(1))])
    await projections.record_batches([batch_of(2, 20, registration(2))])
    await database["fact_positions"].update_one(
        {"_id": "registration.events.v1|2"}, {"$set": {"n": 0, "last": 10}}
    )

    restarted = MongoProjectionRepository(database)
    assert await restarted.stored_offset("registration.events.v1", 2) == 20
    await restarted.record_batches([batch_of(2, 30, registration(3))])
    assert await database["fact_chunks"].find_one({"_id": "live|registration.events.v1|2|2"})
    assert (
        await MongoProjectionRepository(database).stored_offset("registration.events.v1", 2) == 30
    )

    await database["fact_positions"].delete_many({})
    assert (
        await MongoProjectionRepository(database).stored_offset("registration.events.v1", 2) == 30
    )


async def test_a_batch_is_one_write_and_the_position_hint_trails_by_a_few_chunks(
    mongodb_uri: str,
) -> None:
    """The position hint is written after a process's first chunk of a partition and then
    after every POSITION_EVERY-th: most batches are the chunk's insert alone. A restarted
    writer and a reader further behind than a lookup window still find every chunk."""
    commands = MongoCommandCounter(CollectorRegistry())
    client = mongo_client(mongodb_uri, listeners=[commands])
    try:
        database = client[f"wok_reporting_{uuid.uuid4().hex[:12]}"]
        projections = MongoProjectionRepository(database)
        await projections.record_batches([batch_of(1, 0, registration(0))])
        early = await projections.facts_since(None)
        before = commands.counts()
        batches = 2 * CHUNK_WINDOW + 5
        for n in range(1, batches + 1):
            await projections.record_batches([batch_of(1, n, registration(n))])
        sent = commands.counts() - before
        hints = batches // POSITION_EVERY
        assert sent == Counter(
            {("insert", "fact_chunks"): batches, ("update", "fact_positions"): hints}
        )
        hint = await database["fact_positions"].find_one({"_id": "registration.events.v1|1"})
        assert hint is not None and hint["n"] == hints * POSITION_EVERY < batches
        # A reader starting now reads everything once, then only what comes after it.
        everything = await MongoProjectionRepository(database).facts_since(None)
        assert len(everything.facts) == batches + 1
        assert (await projections.facts_since(everything.cursor)).facts == []

        # A hint further behind than two lookup windows (as if its writes had been lost).
        await database["fact_positions"].update_one(
            {"_id": "registration.events.v1|1"}, {"$set": {"n": 0, "last": 0}}
        )
        later = await MongoProjectionRepository(database).facts_since(early.cursor)
        assert sorted(f.entity_id for f in later.facts) == sorted(
            f"registration-{n}" for n in range(1, batches + 1)
        )
        assert (await projections.facts_since(later.cursor)).facts == []

        restarted = MongoProjectionRepository(database)
        assert await restarted.stored_offset("registration.events.v1", 1) == batches
        await restarted.record_batches([batch_of(1, batches + 1, registration(batches + 1))])
        assert await database["fact_chunks"].count_documents({"kind": "live"}) == batches + 2
        latest = await projections.facts_since(later.cursor)
        assert [f.entity_id for f in latest.facts] == [f"registration-{batches + 1}"]
    finally:
        await client.close()


async def test_a_rebuild_replaces_what_it_read_and_keeps_later_chunks_and_offsets(database) -> None:
    projections = MongoProjectionRepository(database)
    await projections.record_batches([batch_of(0, 4, registration(1), registration(2))])
    await projections.record_batches([batch_of(0, 9, registration(3))])
    await projections.record(registration(9))  # outside any batch

    # The rebuild read offsets 0-4 of partition 0 (end 5): chunk 1 (up to 9) is newer.
    rebuilt = [registration(1, "cancelled"), registration(2)]
    await projections.replace_all(rebuilt, up_to={("registration.events.v1", 0): 5})

    facts = {f.event_id: f for f in await projections.facts()}
    assert set(facts) == {"event-1-cancelled", "event-2-confirmed", "event-3-confirmed"}
    assert await projections.stored_offset("registration.events.v1", 0) == 9
    first = await database["fact_chunks"].find_one({"_id": "live|registration.events.v1|0|0"})
    assert first is not None and first["facts"] == "[]"  # emptied, kept for its position
    assert await database["fact_chunks"].count_documents({"kind": "loose"}) == 0

    await projections.replace_all([registration(5)])  # a second rebuild: older base gone
    assert [f.event_id for f in await projections.facts()] == ["event-5-confirmed"]
    assert await database["fact_chunks"].count_documents({"kind": "base"}) == 1


async def test_facts_of_the_earlier_shape_are_moved_into_a_chunk_once(database) -> None:
    for collection, entity_id in (
        ("registrations", "registration-1"),
        ("municipalities", "07312000"),
    ):
        await database[collection].insert_one(
            {
                "_id": entity_id,
                "ags": "07312000",
                "facts": {
                    "old-1": {
                        "event_id": "old-1",
                        "event_type": "registration.participant.registered.v1",
                        "time": "2026-11-01T09:00:00.123456+00:00",
                        "fields": {"status": "confirmed", "sector": "business", "name": "K"},
                    }
                },
            }
        )
    projections = MongoProjectionRepository(database)

    await projections.ensure_ready()
    await projections.ensure_ready()  # once only

    assert await database["registrations"].count_documents({}) == 0
    facts = await projections.facts()
    assert sorted((f.entity, f.entity_id) for f in facts) == [
        ("municipality", "07312000"),
        ("registration", "registration-1"),
    ]
    assert await projections.municipality_name("07312000", as_of=T0) == "K"


async def test_digests_of_a_batch_are_stored_once_in_one_write(database) -> None:
    activities = MongoActivityRepository(database)
    digests = [
        ActivityDigest(
            municipality="07312000",
            municipality_name="Kaiserslautern",
            kind=ActivityKind.DIALOGUE_EVENT_CANCELLED,
            text_de="Kaiserslautern hat eine Dialogveranstaltung abgesagt.",
            text_en="Kaiserslautern cancelled a dialogue event.",
            occurred_at=T0 + timedelta(seconds=n),
            subject_id=f"d-{n}",
            source_event_id=f"source-{n}",
        )
        for n in range(3)
    ]
    assert await activities.add_many([(d, "c") for d in digests[:2]], publish=True) == 2
    assert await activities.add_many([(d, "c") for d in digests], publish=True) == 1
    assert [d.source_event_id for d in await activities.all()] == [
        "source-0",
        "source-1",
        "source-2",
    ]
    assert len(await MongoOutboxSource(activities.collection).documents_with_pending(10)) == 3


async def test_a_reader_gets_only_what_was_stored_since_its_cursor(database) -> None:
    """`facts_since`: everything first, then only the new chunks (also one whose position
    was not written yet) and new loose facts, everything again after a rebuild."""
    projections = MongoProjectionRepository(database)
    await projections.record_batches([batch_of(0, 4, registration(1), registration(2))])
    first = await projections.facts_since(None)
    assert first.complete
    assert sorted(f.event_id for f in first.facts) == ["event-1-confirmed", "event-2-confirmed"]

    nothing = await projections.facts_since(first.cursor)
    assert (nothing.facts, nothing.complete) == ([], False)

    await projections.record_batches(
        [batch_of(0, 9, registration(3)), batch_of(5, 2, registration(4))]
    )
    await projections.record_batches([batch_of(0, 12, registration(5))])
    # A crash between the chunk and its position: the chunk after the position is read too.
    await database["fact_positions"].update_one(
        {"_id": "registration.events.v1|0"}, {"$set": {"n": 1, "last": 9}}
    )
    later = await projections.facts_since(nothing.cursor)
    assert not later.complete
    assert sorted(f.event_id for f in later.facts) == [
        "event-3-confirmed",
        "event-4-confirmed",
        "event-5-confirmed",
    ]
    assert (await projections.facts_since(later.cursor)).facts == []

    await projections.record(registration(6))  # outside any batch: a loose chunk
    loose = await projections.facts_since(later.cursor)
    assert [f.event_id for f in loose.facts] == ["event-6-confirmed"]
    assert (await projections.facts_since(loose.cursor)).facts == []

    await projections.replace_all([registration(7)], up_to={("registration.events.v1", 0): 13})
    rebuilt = await projections.facts_since(loose.cursor)
    assert rebuilt.complete
    assert sorted(f.event_id for f in rebuilt.facts) == [
        "event-4-confirmed",
        "event-7-confirmed",
    ]
