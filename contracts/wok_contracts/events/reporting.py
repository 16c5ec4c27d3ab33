"""Event payloads produced by the reporting service (topics exchange.*)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from wok_contracts.envelope import EventData


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


EVENT_TYPES: tuple[type[EventData], ...] = (AggregateSnapshot,)
