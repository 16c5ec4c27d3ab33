"""Registration rules as plain code: keys, onboarding, scheduling, seats and the waitlist."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    MunicipalityKeyIssued,
    MunicipalityKind,
    MunicipalityRegistered,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    land_of,
)

KEY_BYTES = 32


class DomainError(Exception):
    """A rule a request broke; the message is shown to the caller."""


class RegistrationClosed(DomainError):
    pass


class InvalidSchedule(DomainError):
    pass


def new_api_key() -> str:
    return f"wok_{secrets.token_urlsafe(KEY_BYTES)}"


def hash_key(key: str) -> str:
    """Keys are stored only as this hash (a key has 256 random bits, so no salt or stretching)."""
    return hashlib.sha256(key.encode()).hexdigest()


def keys_match(presented: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def email_fingerprint(*, dialogue_event_id: str, email: str) -> str:
    """Finds a second registration of one address for one event without storing it in the clear."""
    normalized = email.strip().lower()
    return hashlib.sha256(f"{dialogue_event_id}\x00{normalized}".encode()).hexdigest()


@dataclass(frozen=True)
class Municipality:
    ags: str
    name: str
    kind: MunicipalityKind
    land: str
    population: int | None
    key_hash: str


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the secret (shown once), and the event carrying only its hash."""

    api_key: str
    key_hash: str
    event: MunicipalityKeyIssued


def issue_key(ags: str) -> IssuedKey:
    api_key = new_api_key()
    key_hash = hash_key(api_key)
    return IssuedKey(
        api_key=api_key,
        key_hash=key_hash,
        event=MunicipalityKeyIssued(ags=ags, key_id=str(uuid.uuid4()), key_hash=key_hash),
    )


def onboard_municipality(
    *, ags: str, name: str, kind: MunicipalityKind, population: int | None
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
    )
    event = MunicipalityRegistered(
        ags=ags, name=name, kind=kind, land=municipality.land, population=population
    )
    return municipality, key, event


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

    @property
    def places_left(self) -> int:
        return max(0, self.capacity - self.confirmed_count)

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
        )


def schedule_dialogue_event(
    *,
    ags: str,
    title: str,
    description: str,
    starts_at: datetime,
    ends_at: datetime,
    format: EventFormat,
    place: str | None,
    online_link: str | None,
    capacity: int,
    registration_deadline: datetime,
    languages: tuple[str, ...],
) -> tuple[DialogueEvent, DialogueEventScheduled]:
    if ends_at <= starts_at:
        raise InvalidSchedule("ends_at must be after starts_at")
    if registration_deadline > ends_at:
        raise InvalidSchedule("registration_deadline must not be after the event has ended")
    if format in (EventFormat.IN_PERSON, EventFormat.HYBRID) and not place:
        raise InvalidSchedule(f"a place is required for a {format.value} event")
    if format in (EventFormat.ONLINE, EventFormat.HYBRID) and not online_link:
        raise InvalidSchedule(f"an online_link is required for a {format.value} event")
    event = DialogueEvent(
        id=str(uuid.uuid4()),
        ags=ags,
        title=title,
        description=description,
        starts_at=starts_at,
        ends_at=ends_at,
        format=format,
        place=place,
        online_link=online_link,
        capacity=capacity,
        registration_deadline=registration_deadline,
        languages=languages,
    )
    return event, event.scheduled_event()


@dataclass(frozen=True)
class Participant:
    """The person behind a registration; only ever stored in this service (and notification)."""

    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str
    consent_at: datetime


@dataclass(frozen=True)
class RegistrationRequest:
    dialogue_event_id: str
    name: str
    email: str
    sector: Sector
    language: str
    registration_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def check_registration_open(event: DialogueEvent, *, now: datetime) -> None:
    if now > event.registration_deadline:
        raise RegistrationClosed(
            f"registration for this event closed at {event.registration_deadline.isoformat()}"
        )


def seat_status(event: DialogueEvent) -> RegistrationStatus:
    """The status a new registration would get now; the store re-checks it atomically."""
    return RegistrationStatus.CONFIRMED if event.places_left > 0 else RegistrationStatus.WAITLISTED


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
    )
