"""Storage conformance of what saves database round trips, against nx-27017 (the session's
`mongodb_uri`): processed ids read and written per batch, a person's reminders scheduled in
one write, a delivery marked sent without reading it again after its claim, dialogue events
kept in memory while the partitions stay assigned. Each keeps its guarantee when another
writer gets in between."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from wok_contracts import DialogueEventScheduled, NotificationKind, ParticipantRegistered
from wok_notification import domain
from wok_notification.adapters.repository import MongoNotificationRepository, ScheduledMessage
from wok_runtime.metrics import MongoCommandCounter
from wok_runtime.mongo import PROCESSED_COLLECTION, MongoProcessedStore, mongo_client

LEASE = timedelta(minutes=2)


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_notification_rt_{time.time_ns()}"]
    finally:
        await client.close()


class CountingRepository(MongoNotificationRepository):
    """Counts the reads of delivery documents and dialogue events."""

    def __init__(self, database: Any) -> None:
        super().__init__(database)
        self.delivery_reads = 0
        self.event_reads = 0
        events = self.events

        class Events:
            def __getattr__(self, name: str) -> Any:
                return getattr(events, name)

            async def find_one(inner, *args: Any, **kwargs: Any) -> Any:
                self.event_reads += 1
                return await events.find_one(*args, **kwargs)

        self.events = Events()

    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        self.delivery_reads += 1
        return await super()._load_delivery(delivery_id)


async def test_processed_ids_are_read_and_marked_for_a_whole_batch(database: Any) -> None:
    store = MongoProcessedStore(database)
    await store.ensure_indexes()
    single = MongoProcessedStore(database)  # the per-message store, same documents
    await single.mark("notification", "e-1")

    assert await store.seen_many("notification", ["e-1", "e-2", "e-3"]) == {"e-1"}
    assert await store.seen_many("reporting", ["e-1"]) == set()

    # e-1 is there already: the others are still written, the duplicate is not an error
    await store.mark_many("notification", ["e-1", "e-2", "e-3"])
    await store.mark_many("notification", ["e-3"])

    assert await store.seen_many("notification", ["e-1", "e-2", "e-3", "e-4"]) == {
        "e-1",
        "e-2",
        "e-3",
    }
    assert await single.seen("notification", "e-2")
    documents = [d async for d in database[PROCESSED_COLLECTION].find({})]
    assert sorted(d["_id"] for d in documents) == [
        "notification:e-1",
        "notification:e-2",
        "notification:e-3",
    ]
    # a real date, so the 30-day expiry index applies to it
    assert all(isinstance(d["processed_at"], datetime) for d in documents)


async def test_a_persons_reminders_are_scheduled_in_one_write_and_never_moved(
    database: Any,
) -> None:
    repository = MongoNotificationRepository(database)
    await repository.ensure_indexes()
    now = datetime(2026, 12, 9, 17, 0, tzinfo=UTC)

    def message(kind: NotificationKind, due: datetime) -> ScheduledMessage:
        return ScheduledMessage.of(
            kind, registration_id="r-1", dialogue_event_id="event-s", ags="07312000", due_at=due
        )

    await repository.schedule(message(NotificationKind.REMINDER, now), rearm=False)
    later = now + timedelta(days=3)
    await repository.schedule_new(
        [message(NotificationKind.ACCESS, later), message(NotificationKind.REMINDER, later)]
    )
    await repository.schedule_new([])

    access = await repository.get_scheduled("access:r-1")
    reminder = await repository.get_scheduled("reminder:r-1")
    assert access is not None and access.due_at == domain.iso_utc(later)
    assert access.status == "scheduled" and access.kind is NotificationKind.ACCESS
    assert reminder is not None and reminder.due_at == domain.iso_utc(now), "kept, not moved"
    claimed = await repository.claim_due(now=now, lease=LEASE, token="t")
    assert claimed is not None and claimed.id == "reminder:r-1"


def _new_confirmation(registration: ParticipantRegistered, now: datetime) -> domain.Delivery:
    return domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id=registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        ags=registration.ags,
        language="de",
        now=now,
    )


async def test_a_claimed_delivery_is_marked_sent_without_reading_it_again(
    database: Any,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    repository = CountingRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    new = _new_confirmation(registered(scheduled()), now)

    claimed = await repository.claim_delivery(new, token="a", now=now, lease=LEASE)
    assert claimed is not None
    assert await repository.mark_sent(
        claimed, token="a", sent_at=now, message_id="<m@x>", events=[]
    )

    assert repository.delivery_reads == 0
    stored = await repository.get_delivery(new.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.message_id) == ("sent", 1, "<m@x>")
    assert stored.sent_at == now and stored.claim_token is None
    document = await repository.deliveries.find_one({"_id": new.id})
    assert document is not None and document["version"] == 1
    assert isinstance(document["sent_at"], datetime), "a real date, as when read first"


async def test_a_delivery_changed_by_another_worker_after_our_claim_is_read_not_overwritten(
    database: Any,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    ours = CountingRepository(database)
    theirs = MongoNotificationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    new = _new_confirmation(registered(scheduled()), now)

    claimed = await ours.claim_delivery(new, token="a", now=now, lease=LEASE)
    assert claimed is not None
    # our lease ran out and another worker took the delivery over
    later = now + LEASE
    taken = await theirs.claim_delivery(new, token="b", now=later, lease=LEASE)
    assert taken is not None and taken.attempts == 2

    assert not await ours.mark_sent(
        claimed, token="a", sent_at=later, message_id="<m@x>", events=[]
    )

    assert ours.delivery_reads >= 1, "the kept copy was stale: the stored one was read"
    stored = await theirs.get_delivery(new.id)
    assert stored is not None
    assert (stored.status, stored.claim_token, stored.attempts) == ("pending", "b", 2)


async def test_dialogue_events_are_read_once_while_assigned_and_again_after_a_change(
    database: Any, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    ours = CountingRepository(database)
    theirs = MongoNotificationRepository(database)
    event = domain.EventDetails.scheduled(scheduled(title="Erster Titel"))
    await ours.save_event(event)

    assert await ours.get_event(event.dialogue_event_id, cached=True) == event
    assert await ours.get_event(event.dialogue_event_id, cached=True) == event
    assert ours.event_reads == 1
    assert await ours.get_event("unknown", cached=True) is None

    # our own change is seen at once
    renamed = domain.EventDetails(**{**event.__dict__, "title": "Zweiter Titel", "revision": 1})
    await ours.save_event(renamed)
    assert (await ours.get_event(event.dialogue_event_id, cached=True)) == renamed

    # another member's change (after the partition moved) is seen once partitions are
    # reassigned, which is when another member can have consumed this event's messages
    third = domain.EventDetails(**{**event.__dict__, "title": "Dritter Titel", "revision": 2})
    await theirs.save_event(third)
    assert (await ours.get_event(event.dialogue_event_id, cached=True)) == renamed
    ours.forget_cached()
    assert (await ours.get_event(event.dialogue_event_id, cached=True)) == third
    # the scheduler and operators always read the stored one (they see every partition's)
    fourth = domain.EventDetails(**{**event.__dict__, "title": "Vierter Titel", "revision": 3})
    await theirs.save_event(fourth)
    assert (await ours.get_event(event.dialogue_event_id)) == fourth


@pytest.fixture
async def counted(mongodb_uri: str) -> AsyncIterator[tuple[Any, MongoCommandCounter]]:
    commands = MongoCommandCounter(CollectorRegistry())
    client = AsyncMongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000, tz_aware=True, event_listeners=[commands]
    )
    try:
        yield client[f"wok_notification_rt_{time.time_ns()}"], commands
    finally:
        await client.close()


async def test_the_writes_of_confirmations_handled_side_by_side_share_round_trips(
    counted: tuple[Any, MongoCommandCounter],
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., domain.Contact],
) -> None:
    database, commands = counted
    repository = MongoNotificationRepository(database)
    event = scheduled()
    registrations = [registered(event) for _ in range(20)]
    now = datetime.now(UTC).replace(microsecond=0)
    due = now + timedelta(days=2)

    async def confirm(registration: ParticipantRegistered) -> bool:
        """The storage steps of one confirmation, in their order."""
        await repository.save_contact(
            contact_for(registration), status=domain.ParticipantStatus.CONFIRMED
        )
        await repository.schedule_new(
            [
                ScheduledMessage.of(
                    kind,
                    registration_id=registration.registration_id,
                    dialogue_event_id=event.dialogue_event_id,
                    ags=event.ags,
                    due_at=due,
                )
                for kind in (NotificationKind.ACCESS, NotificationKind.REMINDER)
            ]
        )
        token = f"t-{registration.registration_id}"
        claimed = await repository.claim_delivery(
            _new_confirmation(registration, now), token=token, now=now, lease=LEASE
        )
        assert claimed is not None
        return await repository.mark_sent(
            claimed, token=token, sent_at=now, message_id="<m@x>", events=[]
        )

    before = commands.counts()
    assert all(await asyncio.gather(*(confirm(r) for r in registrations)))

    # one round trip per kind of write for all twenty, instead of one per confirmation
    sent = commands.counts() - before
    assert sent[("insert", "contacts")] == 1
    assert sent[("insert", "scheduled_messages")] == 1
    assert sent[("insert", "deliveries")] == 1
    assert sent[("update", "deliveries")] == 1
    assert sum(sent.values()) == 4, sent
    # and each write is stored as its own would have been
    for registration in registrations:
        participant = await repository.get_participant(registration.registration_id)
        assert participant is not None and participant.contact == contact_for(registration)
        stored = await repository.get_delivery(
            domain.delivery_id(NotificationKind.CONFIRMATION, registration.registration_id)
        )
        assert stored is not None and (stored.status, stored.attempts) == ("sent", 1)
        for kind in ("access", "reminder"):
            message = await repository.get_scheduled(f"{kind}:{registration.registration_id}")
            assert message is not None and message.due_at == domain.iso_utc(due)

    # Again (the batch redelivered): the existing ones are told apart within one round trip,
    # the contacts updated, nothing scheduled twice, no delivery claimed again
    before = commands.counts()
    again = await asyncio.gather(
        *(
            repository.claim_delivery(_new_confirmation(r, now), token="late", now=now, lease=LEASE)
            for r in registrations
        )
    )
    assert again == [None] * len(registrations)
    assert (commands.counts() - before)[("insert", "deliveries")] == 1


async def test_in_one_round_trip_each_delivery_gets_its_own_outcome(
    database: Any,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    ours = MongoNotificationRepository(database)
    theirs = MongoNotificationRepository(database)
    now = datetime.now(UTC).replace(microsecond=0)
    event = scheduled()
    first, second, third = (_new_confirmation(registered(event), now) for _ in range(3))
    # the second exists already (claimed by another worker): ours is refused
    assert await theirs.claim_delivery(second, token="b", now=now, lease=LEASE) is not None

    claimed = await asyncio.gather(
        *(ours.claim_delivery(d, token="a", now=now, lease=LEASE) for d in (first, second, third))
    )
    assert claimed[0] is not None and claimed[1] is None and claimed[2] is not None

    # the third is taken over by the other worker after our lease: in the round trip
    # that marks both sent, the first is written, the third refused
    later = now + LEASE
    assert await theirs.claim_delivery(third, token="c", now=later, lease=LEASE) is not None
    outcomes = await asyncio.gather(
        ours.mark_sent(claimed[0], token="a", sent_at=later, message_id="<1@x>", events=[]),
        ours.mark_sent(claimed[2], token="a", sent_at=later, message_id="<3@x>", events=[]),
    )
    assert outcomes == [True, False]
    stored = [await ours.get_delivery(d.id) for d in (first, second, third)]
    assert [(d.status.value, d.claim_token) for d in stored if d] == [
        ("sent", None),
        ("pending", "b"),
        ("pending", "c"),
    ]
