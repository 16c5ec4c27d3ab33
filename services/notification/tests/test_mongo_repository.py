"""Storage conformance: every query and update shape of the MongoDB repository, run against
the embedded wire server (nx-27017), asserting what is stored (DESIGN.md section 8).

The server is the test session's (`mongodb_uri` in the repository's root conftest.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
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
from wok_notification.adapters.repository import MongoNotificationRepository
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
    await repository.save_contact(contact)
    await repository.save_contact(contact)
    assert await repository.get_contact(registration.registration_id) == contact
    assert await repository.contacts.count_documents({"_id": registration.registration_id}) == 1


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
