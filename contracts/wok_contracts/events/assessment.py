"""Event payloads produced by the assessment service (topic assessment.events.v1).

Self-checks, their scores, workshop perspectives and measures of a municipality. No payload
carries a person: workshop participants appear only as their stakeholder group, measures
name an owner role, never a person.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import ClassVar

from pydantic import AwareDatetime, Field

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData

FieldNumber = int


class AssessmentLevel(StrEnum):
    """The level band of a field (thresholds are part of the versioned catalogue)."""

    INSUFFICIENT_DATA = "insufficient_data"
    BEGINNING = "beginning"
    DEVELOPING = "developing"
    ADVANCED = "advanced"
    ESTABLISHED = "established"


class StakeholderGroup(StrEnum):
    ADMINISTRATION = "administration"
    POLITICS = "politics"
    CIVIL_SOCIETY = "civil_society"
    BUSINESS = "business"
    MIGRANT_ADVISORY_COUNCIL = "migrant_advisory_council"
    YOUTH_PARLIAMENT = "youth_parliament"
    OTHER = "other"


class MeasureStatus(StrEnum):
    PLANNED = "planned"
    RUNNING = "running"
    DONE = "done"
    DROPPED = "dropped"


class SelfCheckStarted(EventData):
    event_type: ClassVar[str] = "assessment.self_check.started.v1"

    self_check_id: str
    ags: Ags
    sequence: int = Field(ge=1, description="1 for the municipality's first self-check, then 2, …")
    catalogue_version: str


class SelfCheckSubmitted(EventData):
    event_type: ClassVar[str] = "assessment.self_check.submitted.v1"

    self_check_id: str
    ags: Ags
    sequence: int = Field(ge=1)
    catalogue_version: str
    questions: int = Field(ge=0, description="Questions in the catalogue version")
    answered: int = Field(ge=0, description="Answered on the scale (not skipped, not don't know)")
    dont_know: int = Field(ge=0)
    submitted_at: AwareDatetime


class FieldScore(EventData):
    field: FieldNumber = Field(ge=1, le=7, description="Field of action, 1-7")
    score: float | None = Field(ge=0, le=100, description="None when nothing was answered")
    level: AssessmentLevel
    coverage: float = Field(ge=0, le=1, description="Share of the field's questions answered")
    answered: int = Field(ge=0)
    questions: int = Field(ge=0)


class AssessmentScored(EventData):
    """The result of a submitted self-check, scored with its own catalogue version."""

    event_type: ClassVar[str] = "assessment.self_check.scored.v1"

    self_check_id: str
    ags: Ags
    sequence: int = Field(ge=1)
    catalogue_version: str
    fields: list[FieldScore] = Field(min_length=7, max_length=7)
    overall: float | None = Field(
        ge=0, le=100, description="None when too few fields have sufficient data"
    )
    overall_level: AssessmentLevel
    strengths: list[FieldNumber] = Field(default_factory=list)
    deficits: list[FieldNumber] = Field(default_factory=list)


class FieldRating(EventData):
    field: FieldNumber = Field(ge=1, le=7)
    rating: int = Field(ge=0, le=100)


class WorkshopPerspectiveRecorded(EventData):
    """One workshop participant's ratings of the fields, known only by stakeholder group."""

    event_type: ClassVar[str] = "assessment.workshop.perspective_recorded.v1"

    perspective_id: str
    ags: Ags
    workshop: str = Field(min_length=1, max_length=100, description="e.g. '2026-05 Auftakt'")
    stakeholder_group: StakeholderGroup
    ratings: list[FieldRating] = Field(min_length=1, max_length=7)


class MeasurePlanned(EventData):
    event_type: ClassVar[str] = "assessment.measure.planned.v1"

    measure_id: str
    ags: Ags
    field: FieldNumber = Field(ge=1, le=7)
    title: str = Field(min_length=1, max_length=300)
    owner_role: str = Field(min_length=1, max_length=120, description="A role, never a person")
    status: MeasureStatus
    starts_on: date | None = None
    due_on: date | None = None


class MeasureStatusChanged(EventData):
    event_type: ClassVar[str] = "assessment.measure.status_changed.v1"

    measure_id: str
    ags: Ags
    field: FieldNumber = Field(ge=1, le=7)
    previous_status: MeasureStatus
    status: MeasureStatus
    changed_on: date


EVENT_TYPES: tuple[type[EventData], ...] = (
    SelfCheckStarted,
    SelfCheckSubmitted,
    AssessmentScored,
    WorkshopPerspectiveRecorded,
    MeasurePlanned,
    MeasureStatusChanged,
)
