"""A confirmation as a mail program sees it: parsed back with the stdlib and with icalendar."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import icalendar
import pytest

from wok_contracts import DialogueEventScheduled, EventFormat, ParticipantRegistered
from wok_notification import domain
from wok_notification.rendering import MailRenderer

MAIL_FROM = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def render(
    scheduled: Callable[..., DialogueEventScheduled],
    registered: Callable[..., ParticipantRegistered],
    contact_for: Callable[..., domain.Contact],
) -> Callable[..., EmailMessage]:
    renderer = MailRenderer()

    def build(
        *,
        event: dict[str, Any] | None = None,
        status: str = "confirmed",
        contact: dict[str, Any] | None = None,
    ) -> EmailMessage:
        data = scheduled(**(event or {}))
        registration = registered(data, status=status)
        mail = domain.confirmation_mail(
            event=domain.EventDetails.scheduled(data),
            contact=contact_for(registration, **(contact or {})),
            status=registration.status,
            delivery_id=domain.delivery_id(
                domain.NotificationKind.CONFIRMATION, registration.registration_id
            ),
            mail_from=MAIL_FROM,
            public_base_url="https://anmeldung.example",
        )
        sent = renderer.render(mail, now=NOW)
        # What the recipient's mail program gets: the bytes on the wire, parsed anew
        parsed = message_from_bytes(sent.as_bytes(policy=policy.SMTP), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    return build


def parts(message: EmailMessage) -> tuple[str, str, icalendar.Calendar]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "einladung.ics"
    raw = attachment.get_payload(decode=True)
    assert isinstance(raw, bytes)
    calendar = icalendar.Calendar.from_ical(raw)
    return text.get_content(), html.get_content(), calendar


def test_a_confirmed_registration_gets_text_html_and_an_invitation(
    render: Callable[..., EmailMessage],
) -> None:
    message = render()

    assert message.get_content_type() == "multipart/mixed"
    assert next(message.iter_parts()).get_content_type() == "multipart/alternative"
    assert message["Subject"] == "Anmeldebestätigung: Dialog: Zusammenhalt in der Nachbarschaft"
    assert message["To"].addresses[0].display_name == "Jörg Müller"
    assert message["From"].addresses[0].addr_spec == "noreply@weltoffene-kommune.example"
    assert message["Message-ID"].startswith("<confirmation.registration-")
    assert message["Content-Language"] == "de"

    text, html, _ = parts(message)
    when = "Donnerstag, 10. Dezember 2026, 18:00–20:30 Uhr"
    for body in (text, html):
        assert "Guten Tag Jörg Müller" in body
        assert when in body
        assert "online" in body
        assert "bestätigt" in body
        assert "Warteliste" not in body
    assert "https://anmeldung.example/v1/dialogue-events/event-" in text


def test_the_invitation_carries_uid_sequence_times_and_place(
    render: Callable[..., EmailMessage],
) -> None:
    starts = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
    message = render(
        event={
            "dialogue_event_id": "event-42",
            "format": EventFormat.IN_PERSON,
            "place": "Rathaus Kaiserslautern, Willy-Brandt-Platz 1",
            "starts_at": starts,
            "ends_at": starts + timedelta(hours=2, minutes=30),
            "revision": 3,
        }
    )
    _, _, calendar = parts(message)

    assert calendar["METHOD"] == "REQUEST"
    (event,) = calendar.walk("VEVENT")
    assert str(event["UID"]) == "event-42@weltoffene-kommune"
    assert event["SEQUENCE"] == 3
    assert event.decoded("DTSTART") == starts
    assert event.decoded("DTEND") == starts + timedelta(hours=2, minutes=30)
    assert str(event["SUMMARY"]) == "Dialog: Zusammenhalt in der Nachbarschaft"
    assert str(event["LOCATION"]) == "Rathaus Kaiserslautern, Willy-Brandt-Platz 1"
    assert str(event["STATUS"]) == "CONFIRMED"
    assert str(event["ORGANIZER"]) == "mailto:noreply@weltoffene-kommune.example"


def test_a_waitlisted_registration_is_told_so_and_the_date_is_only_tentative(
    render: Callable[..., EmailMessage],
) -> None:
    message = render(status="waitlisted")

    assert message["Subject"] == "Warteliste: Dialog: Zusammenhalt in der Nachbarschaft"
    text, html, calendar = parts(message)
    for body in (text, html):
        assert "Warteliste" in body
        assert "ausgebucht" in body
        assert "bestätigt" not in body
    (event,) = calendar.walk("VEVENT")
    assert str(event["STATUS"]) == "TENTATIVE"


def test_html_escapes_what_municipalities_typed(render: Callable[..., EmailMessage]) -> None:
    message = render(event={"title": "Wir & <script>alert(1)</script>"})
    text, html, _ = parts(message)
    assert "<script>" not in html
    assert "Wir &amp; &lt;script&gt;" in html
    assert "Wir & <script>alert(1)</script>" in text


def test_the_invitation_keeps_crlf_line_ends(render: Callable[..., EmailMessage]) -> None:
    (attachment,) = list(render().iter_attachments())
    raw = attachment.get_payload(decode=True)
    assert isinstance(raw, bytes)
    assert raw.startswith(b"BEGIN:VCALENDAR\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    "name", ["Demo-Person 1 (Landkreis Göttingen)", "Ayşe Yılmaz-Schmidt (Kreis Offenbach)"]
)
def test_the_mail_is_addressed_to_the_person_whatever_their_name(
    render: Callable[..., EmailMessage], name: str
) -> None:
    message = render(contact={"name": name, "email": "person@example.org"})
    [address] = message["To"].addresses
    assert address.addr_spec == "person@example.org"


LANGUAGES = ("de", "en", "tr", "ar", "uk")


def reparsed(message: EmailMessage) -> EmailMessage:
    again = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(again, EmailMessage)
    return again


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_renders_the_staff_mail_the_taskforce_reminder_and_a_digest(
    language: str, scheduled: Callable[..., DialogueEventScheduled]
) -> None:
    renderer = MailRenderer()
    direction = "rtl" if language == "ar" else "ltr"
    office = domain.OfficeContact(
        "07312000", "Kaiserslautern", "Integrationsbüro", "o@k.example", language
    )
    staff = reparsed(
        renderer.render_staff(
            domain.compose_staff_mail(
                office=office,
                language=language,
                delivery_id="self_check_scored:office:07312000:sc1",
                mail_from=MAIL_FROM,
                assessment_url="https://assessment.example",
                overall=55.0,
                overall_level="developing",
                strengths=[6],
                deficits=[1],
            ),
            now=NOW,
        )
    )
    text = staff.get_body(("plain",)).get_content()
    html = staff.get_body(("html",)).get_content()
    assert "Kaiserslautern" in staff["Subject"] and "/report" in text
    assert f'<html lang="{language}" dir="{direction}">' in html and "55 / 100" in html

    event = domain.EventDetails.scheduled(scheduled(format=EventFormat.HYBRID, place="Rathaus"))
    member = domain.Contact("m1", event.dialogue_event_id, "Mitglied", "m@k.example", language)
    mails = [
        domain.compose_mail(
            kind,
            event=event,
            contact=member,
            language=language,
            delivery_id=f"{kind.value}:m1",
            mail_from=MAIL_FROM,
            public_base_url="https://anmeldung.example",
        )
        for kind in (
            domain.NotificationKind.TASKFORCE_REMINDER,
            domain.NotificationKind.RESCHEDULED,
            domain.NotificationKind.CANCELLED,
        )
    ]
    nudge = reparsed(renderer.render(mails[0], now=NOW))
    assert (
        mails[0].deadline is not None
        and mails[0].deadline in nudge.get_body(("plain",)).get_content()
    )
    assert list(nudge.iter_attachments()) == []
    digest = reparsed(renderer.render_digest(mails, message_id="<d@example.org>", now=NOW))
    text = digest.get_body(("plain",)).get_content()
    html = digest.get_body(("html",)).get_content()
    assert digest["Message-ID"] == "<d@example.org>" and "3" in digest["Subject"]
    assert f'<html lang="{language}" dir="{direction}">' in html and html.count("<h2") == 3
    assert all(mail.when in text for mail in mails)
    if language == "de":  # after a heading, a section's first sentence starts upper case
        assert "Die folgende Dialogveranstaltung findet zu einem neuen Termin statt" in text
    attachments = [p.get_filename() for p in digest.iter_attachments()]
    assert len(attachments) == 2 and len(set(attachments)) == 2, "one per calendar change"


NAMES = [
    "Jörg Müller",
    "Ayşe Yılmaz-Schmidt (Kreis Offenbach)",
    "O'Brien, Seán; Dr.",
    "Иван Петров",
    "محمد العلي",
    "a" * 70 + "ö" * 10,
    "Back\\slash: test’s",
    'Anführungs"zeichen',
    "Caret ^ name",
]
TEXTS = [
    "Dialog: Zusammenhalt in der Nachbarschaft",
    "Rathaus, Großer Saal; 2. OG\nEingang B",
    "Backslash \\ and \\N and \\n",
    "ü" * 80,
    "x" * 73 + "\\,;" + "y" * 60,
    "Zeile eins\r\nZeile zwei\rdrei",
    "Tab\tinside",
    "",
]


@pytest.mark.parametrize("method", list(domain.CalendarMethod))
@pytest.mark.parametrize("tentative", [False, True])
def test_the_invitation_is_written_byte_for_byte_as_icalendar_writes_it(
    method: domain.CalendarMethod, tentative: bool
) -> None:
    from wok_notification.rendering import _direct_ics, icalendar_ics, invitation_ics

    starts = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
    written = 0
    for number, (name, text) in enumerate([(name, text) for name in NAMES for text in TEXTS]):
        invite = domain.CalendarInvite(
            uid=f"event-{number}@weltoffene-kommune",
            sequence=number % 4,
            starts_at=starts,
            ends_at=starts + timedelta(hours=2, minutes=30),
            summary=text or "Dialog",
            location=text[::-1] or "online",
            description=text,
            tentative=tentative,
            organizer_name="Weltoffene Kommune" if number % 2 else name,
            organizer_email="noreply@weltoffene-kommune.example",
            attendee_name=name,
            attendee_email=f"person{number}@example.org",
            method=method,
        )
        now = NOW + timedelta(microseconds=123456 * number)
        expected = icalendar_ics(invite, now=now)
        assert invitation_ics(invite, now=now) == expected, (name, text)
        direct = _direct_ics(invite, now=now)
        if direct is None:  # left to icalendar: RFC 6868 escapes, control characters
            assert any(c in name for c in '^"') or "\t" in text, (name, text)
            continue
        assert direct == expected, (name, text)
        written += 1
    assert written == (len(NAMES) - 2) * (len(TEXTS) - 1)
