"""Turn a decided `Mail` into a MIME message: jinja2 text and HTML in the recipient's
language, and an ICS for the kinds that touch the calendar.

The message is multipart/mixed: a multipart/alternative (plain text, then HTML) and, for
confirmations, promotions, reschedules and cancellations, the calendar entry as a
`text/calendar` attachment (`method=REQUEST`, or `CANCEL` for a cancellation).

Templates (see TEMPLATES.md beside this module): `layout.html`, `layout.txt` and
`subject.txt` place the sentences that each language folder's `messages.j2` defines. A
language is any folder with a `messages.j2`, in the built-in `templates/` or in one of the
extra folders (`WOK_NOTIFICATION_TEMPLATE_DIRS`), which are searched first: a municipality
adds a language, or rewords one, without code.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import encode_rfc2231, format_datetime, parseaddr, quote
from pathlib import Path
from typing import Any

from icalendar import Calendar, Event, vCalAddress, vText
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from wok_notification.domain import (
    FALLBACK_LANGUAGE,
    CalendarInvite,
    CalendarMethod,
    Mail,
    StaffMail,
)

PRODUCT_ID = "-//Weltoffene Kommune//Benachrichtigungen//DE"
BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
MESSAGES = "messages.j2"
_LANGUAGE_FOLDER = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def _plain(value: Any) -> str:
    """Text, never markup: a macro called from the HTML layout returns Markup, which would
    skip escaping; as plain text it is escaped like any value (names, titles)."""
    return str(value)


def _paragraphs(text: Any) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(text)) if p.strip()]


def _sentence_start(text: Any) -> str:
    value = str(text)
    return value[:1].upper() + value[1:]


def _lines(text: Any) -> list[str]:
    return [line.strip() for line in str(text).splitlines() if line.strip()]


class MailRenderer:
    def __init__(self, template_dirs: Sequence[Path | str] = ()) -> None:
        self._dirs = [Path(folder) for folder in template_dirs] + [BUILTIN_TEMPLATES]
        self._templates = Environment(
            loader=FileSystemLoader(self._dirs),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._templates.filters["plain"] = _plain
        self._templates.filters["paragraphs"] = _paragraphs
        self._templates.filters["split_lines"] = _lines
        self._templates.filters["sentence_start"] = _sentence_start

    def languages(self) -> set[str]:
        """Every language with templates; looked up on each call, so a folder added while
        the service runs is used from the next mail on."""
        found: set[str] = set()
        for folder in self._dirs:
            if folder.is_dir():
                found.update(
                    child.name
                    for child in folder.iterdir()
                    if _LANGUAGE_FOLDER.match(child.name) and (child / MESSAGES).is_file()
                )
        return found

    def language_for(self, preferred: str | None) -> str:
        """The recipient's language if it has templates, else German."""
        wanted = (preferred or "").strip().lower()
        return wanted if wanted in self.languages() else FALLBACK_LANGUAGE

    def attachment_name(self, language: str) -> str:
        return str(self._messages(language, mail=None).attachment_name()).strip()

    def _messages(
        self, language: str, *, mail: Mail | StaffMail | None, count: int | None = None
    ) -> Any:
        template = self._templates.get_template(f"{language}/{MESSAGES}")
        return template.make_module({"mail": mail, "count": count})

    def render(self, mail: Mail, *, now: datetime) -> EmailMessage:
        messages = self._messages(mail.language, mail=mail)
        context = {"mail": mail, "m": messages, "in_digest": False}
        # A language folder may bring its own layout; the shared one otherwise
        pick = self._templates.select_template
        subject = pick([f"{mail.language}/subject.txt", "subject.txt"]).render(context)
        text = pick([f"{mail.language}/layout.txt", "layout.txt"]).render(context)
        html = pick([f"{mail.language}/layout.html", "layout.html"]).render(context)

        return _assemble(
            mail,
            subject=subject,
            message_id=mail.message_id,
            now=now,
            text=text,
            html=html,
            attachments=self._attachments([(mail, messages)], now=now),
        )

    def render_digest(
        self, mails: Sequence[Mail], *, message_id: str, now: datetime
    ) -> EmailMessage:
        """Several held messages to one person as one mail: each its own section with its own
        calendar attachment. A digest of one is that message itself."""
        if len(mails) == 1:
            return self.render(replace(mails[0], message_id=message_id), now=now)
        first = mails[0]
        items = [(mail, self._messages(mail.language, mail=mail)) for mail in mails]
        messages = self._messages(first.language, mail=first, count=len(mails))
        context = {"mail": first, "m": messages, "items": items, "in_digest": True}
        pick = self._templates.select_template
        text = pick([f"{first.language}/digest.txt", "digest.txt"]).render(context)
        html = pick([f"{first.language}/digest.html", "digest.html"]).render(context)
        return _assemble(
            first,
            subject=str(messages.digest_subject()),
            message_id=message_id,
            now=now,
            text=text,
            html=html,
            attachments=self._attachments(items, now=now),
        )

    def render_staff(self, mail: StaffMail, *, now: datetime) -> EmailMessage:
        messages = self._messages(mail.language, mail=mail)
        context = {"mail": mail, "m": messages}
        pick = self._templates.select_template
        text = pick([f"{mail.language}/staff.txt", "staff.txt"]).render(context)
        html = pick([f"{mail.language}/staff.html", "staff.html"]).render(context)
        return _assemble(
            mail,
            subject=str(messages.subject()),
            message_id=mail.message_id,
            now=now,
            text=text,
            html=html,
            attachments=[],
        )

    def _attachments(
        self, items: Sequence[tuple[Mail, Any]], *, now: datetime
    ) -> list[tuple[str, str, bytes]]:
        """One calendar attachment (file name, method, ICS) per message that carries one;
        numbered when several."""
        invites = [(mail, messages) for mail, messages in items if mail.invite is not None]
        found: list[tuple[str, str, bytes]] = []
        for number, (mail, messages) in enumerate(invites, start=1):
            assert mail.invite is not None
            filename = str(messages.attachment_name()).strip()
            if len(invites) > 1:
                stem, dot, extension = filename.rpartition(".")
                filename = f"{stem}-{number}.{extension}" if dot else f"{filename}-{number}"
            found.append((filename, mail.invite.method.value, invitation_ics(mail.invite, now=now)))
        return found


def _assemble(
    mail: Mail | StaffMail,
    *,
    subject: str,
    message_id: str,
    now: datetime,
    text: str,
    html: str,
    attachments: Sequence[tuple[str, str, bytes]],
) -> EmailMessage:
    """The MIME message: multipart/alternative (plain text, then HTML), inside a
    multipart/mixed with the calendar attachments if there are any; every part in base64.

    The headers are written here already encoded (RFC 2047 words, RFC 2231 parameters) and
    kept as written (`_PREPARED`), to be parsed only when read, as those of a received
    message are: `set_content`/`add_alternative`/`add_attachment` parse each header they
    set several times over, which cost most of the CPU of a confirmation."""
    body = _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])
    message = body
    if attachments:
        message = _multipart("mixed", [body, *(_calendar_part(*item) for item in attachments)])
    sender_name, sender_address = parseaddr(mail.mail_from)
    message["From"] = Address(display_name=sender_name, addr_spec=sender_address)
    # An Address object, not a formatted string: re-reading a formatted header with brackets
    # and non-ASCII in the name ("Demo-Person 1 (Landkreis Göttingen)") lost the address.
    message["To"] = Address(display_name=mail.recipient_name, addr_spec=mail.recipient_email)
    message["Subject"] = _encoded(" ".join(subject.split()), name="Subject")
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["Message-ID"] = message_id
    # RFC 3834: tells auto-responders not to answer a no-reply sender
    message["Auto-Submitted"] = "auto-generated"
    message["Content-Language"] = mail.language
    message["MIME-Version"] = "1.0"
    return message


class _PreparedHeaders(EmailPolicy):
    """The standard policy, except that a header set as an ASCII string (encoded by us,
    folded lines starting with white space) is kept as written, not parsed on the spot; it
    is parsed when read, like a header of a received message."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, str) and value.isascii():
            lines = value.split("\n")
            if "\r" not in value and all(line[:1] in (" ", "\t") for line in lines[1:]):
                return (name, value)
        return super().header_store_parse(name, value)  # type: ignore[no-any-return]


_PREPARED = _PreparedHeaders()


def _multipart(subtype: str, parts: list[EmailMessage]) -> EmailMessage:
    message = EmailMessage(policy=_PREPARED)
    # base64 bodies never contain "-", so this boundary cannot occur inside a part
    message["Content-Type"] = f'multipart/{subtype}; boundary="=-wok-{uuid.uuid4().hex}"'
    for part in parts:
        message.attach(part)
    return message


def _text_part(content: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=_PREPARED)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(content.encode("utf-8")).decode("ascii"))
    return part


def _calendar_part(filename: str, method: str, ics: bytes) -> EmailMessage:
    # Bytes in base64: RFC 5545 wants CRLF line ends, which text parts would normalise
    part = EmailMessage(policy=_PREPARED)
    part["Content-Type"] = f'text/calendar; method={method}; charset="utf-8"'
    part["Content-Transfer-Encoding"] = "base64"
    if filename.isascii():
        part["Content-Disposition"] = f'attachment; filename="{quote(filename)}"'
    else:
        part["Content-Disposition"] = f"attachment; filename*={encode_rfc2231(filename, 'utf-8')}"
    part.set_payload(base64.encodebytes(ics).decode("ascii"))
    return part


def _encoded(value: str, *, name: str) -> str:
    """A header value as ASCII: RFC 2047 words (folded) if it is not ASCII already."""
    if value.isascii():
        return value
    return str(Header(value, "utf-8", header_name=name).encode())


def invitation_ics(invite: CalendarInvite, *, now: datetime) -> bytes:
    """An iTIP REQUEST or CANCEL; the same UID with a higher SEQUENCE updates or removes
    the calendar entry the first mail created."""
    cancel = invite.method is CalendarMethod.CANCEL
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", invite.method.value)

    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    # UTC times need no VTIMEZONE block; calendars show them in the reader's own zone
    event.add("dtstart", invite.starts_at.astimezone(UTC))
    event.add("dtend", invite.ends_at.astimezone(UTC))
    event.add("summary", invite.summary)
    event.add("location", invite.location)
    if invite.description:
        event.add("description", invite.description)
    if cancel:
        status = "CANCELLED"
    else:
        status = "TENTATIVE" if invite.tentative else "CONFIRMED"
    event.add("status", status)

    organizer = vCalAddress(f"mailto:{invite.organizer_email}")
    organizer.params["cn"] = vText(invite.organizer_name)
    event.add("organizer", organizer)
    attendee = vCalAddress(f"mailto:{invite.attendee_email}")
    attendee.params["cn"] = vText(invite.attendee_name)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = vText("TENTATIVE" if invite.tentative else "ACCEPTED")
    attendee.params["rsvp"] = vText("FALSE")
    event.add("attendee", attendee)

    calendar.add_component(event)
    return calendar.to_ical()
