"""Notification on the embedded stack, faking nothing: people register over HTTP (so
registration holds their contact), a municipality's own system then publishes the event's
reschedule and cancellation straight to Kafka, and the mails arrive in the SMTP sink in each
person's language with calendar updates that replace, then remove, the same entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import icalendar
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually, mails_to
from wok_cli.devstack import EmbeddedStack
from wok_contracts import EventFormat, new_envelope
from wok_contracts.events.registration import DialogueEventCancelled, DialogueEventRescheduled

BERLIN = ZoneInfo("Europe/Berlin")


def calendar(mail: EmailMessage) -> tuple[str, icalendar.cal.Component]:
    [part] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    parsed = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    [entry] = parsed.walk("VEVENT")
    return str(parsed["METHOD"]), entry


async def test_reschedule_and_cancellation_reach_each_person_in_their_language(
    stack: EmbeddedStack, producer: AIOKafkaProducer
) -> None:
    ags = unique_ags()
    starts = datetime(2031, 3, 13, 17, 0, tzinfo=UTC)  # a Thursday, 18:00 in Berlin
    run = uuid.uuid4().hex[:8]
    people = {"ar": f"amal-{run}@example.org", "de": f"dora-{run}@example.org"}
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        onboarded = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": "Modellstadt", "kind": "city"},
            headers=admin,
        )
        assert onboarded.status_code == 201
        key = {"Authorization": f"Bearer {onboarded.json()['api_key']}"}
        created = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog: Begegnung im Quartier",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "format": "in_person",
                "place": "Rathaus, Ratssaal",
                "capacity": 10,
                "registration_deadline": (starts - timedelta(days=3)).isoformat(),
            },
            headers=key,
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
        for language, address in people.items():
            registered = await client.post(
                f"/v1/dialogue-events/{event_id}/registrations",
                json={
                    "name": f"Person {language}",
                    "email": address,
                    "sector": "resident",
                    "language": language,
                    "consent": True,
                },
            )
            assert registered.status_code == 201, registered.text

    async def mails(address: str) -> list[EmailMessage]:
        return mails_to(stack.mail_dir, address)

    for address in people.values():
        await eventually(lambda a=address: mails(a), lambda m: len(m) == 1, what="confirmation")
    [arabic] = await mails(people["ar"])
    assert arabic["Content-Language"] == "ar"
    arabic_html = arabic.get_body(("html",)).get_content()
    assert 'dir="rtl"' in arabic_html and 'lang="ar"' in arabic_html
    assert "الخميس" in arabic_html, "the weekday in Arabic"

    topic = f"{stack.settings.topic_prefix}registration.events.v1"
    moved_to = starts + timedelta(days=7)
    rescheduled = DialogueEventRescheduled(
        dialogue_event_id=event_id,
        ags=ags,
        title="Dialog: Begegnung im Quartier",
        starts_at=moved_to,
        ends_at=moved_to + timedelta(hours=2),
        previous_starts_at=starts,
        format=EventFormat.IN_PERSON,
        place="Stadtbibliothek",
        registration_deadline=moved_to - timedelta(days=3),
        revision=1,
    )
    envelope = new_envelope(rescheduled, source="/municipality/system", municipality=ags)
    for _ in range(2):  # delivered twice: still one mail each
        await producer.send_and_wait(topic, envelope.to_json_bytes(), key=ags.encode())

    for address in people.values():
        await eventually(lambda a=address: mails(a), lambda m: len(m) == 2, what="reschedule")
    [_, german] = await mails(people["de"])
    assert german["Subject"] == "Neuer Termin: Dialog: Begegnung im Quartier"
    text = german.get_body(("plain",)).get_content()
    assert "Donnerstag, 20. März 2031, 18:00–20:00 Uhr" in text
    assert "Stadtbibliothek" in text
    method, entry = calendar(german)
    assert (method, entry["SEQUENCE"]) == ("REQUEST", 1)
    assert str(entry["UID"]) == f"{event_id}@weltoffene-kommune"
    assert entry.decoded("DTSTART").astimezone(BERLIN) == moved_to.astimezone(BERLIN)

    cancelled = DialogueEventCancelled(
        dialogue_event_id=event_id, ags=ags, revision=2, reason="Sturmwarnung"
    )
    await producer.send_and_wait(
        topic,
        new_envelope(cancelled, source="/municipality/system", municipality=ags).to_json_bytes(),
        key=ags.encode(),
    )
    for address in people.values():
        await eventually(lambda a=address: mails(a), lambda m: len(m) == 3, what="cancellation")
    for address in people.values():
        *_, last = await mails(address)
        method, entry = calendar(last)
        assert (method, str(entry["STATUS"]), entry["SEQUENCE"]) == ("CANCEL", "CANCELLED", 2)
        assert str(entry["UID"]) == f"{event_id}@weltoffene-kommune"
        assert "Sturmwarnung" in last.get_body(("plain",)).get_content()
    *_, arabic_cancel = await mails(people["ar"])
    assert arabic_cancel["Subject"].startswith("تم الإلغاء")
    assert '<html lang="ar" dir="rtl">' in arabic_cancel.get_body(("html",)).get_content()
