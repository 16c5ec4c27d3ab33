"""Notification rules as plain code: dates in the recipient's language, what each kind of
mail says and attaches, when reminders fall due, and the delivery state machine that lets
each e-mail go out once.

A delivery is one e-mail of one kind to one registration, with a deterministic id
(`<kind>:<registration_id>`, plus `:<revision>` for reschedules). It is created `pending`
and claimed by the sender for a short lease; it ends `sent` (with the NotificationSent event
in the same write), `failed` (the mail server refused it for good) or `undeliverable` (the
mail server stayed away longer than the retry limit; NotificationFailed in the same write).
A redelivered event finds it finished and sends nothing; a sender that crashed mid-send
leaves a lease that runs out, so the next delivery of the event can take it over.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.utils import parseaddr as parse_address
from enum import StrEnum
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time

from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    NotificationKind,
    NotificationSent,
    RegistrationStatus,
)
from wok_contracts.events.notification import NotificationFailed
from wok_contracts.events.registration import DialogueEventChanged, DialogueEventRescheduled

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

# Every recipient language without templates falls back to this one.
FALLBACK_LANGUAGE = "de"

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


@functools.lru_cache(maxsize=64)
def babel_locale(language: str) -> Locale:
    """The CLDR locale of a language; German for a code CLDR does not know (kept: the
    same few languages come again and again)."""
    try:
        return Locale.parse(language)
    except (UnknownLocaleError, ValueError):
        return Locale.parse(FALLBACK_LANGUAGE)


@functools.lru_cache(maxsize=64)
def text_direction(language: str) -> str:
    """`rtl` for Arabic, Hebrew, Persian, Urdu and the like (from CLDR), else `ltr`."""
    return "rtl" if babel_locale(language).character_order == "right-to-left" else "ltr"


def format_event_time(
    starts_at: datetime, ends_at: datetime, *, language: str, tz: ZoneInfo = BERLIN
) -> str:
    """Day with weekday and the times, in Europe/Berlin, as the recipient's language writes them."""
    if language == "de":
        return format_event_time_de(starts_at, ends_at, tz=tz)
    locale = babel_locale(language)
    start, end = starts_at.astimezone(tz), ends_at.astimezone(tz)
    start_day = format_date(start, "full", locale=locale)
    start_time = format_time(start, "short", locale=locale)
    end_time = format_time(end, "short", locale=locale)
    if start.date() == end.date():
        return f"{start_day}, {start_time}–{end_time}"
    end_day = format_date(end, "full", locale=locale)
    return f"{start_day}, {start_time} – {end_day}, {end_time}"


@functools.lru_cache(maxsize=16)
def parseaddr(mail_from: str) -> tuple[str, str]:
    """Name and address of the sender (the same on every mail: parsed once)."""
    return parse_address(mail_from)


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
    cancelled: bool = False
    cancel_reason: str = ""
    previous_starts_at: datetime | None = None
    registration_deadline: datetime | None = None

    @classmethod
    def scheduled(cls, data: DialogueEventScheduled | DialogueEventChanged) -> EventDetails:
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
            registration_deadline=data.registration_deadline,
        )

    def rescheduled(self, data: DialogueEventRescheduled) -> EventDetails:
        """New times, place and title; the description stays as it was."""
        return replace(
            self,
            title=data.title,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            previous_starts_at=data.previous_starts_at,
            format=data.format,
            place=data.place,
            revision=data.revision,
            registration_deadline=data.registration_deadline,
        )

    def cancelled_at(self, *, revision: int, reason: str) -> EventDetails:
        return replace(
            self, cancelled=True, cancel_reason=reason, revision=max(self.revision, revision)
        )

    def location_de(self) -> str:
        if self.format is EventFormat.ONLINE:
            return "online"
        place = self.place or "Ort wird noch bekanntgegeben"
        return f"{place} und online" if self.format is EventFormat.HYBRID else place

    @property
    def online(self) -> bool:
        return self.format is not EventFormat.IN_PERSON


class ParticipantStatus(StrEnum):
    """Where a registration stands, as far as mails to it go."""

    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    # cancelled because the event was: still told by the event's cancellation mail
    EVENT_CANCELLED = "event_cancelled"


# Who hears of a reschedule or a cancellation of the event
INFORMED_STATUSES = (
    ParticipantStatus.CONFIRMED,
    ParticipantStatus.WAITLISTED,
    ParticipantStatus.EVENT_CANCELLED,
)


@dataclass(frozen=True)
class Contact:
    """A participant's contact details, fetched from registration (the only other holder)."""

    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str
    cancel_url: str | None = None
    erasure_url: str | None = None


@dataclass(frozen=True)
class AccessInfo:
    """What registration releases shortly before the start: never on a topic, never public."""

    place: str | None
    online_link: str | None


# ---------------------------------------------------------------- mail content


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


def http_url(value: str | None) -> str | None:
    """Only http(s) links make it into a mail (a link is shown and clickable)."""
    if value and re.match(r"^https?://[^\s<>\"']+$", value.strip()):
        return value.strip()
    return None


class CalendarMethod(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


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
    method: CalendarMethod = CalendarMethod.REQUEST


# Which kinds carry a calendar attachment, and with which method
CALENDAR_METHODS: dict[NotificationKind, CalendarMethod] = {
    NotificationKind.CONFIRMATION: CalendarMethod.REQUEST,
    NotificationKind.PROMOTION: CalendarMethod.REQUEST,
    NotificationKind.RESCHEDULED: CalendarMethod.REQUEST,
    NotificationKind.CANCELLED: CalendarMethod.CANCEL,
}

# Kinds after which the person may still cancel: their mails carry the cancel link
CANCELLABLE_KINDS = frozenset(
    {
        NotificationKind.CONFIRMATION,
        NotificationKind.PROMOTION,
        NotificationKind.RESCHEDULED,
        NotificationKind.ACCESS,
        NotificationKind.REMINDER,
    }
)


@dataclass(frozen=True)
class Mail:
    """Everything the templates and the message builder need, already decided."""

    kind: NotificationKind
    variant: str
    language: str
    direction: str
    message_id: str
    mail_from: str
    recipient_name: str
    recipient_email: str
    waitlisted: bool
    event_title: str
    event_description: str
    when: str
    previous_when: str | None
    location: str
    event_url: str
    cancel_url: str | None
    erasure_url: str | None
    online_link: str | None
    access_place: str | None
    cancel_reason: str
    invite: CalendarInvite | None
    # the registration deadline, written out (taskforce reminders)
    deadline: str | None = None


# The walking skeleton's name for it
ConfirmationMail = Mail


def mail_variant(kind: NotificationKind, *, waitlisted: bool = False) -> str:
    """The message a language's templates are asked for: the kind, split by status."""
    if kind is NotificationKind.CONFIRMATION:
        return f"confirmation_{'waitlisted' if waitlisted else 'confirmed'}"
    return kind.value


def compose_mail(
    kind: NotificationKind,
    *,
    event: EventDetails,
    contact: Contact,
    language: str,
    delivery_id: str,
    mail_from: str,
    public_base_url: str,
    waitlisted: bool = False,
    access: AccessInfo | None = None,
) -> Mail:
    """Decide the content of one mail; `language` is one that has templates."""
    organizer_name, organizer_email = parseaddr(mail_from)
    title = single_line(event.title)
    location = single_line(event.location_de() if language == "de" else _location(event))
    method = CALENDAR_METHODS.get(kind)
    tentative = kind is NotificationKind.CONFIRMATION and waitlisted
    invite = (
        None
        if method is None
        else CalendarInvite(
            uid=calendar_uid(event.dialogue_event_id),
            sequence=event.revision,
            starts_at=event.starts_at,
            ends_at=event.ends_at,
            summary=title,
            location=location,
            description=event.description.strip(),
            tentative=tentative,
            organizer_name=organizer_name or "Weltoffene Kommune",
            organizer_email=organizer_email,
            attendee_name=single_line(contact.name),
            attendee_email=contact.email.strip(),
            method=method,
        )
    )
    cancellable = kind in CANCELLABLE_KINDS and not event.cancelled
    previous = event.previous_starts_at
    return Mail(
        kind=kind,
        variant=mail_variant(kind, waitlisted=waitlisted),
        language=language,
        direction=text_direction(language),
        message_id=message_id(delivery_id, domain=mail_domain(mail_from)),
        mail_from=mail_from,
        recipient_name=single_line(contact.name),
        recipient_email=contact.email.strip(),
        waitlisted=waitlisted,
        event_title=title,
        event_description=event.description.strip(),
        when=format_event_time(event.starts_at, event.ends_at, language=language),
        previous_when=(
            None
            if previous is None or kind is not NotificationKind.RESCHEDULED
            else format_event_time(
                previous, previous + (event.ends_at - event.starts_at), language=language
            )
        ),
        location=location,
        event_url=f"{public_base_url.rstrip('/')}/v1/dialogue-events/{event.dialogue_event_id}",
        cancel_url=http_url(contact.cancel_url) if cancellable else None,
        erasure_url=http_url(contact.erasure_url) if kind is not NotificationKind.ERASURE else None,
        online_link=http_url(access.online_link) if access else None,
        access_place=single_line(access.place) if access and access.place else None,
        cancel_reason=event.cancel_reason.strip(),
        invite=invite,
        deadline=(
            format_moment(event.registration_deadline, language=language)
            if event.registration_deadline is not None
            else None
        ),
    )


def format_moment(moment: datetime, *, language: str, tz: ZoneInfo = BERLIN) -> str:
    """Day with weekday and time in Europe/Berlin, as the language writes them."""
    local = moment.astimezone(tz)
    if language == "de":
        return f"{format_day_de(local, tz=tz)}, {local:%H:%M} Uhr"
    locale = babel_locale(language)
    return (
        f"{format_date(local, 'full', locale=locale)}, {format_time(local, 'short', locale=locale)}"
    )


def _location(event: EventDetails) -> str:
    """Outside German the place is the address as typed, and `online` is understood widely."""
    if event.format is EventFormat.ONLINE:
        return "online"
    place = event.place or "—"
    return f"{place} + online" if event.format is EventFormat.HYBRID else place


def confirmation_mail(
    *,
    event: EventDetails,
    contact: Contact,
    status: RegistrationStatus,
    delivery_id: str,
    mail_from: str,
    public_base_url: str,
    language: str = FALLBACK_LANGUAGE,
) -> Mail:
    return compose_mail(
        NotificationKind.CONFIRMATION,
        event=event,
        contact=contact,
        language=language,
        delivery_id=delivery_id,
        mail_from=mail_from,
        public_base_url=public_base_url,
        waitlisted=status is RegistrationStatus.WAITLISTED,
    )


# ---------------------------------------------------------------- scheduled messages


@dataclass(frozen=True)
class ScheduleTimes:
    """How long before the start the access information and the reminder go out."""

    access_before: timedelta
    reminder_before: timedelta


def reminder_due(event: EventDetails, *, times: ScheduleTimes, now: datetime) -> datetime | None:
    """When the reminder goes out; None when its time has passed (the person has just been
    told everything, a reminder now would only be one more mail)."""
    due = event.starts_at - times.reminder_before
    return due if due > now else None


def access_due(event: EventDetails, *, times: ScheduleTimes, now: datetime) -> datetime | None:
    """When the online link goes out (at once when released already); None for an event
    without an online part or one that is over."""
    if not event.online or event.ends_at <= now:
        return None
    return max(event.starts_at - times.access_before, now)


def iso_utc(moment: datetime) -> str:
    """A fixed-width UTC timestamp: compares as text in the order of time (stored due times,
    since nx-27017 turns a `$set` datetime into a zone-less string)."""
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---------------------------------------------------------------- delivery state machine


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    # held back by the one-message-per-hour limit, waiting in a digest
    HELD = "held"
    SENT = "sent"
    FAILED = "failed"
    UNDELIVERABLE = "undeliverable"
    # held, then moot before its digest went out (the person cancelled or was erased, the
    # event was cancelled, or a newer message on the same event replaced it)
    WITHDRAWN = "withdrawn"


class DeliveryStateError(Exception):
    """A transition the state machine does not allow (a stale or foreign claim)."""


def delivery_id(
    kind: NotificationKind,
    registration_id: str,
    *,
    revision: int | None = None,
    subject: str | None = None,
) -> str:
    """`<kind>:<recipient>`, plus `:<revision>` for reschedules and `:<subject>` where one
    recipient gets the kind for several subjects (a taskforce member, per event)."""
    base = f"{kind.value}:{registration_id}"
    if subject is not None:
        base = f"{base}:{subject}"
    return base if revision is None else f"{base}:{revision}"


@dataclass(frozen=True)
class GiveUpPolicy:
    """When a mail server outage stops being waited out for one delivery: after at least
    `min_attempts` failed attempts and `after` since the outage began."""

    min_attempts: int
    after: timedelta

    def exhausted(self, *, attempts: int, failing_since: datetime, now: datetime) -> bool:
        return attempts >= self.min_attempts and now - failing_since >= self.after


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
    revision: int | None = None
    unavailable_attempts: int = 0
    first_unavailable_at: datetime | None = None
    failed_at: datetime | None = None
    erased: bool = False
    digest_id: str | None = None

    @property
    def finished(self) -> bool:
        """Nothing more to do for this delivery here: done, or waiting in a digest."""
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

    def unavailable(self, *, token: str, now: datetime) -> Delivery:
        """The mail server could not take it: count the attempt, remember when this began."""
        self._check_claim(token)
        return replace(
            self,
            claim_token=None,
            claimed_until=now,
            unavailable_attempts=self.unavailable_attempts + 1,
            first_unavailable_at=self.first_unavailable_at or now,
        )

    def given_up(self, *, token: str, now: datetime, reason: str) -> Delivery:
        self._check_claim(token)
        return replace(
            self,
            status=DeliveryStatus.UNDELIVERABLE,
            failure_reason=reason,
            failed_at=now,
            claim_token=None,
            claimed_until=None,
            unavailable_attempts=self.unavailable_attempts + 1,
            first_unavailable_at=self.first_unavailable_at or now,
        )

    def rearmed(self) -> Delivery:
        """An operator's redrive: an undeliverable delivery may be tried again, from scratch."""
        if self.status is not DeliveryStatus.UNDELIVERABLE:
            raise DeliveryStateError(f"delivery {self.id} is {self.status}, not undeliverable")
        return replace(
            self,
            status=DeliveryStatus.PENDING,
            failure_reason=None,
            failed_at=None,
            unavailable_attempts=0,
            first_unavailable_at=None,
            claim_token=None,
            claimed_until=None,
        )

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

    def failed(self, *, token: str, reason: str, now: datetime | None = None) -> Delivery:
        self._check_claim(token)
        return replace(
            self,
            status=DeliveryStatus.FAILED,
            failure_reason=reason,
            failed_at=now,
            claim_token=None,
            claimed_until=None,
        )

    def held_in(self, digest_id: str) -> Delivery:
        """Held for a digest: a new delivery, or one held for a digest that went out before
        it could join (it moves on to the next)."""
        untried = self.status is DeliveryStatus.PENDING and self.claim_token is None
        if self.status is not DeliveryStatus.HELD and not (untried and self.attempts == 0):
            raise DeliveryStateError(f"delivery {self.id} is {self.status} or being sent")
        return replace(self, status=DeliveryStatus.HELD, digest_id=digest_id)

    def sent_in_digest(self, *, digest_id: str, sent_at: datetime, message_id: str) -> Delivery:
        self._check_held(digest_id)
        return replace(self, status=DeliveryStatus.SENT, sent_at=sent_at, message_id=message_id)

    def withdrawn(self, *, digest_id: str, reason: str, now: datetime) -> Delivery:
        self._check_held(digest_id)
        return replace(self, status=DeliveryStatus.WITHDRAWN, failure_reason=reason, failed_at=now)

    def failed_in_digest(self, *, digest_id: str, reason: str, now: datetime) -> Delivery:
        self._check_held(digest_id)
        return replace(self, status=DeliveryStatus.FAILED, failure_reason=reason, failed_at=now)

    def _check_held(self, digest_id: str) -> None:
        if self.status is not DeliveryStatus.HELD or self.digest_id != digest_id:
            raise DeliveryStateError(f"delivery {self.id} is not held for digest {digest_id}")

    def erasure_scrubbed(self) -> Delivery:
        """After the person's erasure: the log keeps kind, state and times, not the language
        they read (it can hint at their origin)."""
        return replace(self, language="", erased=True)

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
            revision=self.revision,
            digest_id=self.digest_id,
        )

    def failed_event(self) -> NotificationFailed:
        if self.status not in (DeliveryStatus.FAILED, DeliveryStatus.UNDELIVERABLE):
            raise DeliveryStateError(f"delivery {self.id} has not failed")
        return NotificationFailed(
            notification_id=self.id,
            kind=self.kind,
            registration_id=self.registration_id,
            dialogue_event_id=self.dialogue_event_id,
            ags=self.ags,
            attempts=self.attempts,
            reason=(self.failure_reason or "")[:500],
            failed_at=self.failed_at or self.created_at,
            revision=self.revision,
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
    revision: int | None = None,
    subject: str | None = None,
) -> Delivery:
    return Delivery(
        id=delivery_id(kind, registration_id, revision=revision, subject=subject),
        kind=kind,
        registration_id=registration_id,
        dialogue_event_id=dialogue_event_id,
        ags=ags,
        language=language,
        created_at=now,
        revision=revision,
    )


# ---------------------------------------------------------------- one message per hour


# Never held back: the answers to what the person (or the office) just did or asked for.
# Confirmation, promotion (the confirmation of a place) and erasure confirmation; the
# staff mail goes to an office, not a person.
UNTHROTTLED_KINDS = frozenset(
    {
        NotificationKind.CONFIRMATION,
        NotificationKind.PROMOTION,
        NotificationKind.ERASURE,
        NotificationKind.SELF_CHECK_SCORED,
    }
)

# Kinds a later message on the same event makes moot inside one digest
SUPERSEDED_BY: dict[NotificationKind, frozenset[NotificationKind]] = {
    NotificationKind.RESCHEDULED: frozenset(
        {NotificationKind.RESCHEDULED, NotificationKind.CANCELLED}
    ),
    NotificationKind.REMINDER: frozenset({NotificationKind.CANCELLED}),
    NotificationKind.ACCESS: frozenset({NotificationKind.CANCELLED}),
    NotificationKind.TASKFORCE_REMINDER: frozenset({NotificationKind.CANCELLED}),
}


def throttled(kind: NotificationKind, *, window: timedelta) -> bool:
    return window > timedelta(0) and kind not in UNTHROTTLED_KINDS


def recipient_key(email: str) -> str:
    """A person is their address (one person may hold several registrations); stored only as
    a hash, and deleted on erasure."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def digest_id(recipient_ref: str, *, due_at: str) -> str:
    """One digest per person and window: everyone holding a message for that window agrees
    on it. `recipient_ref` is random (kept with the window), never derived from the address:
    the id reaches logs and, in NotificationSent, a topic."""
    stamp = re.sub(r"[^0-9]", "", due_at)
    return f"digest:{recipient_ref}:{stamp}"


@dataclass(frozen=True)
class DigestItem:
    """A held message, by reference: the content is decided when the digest goes out, from
    the state then (a person who cancelled meanwhile gets no reminder)."""

    delivery_id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    held_at: str
    revision: int | None = None
    waitlisted: bool = False


def superseded(item: DigestItem, items: list[DigestItem]) -> bool:
    """A later item on the same event replaces this one (a newer date, a cancellation)."""
    replacing = SUPERSEDED_BY.get(item.kind, frozenset())
    return any(
        other.dialogue_event_id == item.dialogue_event_id
        and other.kind in replacing
        and other.delivery_id != item.delivery_id
        and (other.held_at, other.revision or 0) > (item.held_at, item.revision or 0)
        for other in items
    )


# ---------------------------------------------------------------- staff mails

FIELD_NAMES = {
    1: "Management und Steuerung",
    2: "Interkulturelle Öffnung und Antirassismus",
    3: "Fairer Zugang und Teilhabechancen",
    4: "Arbeit und wirtschaftliche Entwicklung",
    5: "Engagement und Beteiligung",
    6: "Zusammenhalt und Begegnung",
    7: "Kommunikation und Konfliktmanagement",
}


@dataclass(frozen=True)
class OfficeContact:
    """The municipality's contact office (an institutional address, from registration)."""

    ags: str
    municipality_name: str
    office_name: str | None
    email: str
    language: str


@dataclass(frozen=True)
class StaffMail:
    """Self-check scored: to the contact office, with the link to the field report."""

    kind: NotificationKind
    variant: str
    language: str
    direction: str
    message_id: str
    mail_from: str
    recipient_name: str
    recipient_email: str
    municipality_name: str
    report_url: str
    overall: str | None
    overall_level: str
    strengths: tuple[str, ...]
    deficits: tuple[str, ...]
    invite: CalendarInvite | None = None
    cancel_url: str | None = None
    erasure_url: str | None = None


def office_recipient_id(ags: str) -> str:
    return f"office:{ags}"


def report_url(
    assessment_url: str, *, ags: str, language: str, link: Mapping[str, str] | None = None
) -> str:
    """The field report is German or English; `link` (a signed link's `expires` and
    `signature`) lets a browser without the municipality's key open it."""
    base = f"{assessment_url.rstrip('/')}/v1/municipalities/{ags}/report"
    query = {**({} if language == "de" else {"lang": "en"}), **(link or {})}
    return f"{base}?{urlencode(query)}" if query else base


def compose_staff_mail(
    *,
    office: OfficeContact,
    language: str,
    delivery_id: str,
    mail_from: str,
    assessment_url: str,
    overall: float | None,
    overall_level: str,
    strengths: list[int],
    deficits: list[int],
    report_link: Mapping[str, str] | None = None,
) -> StaffMail:
    def label(number: int) -> str:
        return f"{number}. {FIELD_NAMES.get(number, str(number))}"

    return StaffMail(
        kind=NotificationKind.SELF_CHECK_SCORED,
        variant=NotificationKind.SELF_CHECK_SCORED.value,
        language=language,
        direction=text_direction(language),
        message_id=message_id(delivery_id, domain=mail_domain(mail_from)),
        mail_from=mail_from,
        recipient_name=single_line(office.office_name or office.municipality_name),
        recipient_email=office.email.strip(),
        municipality_name=single_line(office.municipality_name),
        report_url=report_url(assessment_url, ags=office.ags, language=language, link=report_link),
        overall=None if overall is None else f"{overall:.0f}",
        overall_level=overall_level,
        strengths=tuple(label(n) for n in strengths),
        deficits=tuple(label(n) for n in deficits),
    )
