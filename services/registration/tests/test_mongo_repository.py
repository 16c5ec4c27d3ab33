"""Storage shapes only the MongoDB repository has, on the real wire protocol (nx-27017).
(Every other shape runs in the `mongodb` twin of the service tests.)"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from wok_contracts import EventFormat, RegistrationStatus, Sector
from wok_registration.adapters.repository import GroupCommit, MongoRegistrationRepository
from wok_registration.domain import DialogueEvent, EventState, Participant, RecordStatus


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


def _event(**overrides: Any) -> DialogueEvent:
    starts = datetime.now(UTC) + timedelta(days=30)
    fields: dict[str, Any] = {
        "id": f"event-{uuid.uuid4().hex[:8]}",
        "ags": "07312000",
        "title": "Dialog",
        "description": "",
        "starts_at": starts,
        "ends_at": starts + timedelta(hours=2),
        "format": EventFormat.ONLINE,
        "place": None,
        "online_link": "https://meet.example.org/x",
        "capacity": 1,
        "registration_deadline": starts - timedelta(days=1),
        "languages": ("de",),
    }
    return DialogueEvent(**(fields | overrides))


async def test_a_place_is_taken_only_while_the_event_is_as_read(database: Any) -> None:
    """take_place's conditional update_one on nx-27017: the revision, capacity and address
    guards refuse, the entry is small (fingerprint only in the map), and a read gives it back."""
    repository = MongoRegistrationRepository(database)
    event = _event(capacity=1)
    await repository.add_dialogue_event(event, [])

    async def take(
        registration_id: str, fingerprint: str, status: RegistrationStatus, **changes: Any
    ) -> bool:
        return await repository.take_place(
            event=replace(event, **changes),
            registration_id=registration_id,
            fingerprint=fingerprint,
            status=status,
            record={"sector": Sector.RESIDENT, "language": "de", "position": 1},
            events=[],
        )

    confirmed, waitlisted = RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLISTED
    assert not await take("r0", "a" * 64, confirmed, revision=1)  # changed meanwhile
    assert not await take("r0", "a" * 64, waitlisted)  # places are left
    assert await take("r1", "a" * 64, confirmed)
    assert not await take("r2", "a" * 64, waitlisted)  # the same address again
    assert not await take("r2", "b" * 64, confirmed)  # full
    assert await take("r2", "b" * 64, waitlisted)

    stored = await database["dialogue_events"].find_one({"_id": event.id})
    assert stored["registrations"]["r1"] == {
        "sector": "resident",
        "language": "de",
        "position": 1,
        "status": "confirmed",
    }
    assert stored["fingerprints"] == {"a" * 64: "r1", "b" * 64: "r2"}
    assert (stored["confirmed_count"], stored["waitlisted_count"]) == (1, 1)
    loaded = await repository.load_dialogue_event(event.id)
    assert loaded is not None
    assert loaded[1]["r1"].fingerprint == "a" * 64
    assert loaded[1]["r2"].status is RecordStatus.WAITLISTED
    assert loaded[1]["r2"].fingerprint == "b" * 64


async def test_participants_written_together_each_get_their_own_outcome(database: Any) -> None:
    """Concurrent contacts go to nx-27017 as one insert_many / update_many ($in, $unset):
    each stored with its expiry, a duplicate id refused for its caller only, and only the
    kept ones lose their expiry."""
    repository = MongoRegistrationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    expires_at = now + timedelta(hours=1)

    def participant(number: int) -> Participant:
        return Participant(
            registration_id=f"p{number}",
            dialogue_event_id="event",
            name=f"Person {number}",
            email=f"person{number}@example.org",
            language="de",
            consent_at=now,
        )

    await repository.add_participant(participant(0), expires_at=expires_at)
    outcomes = await asyncio.gather(
        *(repository.add_participant(participant(n), expires_at=expires_at) for n in range(12)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], DuplicateKeyError)
    assert outcomes[1:] == [None] * 11
    await asyncio.gather(*(repository.keep_participant(f"p{n}") for n in range(0, 12, 2)))

    stored = {d["_id"]: d async for d in database["participants"].find({})}
    assert sorted(stored) == sorted(f"p{n}" for n in range(12))
    assert stored["p3"]["name"] == "Person 3" and stored["p3"]["expires_at"] == expires_at
    assert [key for key, d in stored.items() if "expires_at" not in d] == [
        f"p{n}" for n in range(0, 12, 2)
    ]
    found = await repository.get_participant("p5")
    assert found == participant(5)


async def test_a_failed_group_write_fails_each_caller_in_it_and_the_next_group_goes_on() -> None:
    """No caller is told its contact is stored when the group write holding it failed."""
    written: list[list[int]] = []
    failing = {"next": True}

    async def write(items: list[int]) -> list[BaseException | None]:
        await asyncio.sleep(0)
        if failing["next"]:
            failing["next"] = False
            raise ConnectionError("database away")
        written.append(items)
        return [None] * len(items)

    group: GroupCommit[int] = GroupCommit(write)
    first = await asyncio.gather(*(group.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in first)
    second = await asyncio.gather(*(group.submit(n) for n in range(3, 8)), return_exceptions=True)
    assert second == [None] * 5
    assert written == [[3, 4, 5, 6, 7]]  # one round trip for the five
