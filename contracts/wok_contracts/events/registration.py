"""Event payloads produced by the registration service (topic registration.events.v1).

No payload carries a person's name or e-mail address: people appear as opaque ids.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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


class AgeBand(StrEnum):
    """Optional self-description, only ever aggregated (DESIGN.md section 5)."""

    UNDER_18 = "under_18"
    FROM_18_TO_29 = "18_29"
    FROM_30_TO_49 = "30_49"
    FROM_50_TO_64 = "50_64"
    FROM_65 = "65_plus"
    NO_ANSWER = "no_answer"


class MigrationBackground(StrEnum):
    """Optional self-description, only ever aggregated (DESIGN.md section 5)."""

    YES = "yes"
    NO = "no"
    NO_ANSWER = "no_answer"


class MunicipalityRegistered(EventData):
    event_type: ClassVar[str] = "registration.municipality.registered.v1"

    ags: Ags
    name: str = Field(min_length=1, max_length=200)
    kind: MunicipalityKind
    land: str = Field(pattern=r"^(0[1-9]|1[0-6])$", description="Two-digit Land code")
    population: int | None = Field(default=None, ge=0)
    contact_office: str | None = Field(
        default=None, max_length=200, description="An office, e.g. 'Integrationsbüro'; no person"
    )


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
    reserved_places: int = Field(
        default=0, ge=0, description="Kept back from public booking (capacity - reserved is public)"
    )
    target_sectors: list[Sector] = Field(
        default_factory=list, description="Whom the event addresses; empty means everyone"
    )


class ParticipantRegistered(EventData):
    event_type: ClassVar[str] = "registration.participant.registered.v1"

    registration_id: str
    dialogue_event_id: str
    ags: Ags
    status: RegistrationStatus
    sector: Sector
    language: str = Field(default="de", pattern=r"^[a-z]{2}$")
    age_band: AgeBand | None = Field(default=None, description="Optional; only ever aggregated")
    # Migration background is never published per registration (DESIGN.md section 5: only
    # ever aggregated); registration keeps the answer and erases it with the person.


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
    reserved_places: int = Field(default=0, ge=0)
    target_sectors: list[Sector] = Field(default_factory=list)


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


# -- commands: what a municipality's own system may send instead of calling the HTTP API ---

REGISTRATION_COMMANDS = "registration.commands.v1"
"""Inbound topic for municipal systems (key: their AGS; envelope `municipality` = data.ags).
Rejections come back on `registration.events.v1` as `CommandRejected`; the original goes to
`dead-letter.registration-commands.v1`."""


class ScheduleDialogueEvent(EventData):
    """The same fields and rules as `POST /v1/municipalities/{ags}/dialogue-events`.

    The dialogue event's id is derived from the envelope id, so a command delivered twice
    schedules one event.
    """

    event_type: ClassVar[str] = "registration.command.schedule_dialogue_event.v1"

    ags: Ags
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=5000)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    format: EventFormat
    place: str | None = Field(default=None, max_length=500)
    online_link: str | None = Field(default=None, max_length=1000)
    capacity: int = Field(ge=1, le=100_000)
    reserved_places: int = Field(default=0, ge=0, le=100_000)
    registration_deadline: AwareDatetime
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] = Field(
        default_factory=lambda: ["de"], min_length=1, max_length=20
    )
    target_sectors: list[Sector] = Field(default_factory=list)


class CancelDialogueEvent(EventData):
    """The same as `POST /v1/municipalities/{ags}/dialogue-events/{id}/cancel`."""

    event_type: ClassVar[str] = "registration.command.cancel_dialogue_event.v1"

    ags: Ags
    dialogue_event_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=1000)


class ChangeDialogueEvent(EventData):
    """The same as `PATCH /v1/municipalities/{ags}/dialogue-events/{id}`: only the fields that
    are not null change (times change through `RescheduleDialogueEvent`); `remove` takes away
    the place or the online link (e.g. an event that went online)."""

    event_type: ClassVar[str] = "registration.command.change_dialogue_event.v1"

    ags: Ags
    dialogue_event_id: str = Field(min_length=1, max_length=100)
    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str | None = Field(default=None, max_length=5000)
    format: EventFormat | None = None
    place: str | None = Field(default=None, max_length=500)
    online_link: str | None = Field(default=None, max_length=1000)
    capacity: int | None = Field(default=None, ge=1, le=100_000)
    reserved_places: int | None = Field(default=None, ge=0, le=100_000)
    registration_deadline: AwareDatetime | None = None
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2}$")]] | None = Field(
        default=None, min_length=1, max_length=20
    )
    target_sectors: list[Sector] | None = None
    remove: list[Literal["place", "online_link"]] = Field(default_factory=list)

    def changes(self) -> dict[str, Any]:
        """What changes: every field that is not null, and None for each field removed."""
        fields = self.model_dump(exclude={"ags", "dialogue_event_id", "remove"}, exclude_none=True)
        return fields | dict.fromkeys(self.remove)


class RescheduleDialogueEvent(EventData):
    """The same as `POST /v1/municipalities/{ags}/dialogue-events/{id}/reschedule`; everyone
    registered is told (with an updated calendar entry)."""

    event_type: ClassVar[str] = "registration.command.reschedule_dialogue_event.v1"

    ags: Ags
    dialogue_event_id: str = Field(min_length=1, max_length=100)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    registration_deadline: AwareDatetime | None = None
    place: str | None = Field(default=None, max_length=500)


class RecordAttendance(EventData):
    """The same as `POST /v1/municipalities/{ags}/dialogue-events/{id}/attendance`: a count."""

    event_type: ClassVar[str] = "registration.command.record_attendance.v1"

    ags: Ags
    dialogue_event_id: str = Field(min_length=1, max_length=100)
    attended: int = Field(ge=0, le=100_000, description="How many came (a count, no names)")


class FieldProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str = Field(description="Dotted path in the envelope, e.g. data.starts_at")
    reason: str


class CommandRejected(EventData):
    """A command from a municipal system was refused; nothing was changed."""

    event_type: ClassVar[str] = "registration.command.rejected.v1"

    ags: str | None = Field(default=None, description="The sender's AGS, if it could be read")
    command_id: str = Field(description="The id of the refused command's envelope")
    command_type: str
    problems: list[FieldProblem] = Field(min_length=1)


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
    ScheduleDialogueEvent,
    CancelDialogueEvent,
    ChangeDialogueEvent,
    RescheduleDialogueEvent,
    RecordAttendance,
    CommandRejected,
)
