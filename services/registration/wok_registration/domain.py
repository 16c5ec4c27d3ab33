"""Registration rules as plain code: keys, municipalities, dialogue events, seats, the waitlist,
cancellation, erasure, signed links and the taskforce. No I/O, no framework.

Every operation returns what changes and the events it causes; the handlers store both in
one write. Changes to a dialogue event are described as a `Plan` (guard + change) so the
store can apply them atomically to the one document that holds the event, its
registrations (a map keyed by id) and its pending events.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from wok_contracts import (
    AgeBand,
    AttendanceRecorded,
    CancellationReason,
    DialogueEventCancelled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    DialogueEventScheduled,
    EventData,
    EventFormat,
    MigrationBackground,
    MunicipalityKeyIssued,
    MunicipalityKeyRevoked,
    MunicipalityKind,
    MunicipalityProfileUpdated,
    MunicipalityRegistered,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    TaskforceMemberAdded,
    TaskforceMemberRemoved,
    TaskforceRole,
    TaskforceSector,
    land_of,
)

KEY_BYTES = 32
BERLIN = ZoneInfo("Europe/Berlin")


class DomainError(Exception):
    """A rule a request broke; the message is shown to the caller."""


class RegistrationClosed(DomainError):
    pass


class InvalidSchedule(DomainError):
    """A field of a dialogue event does not fit the others (422 naming the field)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EventNotChangeable(DomainError):
    """The event is cancelled, over, or its state does not allow the change (409)."""


class RegistrationNotChangeable(DomainError):
    pass


class InvalidName(ValueError):
    pass


# -- names -----------------------------------------------------------------------------


def clean_name(value: str) -> str:
    """A person's name as given, in NFC, without control characters or surrounding space.

    Any script is welcome ("Şahin", "Nguyễn", "Müller-Lüdenscheidt", "سارة"); what is
    refused is what would break a mail header or a page: control characters and line breaks.
    """
    name = unicodedata.normalize("NFC", value).strip()
    if not name:
        raise InvalidName("the name must not be empty")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in name):
        raise InvalidName("the name must not contain control characters or line breaks")
    return name


# -- keys ------------------------------------------------------------------------------


def new_api_key() -> str:
    return f"wok_{secrets.token_urlsafe(KEY_BYTES)}"


def hash_key(key: str) -> str:
    """Keys are stored only as this hash (a key has 256 random bits, so no salt or stretching)."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_match(presented: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def revoked_marker() -> str:
    """What a revoked key's hash is replaced with: no presented key ever hashes to it (and
    it is unique, as the stored hashes are under a unique index)."""
    return f"revoked:{uuid.uuid4()}"


def email_fingerprint(*, dialogue_event_id: str, email: str) -> str:
    """Finds a second registration of one address for one event without storing it in the clear."""
    normalized = email.strip().lower()
    return hashlib.sha256(f"{dialogue_event_id}\x00{normalized}".encode()).hexdigest()


# -- municipalities --------------------------------------------------------------------


@dataclass(frozen=True)
class Municipality:
    ags: str
    name: str
    kind: MunicipalityKind
    land: str
    population: int | None
    key_hash: str
    contact_office: str | None = None
    key_id: str = ""
    # Where notification sends staff mails (self-check scored): an office's address, never a
    # person's; kept here and handed only to notification (internal API), never published.
    contact_office_email: str | None = None
    language: str = "de"

    @property
    def key_revoked(self) -> bool:
        return self.key_hash.startswith("revoked:")

    def profile_event(self) -> MunicipalityProfileUpdated:
        return MunicipalityProfileUpdated(
            ags=self.ags,
            name=self.name,
            kind=self.kind,
            land=self.land,
            population=self.population,
            contact_office=self.contact_office,
        )


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the secret (shown once), and the event carrying only its hash."""

    api_key: str
    key_hash: str
    key_id: str
    event: MunicipalityKeyIssued


def issue_key(ags: str) -> IssuedKey:
    api_key = new_api_key()
    key_hash = hash_key(api_key)
    key_id = str(uuid.uuid4())
    return IssuedKey(
        api_key=api_key,
        key_hash=key_hash,
        key_id=key_id,
        event=MunicipalityKeyIssued(ags=ags, key_id=key_id, key_hash=key_hash),
    )


def revoke_key(municipality: Municipality) -> MunicipalityKeyRevoked:
    if municipality.key_revoked:
        raise DomainError(f"the key of {municipality.ags} is already revoked")
    return MunicipalityKeyRevoked(ags=municipality.ags, key_id=municipality.key_id)


def onboard_municipality(
    *,
    ags: str,
    name: str,
    kind: MunicipalityKind,
    population: int | None,
    contact_office: str | None = None,
    contact_office_email: str | None = None,
    language: str = "de",
) -> tuple[Municipality, IssuedKey, MunicipalityRegistered]:
    """A new municipality, its first key and the event announcing it."""
    key = issue_key(ags)
    municipality = Municipality(
        ags=ags,
        name=name,
        kind=kind,
        land=land_of(ags),
        population=population,
        key_hash=key.key_hash,
        contact_office=contact_office,
        key_id=key.key_id,
        contact_office_email=contact_office_email,
        language=language,
    )
    event = MunicipalityRegistered(
        ags=ags,
        name=name,
        kind=kind,
        land=municipality.land,
        population=population,
        contact_office=contact_office,
    )
    return municipality, key, event


PROFILE_FIELDS = (
    "name",
    "kind",
    "population",
    "contact_office",
    "contact_office_email",
    "language",
)


def update_profile(
    municipality: Municipality, changes: dict[str, Any]
) -> tuple[Municipality, MunicipalityProfileUpdated]:
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise DomainError(f"these fields cannot be changed: {', '.join(sorted(unknown))}")
    updated = replace(municipality, **changes)
    return updated, updated.profile_event()


# -- dialogue events -------------------------------------------------------------------


class EventState(StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class DialogueEvent:
    id: str
    ags: str
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    format: EventFormat
    place: str | None
    online_link: str | None
    capacity: int
    registration_deadline: datetime
    languages: tuple[str, ...]
    revision: int = 0
    confirmed_count: int = 0
    waitlisted_count: int = 0
    reserved_places: int = 0
    target_sectors: tuple[Sector, ...] = ()
    state: EventState = EventState.SCHEDULED
    attended: int | None = None
    changes: int = 0
    """Grows with every write to the event's document: the guard of whole-event changes."""

    @property
    def bookable(self) -> int:
        """What the public can book: the capacity minus the reserved places."""
        return self.capacity - self.reserved_places

    @property
    def places_left(self) -> int:
        return max(0, self.bookable - self.confirmed_count)

    @property
    def cancelled(self) -> bool:
        return self.state is EventState.CANCELLED

    def online_link_released_at(self, release_before: timedelta) -> datetime:
        return self.starts_at - release_before

    def scheduled_event(self) -> DialogueEventScheduled:
        return DialogueEventScheduled(
            dialogue_event_id=self.id,
            ags=self.ags,
            title=self.title,
            description=self.description,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            format=self.format,
            place=self.place,
            capacity=self.capacity,
            registration_deadline=self.registration_deadline,
            languages=list(self.languages),
            revision=self.revision,
            reserved_places=self.reserved_places,
            target_sectors=list(self.target_sectors),
        )

    def changed_event(self) -> DialogueEventChanged:
        return DialogueEventChanged(
            dialogue_event_id=self.id,
            ags=self.ags,
            title=self.title,
            description=self.description,
            starts_at=self.starts_at,
            ends_at=self.ends_at,
            format=self.format,
            place=self.place,
            capacity=self.capacity,
            registration_deadline=self.registration_deadline,
            languages=list(self.languages),
            revision=self.revision,
            reserved_places=self.reserved_places,
            target_sectors=list(self.target_sectors),
        )


def validate_schedule(event: DialogueEvent, *, now: datetime) -> None:
    if event.ends_at <= event.starts_at:
        raise InvalidSchedule("ends_at", "must be after starts_at")
    if event.starts_at <= now:
        raise InvalidSchedule("starts_at", "is in the past")
    _validate_change(event)


def schedule_dialogue_event(
    *, ags: str, now: datetime, dialogue_event_id: str | None = None, **fields: Any
) -> tuple[DialogueEvent, DialogueEventScheduled]:
    event = DialogueEvent(id=dialogue_event_id or str(uuid.uuid4()), ags=ags, **fields)
    validate_schedule(event, now=now)
    return event, event.scheduled_event()


# -- registrations (no personal data: that lives in `Participant`) ---------------------


class RecordStatus(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


ACTIVE = (RecordStatus.CONFIRMED, RecordStatus.WAITLISTED)


@dataclass(frozen=True)
class RegistrationRecord:
    """One registration inside its dialogue event's document."""

    registration_id: str
    status: RecordStatus
    sector: Sector
    language: str
    position: int
    """Order of arrival (nanoseconds): the waitlist is served lowest first."""
    fingerprint: str | None = None
    erased: bool = False
    cancelled_reason: CancellationReason | None = None


def first_waitlisted(
    records: dict[str, RegistrationRecord], count: int = 1
) -> list[RegistrationRecord]:
    waiting = [r for r in records.values() if r.status is RecordStatus.WAITLISTED]
    return sorted(waiting, key=lambda r: (r.position, r.registration_id))[:count]


@dataclass
class Plan:
    """An atomic change of one dialogue-event document, and the condition it relies on.

    guard: the event's `changes` counter must still be `expected_changes` (whole-event
    changes), and/or each listed registration must still have the listed status.
    """

    expected_changes: int | None = None
    expected_statuses: dict[str, RecordStatus] = field(default_factory=dict)
    require_scheduled: bool = False
    expect_waitlist_empty: bool = False
    event_fields: dict[str, Any] = field(default_factory=dict)
    statuses: dict[str, RecordStatus] = field(default_factory=dict)
    cancelled_reasons: dict[str, CancellationReason] = field(default_factory=dict)
    unset_fingerprints: list[str] = field(default_factory=list)
    erase: list[str] = field(default_factory=list)
    confirmed_delta: int = 0
    waitlisted_delta: int = 0
    command_id: str | None = None
    """The municipal system's command this plan carries out: recorded with the change, and
    the change refused once it is recorded (a command delivered again after a crash between
    its write and its processed mark is carried out once)."""
    events: list[EventData] = field(default_factory=list)


@dataclass(frozen=True)
class RegistrationRequest:
    dialogue_event_id: str
    name: str
    email: str
    sector: Sector
    language: str
    age_band: AgeBand | None = None
    migration_background: MigrationBackground | None = None
    registration_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def check_registration_open(event: DialogueEvent, *, now: datetime) -> None:
    if event.cancelled:
        raise RegistrationClosed("this event was cancelled")
    if now > event.registration_deadline:
        closed = event.registration_deadline.astimezone(BERLIN)
        raise RegistrationClosed(
            f"registration for this event closed at {closed.isoformat()} (Europe/Berlin)"
        )


def new_position() -> int:
    return time.time_ns()


def registered_event(
    event: DialogueEvent, request: RegistrationRequest, status: RegistrationStatus
) -> ParticipantRegistered:
    return ParticipantRegistered(
        registration_id=request.registration_id,
        dialogue_event_id=event.id,
        ags=event.ags,
        status=status,
        sector=request.sector,
        language=request.language,
        age_band=request.age_band,
    )


def _promote(
    event: DialogueEvent, records: dict[str, RegistrationRecord], places: int, plan: Plan
) -> None:
    for record in first_waitlisted(records, places):
        plan.expected_statuses[record.registration_id] = RecordStatus.WAITLISTED
        plan.statuses[record.registration_id] = RecordStatus.CONFIRMED
        plan.confirmed_delta += 1
        plan.waitlisted_delta -= 1
        plan.events.append(
            ParticipantPromoted(
                registration_id=record.registration_id, dialogue_event_id=event.id, ags=event.ags
            )
        )


def _cancel_record(
    event: DialogueEvent,
    record: RegistrationRecord,
    reason: CancellationReason,
    plan: Plan,
) -> None:
    plan.expected_statuses[record.registration_id] = record.status
    plan.statuses[record.registration_id] = RecordStatus.CANCELLED
    plan.cancelled_reasons[record.registration_id] = reason
    if record.fingerprint:
        # the same address may register again later
        plan.unset_fingerprints.append(record.fingerprint)
    if record.status is RecordStatus.CONFIRMED:
        plan.confirmed_delta -= 1
    else:
        plan.waitlisted_delta -= 1
    plan.events.append(
        ParticipantCancelled(
            registration_id=record.registration_id,
            dialogue_event_id=event.id,
            ags=event.ags,
            previous_status=RegistrationStatus(record.status.value),
            reason=reason,
        )
    )


def _cancellation(
    event: DialogueEvent,
    records: dict[str, RegistrationRecord],
    registration_id: str,
    *,
    promote: bool,
) -> Plan:
    record = records[registration_id]
    plan = Plan()
    _cancel_record(event, record, CancellationReason.BY_PARTICIPANT, plan)
    if record.status is RecordStatus.CONFIRMED:
        others = {rid: r for rid, r in records.items() if rid != registration_id}
        if promote and first_waitlisted(others):
            _promote(event, others, 1, plan)
        else:
            # Nobody promoted: that relies on the waitlist being empty still.
            plan.expect_waitlist_empty = promote
    return plan


def cancel_registration(
    event: DialogueEvent,
    records: dict[str, RegistrationRecord],
    registration_id: str,
    *,
    now: datetime,
) -> Plan | None:
    """The participant cancels; a freed place goes to the first on the waitlist.

    None if the registration is already cancelled (the link may be clicked twice).
    """
    if records[registration_id].status is RecordStatus.CANCELLED:
        return None
    if now >= event.starts_at:
        raise RegistrationNotChangeable("the event has already started; it cannot be cancelled")
    return _cancellation(event, records, registration_id, promote=not event.cancelled)


def erase_registration(
    event: DialogueEvent,
    records: dict[str, RegistrationRecord],
    registration_id: str,
    *,
    now: datetime,
) -> Plan | None:
    """Erasure: an active registration is cancelled (promoting before the start), and its
    traces here (address fingerprint, self-description) are removed. None if already erased.
    """
    record = records[registration_id]
    if record.erased:
        return None
    if record.status in ACTIVE and now < event.ends_at:
        plan = _cancellation(event, records, registration_id, promote=now < event.starts_at)
    else:
        plan = Plan(expected_statuses={registration_id: record.status})
        if record.fingerprint:
            plan.unset_fingerprints.append(record.fingerprint)
    plan.erase.append(registration_id)
    plan.events.append(
        ParticipantErased(
            registration_id=registration_id, dialogue_event_id=event.id, ags=event.ags
        )
    )
    return plan


CHANGEABLE_FIELDS = (
    "title",
    "description",
    "format",
    "place",
    "online_link",
    "capacity",
    "reserved_places",
    "registration_deadline",
    "languages",
    "target_sectors",
)


def _require_changeable(event: DialogueEvent, *, now: datetime) -> None:
    if event.cancelled:
        raise EventNotChangeable("this event was cancelled")
    if now >= event.ends_at:
        raise EventNotChangeable("this event is over")


def change_dialogue_event(
    event: DialogueEvent,
    records: dict[str, RegistrationRecord],
    changes: dict[str, Any],
    *,
    now: datetime,
) -> tuple[DialogueEvent, Plan]:
    """Anything but the times; more bookable places go to the waitlist at once."""
    _require_changeable(event, now=now)
    unknown = set(changes) - set(CHANGEABLE_FIELDS)
    if unknown:
        raise InvalidSchedule(sorted(unknown)[0], "cannot be changed here; use reschedule")
    updated = replace(event, **changes, revision=event.revision + 1)
    _validate_change(updated)
    if updated.bookable < event.confirmed_count:
        raise EventNotChangeable(
            f"{event.confirmed_count} people are confirmed; capacity minus reserved places "
            f"cannot be less than that"
        )
    plan = Plan(expected_changes=event.changes, require_scheduled=True)
    plan.event_fields = {name: getattr(updated, name) for name in (*changes, "revision")}
    plan.events.append(updated.changed_event())
    free = updated.bookable - event.confirmed_count
    if free > 0:
        _promote(updated, records, free, plan)
    return updated, plan


def _validate_change(event: DialogueEvent) -> None:
    if event.registration_deadline > event.ends_at:
        raise InvalidSchedule("registration_deadline", "must not be after the event has ended")
    if event.format in (EventFormat.IN_PERSON, EventFormat.HYBRID) and not event.place:
        raise InvalidSchedule("place", f"is required for a {event.format.value} event")
    if event.format in (EventFormat.ONLINE, EventFormat.HYBRID) and not event.online_link:
        raise InvalidSchedule("online_link", f"is required for a {event.format.value} event")
    if event.reserved_places >= event.capacity:
        raise InvalidSchedule("reserved_places", "must leave at least one place to book")


def reschedule_dialogue_event(
    event: DialogueEvent,
    *,
    starts_at: datetime,
    ends_at: datetime,
    registration_deadline: datetime | None,
    place: str | None,
    now: datetime,
) -> tuple[DialogueEvent, Plan]:
    _require_changeable(event, now=now)
    updated = replace(
        event,
        starts_at=starts_at,
        ends_at=ends_at,
        registration_deadline=registration_deadline or event.registration_deadline,
        place=place if place is not None else event.place,
        revision=event.revision + 1,
    )
    validate_schedule(updated, now=now)
    plan = Plan(expected_changes=event.changes, require_scheduled=True)
    plan.event_fields = {
        "starts_at": updated.starts_at,
        "ends_at": updated.ends_at,
        "registration_deadline": updated.registration_deadline,
        "place": updated.place,
        "revision": updated.revision,
    }
    plan.events.append(
        DialogueEventRescheduled(
            dialogue_event_id=event.id,
            ags=event.ags,
            title=event.title,
            starts_at=updated.starts_at,
            ends_at=updated.ends_at,
            previous_starts_at=event.starts_at,
            format=event.format,
            place=updated.place,
            registration_deadline=updated.registration_deadline,
            revision=updated.revision,
        )
    )
    return updated, plan


def cancel_dialogue_event(
    event: DialogueEvent,
    records: dict[str, RegistrationRecord],
    *,
    reason: str,
    now: datetime,
) -> Plan:
    """The event is off: every active registration is cancelled with reason event_cancelled."""
    _require_changeable(event, now=now)
    revision = event.revision + 1
    plan = Plan(expected_changes=event.changes, require_scheduled=True)
    plan.event_fields = {"state": EventState.CANCELLED, "revision": revision}
    plan.events.append(
        DialogueEventCancelled(
            dialogue_event_id=event.id, ags=event.ags, revision=revision, reason=reason
        )
    )
    for record in sorted(records.values(), key=lambda r: r.position):
        if record.status in ACTIVE:
            _cancel_record(event, record, CancellationReason.EVENT_CANCELLED, plan)
    return plan


def record_attendance(event: DialogueEvent, *, attended: int, now: datetime) -> Plan:
    if event.cancelled:
        raise EventNotChangeable("this event was cancelled")
    if now < event.starts_at:
        raise EventNotChangeable("attendance can be recorded once the event has started")
    plan = Plan(require_scheduled=True, event_fields={"attended": attended})
    plan.events.append(
        AttendanceRecorded(dialogue_event_id=event.id, ags=event.ags, attended=attended)
    )
    return plan


# -- participants and their signed links -----------------------------------------------


@dataclass(frozen=True)
class Participant:
    """The person behind a registration; only ever stored in this service (and notification)."""

    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str
    consent_at: datetime


class LinkAction(StrEnum):
    CANCEL = "cancel"
    ERASURE = "erasure"


class InvalidLink(DomainError):
    pass


class ExpiredLink(DomainError):
    pass


def link_secret(*, configured: str, service_key: str) -> bytes:
    """The link secret; derived from the service key when none is configured."""
    if configured:
        return configured.encode()
    if not service_key:
        return b""
    return hmac.new(service_key.encode(), b"wok-registration-links", hashlib.sha256).digest()


def link_signature(*, secret: bytes, action: LinkAction, registration_id: str, expires: int) -> str:
    message = f"{action.value}\n{registration_id}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_link(
    *,
    secret: bytes,
    action: LinkAction,
    registration_id: str,
    expires: int,
    signature: str,
    now: datetime,
) -> None:
    if not secret:
        raise InvalidLink("links are not configured on this server")
    expected = link_signature(
        secret=secret, action=action, registration_id=registration_id, expires=expires
    )
    if not hmac.compare_digest(expected, signature):
        raise InvalidLink("this link is not valid")
    if now.timestamp() > expires:
        raise ExpiredLink("this link has expired")


# -- taskforce -------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskforceMember:
    member_id: str
    ags: str
    name: str
    email: str | None
    role: TaskforceRole
    sector: TaskforceSector
    language: str = "de"


def add_taskforce_member(
    *,
    ags: str,
    name: str,
    email: str | None,
    role: TaskforceRole,
    sector: TaskforceSector,
    language: str = "de",
) -> tuple[TaskforceMember, TaskforceMemberAdded]:
    member = TaskforceMember(
        member_id=str(uuid.uuid4()),
        ags=ags,
        name=name,
        email=email,
        role=role,
        sector=sector,
        language=language,
    )
    return member, TaskforceMemberAdded(
        member_id=member.member_id, ags=ags, role=role, sector=sector
    )


def remove_taskforce_member(*, ags: str, member_id: str) -> TaskforceMemberRemoved:
    return TaskforceMemberRemoved(member_id=member_id, ags=ags)


# -- rendering -------------------------------------------------------------------------

WEEKDAYS = ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag")
MONTHS = (
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


def german_period(starts_at: datetime, ends_at: datetime) -> str:
    """E.g. 'Dienstag, 10. Dezember 2030, 18:00–20:30 Uhr' in Europe/Berlin."""
    start, end = starts_at.astimezone(BERLIN), ends_at.astimezone(BERLIN)
    day = f"{WEEKDAYS[start.weekday()]}, {start.day}. {MONTHS[start.month - 1]} {start.year}"
    return f"{day}, {start:%H:%M}–{end:%H:%M} Uhr"
