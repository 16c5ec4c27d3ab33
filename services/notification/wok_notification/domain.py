"""Notification rules as plain code: German dates, what a confirmation says, which template
renders it, and the delivery state machine that lets each e-mail go out once.

A delivery is one e-mail of one kind to one registration, with a deterministic id
(`confirmation:<registration_id>`). It is created `pending` and claimed by the sender for
a short lease; it ends `sent` (with the NotificationSent event in the same write) or
`failed` (the mail server refused it for good). A redelivered event finds it finished
and sends nothing; a sender that crashed mid-send leaves a lease that runs out, so the
next delivery of the event can take it over.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from zoneinfo import ZoneInfo

from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    NotificationKind,
    NotificationSent,
    RegistrationStatus,
)

BERLIN = ZoneInfo("Europe/Berlin")

WEEKDAYS_DE = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTHS_DE = (
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)

# Languages that have templates; any other recipient language falls back to the first.
TEMPLATE_LANGUAGES = ("de",)

# The ICS UID must stay the same for every mail about one event, so updates replace it.
CALENDAR_UID_DOMAIN = "weltoffene-kommune"


def keys_match(presented: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


# ---------------------------------------------------------------- dates


def format_day_de(moment: datetime, *, tz: ZoneInfo = BERLIN) -> str:
    """`Donnerstag, 10. Dezember 2026` in the given time zone."""
    local = moment.astimezone(tz)
    return f"{WEEKDAYS_DE[local.weekday()]}, {local.day}. {MONTHS_DE[local.month - 1]} {local.year}"


def format_event_time_de(starts_at: datetime, ends_at: datetime, *, tz: ZoneInfo = BERLIN) -> str:
    """`Donnerstag, 10. Dezember 2026, 18:00–20:30 Uhr`; both days when it runs past midnight."""
    start, end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    if start.date() == end.date():
        return f"{format_day_de(start, tz=tz)}, {start:%H:%M}–{end:%H:%M} Uhr"
    start_text = f"{format_day_de(start, tz=tz)}, {start:%H:%M} Uhr"
    return f"{start_text} – {format_day_de(end, tz=tz)}, {end:%H:%M} Uhr"


# ---------------------------------------------------------------- what we know


@dataclass(frozen=True)
class EventDetails:
    """Our own copy of a dialogue event, as far as e-mails need it."""

    dialogue_event_id: str
    ags: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    format: EventFormat
    place: str | None
    revision: int

    @classmethod
    def scheduled(cls, data: DialogueEventScheduled) -> EventDetails:
        return cls(
            dialogue_event_id=data.dialogue_event_id,
            ags=data.ags,
            title=data.title,
            description=data.description,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            format=data.format,
            place=data.place,
            revision=data.revision,
        )

    def location_de(self) -> str:
        if self.format is EventFormat.ONLINE:
            return "online"
        place = self.place or "Ort wird noch bekanntgegeben"
        return f"{place} und online" if self.format is EventFormat.HYBRID else place


@dataclass(frozen=True)
class Contact:
    """A participant's contact details, fetched from registration (the only other holder)."""

    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str


# ---------------------------------------------------------------- rendering inputs


def template_language(language: str) -> str:
    return language if language in TEMPLATE_LANGUAGES else TEMPLATE_LANGUAGES[0]


def template_name(kind: NotificationKind, status: RegistrationStatus, language: str) -> str:
    """Base name of the templates (`.subject.txt`, `.txt`, `.html`) for one kind of mail."""
    return f"{template_language(language)}/{kind.value}_{status.value}"


def single_line(text: str) -> str:
    """Text safe for a mail header or an ICS property: no line breaks or control characters."""
    return " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", text).split())


def mail_domain(mail_from: str) -> str:
    _, address = parseaddr(mail_from)
    return address.rpartition("@")[2] or "localhost"


def message_id(delivery_id: str, *, domain: str) -> str:
    """Deterministic, so a mail sent again after a crash can be recognised as the same one."""
    local = re.sub(r"[^A-Za-z0-9._-]", ".", delivery_id)
    return f"<{local}@{domain}>"


def calendar_uid(dialogue_event_id: str) -> str:
    return f"{dialogue_event_id}@{CALENDAR_UID_DOMAIN}"


@dataclass(frozen=True)
class CalendarInvite:
    uid: str
    sequence: int
    starts_at: datetime
    ends_at: datetime
    summary: str
    location: str
    description: str
    tentative: bool
    organizer_name: str
    organizer_email: str
    attendee_name: str
    attendee_email: str


@dataclass(frozen=True)
class ConfirmationMail:
    """Everything the templates and the message builder need, already decided."""

    template: str
    language: str
    message_id: str
    mail_from: str
    recipient_name: str
    recipient_email: str
    waitlisted: bool
    event_title: str
    event_description: str
    when: str
    location: str
    event_url: str
    invite: CalendarInvite


def confirmation_mail(
    *,
    event: EventDetails,
    contact: Contact,
    status: RegistrationStatus,
    delivery_id: str,
    mail_from: str,
    public_base_url: str,
) -> ConfirmationMail:
    organizer_name, organizer_email = parseaddr(mail_from)
    language = template_language(contact.language)
    title = single_line(event.title)
    location = single_line(event.location_de())
    return ConfirmationMail(
        template=template_name(NotificationKind.CONFIRMATION, status, language),
        language=language,
        message_id=message_id(delivery_id, domain=mail_domain(mail_from)),
        mail_from=mail_from,
        recipient_name=single_line(contact.name),
        recipient_email=contact.email.strip(),
        waitlisted=status is RegistrationStatus.WAITLISTED,
        event_title=title,
        event_description=event.description.strip(),
        when=format_event_time_de(event.starts_at, event.ends_at),
        location=location,
        event_url=f"{public_base_url.rstrip('/')}/v1/dialogue-events/{event.dialogue_event_id}",
        invite=CalendarInvite(
            uid=calendar_uid(event.dialogue_event_id),
            sequence=event.revision,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            summary=title,
            location=location,
            description=event.description.strip(),
            tentative=status is RegistrationStatus.WAITLISTED,
            organizer_name=organizer_name or "Weltoffene Kommune",
            organizer_email=organizer_email,
            attendee_name=single_line(contact.name),
            attendee_email=contact.email.strip(),
        ),
    )


# ---------------------------------------------------------------- delivery state machine


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class DeliveryStateError(Exception):
    """A transition the state machine does not allow (a stale or foreign claim)."""


def delivery_id(kind: NotificationKind, registration_id: str) -> str:
    return f"{kind.value}:{registration_id}"


@dataclass(frozen=True)
class Delivery:
    id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: str
    language: str
    created_at: datetime
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    claim_token: str | None = None
    claimed_until: datetime | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    failure_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status is not DeliveryStatus.PENDING

    def claimable(self, now: datetime) -> bool:
        """Pending and nobody's lease is running (a new delivery has none)."""
        return self.status is DeliveryStatus.PENDING and (
            self.claimed_until is None or self.claimed_until <= now
        )

    def claimed(self, *, token: str, now: datetime, lease: timedelta) -> Delivery:
        if not self.claimable(now):
            raise DeliveryStateError(f"delivery {self.id} is {self.status} or claimed")
        return replace(
            self, claim_token=token, claimed_until=now + lease, attempts=self.attempts + 1
        )

    def released(self, *, token: str, now: datetime) -> Delivery:
        """Give the claim back after a failed attempt, so a retry need not wait for the lease."""
        self._check_claim(token)
        return replace(self, claim_token=None, claimed_until=now)

    def sent(self, *, token: str, sent_at: datetime, message_id: str) -> Delivery:
        self._check_claim(token)
        return replace(
            self,
            status=DeliveryStatus.SENT,
            sent_at=sent_at,
            message_id=message_id,
            claim_token=None,
            claimed_until=None,
        )

    def failed(self, *, token: str, reason: str) -> Delivery:
        self._check_claim(token)
        return replace(
            self,
            status=DeliveryStatus.FAILED,
            failure_reason=reason,
            claim_token=None,
            claimed_until=None,
        )

    def sent_event(self) -> NotificationSent:
        """The event announcing a sent delivery: ids only, never the address."""
        if self.status is not DeliveryStatus.SENT or self.sent_at is None:
            raise DeliveryStateError(f"delivery {self.id} has not been sent")
        return NotificationSent(
            notification_id=self.id,
            kind=self.kind,
            registration_id=self.registration_id,
            dialogue_event_id=self.dialogue_event_id,
            ags=self.ags,
            language=self.language,
            sent_at=self.sent_at,
        )

    def _check_claim(self, token: str) -> None:
        if self.status is not DeliveryStatus.PENDING or self.claim_token != token:
            raise DeliveryStateError(f"delivery {self.id} is not claimed by this sender")


def new_delivery(
    kind: NotificationKind,
    *,
    registration_id: str,
    dialogue_event_id: str,
    ags: str,
    language: str,
    now: datetime,
) -> Delivery:
    return Delivery(
        id=delivery_id(kind, registration_id),
        kind=kind,
        registration_id=registration_id,
        dialogue_event_id=dialogue_event_id,
        ags=ags,
        language=language,
        created_at=now,
    )
