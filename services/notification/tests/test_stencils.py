"""The text of a mail is rendered once per event, kind, status and language and then only
filled with each person's values: what arrives is byte for byte what the templates give
for that person, the kept text holds nothing of anybody, and a rescheduled event or an
edited template shows in the next mails."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

import wok_notification
from wok_contracts import DialogueEventRescheduled, DialogueEventScheduled, EventFormat
from wok_notification import domain, rendering
from wok_notification.adapters.mail import wire_bytes
from wok_notification.domain import NotificationKind
from wok_notification.rendering import MailRenderer

MAIL_FROM = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
STARTS = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
BUILTIN = Path(wok_notification.__file__).parent / "templates"
# Names as people type them: markup characters, quotes, accents, one letter, right to left
NAMES = [
    "Jörg Müller",
    'O\'Brien <Chef> & "Co"',
    "a",
    "Demo Person 12",
    "ليلى حداد",
    "  Ayşe   Yılmaz ",
]


def event_of(
    event_format: EventFormat = EventFormat.HYBRID, *, title: str = "Dialog <&> Zusammenhalt"
) -> domain.EventDetails:
    return domain.EventDetails.scheduled(
        DialogueEventScheduled(
            dialogue_event_id="event-stencil",
            ags="07312000",
            title=title,
            description="Wie wollen wir zusammenleben?\n\n<b>Alle</b> sind willkommen.",
            starts_at=STARTS,
            ends_at=STARTS + timedelta(hours=2, minutes=30),
            format=event_format,
            place="Rathaus & Saal <2>",
            capacity=40,
            registration_deadline=STARTS - timedelta(days=3),
            revision=0,
        )
    )


def mail_to(
    name: str,
    *,
    number: int,
    event: domain.EventDetails,
    kind: NotificationKind = NotificationKind.CONFIRMATION,
    language: str = "de",
    waitlisted: bool = False,
    links: bool = True,
) -> domain.Mail:
    registration_id = f"registration-{number}"
    contact = domain.Contact(
        registration_id=registration_id,
        dialogue_event_id=event.dialogue_event_id,
        name=name,
        email=f"person-{number}@example.org",
        language=language,
        cancel_url=f"https://anmeldung.example/c/{registration_id}?t={number}&x=1"
        if links
        else None,
        erasure_url=f"https://anmeldung.example/e/{registration_id}?t={number}" if links else None,
    )
    access = (
        domain.AccessInfo(place="Raum 5", online_link="https://meet.example/room")
        if kind is NotificationKind.ACCESS
        else None
    )
    return domain.compose_mail(
        kind,
        event=event,
        contact=contact,
        language=language,
        delivery_id=domain.delivery_id(kind, registration_id),
        mail_from=MAIL_FROM,
        public_base_url="https://anmeldung.example",
        waitlisted=waitlisted,
        access=access,
    )


def on_the_wire(message: EmailMessage) -> bytes:
    """The bytes sent, with the random MIME boundary made comparable."""
    sent = wire_bytes(message, utf8=False, cte_type="8bit")
    return re.sub(rb"=-wok-[0-9a-f]{24}", b"=-wok-boundary", sent)


def test_every_mail_is_byte_for_byte_what_the_templates_give_for_that_person() -> None:
    stencilled, from_templates = MailRenderer(), MailRenderer(stencils=False)
    number = 0
    for language in ("de", "en", "tr", "ar", "uk"):
        for event_format in EventFormat:
            event = event_of(event_format)
            for kind in NotificationKind:
                if kind is NotificationKind.SELF_CHECK_SCORED:
                    continue  # a staff mail, rendered on its own
                for waitlisted in (False, True):
                    for name in NAMES:
                        for links in (True, False):
                            number += 1
                            mail = mail_to(
                                name,
                                number=number,
                                event=event,
                                kind=kind,
                                language=language,
                                waitlisted=waitlisted,
                                links=links,
                            )
                            expected = on_the_wire(from_templates.render(mail, now=NOW))
                            assert on_the_wire(stencilled.render(mail, now=NOW)) == expected, (
                                language,
                                kind,
                                name,
                            )
    made = [stencil for _, stencil in stencilled._stencils.values()]
    assert made and all(stencil is not None for stencil in made), "the built-in ones all fit"


def test_the_kept_text_holds_nothing_of_the_people_it_was_used_for() -> None:
    renderer = MailRenderer()
    event = event_of()
    mails = [mail_to(name, number=n, event=event) for n, name in enumerate(NAMES)]
    for mail in mails:
        renderer.render(mail, now=NOW)

    kept = repr(renderer._stencils)
    for mail in mails:
        for value in (mail.recipient_email, mail.cancel_url, mail.erasure_url, mail.message_id):
            assert value and value not in kept
    for name in ("Jörg", "Müller", "O'Brien", "Ayşe", "ليلى"):
        assert name not in kept


def test_a_rescheduled_event_shows_its_new_time_in_the_next_mails() -> None:
    renderer = MailRenderer()
    event = event_of()
    before = message_from_bytes(
        renderer.render(mail_to("Jörg Müller", number=1, event=event), now=NOW).as_bytes(),
        policy=policy.default,
    )
    later = STARTS + timedelta(days=7)
    moved = event.rescheduled(
        DialogueEventRescheduled(
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            title=event.title,
            starts_at=later,
            ends_at=later + timedelta(hours=2),
            previous_starts_at=STARTS,
            format=event.format,
            place=event.place,
            registration_deadline=later - timedelta(days=3),
            revision=1,
        )
    )
    confirmation = mail_to("Ayşe Yılmaz", number=2, event=moved)
    notice = mail_to("Ayşe Yılmaz", number=2, event=moved, kind=NotificationKind.RESCHEDULED)
    for mail in (confirmation, notice):
        expected = on_the_wire(MailRenderer(stencils=False).render(mail, now=NOW))
        assert on_the_wire(renderer.render(mail, now=NOW)) == expected

    after = message_from_bytes(
        renderer.render(confirmation, now=NOW).as_bytes(), policy=policy.default
    )
    text_before = before.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    text_after = after.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Donnerstag, 10. Dezember 2026, 18:00–20:30 Uhr" in text_before
    assert "Donnerstag, 17. Dezember 2026, 18:00–20:00 Uhr" in text_after
    assert "Ayşe Yılmaz" in text_after and "Jörg" not in text_after
    (invitation,) = list(after.iter_attachments())
    ics = invitation.get_payload(decode=True)
    assert b"DTSTART:20261217T170000Z" in ics and b"SEQUENCE:1" in ics


def test_an_edited_template_is_used_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "templates").mkdir()
    folder = tmp_path / "templates"
    for source in BUILTIN.rglob("*"):
        if source.is_file():
            target = folder / source.relative_to(BUILTIN)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    clock = [1000.0]
    monkeypatch.setattr(rendering.time, "monotonic", lambda: clock[0])
    # the built-in folder itself edited (as in a development checkout): stencils are used
    monkeypatch.setattr(rendering, "BUILTIN_TEMPLATES", folder)
    renderer = MailRenderer()
    event = event_of()
    first = renderer.render(mail_to("Jörg Müller", number=1, event=event), now=NOW)
    assert "Guten Tag Jörg Müller," in text_of(first)
    assert any(stencil is not None for _, stencil in renderer._stencils.values())

    messages = folder / "de" / "messages.j2"
    messages.write_text(messages.read_text().replace("Guten Tag ", "Hallo "))
    clock[0] += rendering.LANGUAGES_KEPT_S + 0.1
    renderer.render(mail_to("Ayşe Yılmaz", number=2, event=event), now=NOW)  # picks it up
    clock[0] += rendering.LANGUAGES_KEPT_S + 0.1

    later = renderer.render(mail_to("Ayşe Yılmaz", number=3, event=event), now=NOW)
    assert "Hallo Ayşe Yılmaz," in text_of(later)


def test_a_municipalitys_own_template_that_changes_the_name_gets_it_changed_for_each_person(
    tmp_path: Path,
) -> None:
    german = (BUILTIN / "de" / "messages.j2").read_text()
    shouting = german.replace(
        "Guten Tag {{ mail.recipient_name }},", "Guten Tag {{ mail.recipient_name | upper }},"
    )
    assert shouting != german
    (tmp_path / "de").mkdir()
    (tmp_path / "de" / "messages.j2").write_text(shouting)
    renderer = MailRenderer([tmp_path])
    event = event_of()

    for number, name in enumerate(("Jörg Müller", "Ayşe Yılmaz"), start=1):
        message = renderer.render(mail_to(name, number=number, event=event), now=NOW)
        assert f"Guten Tag {name.upper()}," in text_of(message)


def test_a_template_that_changes_a_persons_value_gets_no_stencil(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even were such a template taken for a built-in one, the check on two sets of
    stand-ins finds that its text is not the same for everybody but the values."""
    for file, changed in (
        ("de/messages.j2", "{{ mail.recipient_name | upper }}"),
        ("de/messages.j2", "{{ mail.recipient_name | capitalize }}"),
        ("de/messages.j2", "{{ mail.recipient_name | truncate(12, True, '') }}"),
        ("de/messages.j2", "{{ mail.recipient_name | length }}"),
        ("layout.html", "{{ mail.erasure_url | safe }}"),
    ):
        folder = tmp_path / str(abs(hash(changed)))
        (folder / "de").mkdir(parents=True)
        original = (BUILTIN / file).read_text()
        name = "mail.recipient_name" if "recipient" in changed else "mail.erasure_url"
        edited = original.replace(f"{{{{ {name} }}}}", changed)
        assert edited != original
        (folder / file).write_text(edited)
        renderer = MailRenderer([folder])
        monkeypatch.setattr(renderer, "_builtin_only", lambda language: True)
        event = event_of()
        for number, name in enumerate(("jörg <b>", "ayşe yılmaz-schmidt"), start=1):
            mail = mail_to(name, number=number, event=event)
            expected = on_the_wire(MailRenderer([folder], stencils=False).render(mail, now=NOW))
            assert on_the_wire(renderer.render(mail, now=NOW)) == expected, changed
        assert [stencil for _, stencil in renderer._stencils.values()] == [None], changed


def text_of(message: EmailMessage) -> str:
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    body = parsed.get_body(("plain",))  # type: ignore[attr-defined]
    assert body is not None
    return str(body.get_content())


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 113, 114, 115, 1000, 5000, 7777])
def test_a_part_is_encoded_exactly_as_base64_encodebytes_writes_it(size: int) -> None:
    data = bytes((n * 37 + size) % 256 for n in range(size))
    assert rendering.base64_lines(data) == base64.encodebytes(data).decode("ascii")


@pytest.mark.parametrize(
    "value",
    [
        "1.0",
        "auto-generated",
        "=?utf-8?q?Anmeldebest=C3=A4tigung?=",
        "=?utf-8?q?a?=\n =?utf-8?q?b?=",  # folded: as the policy keeps it
        "Grüße",  # not ASCII: parsed and encoded by the policy
        "x" * 120,
    ],
)
def test_a_header_is_stored_as_setting_it_would_store_it(value: str) -> None:
    direct, through_policy = (EmailMessage(policy=rendering._PREPARED) for _ in range(2))
    rendering._set(direct, "Subject", value)
    through_policy["Subject"] = value
    ((_, stored),) = list(direct.raw_items())
    ((_, expected),) = list(through_policy.raw_items())
    assert type(stored) is type(expected) and str(stored) == str(expected)
    assert direct.as_bytes() == through_policy.as_bytes()
