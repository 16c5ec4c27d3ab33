"""The notification service end to end in memory: events in from the test broker, mail out
through the recording sender, NotificationSent out through the outbox relay."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from wok_contracts import (
    DialogueEventScheduled,
    NotificationSent,
    ParticipantRegistered,
    decode_envelope,
    new_envelope,
)
from wok_contracts.topics import NOTIFICATION_EVENTS, REGISTRATION_EVENTS, dead_letter_topic
from wok_notification.adapters.contacts import FakeContactDirectory
from wok_notification.adapters.mail import RecordingMailSender
from wok_notification.adapters.repository import InMemoryNotificationRepository
from wok_notification.app import build_app
from wok_notification.domain import Contact
from wok_notification.settings import NotificationSettings
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.service import ServiceRuntime

SERVICE = {"Authorization": "Bearer service-secret"}


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

    async def deliver(
        self,
        data: DialogueEventScheduled | ParticipantRegistered,
        *,
        envelope_id: str | None = None,
    ) -> str:
        """Put one registration event on the topic as registration's relay would."""
        envelope = new_envelope(data, source="/wok/registration", municipality=data.ags)
        if envelope_id:
            envelope.id = envelope_id
        await self.broker.publish(
            envelope.to_json_bytes(), REGISTRATION_EVENTS, key=data.ags.encode()
        )
        return envelope.id

    async def notifications(self) -> list[Any]:
        await self.runtime.relay.drain_once()
        return [decode_envelope(value) for _, value in self.published]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = NotificationSettings(
        service_key="service-secret",
        public_base_url="https://anmeldung.example",
        consumer_max_attempts=2,
        consumer_backoff_initial_s=0.001,
        consumer_backoff_max_s=0.005,
    )
    runtime = ServiceRuntime(name="notification", settings=settings)
    repository = InMemoryNotificationRepository()
    mail = RecordingMailSender()
    contacts = FakeContactDirectory()
    app = build_app(
        settings,
        runtime=runtime,
        repository=repository,
        sender=mail,
        contacts=contacts,
        processed=InMemoryProcessedStore(),
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
                broker, runtime, client, repository, mail, contacts, published, dead_letters
            )


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
    assert await harness.notifications() == []


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
    }
    assert entry["id"] == f"confirmation:{registration.registration_id}"
    assert (entry["kind"], entry["status"]) == ("confirmation", "sent")
    assert entry["sent_at"] is not None
    assert "@example.org" not in response.text and "Müller" not in response.text


def test_the_production_wiring_builds_without_touching_any_server() -> None:
    app = build_app(NotificationSettings())
    paths = app.openapi()["paths"]
    assert {"/v1/deliveries", "/healthz", "/readyz", "/metrics"} <= set(paths)
