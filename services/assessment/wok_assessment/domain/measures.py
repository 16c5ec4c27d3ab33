"""Measures of the action plan: per field, with an owner role and a status that moves on."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import date

from wok_contracts.events.assessment import MeasurePlanned, MeasureStatus, MeasureStatusChanged

# planned → running → done; anything not finished may be dropped; done and dropped are final
TRANSITIONS: dict[MeasureStatus, frozenset[MeasureStatus]] = {
    MeasureStatus.PLANNED: frozenset(
        {MeasureStatus.RUNNING, MeasureStatus.DONE, MeasureStatus.DROPPED}
    ),
    MeasureStatus.RUNNING: frozenset({MeasureStatus.DONE, MeasureStatus.DROPPED}),
    MeasureStatus.DONE: frozenset(),
    MeasureStatus.DROPPED: frozenset(),
}


class InvalidMeasure(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidTransition(Exception):
    pass


@dataclass(frozen=True)
class Measure:
    id: str
    ags: str
    field: int
    title: str
    owner_role: str
    status: MeasureStatus
    starts_on: date | None
    due_on: date | None
    status_changed_on: date


def plan_measure(
    *,
    ags: str,
    field: int,
    title: str,
    owner_role: str,
    starts_on: date | None,
    due_on: date | None,
    today: date,
) -> tuple[Measure, MeasurePlanned]:
    if starts_on is not None and due_on is not None and due_on < starts_on:
        raise InvalidMeasure("due_on", f"{due_on} is before starts_on {starts_on}")
    measure = Measure(
        id=str(uuid.uuid4()),
        ags=ags,
        field=field,
        title=title,
        owner_role=owner_role,
        status=MeasureStatus.PLANNED,
        starts_on=starts_on,
        due_on=due_on,
        status_changed_on=today,
    )
    event = MeasurePlanned(
        measure_id=measure.id,
        ags=ags,
        field=field,
        title=title,
        owner_role=owner_role,
        status=measure.status,
        starts_on=starts_on,
        due_on=due_on,
    )
    return measure, event


def change_status(
    measure: Measure, status: MeasureStatus, *, today: date
) -> tuple[Measure, MeasureStatusChanged]:
    if status not in TRANSITIONS[measure.status]:
        allowed = sorted(s.value for s in TRANSITIONS[measure.status]) or "nothing (final)"
        raise InvalidTransition(
            f"a {measure.status.value} measure cannot become {status.value}; allowed: {allowed}"
        )
    changed = replace(measure, status=status, status_changed_on=today)
    event = MeasureStatusChanged(
        measure_id=measure.id,
        ags=measure.ags,
        field=measure.field,
        previous_status=measure.status,
        status=status,
        changed_on=today,
    )
    return changed, event
