"""Every query and update shape of the reporting repositories, against the embedded nx-27017.

nx-27017 gives wrong answers silently for some shapes (DESIGN.md section 8), so each shape
the repositories use is run here and its stored result asserted. The server is the
session's (tests/integration/conftest.py).
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import AggregateScope, AggregateSnapshot
from wok_reporting.adapters.mongo import MongoProjectionRepository, MongoSnapshotRepository
from wok_reporting.adapters.repository import StoredSnapshot
from wok_reporting.domain import RegistrationRow
from wok_runtime.mongo import mongo_client

T0 = datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_reporting_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


def registration(status: str, at: datetime) -> RegistrationRow:
    return RegistrationRow(
        registration_id="registration-1",
        dialogue_event_id="event-1",
        ags="07312000",
        status=status,
        event_time=at,
    )


async def test_projection_upserts_keep_the_newest_row_per_entity(database: Any) -> None:
    projections = MongoProjectionRepository(database)

    assert await projections.save(registration("confirmed", T0))
    assert await projections.save(registration("confirmed", T0))  # same event again
    assert not await projections.save(registration("waitlisted", T0 - timedelta(seconds=1)))
    stored = (await projections.load()).registrations
    assert [(row.status, row.event_time) for row in stored] == [("confirmed", T0)]

    later = T0 + timedelta(microseconds=1)
    assert await projections.save(registration("waitlisted", later))
    stored = (await projections.load()).registrations
    assert [(row.status, row.event_time) for row in stored] == [("waitlisted", later)]
    assert await database["registrations"].count_documents({}) == 1


async def test_snapshots_are_numbered_with_compare_and_set(database: Any) -> None:
    snapshots = MongoSnapshotRepository(database)

    def stored(sequence: int, as_of: datetime | None) -> StoredSnapshot:
        payload = AggregateSnapshot(
            scope=AggregateScope.PROGRAM,
            scope_key="program",
            sequence=sequence,
            as_of=as_of,
            generated_at=T0,
            metrics={"registrations_total": 7, "registrations_waitlisted": None},
            suppressed=["registrations_waitlisted"],
        )
        return StoredSnapshot(scope_id="program", snapshot=payload, published=False)

    assert await snapshots.save(stored(1, None), previous_sequence=None)
    assert not await snapshots.save(stored(1, None), previous_sequence=None)
    assert await snapshots.save(stored(2, T0), previous_sequence=1)
    assert not await snapshots.save(stored(3, T0), previous_sequence=1)

    latest = await snapshots.latest("program")
    assert latest == stored(2, T0)
    await snapshots.mark_published("program", 1)  # an older sequence: no effect
    assert (await snapshots.latest("program")) == stored(2, T0)
    await snapshots.mark_published("program", 2)
    latest = await snapshots.latest("program")
    assert latest is not None and latest.published is True
    assert await snapshots.latest("municipality:07312000") is None
