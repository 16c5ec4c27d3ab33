"""Taskforce members who have not registered are reminded before the registration deadline;
the municipality's contact office learns that its self-check was scored, with the link to
the field report. Both addresses stay with registration until the moment of sending."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from html import unescape as html_unescape
from urllib.parse import parse_qsl, urlsplit

from services.notification.tests.test_notification_service import (
    SERVICE,
    Harness,
    bodies,
    harness,
    parsed,
)
from wok_contracts import AssessmentScored, DialogueEventScheduled, EventFormat, new_envelope
from wok_contracts.events.assessment import AssessmentLevel, FieldScore
from wok_contracts.events.registration import DialogueEventCancelled
from wok_contracts.topics import ASSESSMENT_EVENTS
from wok_notification.domain import Contact, OfficeContact
from wok_runtime.report_links import report_link_problem

__all__ = ["harness"]


def member(event: DialogueEventScheduled, member_id: str, *, language: str) -> Contact:
    return Contact(
        registration_id=member_id,
        dialogue_event_id=event.dialogue_event_id,
        name=f"Mitglied {member_id}",
        email=f"{member_id}@kaiserslautern.example",
        language=language,
    )


async def test_taskforce_members_not_yet_registered_are_reminded_once_before_the_deadline(
    harness: Harness, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    event = scheduled(format=EventFormat.IN_PERSON, place="Rathaus, Ratssaal")
    harness.taskforce.invitees[event.dialogue_event_id] = [
        member(event, "m-tr", language="tr"),
        member(event, "m-ar", language="ar"),
    ]
    await harness.deliver(event)
    await harness.deliver(event)  # redelivered: still one reminder

    await harness.handlers.dispatch_due()
    assert harness.mail.sent == [], "weeks before the deadline"
    # The default: 48 hours before the deadline (Monday 30 November 2026, 18:00 in Berlin)
    harness.clock.now = event.registration_deadline - timedelta(hours=47)
    await harness.handlers.dispatch_due()
    await harness.handlers.dispatch_due()
    assert harness.taskforce.lookups == [event.dialogue_event_id], "asked when due, once"

    by_address = {m["To"].addresses[0].addr_spec: parsed(m) for m in harness.mail.sent}
    assert set(by_address) == {"m-tr@kaiserslautern.example", "m-ar@kaiserslautern.example"}
    turkish = by_address["m-tr@kaiserslautern.example"]
    assert turkish["Subject"] == f"Kayıt süresi doluyor: {event.title}"
    text, html = bodies(turkish)
    assert "Kayıt son tarihi: 30 Kasım 2026 Pazartesi, 18:00" in text, (
        "the deadline, Europe/Berlin, weekday"
    )
    assert f"/v1/dialogue-events/{event.dialogue_event_id}" in html
    arabic = by_address["m-ar@kaiserslautern.example"]
    _, html = bodies(arabic)
    assert (
        '<html lang="ar" dir="rtl">' in html and "اقتراب موعد انتهاء التسجيل" in arabic["Subject"]
    )

    log = (
        await harness.client.get("/v1/deliveries?kind=taskforce_reminder", headers=SERVICE)
    ).json()
    assert sorted(e["registration_id"] for e in log) == ["m-ar", "m-tr"]
    assert "kaiserslautern.example" not in str(log)
    published = b"".join(value for _, value in harness.published)
    assert b"kaiserslautern.example" not in published and b"Mitglied" not in published


async def test_no_taskforce_reminder_for_a_cancelled_event_or_members_who_registered(
    harness: Harness, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    cancelled_event = scheduled()
    await harness.deliver(cancelled_event)
    harness.taskforce.invitees[cancelled_event.dialogue_event_id] = [
        member(cancelled_event, "m-de", language="de")
    ]
    await harness.deliver(
        DialogueEventCancelled(
            dialogue_event_id=cancelled_event.dialogue_event_id,
            ags=cancelled_event.ags,
            revision=1,
        )
    )
    everyone_registered = scheduled()
    await harness.deliver(everyone_registered)  # registration answers: nobody left to remind

    harness.clock.now = cancelled_event.registration_deadline - timedelta(hours=47)
    await harness.handlers.dispatch_due()
    assert harness.mail.sent == []
    assert harness.taskforce.lookups == [everyone_registered.dialogue_event_id]
    stopped = await harness.repository.get_scheduled(
        f"taskforce_reminder:{cancelled_event.dialogue_event_id}"
    )
    assert stopped is not None and stopped.status == "cancelled"


def scored(ags: str, *, self_check_id: str = "sc-1") -> AssessmentScored:
    fields = [
        FieldScore(
            field=number,
            score=30.0 + 8 * number,
            level=AssessmentLevel.DEVELOPING,
            coverage=1.0,
            answered=8,
            questions=8,
        )
        for number in range(1, 8)
    ]
    return AssessmentScored(
        self_check_id=self_check_id,
        ags=ags,
        sequence=1,
        catalogue_version="2026.1",
        fields=fields,
        overall=61.6,
        overall_level=AssessmentLevel.DEVELOPING,
        strengths=[6, 7],
        deficits=[1],
    )


async def publish_scored(harness: Harness, data: AssessmentScored) -> None:
    envelope = new_envelope(data, source="/wok/assessment", municipality=data.ags)
    await harness.broker.publish(envelope.to_json_bytes(), ASSESSMENT_EVENTS, key=data.ags.encode())


async def test_the_contact_office_gets_the_field_report_link_once_in_the_municipalitys_language(
    harness: Harness,
) -> None:
    harness.offices.offices["07312000"] = OfficeContact(
        ags="07312000",
        municipality_name="Kaiserslautern",
        office_name="Integrationsbüro",
        email="integration@kaiserslautern.example",
        language="de",
    )
    await publish_scored(harness, scored("07312000"))
    await publish_scored(harness, scored("07312000"))  # a redelivery sends nothing

    (message,) = [parsed(m) for m in harness.mail.sent]
    assert message["Subject"] == "Selbstcheck ausgewertet: Kaiserslautern"
    assert message["To"].addresses[0].addr_spec == "integration@kaiserslautern.example"
    text, html = bodies(message)
    assert "Gesamtindex: 62 / 100" in text
    assert "Stärken: 6. Zusammenhalt und Begegnung, 7. Kommunikation und Konfliktmanagement" in text
    assert "Handlungsbedarf: 1. Management und Steuerung" in text
    # a signed link: it opens the report in a browser without the municipality's key
    [link] = re.findall(r'href="([^"]+/report[^"]*)"', html)
    url = urlsplit(html_unescape(link))
    assert url.netloc == "127.0.0.1:8002" and url.path == "/v1/municipalities/07312000/report"
    query = dict(parse_qsl(url.query))
    assert set(query) == {"expires", "signature"}
    sent_at = harness.clock.now.timestamp()
    expires = int(query["expires"])
    assert expires == int(sent_at) + 30 * 86400  # WOK_REPORT_LINK_VALID_DAYS
    opens = {"ags": "07312000", "expires": expires, "signature": query["signature"]}
    assert report_link_problem(service_key="service-secret", now=sent_at, **opens) is None
    assert report_link_problem(service_key="another", now=sent_at, **opens) is not None
    assert list(message.iter_attachments()) == []
    (sent,) = [n.data for n in await harness.notifications()]
    assert (sent.kind.value, sent.registration_id, sent.dialogue_event_id) == (
        "self_check_scored",
        "office:07312000",
        "sc-1",
    )
    assert b"integration@" not in b"".join(value for _, value in harness.published)


async def test_an_english_speaking_office_gets_english_and_no_office_means_no_mail(
    harness: Harness,
) -> None:
    harness.offices.offices["09162000"] = OfficeContact(
        ags="09162000",
        municipality_name="München",
        office_name=None,
        email="office@muenchen.example",
        language="en",
    )
    await publish_scored(harness, scored("09162000"))
    await publish_scored(harness, scored("05315000", self_check_id="sc-koeln"))  # no office

    (message,) = [parsed(m) for m in harness.mail.sent]
    assert message["Subject"] == "Self-check scored: München"
    text, _ = bodies(message)
    assert "Hello," in text
    assert "/v1/municipalities/09162000/report?lang=en&expires=" in text
    assert harness.dead_letters == []
