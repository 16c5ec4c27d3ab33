"""Event payloads produced by the registration service (topic registration.events.v1).

No payload carries a person's name or e-mail address: people appear as opaque ids.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, Field

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData


class MunicipalityKind(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    TOWN = "town"


class EventFormat(StrEnum):
    ONLINE = "online"
    IN_PERSON = "in_person"
    HYBRID = "hybrid"


class Sector(StrEnum):
    ADMINISTRATION = "administration"
    POLITICS = "politics"
    CIVIL_SOCIETY = "civil_society"
    BUSINESS = "business"
    MIGRANT_ADVISORY_COUNCIL = "migrant_advisory_council"
    YOUTH_PARLIAMENT = "youth_parliament"
    RESIDENT = "resident"


class RegistrationStatus(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"


class MunicipalityRegistered(EventData):
    event_type: ClassVar[str] = "registration.municipality.registered.v1"

    ags: Ags
    name: str = Field(min_length=1, max_length=200)
    kind: MunicipalityKind
    land: str = Field(pattern=r"^(0[1-9]|1[0-6])$", description="Two-digit Land code")
    population: int | None = Field(default=None, ge=0)


class DialogueEventScheduled(EventData):
    event_type: ClassVar[str] = "registration.dialogue_event.scheduled.v1"

    dialogue_event_id: str
    ags: Ags
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    format: EventFormat
    place: str | None = Field(default=None, description="Address for in-person and hybrid events")
    capacity: int = Field(ge=1)
    registration_deadline: AwareDatetime
    languages: list[str] = Field(default_factory=lambda: ["de"])
    revision: int = Field(default=0, ge=0, description="Grows on every change; the ICS SEQUENCE")


class ParticipantRegistered(EventData):
    event_type: ClassVar[str] = "registration.participant.registered.v1"

    registration_id: str
    dialogue_event_id: str
    ags: Ags
    status: RegistrationStatus
    sector: Sector
    language: str = Field(default="de", pattern=r"^[a-z]{2}$")


class MunicipalityKeyIssued(EventData):
    """A municipality's API key was issued (onboarding) or rotated; the previous one is void.

    Carries only the SHA-256 of the key (256 random bits, so the hash cannot be reversed):
    every service that serves a municipality verifies presented keys against it, without
    asking registration on each request.
    """

    event_type: ClassVar[str] = "registration.municipality.key_issued.v1"

    ags: Ags
    key_id: str
    key_hash: str = Field(pattern=r"^[0-9a-f]{64}$")


class MunicipalityKeyRevoked(EventData):
    """The municipality's key no longer works anywhere (until a new one is issued)."""

    event_type: ClassVar[str] = "registration.municipality.key_revoked.v1"

    ags: Ags
    key_id: str


class MunicipalityProfileUpdated(EventData):
    """The profile as it is now (all fields), after an update by the admin or the municipality."""

    event_type: ClassVar[str] = "registration.municipality.profile_updated.v1"

    ags: Ags
    name: str = Field(min_length=1, max_length=200)
    kind: MunicipalityKind
    land: str = Field(pattern=r"^(0[1-9]|1[0-6])$")
    population: int | None = Field(default=None, ge=0)
    contact_office: str | None = Field(
        default=None, max_length=200, description="An office, e.g. 'Integrationsbüro'; no person"
    )


class DialogueEventChanged(EventData):
    """Title, description, place, capacity or languages changed; the times did not."""

    event_type: ClassVar[str] = "registration.dialogue_event.changed.v1"

    dialogue_event_id: str
    ags: Ags
    title: str = Field(min_length=1, max_length=300)
    description: str = ""
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    format: EventFormat
    place: str | None = None
    capacity: int = Field(ge=1)
    registration_deadline: AwareDatetime
    languages: list[str] = Field(default_factory=lambda: ["de"])
    revision: int = Field(ge=0)


class DialogueEventRescheduled(EventData):
    """New times (and possibly place); everyone registered is told, calendars update."""

    event_type: ClassVar[str] = "registration.dialogue_event.rescheduled.v1"

    dialogue_event_id: str
    ags: Ags
    title: str = Field(min_length=1, max_length=300)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    previous_starts_at: AwareDatetime
    format: EventFormat
    place: str | None = None
    registration_deadline: AwareDatetime
    revision: int = Field(ge=0)


class DialogueEventCancelled(EventData):
    event_type: ClassVar[str] = "registration.dialogue_event.cancelled.v1"

    dialogue_event_id: str
    ags: Ags
    revision: int = Field(ge=0)
    reason: str = Field(default="", max_length=1000, description="Shown to participants")


class CancellationReason(StrEnum):
    BY_PARTICIPANT = "by_participant"
    EVENT_CANCELLED = "event_cancelled"


class ParticipantCancelled(EventData):
    event_type: ClassVar[str] = "registration.participant.cancelled.v1"

    registration_id: str
    dialogue_event_id: str
    ags: Ags
    previous_status: RegistrationStatus
    reason: CancellationReason = CancellationReason.BY_PARTICIPANT


class ParticipantPromoted(EventData):
    """A place came free and the first person on the waitlist got it."""

    event_type: ClassVar[str] = "registration.participant.promoted.v1"

    registration_id: str
    dialogue_event_id: str
    ags: Ags


class ParticipantErased(EventData):
    """The person asked for erasure: every service removes what it holds about them."""

    event_type: ClassVar[str] = "registration.participant.erased.v1"

    registration_id: str
    dialogue_event_id: str
    ags: Ags


class AttendanceRecorded(EventData):
    """How many came, after the event (counts only; they feed the funnels)."""

    event_type: ClassVar[str] = "registration.dialogue_event.attendance_recorded.v1"

    dialogue_event_id: str
    ags: Ags
    attended: int = Field(ge=0)


class TaskforceRole(StrEnum):
    LEAD = "lead"
    MEMBER = "member"
    COORDINATION = "coordination"


class TaskforceSector(StrEnum):
    ADMINISTRATION = "administration"
    MIGRANT_ADVISORY_COUNCIL = "migrant_advisory_council"
    YOUTH_PARLIAMENT = "youth_parliament"
    ORGANISATIONS = "organisations"


class TaskforceMemberAdded(EventData):
    event_type: ClassVar[str] = "registration.taskforce.member_added.v1"

    member_id: str
    ags: Ags
    role: TaskforceRole
    sector: TaskforceSector


class TaskforceMemberRemoved(EventData):
    event_type: ClassVar[str] = "registration.taskforce.member_removed.v1"

    member_id: str
    ags: Ags


EVENT_TYPES: tuple[type[EventData], ...] = (
    MunicipalityRegistered,
    MunicipalityKeyIssued,
    MunicipalityKeyRevoked,
    MunicipalityProfileUpdated,
    DialogueEventScheduled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    DialogueEventCancelled,
    AttendanceRecorded,
    ParticipantRegistered,
    ParticipantCancelled,
    ParticipantPromoted,
    ParticipantErased,
    TaskforceMemberAdded,
    TaskforceMemberRemoved,
)
