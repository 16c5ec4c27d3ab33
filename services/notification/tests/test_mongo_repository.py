"""Storage conformance: every query and update shape of the MongoDB repository, run against
the embedded wire server (nx-27017), asserting what is stored (DESIGN.md section 8).

The server is the test session's (`mongodb_uri` in the repository's root conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import (
    DialogueEventScheduled,
    NotificationKind,
    ParticipantRegistered,
    new_envelope,
)
from wok_contracts.topics import NOTIFICATION_EVENTS
from wok_notification import domain
from wok_notification.adapters.repository import MongoNotificationRepository, ScheduledMessage
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import MongoOutboxSource, OutboundEvent, pending_messages

LEASE = timedelta(minutes=2)


@pytest.fixture
async def repository(mongodb_uri: str) -> AsyncIterator[MongoNotificationRepository]:
    client = mongo_client(mongodb_uri)
    database = client[f"wok_notification_test_{int(time.time_ns())}"]
    repository = MongoNotificationRepository(database)
    await repository.ensure_indexes()
    try:
        yield repository
    finally:
        await client.close()


async def test_event_details_keep_the_newest_revision(
    repository: MongoNotificationRepository, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    first = scheduled(title="Alter Titel")
    renamed = first.model_copy(update={"title": "Neuer Titel", "revision": 2})

    await repository.save_event(domain.EventDetails.scheduled(first))
    await repository.save_event(domain.EventDetails.scheduled(renamed))
    await repository.save_event(domain.EventDetails.scheduled(first))  # late, out of date
    await repository.save_event(domain.EventDetails.scheduled(renamed))  # redelivered

    stored = await repository.get_event(first.dialogue_event_id)
    assert stored is not None
    assert stored == domain.EventDetails.scheduled(renamed)
    assert stored.starts_at.tzinfo is not None
    assert await repository.events.count_documents({"_id": first.dialogue_event_id}) == 1


async def test_a_contact_is_kept_once_per_registration(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., domain.Contact],
) -> None:
    registration = registered(scheduled())
    contact = contact_for(registration)
    await repository.save_contact(contact, status=domain.ParticipantStatus.WAITLISTED)
    await repository.set_participant_status(
        registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        status=domain.ParticipantStatus.CONFIRMED,
    )
    # a redelivered registration refreshes the contact but keeps the newer status
    await repository.save_contact(
        replace(contact, cancel_url="https://x.example/c"),
        status=domain.ParticipantStatus.WAITLISTED,
    )
    participant = await repository.get_participant(registration.registration_id)
    assert participant is not None
    assert participant.status is domain.ParticipantStatus.CONFIRMED
    assert participant.contact == replace(contact, cancel_url="https://x.example/c")
    assert await repository.contacts.count_documents({"_id": registration.registration_id}) == 1
    (listed,) = await repository.participants(
        registration.dialogue_event_id, statuses=[domain.ParticipantStatus.CONFIRMED]
    )
    assert listed == participant
    assert (
        await repository.participants(
            registration.dialogue_event_id, statuses=[domain.ParticipantStatus.WAITLISTED]
        )
        == []
    )
    # a status for a participant we hold no contact of (upsert of a new id)
    await repository.set_participant_status(
        "registration-unseen",
        dialogue_event_id=registration.dialogue_event_id,
        status=domain.ParticipantStatus.CANCELLED,
    )
    unseen = await repository.get_participant("registration-unseen")
    assert unseen is not None and unseen.contact is None
    assert unseen.status is domain.ParticipantStatus.CANCELLED


async def test_the_delivery_lifecycle_and_its_outbox(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    registration = registered(scheduled())
    now = datetime.now(UTC).replace(microsecond=0)
    new = domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id=registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        ags=registration.ags,
        language="de",
        now=now,
    )

    first = await repository.claim_delivery(new, token="a", now=now, lease=LEASE)
    assert first is not None and first.attempts == 1
    # someone else while the lease runs: kept out
    assert await repository.claim_delivery(new, token="b", now=now, lease=LEASE) is None
    # the sender gives it back after a failed attempt: the next one may take it at once
    await repository.release_delivery(first, token="a", now=now)
    second = await repository.claim_delivery(new, token="b", now=now, lease=LEASE)
    assert second is not None and second.attempts == 2
    # a stale sender can neither release nor finish it
    await repository.release_delivery(first, token="a", now=now)
    assert await repository.claim_delivery(new, token="c", now=now, lease=LEASE) is None
    # after the lease a crashed sender's delivery is taken over
    later = now + LEASE
    third = await repository.claim_delivery(new, token="c", now=later, lease=LEASE)
    assert third is not None and third.attempts == 3
    assert not await repository.mark_sent(
        second, token="b", sent_at=later, message_id="<m@x>", events=[]
    )

    sent = third.sent(token="c", sent_at=later, message_id="<m@x>")
    outbound = OutboundEvent(
        topic=NOTIFICATION_EVENTS,
        envelope=new_envelope(sent.sent_event(), source="/test", municipality=registration.ags),
    )
    assert await repository.mark_sent(
        third, token="c", sent_at=later, message_id="<m@x>", events=[outbound]
    )
    assert not await repository.mark_sent(
        third, token="c", sent_at=later, message_id="<m@x>", events=[outbound]
    ), "sent once, and its event stored once"
    assert await repository.claim_delivery(new, token="d", now=later + LEASE, lease=LEASE) is None

    stored = await repository.get_delivery(new.id)
    assert stored is not None
    assert (stored.status, stored.attempts, stored.message_id) == ("sent", 3, "<m@x>")
    assert stored.sent_at == later and stored.claim_token is None

    source = MongoOutboxSource(repository.deliveries)
    (document,) = [d for d in await source.documents_with_pending(10) if d["_id"] == new.id]
    (message,) = pending_messages(document)
    assert (message.topic, message.key) == (NOTIFICATION_EVENTS, registration.ags)
    await source.mark_published(message)
    assert [d for d in await source.documents_with_pending(10) if d["_id"] == new.id] == []


async def test_a_refused_delivery_is_final(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    registration = registered(scheduled())
    now = datetime.now(UTC)
    new = domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id=registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        ags=registration.ags,
        language="de",
        now=now,
    )
    claimed = await repository.claim_delivery(new, token="a", now=now, lease=LEASE)
    assert claimed is not None
    assert await repository.mark_failed(claimed, token="a", reason="refused with 550")
    stored = await repository.get_delivery(new.id)
    assert stored is not None and stored.status == "failed"
    assert await repository.claim_delivery(new, token="b", now=now + LEASE, lease=LEASE) is None


async def test_concurrent_claims_let_exactly_one_sender_through(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    registration = registered(scheduled())
    now = datetime.now(UTC)
    new = domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id=registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        ags=registration.ags,
        language="de",
        now=now,
    )
    claims: list[Any] = await asyncio.gather(
        *(repository.claim_delivery(new, token=f"t{n}", now=now, lease=LEASE) for n in range(20))
    )
    assert sum(claim is not None for claim in claims) == 1

    # and once the lease has run out, exactly one of many takes it over
    later = now + LEASE
    takeovers: list[Any] = await asyncio.gather(
        *(repository.claim_delivery(new, token=f"u{n}", now=later, lease=LEASE) for n in range(20))
    )
    (winner,) = [claim for claim in takeovers if claim is not None]
    stored = await repository.get_delivery(new.id)
    assert stored is not None
    assert (stored.claim_token, stored.attempts) == (winner.claim_token, 2)


async def test_the_log_lists_newest_first(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    event = scheduled()
    start = datetime.now(UTC) + timedelta(days=365)  # newer than the other tests' deliveries
    ids = []
    for minute in range(3):
        registration = registered(event)
        new = domain.new_delivery(
            NotificationKind.CONFIRMATION,
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            language="de",
            now=start + timedelta(minutes=minute),
        )
        await repository.claim_delivery(new, token="a", now=start, lease=LEASE)
        ids.append(new.id)

    listed = await repository.list_deliveries(limit=2)
    assert [d.id for d in listed] == [ids[2], ids[1]]


async def test_scheduled_messages_are_claimed_once_when_due_and_can_be_cancelled(
    repository: MongoNotificationRepository,
) -> None:
    now = datetime(2026, 12, 9, 17, 0, tzinfo=UTC)

    def message(kind: NotificationKind, registration_id: str, due: datetime) -> Any:
        return ScheduledMessage.of(
            kind,
            registration_id=registration_id,
            dialogue_event_id="event-s",
            ags="07312000",
            due_at=due,
        )

    await repository.schedule(message(NotificationKind.REMINDER, "r-1", now), rearm=False)
    later = message(NotificationKind.REMINDER, "r-2", now + timedelta(hours=1))
    await repository.schedule(later, rearm=False)
    # inserting again without rearm keeps the first due time; rearm moves it
    await repository.schedule(
        message(NotificationKind.REMINDER, "r-1", now + timedelta(days=9)), rearm=False
    )
    assert (await repository.get_scheduled("reminder:r-1")).due_at == domain.iso_utc(now)  # type: ignore[union-attr]

    # 20 concurrent dispatchers: the due one is claimed exactly once, the later one not at all
    claims = await asyncio.gather(
        *(repository.claim_due(now=now, lease=LEASE, token=f"t{n}") for n in range(20))
    )
    claimed = [c for c in claims if c is not None]
    assert [c.id for c in claimed] == ["reminder:r-1"]
    token = claimed[0].token
    assert token is not None
    # a stale token cannot finish it; the holder retries it later (string due time, $inc)
    await repository.finish_scheduled("reminder:r-1", token="other", status="done")
    await repository.retry_scheduled("reminder:r-1", token=token, due_at=now + timedelta(minutes=5))
    retried = await repository.get_scheduled("reminder:r-1")
    assert retried is not None
    assert (retried.status, retried.attempts) == ("scheduled", 1)
    assert await repository.claim_due(now=now, lease=LEASE, token="x") is None
    again = await repository.claim_due(now=now + timedelta(minutes=5), lease=LEASE, token="y")
    assert again is not None and again.id == "reminder:r-1"
    # a claim whose lease ran out is taken over
    taken = await repository.claim_due(
        now=now + timedelta(minutes=5) + LEASE, lease=LEASE, token="z"
    )
    assert taken is not None and taken.id == "reminder:r-1"
    await repository.finish_scheduled("reminder:r-1", token="z", status="done")
    assert (await repository.get_scheduled("reminder:r-1")).status == "done"  # type: ignore[union-attr]

    # a reschedule re-arms with a new due time ($set of strings on an existing document)
    await repository.schedule(
        message(NotificationKind.REMINDER, "r-2", now + timedelta(days=2)), rearm=True
    )
    assert (await repository.get_scheduled("reminder:r-2")).due_at == domain.iso_utc(  # type: ignore[union-attr]
        now + timedelta(days=2)
    )
    await repository.schedule(message(NotificationKind.ACCESS, "r-2", now), rearm=False)
    assert await repository.cancel_scheduled(dialogue_event_id="event-s") == 2
    assert await repository.claim_due(now=now + timedelta(days=3), lease=LEASE, token="w") is None
    assert (await repository.get_scheduled("reminder:r-1")).status == "done"  # type: ignore[union-attr]


async def test_erasure_removes_the_contact_and_scrubs_the_log(
    repository: MongoNotificationRepository,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., domain.Contact],
) -> None:
    registration = registered(scheduled())
    await repository.save_contact(
        contact_for(registration, language="ar"), status=domain.ParticipantStatus.CONFIRMED
    )
    now = datetime.now(UTC).replace(microsecond=0)
    delivery = domain.new_delivery(
        NotificationKind.CONFIRMATION,
        registration_id=registration.registration_id,
        dialogue_event_id=registration.dialogue_event_id,
        ags=registration.ags,
        language="ar",
        now=now,
    )
    claimed = await repository.claim_delivery(delivery, token="a", now=now, lease=LEASE)
    assert claimed is not None
    await repository.mark_sent(claimed, token="a", sent_at=now, message_id="<m@x>", events=[])
    await repository.schedule(
        ScheduledMessage.of(
            NotificationKind.REMINDER,
            registration_id=registration.registration_id,
            dialogue_event_id=registration.dialogue_event_id,
            ags=registration.ags,
            due_at=now,
        ),
        rearm=False,
    )

    await repository.erase_participant(registration.registration_id)

    assert await repository.get_participant(registration.registration_id) is None
    assert await repository.get_scheduled(f"reminder:{registration.registration_id}") is None
    stored = await repository.get_delivery(delivery.id)
    assert stored is not None
    assert (stored.status, stored.language, stored.erased) == ("sent", "", True)
    assert stored.sent_at == now, "datetimes survive the scrub"
    (listed,) = [
        d
        for d in await repository.list_deliveries(limit=1000, status="sent", kind="confirmation")
        if d.id == delivery.id
    ]
    assert listed.erased
    assert (
        await repository.list_deliveries(limit=10, status="undeliverable", kind="promotion") == []
    )


async def test_an_outage_given_up_stores_its_event_and_a_redrive_rearms_it(
    repository: MongoNotificationRepository,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    delivery = domain.new_delivery(
        NotificationKind.REMINDER,
        registration_id="r-outage",
        dialogue_event_id="event-o",
        ags="07312000",
        language="de",
        now=now,
    )
    first = await repository.claim_delivery(delivery, token="a", now=now, lease=LEASE)
    assert first is not None
    await repository.mark_unavailable(first, token="a", now=now)
    second = await repository.claim_delivery(delivery, token="b", now=now, lease=LEASE)
    assert second is not None
    assert (second.unavailable_attempts, second.first_unavailable_at) == (1, now)
    given_up = second.given_up(token="b", now=now, reason="away")
    outbound = OutboundEvent(
        topic=NOTIFICATION_EVENTS,
        envelope=new_envelope(given_up.failed_event(), source="/test", municipality="07312000"),
    )
    assert await repository.mark_given_up(
        second, token="b", reason="away", now=now, events=[outbound]
    )
    stored = await repository.get_delivery(delivery.id)
    assert stored is not None
    assert (stored.status, stored.failed_at, stored.unavailable_attempts) == (
        "undeliverable",
        now,
        2,
    )
    (document,) = [
        d
        for d in await MongoOutboxSource(repository.deliveries).documents_with_pending(100)
        if d["_id"] == delivery.id
    ]
    assert len(pending_messages(document)) == 1
    rearmed = await repository.rearm_delivery(delivery.id)
    assert rearmed is not None and rearmed.status == "pending"
    assert await repository.claim_delivery(delivery, token="c", now=now, lease=LEASE) is not None
