"""A resident registers for a dialogue event, across all four services on real protocols."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import icalendar
from cloudevents.core.bindings import kafka as kafka_binding
from cloudevents.core.formats.json import JSONFormat

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import (
    accounts_for,
    eventually,
    latest_snapshot,
    mails_to,
    program_registrations,
    read_topic,
)
from wok_cli.devstack import EmbeddedStack

BERLIN = ZoneInfo("Europe/Berlin")


async def test_a_registration_reaches_the_inbox_and_the_program_aggregate(
    stack: EmbeddedStack,
) -> None:
    ags = unique_ags()
    topic = f"{stack.settings.topic_prefix}exchange.aggregates.v1"
    before = await program_registrations(stack.kafka_bootstrap, topic)
    starts = datetime(2030, 12, 10, 17, 0, tzinfo=UTC)  # 18:00 in Berlin, a Tuesday
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        refused = await client.post(
            "/v1/municipalities",
            json={"ags": "99000000", "name": "X", "kind": "city"},
            headers=admin,
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"][-1] == "ags"

        onboarded = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": "Modellstadt", "kind": "city"},
            headers=admin,
        )
        assert onboarded.status_code == 201
        municipality = {"Authorization": f"Bearer {onboarded.json()['api_key']}"}
        scheduled = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog: Wie wollen wir zusammenleben?",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2, minutes=30)).isoformat(),
                "format": "in_person",
                "place": "Rathaus, Ratssaal",
                "capacity": 4,
                "registration_deadline": (starts - timedelta(days=10)).isoformat(),
            },
            headers=municipality,
        )
        assert scheduled.status_code == 201, scheduled.text
        event_id = scheduled.json()["id"]
        run = uuid.uuid4().hex[:8]
        addresses = [f"resident-{run}-{n}@example.org" for n in range(6)]
        statuses = []
        for number, address in enumerate(addresses):
            registered = await client.post(
                f"/v1/dialogue-events/{event_id}/registrations",
                json={
                    "name": f"Anwohnerin {number}",
                    "email": address,
                    "sector": "resident",
                    "language": "de",
                    "consent": True,
                },
            )
            assert registered.status_code == 201
            statuses.append(registered.json()["status"])
    assert statuses == ["confirmed"] * 4 + ["waitlisted"] * 2

    def arrived(found: list[EmailMessage]) -> bool:
        return len(found) == 1

    mail = (await eventually(lambda: _mails(stack, addresses[0]), arrived, what="the e-mail"))[0]
    assert mail["Subject"].startswith("Anmeldebestätigung")
    assert mail["Content-Language"] == "de"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for body in (text, html):
        assert "Dienstag, 10. Dezember 2030" in body
        assert "18:00" in body and "20:30" in body
        assert "Rathaus, Ratssaal" in body
    [invitation] = [
        part for part in mail.iter_attachments() if part.get_content_type() == "text/calendar"
    ]
    calendar = icalendar.Calendar.from_ical(invitation.get_content())
    [entry] = calendar.walk("VEVENT")
    assert entry.decoded("DTSTART").astimezone(BERLIN) == starts.astimezone(BERLIN)
    assert entry.decoded("DTEND") - entry.decoded("DTSTART") == timedelta(hours=2, minutes=30)
    assert str(entry["SUMMARY"]) == "Dialog: Wie wollen wir zusammenleben?"
    assert str(entry["UID"]).startswith(event_id)

    waitlisted = (
        await eventually(lambda: _mails(stack, addresses[5]), arrived, what="the waitlist e-mail")
    )[0]
    assert "Warteliste" in waitlisted.get_body(("plain",)).get_content()

    await eventually(
        lambda: program_registrations(stack.kafka_bootstrap, topic),
        lambda total: total == before + 6,
        what="the six registrations in the program aggregate",
    )
    expected = {
        "municipalities": 1,
        "dialogue_events": 1,
        "registrations_total": 6,
        "registrations_confirmed": 4,
        "registrations_waitlisted": 2,
        "confirmations_sent": 6,
    }
    await eventually(
        lambda: latest_snapshot(stack.kafka_bootstrap, topic, f"municipality:{ags}"),
        lambda snapshot: accounts_for(snapshot, expected),
        what="the municipality aggregate",
    )
    program = await latest_snapshot(stack.kafka_bootstrap, topic, "program")
    assert program is not None

    # The federal office reads the same program aggregate over HTTP with its key only.
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        anonymous = await client.get("/v1/aggregates/program")
        federal = await client.get(
            "/v1/aggregates/program", headers={"Authorization": f"Bearer {stack.federal_key}"}
        )
    assert anonymous.status_code == 401
    assert (
        federal.json()["metrics"]["registrations_total"]
        == program["metrics"]["registrations_total"]
    )


async def _mails(stack: EmbeddedStack, address: str) -> list[EmailMessage]:
    return mails_to(stack.mail_dir, address)


async def test_every_published_event_is_a_cloudevent_without_personal_data(
    stack: EmbeddedStack,
) -> None:
    prefix = stack.settings.topic_prefix
    # Other tests publish on registration.events.v1 as municipal systems, poison included;
    # every record there from the registration service counts, as do the other two topics.
    records = [
        record
        for record in await read_topic(stack.kafka_bootstrap, f"{prefix}registration.events.v1")
        if b'"source":"/wok/registration"' in record.value
    ]
    for topic in ("notification.events.v1", "exchange.aggregates.v1"):
        records += await read_topic(stack.kafka_bootstrap, f"{prefix}{topic}")
    assert records, "the thin path has published events"
    for record in records:
        assert b"@example.org" not in record.value
        assert b"Anwohnerin" not in record.value
        headers = dict(record.headers)
        assert headers["content-type"] == b"application/cloudevents+json"
        event = kafka_binding.from_kafka(
            kafka_binding.KafkaMessage(headers=headers, key=record.key, value=record.value),
            JSONFormat(),
        )
        assert event.get_specversion() == "1.0"
        assert event.get_id() and event.get_source()
