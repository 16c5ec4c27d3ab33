"""Storage shapes only the MongoDB repository has, on the real wire protocol (nx-27017).
(Every other shape runs in the `mongodb` twin of the service tests.)"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from wok_contracts import RegistrationStatus, Sector
from wok_registration.adapters.repository import MongoRegistrationRepository
from wok_registration.domain import EventState, RecordStatus


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        yield client[f"registration_store_{uuid.uuid4().hex[:12]}"]
    finally:
        await client.close()


async def test_an_event_stored_by_the_walking_skeleton_is_served_and_bookable(
    database: Any,
) -> None:
    starts = datetime(2030, 5, 6, 16, 0, tzinfo=UTC)
    await database["dialogue_events"].insert_one(
        {
            "_id": "old-event",
            "ags": "07312000",
            "title": "Dialog",
            "description": "",
            "starts_at": starts,
            "ends_at": starts + timedelta(hours=2),
            "format": "online",
            "place": None,
            "online_link": "https://meet.example.org/x",
            "capacity": 1,
            "registration_deadline": starts - timedelta(days=1),
            "languages": ["de"],
            "revision": 0,
            "confirmed_count": 0,
            "waitlisted_count": 0,
            "registrations": {},
            "fingerprints": {},
        }
    )
    repository = MongoRegistrationRepository(database)
    await repository.ensure_indexes()

    event = await repository.get_dialogue_event("old-event")
    assert event is not None
    assert (event.state, event.reserved_places, event.changes) == (EventState.SCHEDULED, 0, 0)
    assert event.starts_at == starts and event.target_sectors == ()
    taken = await repository.take_place(
        event=event,
        registration_id="reg-1",
        fingerprint="f" * 64,
        status=RegistrationStatus.CONFIRMED,
        record={"sector": Sector.RESIDENT, "language": "de", "position": 1},
        events=[],
    )
    assert taken
    loaded = await repository.load_dialogue_event("old-event")
    assert loaded is not None
    assert loaded[1]["reg-1"].status is RecordStatus.CONFIRMED
    assert await repository.existing_registration("old-event", "f" * 64) == (
        "reg-1",
        RegistrationStatus.CONFIRMED,
    )
    stored = await database["dialogue_events"].find_one({"_id": "old-event"})
    assert stored["state"] == "scheduled" and stored["changes"] == 1
