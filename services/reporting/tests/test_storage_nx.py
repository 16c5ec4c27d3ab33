"""Every query and update shape of the reporting repositories, against the embedded nx-27017.

nx-27017 gives wrong answers silently for some shapes (DESIGN.md section 8), so each shape
the repositories use is run here and its stored result asserted (the root conftest starts
the server).
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import ActivityDigest, ActivityKind, AggregateScope, AggregateSnapshot
from wok_reporting.adapters.mongo import (
    MongoActivityRepository,
    MongoProjectionRepository,
    MongoSnapshotRepository,
)
from wok_reporting.adapters.repository import StoredSnapshot
from wok_reporting.domain import MUNICIPALITY, REGISTRATION, Fact
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
    assert await database["registrations"].count_documents({}) == 1
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
