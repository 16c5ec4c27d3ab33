"""The notification service end to end in memory: events in from the test broker, mail out
through the recording sender, NotificationSent out through the outbox relay."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import icalendar
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

import wok_notification
from wok_contracts import (
    DialogueEventScheduled,
    EventData,
    EventFormat,
    NotificationFailed,
    NotificationKind,
    NotificationSent,
    ParticipantRegistered,
    RegistrationStatus,
    decode_envelope,
    new_envelope,
)
from wok_contracts.events.registration import (
    CancellationReason,
    DialogueEventCancelled,
    DialogueEventRescheduled,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
)
from wok_contracts.topics import NOTIFICATION_EVENTS, REGISTRATION_EVENTS, dead_letter_topic
from wok_notification.adapters.contacts import (
    FakeAccessDirectory,
    FakeContactDirectory,
    FakeOfficeDirectory,
    FakeTaskforceDirectory,
)
from wok_notification.adapters.mail import RecordingMailSender
from wok_notification.adapters.repository import InMemoryNotificationRepository
from wok_notification.app import build_app
from wok_notification.domain import AccessInfo, Contact
from wok_notification.handlers import NotificationHandlers
from wok_notification.settings import NotificationSettings
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.service import ServiceRuntime

SERVICE = {"Authorization": "Bearer service-secret"}


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Harness:
    broker: Any
    runtime: ServiceRuntime
    client: httpx.AsyncClient
    repository: InMemoryNotificationRepository
    mail: RecordingMailSender
    contacts: FakeContactDirectory
    published: list[tuple[bytes | None, bytes]]
    dead_letters: list[dict[str, str]]
    access: FakeAccessDirectory
    clock: Clock
    handlers: NotificationHandlers
    taskforce: FakeTaskforceDirectory
    offices: FakeOfficeDirectory

    async def deliver(
        self,
        data: EventData,
        *,
        envelope_id: str | None = None,
    ) -> str:
        """Put one registration event on the topic as registration's relay would."""
        ags = data.ags  # type: ignore[attr-defined]
        envelope = new_envelope(data, source="/wok/registration", municipality=ags)
        if envelope_id:
            envelope.id = envelope_id
        await self.broker.publish(envelope.to_json_bytes(), REGISTRATION_EVENTS, key=ags.encode())
        return envelope.id

    async def notifications(self) -> list[Any]:
        await self.runtime.relay.drain_once()
        return [decode_envelope(value) for _, value in self.published]


@contextlib.asynccontextmanager
async def running(**overrides: Any) -> AsyncIterator[Harness]:
    """The service in memory; `overrides` are settings."""
    settings = NotificationSettings(
        **{
            "service_key": "service-secret",
            "public_base_url": "https://anmeldung.example",
            "consumer_max_attempts": 2,
            "consumer_backoff_initial_s": 0.001,
            "consumer_backoff_max_s": 0.005,
            # one message per hour is tested on its own (test_digest.py)
            "digest_window_s": 0,
            **overrides,
        }
    )
    runtime = ServiceRuntime(name="notification", settings=settings)
    repository = InMemoryNotificationRepository()
    mail = RecordingMailSender()
    contacts = FakeContactDirectory()
    access = FakeAccessDirectory()
    taskforce = FakeTaskforceDirectory()
    offices = FakeOfficeDirectory()
    clock = Clock(datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    app = build_app(
        settings,
        runtime=runtime,
        repository=repository,
        sender=mail,
        contacts=contacts,
        access=access,
        taskforce=taskforce,
        offices=offices,
        processed=InMemoryProcessedStore(),
        clock=clock,
    )
    published: list[tuple[bytes | None, bytes]] = []
    dead_letters: list[dict[str, str]] = []

    @runtime.broker.subscriber(NOTIFICATION_EVENTS)
    async def capture(message: KafkaMessage) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        published.append((raw.key, raw.value))

    @runtime.broker.subscriber(dead_letter_topic("notification"))
    async def capture_dead_letter(message: KafkaMessage) -> None:
        dead_letters.append(dict(message.headers))

    async with TestKafkaBroker(runtime.broker) as broker:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://notification") as client:
            yield Harness(
                broker,
                runtime,
                client,
                repository,
                mail,
                contacts,
                published,
                dead_letters,
                access=access,
                clock=clock,
                handlers=app.state.handlers,
                taskforce=taskforce,
                offices=offices,
            )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with running() as started:
        yield started


def recipients(messages: list[EmailMessage]) -> list[str]:
    return [message["To"].addresses[0].addr_spec for message in messages]


async def test_a_registration_gets_exactly_one_confirmation_however_often_it_arrives(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event)
    contact = contact_for(registration)
    harness.contacts.add(contact)

    await harness.deliver(event)
    envelope_id = await harness.deliver(registration)
    # the same message again (a redelivery after a lost commit) ...
    await harness.deliver(registration, envelope_id=envelope_id)
    # ... and the same fact in a new envelope (a crash between effect and processed mark
    # is indistinguishable from this for the delivery)
    await harness.deliver(registration)

    assert recipients(harness.mail.sent) == [contact.email]
    message = harness.mail.sent[0]
    assert message["Subject"] == f"Anmeldebestätigung: {event.title}"
    assert (
        message["Message-ID"]
        == f"<confirmation.{registration.registration_id}@weltoffene-kommune.example>"
    )
    delivery = harness.repository.deliveries[f"confirmation:{registration.registration_id}"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 1)
    assert harness.repository.contacts[registration.registration_id]["email"] == contact.email

    (sent,) = await harness.notifications()
    assert isinstance(sent.data, NotificationSent)
    assert sent.data.notification_id == f"confirmation:{registration.registration_id}"
    assert (sent.data.registration_id, sent.data.dialogue_event_id) == (
        registration.registration_id,
        event.dialogue_event_id,
    )
    assert sent.municipality == event.ags
    assert harness.published[0][0] == event.ags.encode()
    raw = harness.published[0][1]
    assert contact.email.encode() not in raw and b"@example.org" not in raw
    assert contact.name.encode() not in raw
    assert await harness.runtime.relay.drain_once() == 0, "NotificationSent goes out once"


async def test_a_waitlisted_registration_is_told_it_waits(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event, status="waitlisted")
    harness.contacts.add(contact_for(registration))

    await harness.deliver(event)
    await harness.deliver(registration)

    (message,) = harness.mail.sent
    assert message["Subject"].startswith("Warteliste: ")


async def test_the_mail_server_being_away_delays_the_mail_but_sends_it_once(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event)
    harness.contacts.add(contact_for(registration))
    harness.mail.fail_next = 3  # more than max_attempts: an outage is not a handler failure

    await harness.deliver(event)
    await harness.deliver(registration)

    assert len(harness.mail.sent) == 1
    delivery = harness.repository.deliveries[f"confirmation:{registration.registration_id}"]
    assert (delivery["status"], delivery["attempts"]) == ("sent", 4)
    assert harness.dead_letters == []
    assert len(await harness.notifications()) == 1


async def test_registration_being_away_delays_the_mail(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event)
    harness.contacts.add(contact_for(registration))
    harness.contacts.unavailable = 3

    await harness.deliver(event)
    await harness.deliver(registration)

    assert len(harness.mail.sent) == 1
    assert len(harness.contacts.lookups) == 4


async def test_an_erased_participant_gets_nothing_and_leaves_no_trace(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
) -> None:
    event = scheduled()
    registration = registered(event)  # registration answers 404: erased before we asked

    await harness.deliver(event)
    await harness.deliver(registration)

    assert harness.mail.sent == []
    assert harness.repository.deliveries == {}
    assert harness.repository.contacts == {}
    assert harness.dead_letters == []


async def test_a_refused_address_is_recorded_as_failed_and_not_tried_again(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event)
    harness.contacts.add(contact_for(registration))
    harness.mail.reject = True

    await harness.deliver(event)
    await harness.deliver(registration)
    harness.mail.reject = False
    await harness.deliver(registration)

    assert harness.mail.sent == []
    delivery = harness.repository.deliveries[f"confirmation:{registration.registration_id}"]
    assert delivery["status"] == "failed"
    (failed,) = await harness.notifications()
    assert isinstance(failed.data, NotificationFailed)
    assert failed.data.reason == "mail server answered 550"
    assert harness.dead_letters == [], "a refused address is final, not an outage"


async def test_a_registration_for_an_unknown_event_is_dead_lettered_with_the_reason(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    registration = registered(scheduled())  # its DialogueEventScheduled never arrived
    harness.contacts.add(contact_for(registration))

    await harness.deliver(registration)

    assert harness.mail.sent == []
    (headers,) = harness.dead_letters
    assert "is not known" in headers["wok-dlq-reason"]


async def test_a_later_revision_of_the_event_is_what_the_mail_shows(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    first = scheduled(title="Alter Titel")
    renamed = first.model_copy(update={"title": "Neuer Titel", "revision": 1})
    registration = registered(first)
    harness.contacts.add(contact_for(registration))

    await harness.deliver(renamed)
    await harness.deliver(first)  # late and out of date: must not win
    await harness.deliver(registration)

    (message,) = harness.mail.sent
    assert message["Subject"] == "Anmeldebestätigung: Neuer Titel"


async def test_the_delivery_log_lists_states_without_addresses_or_bodies(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event)
    harness.contacts.add(contact_for(registration))
    await harness.deliver(event)
    await harness.deliver(registration)

    assert (await harness.client.get("/v1/deliveries")).status_code == 401
    wrong = {"Authorization": "Bearer guess"}
    assert (await harness.client.get("/v1/deliveries", headers=wrong)).status_code == 401
    response = await harness.client.get("/v1/deliveries", headers=SERVICE)

    assert response.status_code == 200
    (entry,) = response.json()
    assert set(entry) == {
        "id",
        "kind",
        "registration_id",
        "dialogue_event_id",
        "status",
        "sent_at",
        "revision",
        "attempts",
        "failed_at",
        "failure_reason",
        "digest_id",
    }
    assert entry["id"] == f"confirmation:{registration.registration_id}"
    assert (entry["kind"], entry["status"]) == ("confirmation", "sent")
    assert entry["sent_at"] is not None
    assert "@example.org" not in response.text and "Müller" not in response.text


def test_the_production_wiring_builds_without_touching_any_server() -> None:
    app = build_app(NotificationSettings())
    paths = app.openapi()["paths"]
    assert {"/v1/deliveries", "/healthz", "/readyz", "/metrics"} <= set(paths)


def test_the_service_process_sets_its_start_up_aside_from_garbage_collection() -> None:
    """In a process of its own, as `python -m wok_notification` runs it after building the
    app: start-up's objects frozen, the young generation collected less often."""
    script = (
        "import gc\n"
        "from wok_notification.__main__ import YOUNG_COLLECTION_THRESHOLD as young\n"
        "from wok_notification.__main__ import tune_garbage_collection\n"
        "before = gc.get_freeze_count()\n"
        "tune_garbage_collection()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0] == young)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    before, frozen, young = ran.stdout.split()
    assert before == "0" and int(frozen) > 10_000 and young == "True"


# ---------------------------------------------------------------- languages


def parsed(message: EmailMessage) -> EmailMessage:
    """What the recipient's mail program gets: the bytes on the wire, parsed anew."""
    again = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(again, EmailMessage)
    return again


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def calendar_of(message: EmailMessage) -> tuple[str, icalendar.Calendar]:
    (attachment,) = [
        part for part in message.iter_attachments() if part.get_content_type() == "text/calendar"
    ]
    raw = attachment.get_payload(decode=True)
    assert isinstance(raw, bytes)
    return str(attachment.get_param("method")), icalendar.Calendar.from_ical(raw)


@pytest.mark.parametrize(
    ("language", "subject", "weekday", "direction"),
    [
        ("de", "Anmeldebestätigung: ", "Donnerstag", "ltr"),
        ("en", "Registration confirmed: ", "Thursday", "ltr"),
        ("tr", "Kayıt onayı: ", "Perşembe", "ltr"),
        ("ar", "تأكيد التسجيل: ", "الخميس", "rtl"),
        ("uk", "Реєстрацію підтверджено: ", "четвер", "ltr"),
        # no templates for Polish: German it is
        ("pl", "Anmeldebestätigung: ", "Donnerstag", "ltr"),
    ],
)
async def test_the_confirmation_speaks_the_recipients_language(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
    language: str,
    subject: str,
    weekday: str,
    direction: str,
) -> None:
    event = scheduled()
    registration = registered(event, language=language)
    harness.contacts.add(contact_for(registration, language=language))
    await harness.deliver(event)
    await harness.deliver(registration)

    (sent,) = harness.mail.sent
    message = parsed(sent)
    expected = language if language != "pl" else "de"
    assert message["Subject"] == subject + event.title
    assert message["Content-Language"] == expected
    text, html = bodies(message)
    assert weekday in text and weekday in html
    assert f'<html lang="{expected}" dir="{direction}">' in html
    method, calendar = calendar_of(message)
    assert method == "REQUEST" and calendar.walk("VEVENT")


async def test_a_municipality_adds_a_language_with_a_folder_and_no_code(
    tmp_path: Path,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    english = (Path(wok_notification.__file__).parent / "templates/en/messages.j2").read_text()
    french = english.replace("Registration confirmed:", "Inscription confirmée :").replace(
        "Dear ", "Bonjour "
    )
    (tmp_path / "fr").mkdir()
    (tmp_path / "fr" / "messages.j2").write_text(french)

    async with running(notification_template_dirs=str(tmp_path)) as harness:
        event = scheduled()
        registration = registered(event, language="fr")
        harness.contacts.add(contact_for(registration, language="fr"))
        await harness.deliver(event)
        await harness.deliver(registration)

    (message,) = harness.mail.sent
    assert message["Subject"] == f"Inscription confirmée : {event.title}"
    assert message["Content-Language"] == "fr"
    text, _ = bodies(parsed(message))
    assert text.startswith("Bonjour Jörg Müller")
    assert "jeudi 10 décembre 2026" in text, "the date in French from CLDR, with the weekday"


# ---------------------------------------------------------------- message kinds


async def test_a_promoted_person_is_told_once_with_a_confirmed_calendar_entry(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event, status="waitlisted", language="en")
    harness.contacts.add(
        contact_for(registration, language="en", cancel_url="https://anmeldung.example/c/abc")
    )
    await harness.deliver(event)
    await harness.deliver(registration)
    promoted = ParticipantPromoted(
        registration_id=registration.registration_id,
        dialogue_event_id=event.dialogue_event_id,
        ags=event.ags,
    )
    await harness.deliver(promoted)
    await harness.deliver(promoted)

    waitlisted, promotion = harness.mail.sent
    assert waitlisted["Subject"].startswith("Waiting list: ")
    message = parsed(promotion)
    assert message["Subject"] == f"You have a place: {event.title}"
    text, html = bodies(message)
    assert "moved up from the waiting list" in text
    assert (
        "https://anmeldung.example/c/abc" in text
        and 'href="https://anmeldung.example/c/abc"' in html
    )
    method, calendar = calendar_of(message)
    (entry,) = calendar.walk("VEVENT")
    assert (method, str(entry["STATUS"])) == ("REQUEST", "CONFIRMED")
    kinds = [n.data.kind for n in await harness.notifications()]
    assert kinds == [NotificationKind.CONFIRMATION, NotificationKind.PROMOTION]


async def test_a_reschedule_updates_the_same_calendar_entry_for_everyone_still_registered(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    staying, leaving = registered(event, language="tr"), registered(event)
    for registration in (staying, leaving):
        harness.contacts.add(contact_for(registration, language=registration.language))
    await harness.deliver(event)
    for registration in (staying, leaving):
        await harness.deliver(registration)
    await harness.deliver(
        ParticipantCancelled(
            registration_id=leaving.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            previous_status=RegistrationStatus.CONFIRMED,
        )
    )
    later = event.starts_at + timedelta(days=7)
    moved = DialogueEventRescheduled(
        dialogue_event_id=event.dialogue_event_id,
        ags=event.ags,
        title=event.title,
        starts_at=later,
        ends_at=later + timedelta(hours=2),
        previous_starts_at=event.starts_at,
        format=EventFormat.IN_PERSON,
        place="Stadtbibliothek",
        registration_deadline=later - timedelta(days=1),
        revision=2,
    )
    await harness.deliver(moved)
    await harness.deliver(moved)

    mails = [m for m in harness.mail.sent if m["Subject"].startswith("Yeni tarih")]
    assert recipients(mails) == [f"{staying.registration_id}@example.org"]
    assert len(harness.mail.sent) == 3, "two confirmations and one reschedule; none to the leaver"
    message = parsed(mails[0])
    text, _ = bodies(message)
    assert "17 Aralık 2026 Perşembe" in text and "Stadtbibliothek" in text
    method, calendar = calendar_of(message)
    (entry,) = calendar.walk("VEVENT")
    assert method == "REQUEST" and calendar["METHOD"] == "REQUEST"
    assert str(entry["UID"]) == f"{event.dialogue_event_id}@weltoffene-kommune"
    assert entry["SEQUENCE"] == 2
    assert entry.decoded("DTSTART") == later
    sent = [n.data for n in await harness.notifications() if n.data.kind == "rescheduled"]
    assert [(s.notification_id, s.revision) for s in sent] == [
        (f"rescheduled:{staying.registration_id}:2", 2)
    ]


async def test_a_cancelled_event_removes_the_calendar_entry_and_stops_reminders(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event, language="uk")
    harness.contacts.add(contact_for(registration, language="uk"))
    await harness.deliver(event)
    await harness.deliver(registration)
    assert harness.repository.scheduled[f"reminder:{registration.registration_id}"]["status"] == (
        "scheduled"
    )
    cancelled = DialogueEventCancelled(
        dialogue_event_id=event.dialogue_event_id, ags=event.ags, revision=3, reason="Sturm"
    )
    # registration may also cancel each registration because of it, before or after
    await harness.deliver(
        ParticipantCancelled(
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            previous_status=RegistrationStatus.CONFIRMED,
            reason=CancellationReason.EVENT_CANCELLED,
        )
    )
    await harness.deliver(cancelled)
    await harness.deliver(cancelled)

    _, cancellation = harness.mail.sent
    message = parsed(cancellation)
    assert message["Subject"] == f"Скасовано: {event.title}"
    text, _ = bodies(message)
    assert "Sturm" in text
    assert "Скасувати реєстрацію" not in text, "no cancel link for a cancelled event"
    method, calendar = calendar_of(message)
    (entry,) = calendar.walk("VEVENT")
    assert (method, calendar["METHOD"], str(entry["STATUS"])) == ("CANCEL", "CANCEL", "CANCELLED")
    assert str(entry["UID"]) == f"{event.dialogue_event_id}@weltoffene-kommune"
    assert entry["SEQUENCE"] == 3
    statuses = {d["status"] for d in harness.repository.scheduled.values()}
    assert statuses == {"cancelled"}
    harness.clock.now = event.starts_at - timedelta(hours=1)
    assert await harness.handlers.dispatch_due() == 0
    assert len(harness.mail.sent) == 2


async def test_erasure_is_confirmed_from_our_copy_and_then_nothing_of_the_person_is_left(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    registration = registered(event, language="ar")
    contact = contact_for(registration, language="ar")
    harness.contacts.add(contact)
    await harness.deliver(event)
    await harness.deliver(registration)
    harness.contacts.contacts.clear()  # registration has erased its own copy first
    erased = ParticipantErased(
        registration_id=registration.registration_id,
        dialogue_event_id=event.dialogue_event_id,
        ags=event.ags,
    )
    await harness.deliver(erased)
    await harness.deliver(erased)

    _, confirmation = harness.mail.sent
    message = parsed(confirmation)
    assert recipients([message]) == [contact.email]
    assert message["Subject"] == f"تم حذف بياناتك: {event.title}"
    _, html = bodies(message)
    assert '<html lang="ar" dir="rtl">' in html
    assert list(message.iter_attachments()) == []
    assert harness.repository.contacts == {}
    assert [
        d
        for d in harness.repository.scheduled.values()
        if d["registration_id"] == registration.registration_id
    ] == []
    for delivery in harness.repository.deliveries.values():
        assert (delivery["language"], delivery["erased"]) == ("", True)
    log = (await harness.client.get("/v1/deliveries", headers=SERVICE)).json()
    assert {entry["kind"] for entry in log} == {"confirmation", "erasure"}
    assert contact.email not in str(log)


async def test_reminder_and_online_link_go_out_at_their_time_once_and_survive_in_storage(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled(format=EventFormat.ONLINE)
    registration = registered(event, language="en")
    harness.contacts.add(contact_for(registration, language="en"))
    harness.access.access[event.dialogue_event_id] = AccessInfo(
        place=None, online_link="https://meet.example/room-7"
    )
    await harness.deliver(event)
    await harness.deliver(registration)

    assert await harness.handlers.dispatch_due() == 0, "nothing due weeks before"
    harness.clock.now = event.starts_at - timedelta(hours=23)
    # the access mail, the reminder, and the taskforce reminder (its deadline has passed)
    assert await harness.handlers.dispatch_due() == 3
    assert await harness.handlers.dispatch_due() == 0

    subjects = sorted(m["Subject"] for m in harness.mail.sent[1:])
    assert subjects == [f"How to join: {event.title}", f"Reminder: {event.title}"]
    access = next(m for m in harness.mail.sent if m["Subject"].startswith("How to join"))
    text, html = bodies(parsed(access))
    assert "https://meet.example/room-7" in text and 'href="https://meet.example/room-7"' in html
    # the link never reaches a topic
    assert all(b"meet.example" not in value for _, value in harness.published)
    await harness.notifications()
    assert all(b"meet.example" not in value for _, value in harness.published)


async def test_a_person_who_cancels_gets_no_reminder(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus")
    registration = registered(event)
    harness.contacts.add(contact_for(registration))
    await harness.deliver(event)
    await harness.deliver(registration)
    await harness.deliver(
        ParticipantCancelled(
            registration_id=registration.registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            previous_status=RegistrationStatus.CONFIRMED,
        )
    )
    harness.clock.now = event.starts_at - timedelta(hours=2)
    await harness.handlers.dispatch_due()
    assert len(harness.mail.sent) == 1
    reminder = await harness.repository.get_scheduled(f"reminder:{registration.registration_id}")
    assert reminder is not None and reminder.status == "cancelled"


async def test_mails_carry_the_cancel_link_only_when_registration_gave_one(
    harness: Harness,
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    event = scheduled()
    with_link, without = registered(event), registered(event)
    harness.contacts.add(
        contact_for(
            with_link,
            cancel_url="https://anmeldung.example/c/1",
            erasure_url="https://anmeldung.example/e/1",
        )
    )
    harness.contacts.add(contact_for(without))
    await harness.deliver(event)
    await harness.deliver(with_link)
    await harness.deliver(without)

    linked, plain = (bodies(parsed(m))[0] for m in harness.mail.sent)
    assert "Anmeldung stornieren: https://anmeldung.example/c/1" in linked
    assert "Meine Daten löschen: https://anmeldung.example/e/1" in linked
    assert "stornieren" not in plain and "löschen" not in plain


# ---------------------------------------------------------------- bounded outages


async def test_a_mail_server_away_past_the_limit_fails_the_mail_once_and_an_operator_redrives_it(
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., Contact],
) -> None:
    async with running(smtp_give_up_attempts=3, smtp_give_up_after_s=0) as harness:
        event = scheduled()
        registration = registered(event)
        harness.contacts.add(contact_for(registration))
        harness.mail.fail_next = 1000
        await harness.deliver(event)
        await harness.deliver(registration)

        delivery_id = f"confirmation:{registration.registration_id}"
        assert harness.mail.sent == []
        (headers,) = harness.dead_letters
        assert "given up" in headers["wok-dlq-reason"]
        stored = harness.repository.deliveries[delivery_id]
        assert (stored["status"], stored["attempts"]) == ("undeliverable", 3)
        (failed,) = await harness.notifications()
        assert isinstance(failed.data, NotificationFailed)
        assert failed.data.notification_id == delivery_id and failed.data.attempts == 3
        assert "@example.org" not in failed.data.reason

        # the same event again (a replay) does not try again: the mail waits for an operator
        await harness.deliver(registration)
        assert harness.mail.sent == []

        harness.mail.fail_next = 0
        redriven = await harness.client.post(
            f"/v1/deliveries/{delivery_id}/redrive", headers=SERVICE
        )
        assert redriven.status_code == 200
        assert redriven.json()["status"] == "sent"
        again = await harness.client.post(f"/v1/deliveries/{delivery_id}/redrive", headers=SERVICE)
        assert again.status_code == 409
        unknown = await harness.client.post("/v1/deliveries/nope/redrive", headers=SERVICE)
        assert unknown.status_code == 404
        assert recipients(harness.mail.sent) == [f"{registration.registration_id}@example.org"]
