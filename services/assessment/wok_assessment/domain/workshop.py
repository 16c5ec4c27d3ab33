"""Workshop perspectives: participants rate each field 0-100, known only by stakeholder group.

Per field: the mean rating of each group, of everyone, and each group's gap to the
self-check score (mean − score; negative means the group sees the field worse than the
administration's self-check does).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from wok_assessment.domain.scoring import Assessment, round_half_up
from wok_contracts.events.assessment import (
    FieldRating,
    StakeholderGroup,
    WorkshopPerspectiveRecorded,
)


@dataclass(frozen=True)
class Perspective:
    id: str
    ags: str
    workshop: str
    group: StakeholderGroup
    ratings: Mapping[int, int]
    recorded_at: datetime


def record_perspective(
    *,
    ags: str,
    workshop: str,
    group: StakeholderGroup,
    ratings: Mapping[int, int],
    now: datetime,
) -> tuple[Perspective, WorkshopPerspectiveRecorded]:
    if not ratings:
        raise ValueError("rate at least one field")
    perspective = Perspective(
        id=str(uuid.uuid4()),
        ags=ags,
        workshop=workshop,
        group=group,
        ratings=dict(sorted(ratings.items())),
        recorded_at=now,
    )
    event = WorkshopPerspectiveRecorded(
        perspective_id=perspective.id,
        ags=ags,
        workshop=workshop,
        stakeholder_group=group,
        ratings=[FieldRating(field=f, rating=r) for f, r in perspective.ratings.items()],
    )
    return perspective, event


@dataclass(frozen=True)
class GroupView:
    group: StakeholderGroup
    participants: int
    mean: float
    gap: float | None
    """mean − self-check score; None without a scored self-check for the field."""


@dataclass(frozen=True)
class FieldPerspectives:
    field: int
    self_check_score: float | None
    participants: int
    mean: float | None
    groups: tuple[GroupView, ...]

    @property
    def widest_gap(self) -> GroupView | None:
        with_gap = [group for group in self.groups if group.gap is not None]
        return max(with_gap, key=lambda g: (abs(g.gap or 0), g.group.value), default=None)


def _mean(values: list[int]) -> float:
    return round_half_up(Fraction(sum(values), len(values)))


def summarize(
    perspectives: Iterable[Perspective], assessment: Assessment | None
) -> tuple[FieldPerspectives, ...]:
    by_field: dict[int, dict[StakeholderGroup, list[int]]] = {n: {} for n in range(1, 8)}
    for perspective in perspectives:
        for number, rating in perspective.ratings.items():
            by_field[number].setdefault(perspective.group, []).append(rating)
    summary = []
    for number in range(1, 8):
        score = assessment.field(number).score if assessment is not None else None
        groups = tuple(
            GroupView(
                group=group,
                participants=len(ratings),
                mean=(mean := _mean(ratings)),
                gap=None
                if score is None
                else round_half_up(Fraction(str(mean)) - Fraction(str(score))),
            )
            for group, ratings in sorted(by_field[number].items(), key=lambda item: item[0].value)
        )
        everyone = [rating for ratings in by_field[number].values() for rating in ratings]
        summary.append(
            FieldPerspectives(
                field=number,
                self_check_score=score,
                participants=len(everyone),
                mean=_mean(everyone) if everyone else None,
                groups=groups,
            )
        )
    return tuple(summary)
