"""Event payloads produced by the reporting service (topics exchange.*)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData


class AggregateScope(StrEnum):
    PROGRAM = "program"
    LAND = "land"
    MUNICIPALITY = "municipality"
    FIELD = "field"  # one of the seven fields of action across all municipalities


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
    daily_registrations: dict[str, int | None] = Field(
        default_factory=dict,
        description="Registrations per day (ISO date in Europe/Berlin); None where withheld, "
        "listed in `suppressed` as 'daily_registrations:<date>'. Days without any are absent.",
    )
    statistics: dict[str, float | None] = Field(
        default_factory=dict,
        description="Figures that are not counts: field scores with their quartiles and ranks "
        "across municipalities, workshop perspective means and their gaps to the scores "
        "(docs/data-dictionary.md); None where withheld (listed in `suppressed`).",
    )


class ActivityKind(StrEnum):
    MUNICIPALITY_JOINED = "municipality_joined"
    PROFILE_UPDATED = "profile_updated"
    DIALOGUE_EVENT_SCHEDULED = "dialogue_event_scheduled"
    DIALOGUE_EVENT_CHANGED = "dialogue_event_changed"
    DIALOGUE_EVENT_RESCHEDULED = "dialogue_event_rescheduled"
    DIALOGUE_EVENT_CANCELLED = "dialogue_event_cancelled"
    ATTENDANCE_RECORDED = "attendance_recorded"
    SELF_CHECK_STARTED = "self_check_started"
    SELF_CHECK_COMPLETED = "self_check_completed"
    MEASURE_PLANNED = "measure_planned"
    MEASURE_STATUS_CHANGED = "measure_status_changed"


class ActivityDigest(EventData):
    """One activity of a model municipality, for every other one to read (exchange.activity.v1).

    Keyed by the municipality's AGS. Never personal data: activities of residents
    (registrations, cancellations, erasures) have no digest, and no digest carries a count
    of people.
    """

    event_type: ClassVar[str] = "reporting.activity.digest.v1"

    municipality: Ags
    municipality_name: str = Field(description="As known when the activity happened; else the AGS")
    kind: ActivityKind
    text_de: str
    text_en: str
    occurred_at: datetime = Field(description="Time of the event the digest is made from")
    subject_id: str = Field(
        description="What it is about: a dialogue event, self-check or measure id, or the AGS"
    )
    source_event_id: str = Field(description="Id of the domain event the digest is made from")


EVENT_TYPES: tuple[type[EventData], ...] = (AggregateSnapshot, ActivityDigest)
