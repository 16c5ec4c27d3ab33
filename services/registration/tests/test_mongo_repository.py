"""Storage shapes only the MongoDB repository has, on the real wire protocol (nx-27017).
(Every other shape runs in the `mongodb` twin of the service tests.)"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    RegistrationStatus,
    Sector,
    new_envelope,
)
from wok_registration.adapters.repository import (
    CONTACT_LINGER_S,
    KEEP_DELAY_S,
    MongoRegistrationRepository,
)
from wok_registration.domain import DialogueEvent, EventState, Participant, RecordStatus
from wok_runtime.coalesce import Coalescer
from wok_runtime.metrics import MongoCommandCounter
from wok_runtime.outbox import (
    MongoOutboxSource,
    OutboundEvent,
    OutboxRelay,
    OutboxWriter,
    PendingMessage,
)


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[Any, MongoCommandCounter]]:
    """A database of its own, through a client whose commands are counted."""
    counter = MongoCommandCounter(CollectorRegistry())
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, tz_aware=True, event_listeners=[counter]
    )
    try:
        yield client[f"registration_counted_{uuid.uuid4().hex[:12]}"], counter
    finally:
        await client.close()


@pytest.fixture
def database(counted: tuple[Any, MongoCommandCounter]) -> Any:
    return counted[0]


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


def contact(prefix: str, number: int, *, at: datetime) -> Participant:
    """Person `number`'s contact, registration id `<prefix><number>`, consent given `at`."""
    return Participant(
        registration_id=f"{prefix}{number}",
        dialogue_event_id="event",
        name=f"Person {number}",
        email=f"person{number}@example.org",
        language="de",
        consent_at=at,
    )


async def test_participants_written_together_each_get_their_own_outcome(database: Any) -> None:
    """Concurrent contacts go to nx-27017 as one insert_many, the ones kept meanwhile as one
    update_many ($in, $unset): each stored with its expiry, a duplicate id refused for its
    caller only, and only the kept ones lose their expiry."""
    repository = MongoRegistrationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    expires_at = now + timedelta(hours=1)

    def participant(number: int) -> Participant:
        return contact("p", number, at=now)

    await repository.add_participant(participant(0), expires_at=expires_at)
    outcomes = await asyncio.gather(
        *(repository.add_participant(participant(n), expires_at=expires_at) for n in range(12)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], DuplicateKeyError)
    assert outcomes[1:] == [None] * 11
    await asyncio.gather(*(repository.keep_participant(f"p{n}") for n in range(0, 12, 2)))
    await repository.flush_kept()  # kept a moment later, all in one write

    stored = {d["_id"]: d async for d in database["participants"].find({})}
    assert sorted(stored) == sorted(f"p{n}" for n in range(12))
    assert stored["p3"]["name"] == "Person 3" and stored["p3"]["expires_at"] == expires_at
    assert [key for key, d in stored.items() if "expires_at" not in d] == [
        f"p{n}" for n in range(0, 12, 2)
    ]
    found = await repository.get_participant("p5")
    assert found == participant(5)
    # Many at once ($in): the known ones, each once, the unknown ones absent.
    many = await repository.get_participants(
        ["p1", "p7", "nobody", "p1", *(f"x{n}" for n in range(400))]
    )
    assert sorted(many, key=lambda p: p.registration_id) == [participant(1), participant(7)]
    assert await repository.get_participants(["nobody"]) == []


async def test_contacts_kept_at_200_per_second_cost_a_few_writes_not_one_each(
    counted: tuple[Any, MongoCommandCounter],
) -> None:
    """At 200 registrations/s the expiry is lifted for all contacts of the last
    KEEP_DELAY_S in one update_many on nx-27017: 40 contacts kept 5 ms apart take at most
    one write per KEEP_DELAY_S started (not 40), and every one of them loses its expiry."""
    database, counter = counted
    repository = MongoRegistrationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    for number in range(40):
        await repository.add_participant(
            contact("k", number, at=now), expires_at=now + timedelta(hours=1)
        )
    before = counter.counts()
    started = asyncio.get_running_loop().time()
    for number in range(40):
        await repository.keep_participant(f"k{number}")
        await asyncio.sleep(0.005)
    elapsed = asyncio.get_running_loop().time() - started
    await repository.flush_kept()
    keeps = (counter.counts() - before)[("update", "participants")]
    assert 1 <= keeps <= int(elapsed / KEEP_DELAY_S) + 1
    unkept = [d async for d in database["participants"].find({"expires_at": {"$exists": True}})]
    assert unkept == []


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

    group: Coalescer[int, None] = Coalescer(write, max_batch=sys.maxsize)
    first = await asyncio.gather(*(group.submit(n) for n in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in first)
    second = await asyncio.gather(*(group.submit(n) for n in range(3, 8)), return_exceptions=True)
    assert second == [None] * 5
    assert written == [[3, 4, 5, 6, 7]]  # one round trip for the five


@dataclass
class AckingPublisher:
    """Acknowledges every message at once, recording the event ids in order."""

    event_ids: list[str] = field(default_factory=list)

    async def send_all(self, messages: Sequence[PendingMessage]) -> list[Awaitable[object]]:
        self.event_ids.extend(message.event_id for message in messages)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return [done for _ in messages]


async def test_place_writes_hand_their_events_over_and_remove_the_published_ones(
    database: Any,
) -> None:
    """On nx-27017: the relay publishes a place write's event without reading the document,
    and the next place write on the document removes it (guarded, with the pending counter);
    when that guard fails, the place is still taken and the relay removes the event later."""
    repository = MongoRegistrationRepository(database)
    source = MongoOutboxSource(repository.dialogue_events)
    publisher = AckingPublisher()
    relay = OutboxRelay(sources=[source], publisher=publisher, mark_interval_s=60)
    repository.outbox = OutboxWriter(relay, source)
    event = _event(capacity=10)
    await repository.add_dialogue_event(event, [])
    await relay.drain_once()

    def registered(number: int) -> OutboundEvent:
        data = DialogueEventScheduled.model_construct(dialogue_event_id=f"placeholder-{number}")
        return OutboundEvent(
            "registration.events.v1", new_envelope(data, source="/t", municipality="07312000")
        )

    async def take(number: int) -> OutboundEvent:
        outbound = registered(number)
        assert await repository.take_place(
            event=event,
            registration_id=f"r{number}",
            fingerprint=f"{number:064d}",
            status=RegistrationStatus.CONFIRMED,
            record={"sector": Sector.RESIDENT, "language": "de", "position": number},
            events=[outbound],
        )
        return outbound

    async def stored() -> dict[str, Any]:
        return dict(await database["dialogue_events"].find_one({"_id": event.id}))

    first = await take(1)
    assert await relay._relay_now() == 1  # the offered event, without a find
    assert publisher.event_ids == [first.envelope.id]
    second = await take(2)  # removes the first in the same write
    document = await stored()
    assert list(document["outbox"]) == [second.envelope.id]
    assert document["outbox_pending"] == 1 and document["confirmed_count"] == 2

    await relay._relay_now()
    # Someone else removed the second meanwhile: the third's write still takes its place.
    await database["dialogue_events"].update_one(
        {"_id": event.id},
        {"$unset": {f"outbox.{second.envelope.id}": ""}, "$inc": {"outbox_pending": -1}},
    )
    third = await take(3)
    document = await stored()
    assert list(document["outbox"]) == [third.envelope.id]
    assert document["outbox_pending"] == 1 and document["confirmed_count"] == 3
    await relay.drain_once()
    document = await stored()
    assert document["outbox"] == {} and document["outbox_pending"] == 0
    assert publisher.event_ids == [e.envelope.id for e in (first, second, third)]


async def test_contacts_arriving_a_few_ms_apart_share_one_insert(
    counted: tuple[Any, MongoCommandCounter],
) -> None:
    """At 200 registrations/s requests come 5 ms apart and seldom overlap: a new contact
    waits up to CONTACT_LINGER_S for others, so contacts arriving within that window go to
    nx-27017 in one insert; each caller still returns only once its own contact is stored,
    and one arriving after the window closed goes into the next insert."""
    database, counter = counted
    repository = MongoRegistrationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    spacing = CONTACT_LINGER_S / 4

    async def add(number: int, *, after: float) -> str:
        await asyncio.sleep(after)
        await repository.add_participant(
            contact("w", number, at=now), expires_at=now + timedelta(hours=1)
        )
        # stored by the time the caller goes on (its place write comes next)
        found = await database["participants"].find_one({"_id": f"w{number}"})
        return str(found["_id"]) if found else "missing"

    before = counter.counts()
    together = await asyncio.gather(*(add(n, after=n * spacing) for n in range(3)))
    inserts = (counter.counts() - before)[("insert", "participants")]
    assert together == ["w0", "w1", "w2"] and inserts == 1

    later = await add(3, after=CONTACT_LINGER_S * 2)
    assert later == "w3"
    assert (counter.counts() - before)[("insert", "participants")] == 2
