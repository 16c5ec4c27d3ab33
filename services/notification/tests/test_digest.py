"""One message per person per hour, except confirmations: a further message inside the hour
is held and goes out at its end in one digest, in the person's language, each message with
its own content and calendar attachment; exactly once, shown in the delivery log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import icalendar
import pytest

from services.notification.tests.test_notification_service import (
    SERVICE,
    Harness,
    bodies,
    parsed,
    running,
)
from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    NotificationKind,
    ParticipantRegistered,
    RegistrationStatus,
)
from wok_contracts.events.registration import (
    DialogueEventCancelled,
    DialogueEventRescheduled,
    ParticipantCancelled,
    ParticipantPromoted,
)
from wok_notification.domain import Contact

HOUR = timedelta(hours=1)


@pytest.fixture
async def limited() -> AsyncIterator[Harness]:
    async with running(digest_window_s=3600) as started:
        yield started


def moved(event: DialogueEventScheduled, *, days: int, revision: int) -> DialogueEventRescheduled:
    later = event.starts_at + timedelta(days=days)
    return DialogueEventRescheduled(
        dialogue_event_id=event.dialogue_event_id,
        ags=event.ags,
        title=event.title,
        starts_at=later,
        ends_at=later + timedelta(hours=2),
        previous_starts_at=event.starts_at,
        format=event.format,
        place=event.place,
        registration_deadline=later - timedelta(days=1),
        revision=revision,
    )


def cancelled(event: DialogueEventScheduled, *, revision: int) -> DialogueEventCancelled:
    return DialogueEventCancelled(
        dialogue_event_id=event.dialogue_event_id,
        ags=event.ags,
        revision=revision,
        reason="Raum nicht verfügbar",
    )


def calendars(message: object) -> list[tuple[str, str, icalendar.Calendar]]:
    found = []
    for part in message.iter_attachments():  # type: ignore[attr-defined]
        if part.get_content_type() == "text/calendar":
            raw = part.get_payload(decode=True)
            found.append(
                (
                    part.get_filename(),
                    str(part.get_param("method")),
                    icalendar.Calendar.from_ical(raw),
                )
            )
    return found


async def register(
    harness: Harness,
    event: DialogueEventScheduled,
    registered: Callable[..., ParticipantRegistered],
    contact: Contact,
    **fields: object,
) -> ParticipantRegistered:
    registration = registered(event, **fields)
    harness.contacts.add(
        Contact(
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            name=contact.name,
            email=contact.email,
            language=contact.language,
        )
    )
    await harness.deliver(registration)
    return registration


async def test_a_second_message_within_the_hour_waits_for_the_digest_and_goes_out_once(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    first = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    second = scheduled(format=EventFormat.IN_PERSON, place="Stadtbibliothek", title="Dialog: Sport")
    person = Contact("-", "-", "Ayşe Yılmaz", "ayse@example.org", "tr")
    for event in (first, second):
        await harness.deliver(event)
    one = await register(harness, first, registered, person, language="tr")
    two = await register(harness, second, registered, person, language="tr")
    assert len(harness.mail.sent) == 2, "confirmations are never held"

    await harness.deliver(moved(first, days=7, revision=1))  # the hour's one message
    harness.clock.now += timedelta(minutes=10)
    await harness.deliver(moved(second, days=14, revision=1))  # held
    harness.clock.now += timedelta(minutes=10)
    await harness.deliver(cancelled(first, revision=2))  # held
    assert [m["Subject"].split(":")[0] for m in harness.mail.sent] == [
        "Kayıt onayı",
        "Kayıt onayı",
        "Yeni tarih",
    ]

    log = (await harness.client.get("/v1/deliveries?status=held", headers=SERVICE)).json()
    assert sorted(entry["kind"] for entry in log) == ["cancelled", "rescheduled"]
    (digest_id,) = {entry["digest_id"] for entry in log}
    assert digest_id and "ayse" not in str(log)

    assert await harness.handlers.flush_due_digests() == 0, "the hour is not over"
    harness.clock.now += 40 * timedelta(minutes=1)
    assert await harness.handlers.flush_due_digests() == 1
    assert await harness.handlers.flush_due_digests() == 0
    # Redelivered triggers change nothing: each message went out once, in the digest
    await harness.deliver(moved(second, days=14, revision=1))
    await harness.deliver(cancelled(first, revision=2))
    await harness.handlers.flush_due_digests()
    assert len(harness.mail.sent) == 4

    digest = parsed(harness.mail.sent[-1])
    assert digest["Subject"] == "Diyalog etkinliklerinizle ilgili 2 mesaj"
    assert digest["To"].addresses[0].addr_spec == "ayse@example.org"
    assert digest["Message-ID"].strip().startswith(f"<{digest_id.replace(':', '.')}@")
    text, html = bodies(digest)
    assert f"Yeni tarih: {second.title}" in text and f"İptal edildi: {first.title}" in text
    assert "Stadtbibliothek" in text and "Raum nicht verfügbar" in text
    assert '<html lang="tr" dir="ltr">' in html and html.count("<h2") == 2
    # each message its own calendar attachment: the new date, and the removal
    attached = calendars(digest)
    assert [(name, method) for name, method, _ in attached] == [
        ("davet-1.ics", "REQUEST"),
        ("davet-2.ics", "CANCEL"),
    ]
    uids = [str(cal.walk("VEVENT")[0]["UID"]) for _, _, cal in attached]
    assert uids == [
        f"{second.dialogue_event_id}@weltoffene-kommune",
        f"{first.dialogue_event_id}@weltoffene-kommune",
    ]

    log = (await harness.client.get("/v1/deliveries", headers=SERVICE)).json()
    in_digest = [e for e in log if e["digest_id"] == digest_id]
    assert {(e["kind"], e["status"]) for e in in_digest} == {
        ("rescheduled", "sent"),
        ("cancelled", "sent"),
    }
    told = [n.data for n in await harness.notifications() if n.data.digest_id == digest_id]
    assert sorted(n.kind.value for n in told) == ["cancelled", "rescheduled"]
    assert {n.registration_id for n in told} == {one.registration_id, two.registration_id}


async def test_the_window_starts_again_after_a_digest_and_is_configurable(
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    async with running(digest_window_s=600) as harness:
        event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
        await harness.deliver(event)
        person = Contact("-", "-", "Dora", "dora@example.org", "de")
        await register(harness, event, registered, person)
        await harness.deliver(moved(event, days=1, revision=1))
        harness.clock.now += timedelta(minutes=5)
        await harness.deliver(moved(event, days=2, revision=2))  # held for 5 minutes
        harness.clock.now += timedelta(minutes=5)
        assert await harness.handlers.flush_due_digests() == 1
        digest = parsed(harness.mail.sent[-1])
        # a digest of one message is that message
        assert digest["Subject"] == f"Neuer Termin: {event.title}"
        ((_, method, calendar),) = calendars(digest)
        assert (method, int(calendar.walk("VEVENT")[0]["SEQUENCE"])) == ("REQUEST", 2)
        # the digest was the message of the next ten minutes
        harness.clock.now += timedelta(minutes=1)
        await harness.deliver(moved(event, days=3, revision=3))
        assert len(harness.mail.sent) == 3
        harness.clock.now += timedelta(minutes=10)
        assert await harness.handlers.flush_due_digests() == 1
        assert len(harness.mail.sent) == 4


async def test_confirmations_promotions_and_erasure_are_never_held(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus", capacity=1)
    await harness.deliver(event)
    person = Contact("-", "-", "Jana", "jana@example.org", "uk")
    registration = await register(
        harness, event, registered, person, language="uk", status=RegistrationStatus.WAITLISTED
    )
    await harness.deliver(moved(event, days=1, revision=1))
    await harness.deliver(
        ParticipantPromoted(
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
        )
    )
    kinds = [d["kind"] for d in harness.repository.deliveries.values() if d["status"] == "sent"]
    assert sorted(kinds) == ["confirmation", "promotion", "rescheduled"]


async def test_a_held_message_that_became_moot_is_withdrawn_not_sent(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    await harness.deliver(event)
    person = Contact("-", "-", "Omar", "omar@example.org", "ar")
    registration = await register(harness, event, registered, person, language="ar")
    await harness.deliver(moved(event, days=1, revision=1))
    await harness.deliver(moved(event, days=2, revision=2))  # held
    await harness.deliver(
        ParticipantCancelled(
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            previous_status=RegistrationStatus.CONFIRMED,
        )
    )
    harness.clock.now += HOUR
    assert await harness.handlers.flush_due_digests() == 1
    assert len(harness.mail.sent) == 2, "the confirmation and the first new date only"
    log = (await harness.client.get("/v1/deliveries?status=withdrawn", headers=SERVICE)).json()
    assert [(e["kind"], e["revision"]) for e in log] == [("rescheduled", 2)]
    assert log[0]["failure_reason"] == "no longer registered"


async def test_a_newer_message_on_the_same_event_replaces_the_older_one_in_the_digest(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    await harness.deliver(event)
    person = Contact("-", "-", "Amal", "amal@example.org", "ar")
    await register(harness, event, registered, person, language="ar")
    await harness.deliver(moved(event, days=1, revision=1))
    harness.clock.now += timedelta(minutes=1)
    await harness.deliver(moved(event, days=2, revision=2))  # held, then replaced
    harness.clock.now += timedelta(minutes=1)
    await harness.deliver(cancelled(event, revision=3))  # held
    harness.clock.now += HOUR
    await harness.handlers.flush_due_digests()
    digest = parsed(harness.mail.sent[-1])
    assert digest["Subject"] == f"تم الإلغاء: {event.title}"
    _, html = bodies(digest)
    assert 'dir="rtl"' in html
    statuses = {
        (d["kind"], d.get("revision")): d["status"] for d in harness.repository.deliveries.values()
    }
    assert statuses[("rescheduled", 2)] == "withdrawn"
    assert statuses[("cancelled", None)] == "sent"


async def test_the_mail_server_away_keeps_the_digest_until_it_returns(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    await harness.deliver(event)
    person = Contact("-", "-", "Eva", "eva@example.org", "en")
    await register(harness, event, registered, person, language="en")
    await harness.deliver(moved(event, days=1, revision=1))
    await harness.deliver(moved(event, days=2, revision=2))
    harness.clock.now += HOUR
    harness.mail.fail_next = 1
    assert await harness.handlers.flush_due_digests() == 1
    assert len(harness.mail.sent) == 2
    held = [d for d in harness.repository.deliveries.values() if d["status"] == "held"]
    assert len(held) == 1
    harness.clock.now += timedelta(seconds=10)
    assert await harness.handlers.flush_due_digests() == 1
    assert len(harness.mail.sent) == 3
    assert harness.mail.sent[-1]["Subject"] == f"New date: {event.title}"
    kinds = [n.data.kind for n in await harness.notifications()]
    assert kinds.count(NotificationKind.RESCHEDULED) == 2


async def test_a_digest_the_mail_server_refuses_for_good_fails_its_messages_once(
    limited: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    harness = limited
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    await harness.deliver(event)
    person = Contact("-", "-", "Eva", "eva@example.org", "en")
    await register(harness, event, registered, person, language="en")
    await harness.deliver(moved(event, days=1, revision=1))
    await harness.deliver(moved(event, days=2, revision=2))
    harness.clock.now += HOUR
    harness.mail.reject = True
    assert await harness.handlers.flush_due_digests() == 1
    assert await harness.handlers.flush_due_digests() == 0
    log = (await harness.client.get("/v1/deliveries?status=failed", headers=SERVICE)).json()
    assert [(e["kind"], e["revision"]) for e in log] == [("rescheduled", 2)]
    failed = [n.data for n in await harness.notifications() if n.type.endswith("failed.v1")]
    assert [(f.kind, f.revision) for f in failed] == [(NotificationKind.RESCHEDULED, 2)]
