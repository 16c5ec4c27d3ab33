"""Turn a decided `ConfirmationMail` into a MIME message: jinja2 text and HTML, and an ICS.

The message is multipart/mixed: a multipart/alternative (plain text, then HTML) and the
calendar invitation as a `text/calendar; method=REQUEST` attachment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from icalendar import Calendar, Event, vCalAddress, vText
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from wok_notification.domain import CalendarInvite, ConfirmationMail

PRODUCT_ID = "-//Weltoffene Kommune//Benachrichtigungen//DE"
INVITE_FILENAME = "einladung.ics"


class MailRenderer:
    def __init__(self) -> None:
        self._templates = Environment(
            loader=PackageLoader("wok_notification", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, mail: ConfirmationMail, *, now: datetime) -> EmailMessage:
        context = {"mail": mail}
        subject = self._templates.get_template(f"{mail.template}.subject.txt").render(context)
        text = self._templates.get_template(f"{mail.template}.txt").render(context)
        html = self._templates.get_template(f"{mail.template}.html").render(context)

        message = EmailMessage()
        message["From"] = mail.mail_from
        message["To"] = formataddr((mail.recipient_name, mail.recipient_email))
        message["Subject"] = " ".join(subject.split())
        message["Date"] = format_datetime(now.astimezone(UTC))
        message["Message-ID"] = mail.message_id
        # RFC 3834: tells auto-responders not to answer a no-reply sender
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(text)
        message.add_alternative(html, subtype="html")
        # Bytes, not text: RFC 5545 wants CRLF line ends, which text parts would normalise away
        message.add_attachment(
            invitation_ics(mail.invite, now=now),
            maintype="text",
            subtype="calendar",
            filename=INVITE_FILENAME,
            params={"method": "REQUEST", "charset": "utf-8"},
        )
        # After the content: setting content clears every Content-* header
        message["Content-Language"] = mail.language
        return message


def invitation_ics(invite: CalendarInvite, *, now: datetime) -> bytes:
    """An iTIP REQUEST; the same UID with a higher SEQUENCE updates the calendar entry."""
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "REQUEST")

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
    event.add("status", "TENTATIVE" if invite.tentative else "CONFIRMED")

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
