"""Event payloads. Past tense, versioned types; only additive optional fields inside a `.v1`.

No payload on a topic carries a person's name or e-mail address (DESIGN.md section 5):
people appear as opaque registration ids only.
"""

from __future__ import annotations

from datetime import datetime
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


class NotificationKind(StrEnum):
    CONFIRMATION = "confirmation"


class NotificationSent(EventData):
    event_type: ClassVar[str] = "notification.message.sent.v1"

    notification_id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: Ags
    language: str
    sent_at: datetime


class AggregateScope(StrEnum):
    PROGRAM = "program"
    LAND = "land"
    MUNICIPALITY = "municipality"


class AggregateSnapshot(EventData):
    """A compacted snapshot of one scope; cells counting fewer than 5 people are None."""

    event_type: ClassVar[str] = "reporting.aggregate.snapshot.v1"

    scope: AggregateScope
    scope_key: str = Field(description="'program', a Land code, or an AGS")
    sequence: int = Field(ge=0, description="Grows with every snapshot of this scope")
    as_of: datetime | None = Field(description="Time of the newest event included")
    generated_at: datetime
    metrics: dict[str, int | None]
    suppressed: list[str] = Field(
        default_factory=list, description="Metrics withheld by disclosure control"
    )


EVENT_TYPES: tuple[type[EventData], ...] = (
    MunicipalityRegistered,
    DialogueEventScheduled,
    ParticipantRegistered,
    NotificationSent,
    AggregateSnapshot,
)
