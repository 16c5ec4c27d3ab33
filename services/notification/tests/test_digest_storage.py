"""Storage conformance of the one-message-per-hour limit: every query and update shape of
the recipients (window) and digests collections, on the embedded MongoDB server (nx-27017)
and its in-memory twin; and a digest that outlives the process that held its messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import DialogueEventScheduled, EventFormat, NotificationKind
from wok_contracts.events.registration import DialogueEventRescheduled
from wok_notification import domain
from wok_notification.adapters.contacts import FakeContactDirectory
from wok_notification.adapters.mail import RecordingMailSender
from wok_notification.adapters.repository import (
    DigestStatus,
    InMemoryNotificationRepository,
    MongoNotificationRepository,
    NotificationRepository,
)
from wok_notification.domain import Contact, ParticipantStatus
from wok_notification.handlers import NotificationHandlers
from wok_notification.rendering import MailRenderer
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import PENDING_FIELD

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
LEASE = timedelta(minutes=2)


@pytest.fixture(params=["memory", "mongodb"])
async def repository(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield InMemoryNotificationRepository()
        return
    client = mongo_client(request.getfixturevalue("mongodb_uri"))
    mongo = MongoNotificationRepository(client[f"wok_notification_digest_{time.time_ns()}"])
    await mongo.ensure_indexes()
    try:
        yield mongo
    finally:
        await client.close()


async def test_a_window_is_taken_by_one_holder_at_a_time(repository: Any) -> None:
    person = domain.recipient_key("Ayse@Example.org ")
    assert person == domain.recipient_key("ayse@example.org")
    assert await repository.take_slot(person, holder="a", now=NOW, until=NOW + HOUR)
    assert await repository.take_slot(person, holder="a", now=NOW, until=NOW + HOUR), "again"
    later = NOW + timedelta(minutes=30)
    assert not await repository.take_slot(person, holder="b", now=later, until=later + HOUR)
    window = await repository.window_of(person)
    assert window is not None and window[0] == domain.iso_utc(NOW + HOUR)
    ref = window[1]
    assert ref and "ayse" not in ref
    after = NOW + HOUR
    assert await repository.take_slot(person, holder="b", now=after, until=after + HOUR)
    assert await repository.window_of(person) == (domain.iso_utc(after + HOUR), ref)

    await repository.reserve_slot(person, holder="digest", until=after + 2 * HOUR)
    assert await repository.window_of(person) == (domain.iso_utc(after + 2 * HOUR), ref)
    digest = domain.digest_id(ref, due_at=domain.iso_utc(after))
    args = {"recipient": person, "due_at": domain.iso_utc(after), "ags": "07312000"}
    assert await repository.add_digest_item(digest, item=item("reminder:r1", held_at=NOW), **args)
    await repository.forget_recipient(person)  # erasure
    assert await repository.window_of(person) is None
    assert (await repository.get_digest(digest)).recipient == ""
    await repository.reserve_slot(person, holder="digest", until=NOW)  # erased: nothing
    assert await repository.window_of(person) is None


async def test_concurrent_messages_let_exactly_one_through_per_window(repository: Any) -> None:
    person = domain.recipient_key("race@example.org")
    await repository.take_slot(person, holder="first", now=NOW - 2 * HOUR, until=NOW - HOUR)
    taken = await asyncio.gather(
        *(
            repository.take_slot(person, holder=f"h{n}", now=NOW, until=NOW + HOUR)
            for n in range(12)
        )
    )
    assert taken.count(True) == 1


def item(delivery_id: str, *, held_at: datetime, waitlisted: bool = False) -> domain.DigestItem:
    return domain.DigestItem(
        delivery_id=delivery_id,
        kind=NotificationKind.RESCHEDULED,
        registration_id=delivery_id.split(":")[1],
        dialogue_event_id="event-1",
        held_at=domain.iso_utc(held_at),
        revision=3,
        waitlisted=waitlisted,
    )


async def test_a_digest_gathers_items_until_claimed_then_is_sent_once(repository: Any) -> None:
    due = domain.iso_utc(NOW + HOUR)
    digest_id = domain.digest_id("f" * 64, due_at=due)
    first = item("rescheduled:r1:3", held_at=NOW, waitlisted=True)
    second = item("rescheduled:r2:3", held_at=NOW + timedelta(minutes=5))
    args = {"recipient": "f" * 64, "due_at": due, "ags": "07312000"}
    assert await repository.add_digest_item(digest_id, item=first, **args)
    assert await repository.add_digest_item(digest_id, item=second, **args)
    assert await repository.add_digest_item(digest_id, item=second, **args), "idempotent"

    assert await repository.claim_due_digest(now=NOW, lease=LEASE, token="t0") is None
    claimed = await repository.claim_due_digest(now=NOW + HOUR, lease=LEASE, token="t1")
    assert claimed is not None and claimed.id == digest_id
    assert claimed.items == (first, second), "in the order held, flags intact"
    assert claimed.status == DigestStatus.SENDING
    assert await repository.claim_due_digest(now=NOW + HOUR, lease=LEASE, token="t2") is None
    late = item("rescheduled:r3:3", held_at=NOW + HOUR)
    assert not await repository.add_digest_item(digest_id, item=late, **args), "going out"

    # the mail server is away: open again later, one attempt counted
    retry_at = NOW + HOUR + timedelta(seconds=5)
    await repository.retry_digest(digest_id, token="t1", due_at=retry_at)
    again = await repository.get_digest(digest_id)
    assert again is not None and (again.status, again.attempts) == (DigestStatus.OPEN, 1)
    assert again.due_at == domain.iso_utc(retry_at)
    # a sender that died mid-send leaves a lease that runs out
    taken = await repository.claim_due_digest(now=retry_at, lease=LEASE, token="t3")
    assert taken is not None
    assert await repository.claim_due_digest(now=retry_at + LEASE, lease=LEASE, token="t4")
    await repository.finish_digest(digest_id, token="t3", status=DigestStatus.SENT)
    assert (await repository.get_digest(digest_id)).status == DigestStatus.SENDING, "stale token"
    await repository.finish_digest(
        digest_id, token="t4", status=DigestStatus.SENT, message_id="<m>"
    )
    done = await repository.get_digest(digest_id)
    assert (done.status, done.message_id) == (DigestStatus.SENT, "<m>")


async def test_held_deliveries_move_between_digests_and_end_sent_with_their_event(
    repository: Any,
) -> None:
    new = domain.new_delivery(
        NotificationKind.REMINDER,
        registration_id="r9",
        dialogue_event_id="event-9",
        ags="07312000",
        language="uk",
        now=NOW,
    )
    held = await repository.hold_delivery(new, digest_id="digest:a")
    assert held is not None and (held.status, held.digest_id) == ("held", "digest:a")
    moved = await repository.hold_delivery(new, digest_id="digest:b")
    assert moved is not None and moved.digest_id == "digest:b"
    stored = await repository.get_delivery(new.id)
    assert stored == moved and stored.created_at == NOW

    sent_at = NOW + HOUR
    sent = await repository.finish_held(
        new.id,
        lambda d: d.sent_in_digest(digest_id="digest:b", sent_at=sent_at, message_id="<d>"),
    )
    assert sent is not None and sent.status is domain.DeliveryStatus.SENT
    assert await repository.hold_delivery(new, digest_id="digest:c") is None, "finished"
    assert (
        await repository.finish_held(
            new.id, lambda d: d.withdrawn(digest_id="digest:b", reason="x", now=NOW)
        )
        is None
    )
    listed = await repository.list_deliveries(limit=10, status="sent")
    assert [(d.id, d.digest_id, d.sent_at) for d in listed] == [(new.id, "digest:b", sent_at)]
    if isinstance(repository, MongoNotificationRepository):
        document = await repository.deliveries.find_one({"_id": new.id})
        assert document[PENDING_FIELD] == 0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def service(
    repository: NotificationRepository, sender: RecordingMailSender, clock: Clock
) -> NotificationHandlers:
    return NotificationHandlers(
        repository=repository,
        contacts=FakeContactDirectory(),
        sender=sender,
        renderer=MailRenderer(),
        mail_from="Weltoffene Kommune <noreply@example.org>",
        public_base_url="https://anmeldung.example",
        lease=LEASE,
        digest_window=HOUR,
        clock=clock,
    )


async def test_held_messages_survive_a_restart_and_go_out_once_in_one_digest(
    repository: Any, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    """The process that held the messages is gone; the next one sends the digest, once."""
    clock = Clock(NOW)
    sender = RecordingMailSender()
    before = service(repository, sender, clock)
    events = [
        scheduled(format=EventFormat.IN_PERSON, place="Rathaus", title=f"Dialog {n}")
        for n in range(3)
    ]
    for n, event in enumerate(events):
        details = domain.EventDetails.scheduled(event)
        await repository.save_event(details)
        registration_id = f"reg-{n}-{time.time_ns()}"
        contact = Contact(
            registration_id, event.dialogue_event_id, "Олена", "olena@example.org", "uk"
        )
        await repository.save_contact(contact, status=ParticipantStatus.CONFIRMED)
        later = event.starts_at + timedelta(days=7)
        rescheduled = details.rescheduled(
            DialogueEventRescheduled(
                dialogue_event_id=event.dialogue_event_id,
                ags=event.ags,
                title=event.title,
                starts_at=later,
                ends_at=later + timedelta(hours=2),
                previous_starts_at=event.starts_at,
                format=event.format,
                place=event.place,
                registration_deadline=later - timedelta(days=1),
                revision=1,
            )
        )
        await repository.save_event(rescheduled)
        await before.deliver(
            NotificationKind.RESCHEDULED,
            registration_id=registration_id,
            event=rescheduled,
            contact=contact,
            revision=1,
        )
        clock.now += timedelta(minutes=1)
    assert len(sender.sent) == 1, "the first went out; two are held"

    clock.now = NOW + HOUR
    after = service(repository, sender, clock)  # a new process, the same database
    assert await after.flush_due_digests() == 1
    assert await before.flush_due_digests() == 0
    assert await after.flush_due_digests() == 0
    assert len(sender.sent) == 2
    digest = sender.sent[-1]
    assert digest["Subject"] == "Повідомлення про ваші діалогові заходи (2)"
    assert len([p for p in digest.iter_attachments()]) == 2
    sent = await repository.list_deliveries(limit=10, status="sent")
    assert len(sent) == 3 and len({d.digest_id for d in sent if d.digest_id}) == 1
