"""Workshop perspectives: participants rate each field 0-100, known only by stakeholder group.

Per field: the mean rating of each group, of everyone, and each group's gap to the
self-check score (mean − score; negative means the group sees the field worse than the
administration's self-check does). A group that gave a field fewer than the minimum number
of ratings in a workshop (default 3) shows no mean from that workshop: "too few ratings",
so one person's rating is never revealed.
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

DEFAULT_MIN_GROUP_SIZE = 3


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
    """Ratings the group gave this field (each participant rates a field once)."""
    counted: int
    """Ratings in the mean: those from workshops where the group gave at least the minimum."""
    mean: float | None
    """None: too few ratings to show a mean without revealing a person's rating."""
    gap: float | None
    """mean − self-check score; None without a mean or a scored self-check for the field."""


@dataclass(frozen=True)
class FieldPerspectives:
    field: int
    self_check_score: float | None
    participants: int
    counted: int
    mean: float | None
    groups: tuple[GroupView, ...]

    @property
    def widest_gap(self) -> GroupView | None:
        with_gap = [group for group in self.groups if group.gap is not None]
        return max(with_gap, key=lambda g: (abs(g.gap or 0), g.group.value), default=None)


def _mean(values: list[int]) -> float:
    return round_half_up(Fraction(sum(values), len(values)))


def _gap(mean: float | None, score: float | None) -> float | None:
    if mean is None or score is None:
        return None
    return round_half_up(Fraction(str(mean)) - Fraction(str(score)))


def summarize(
    perspectives: Iterable[Perspective],
    assessment: Assessment | None,
    *,
    min_group_size: int = DEFAULT_MIN_GROUP_SIZE,
) -> tuple[FieldPerspectives, ...]:
    """Means by group and of everyone, over the ratings of shown cells only.

    A cell is (workshop, stakeholder group, field). A cell with fewer than `min_group_size`
    ratings is never part of any mean, neither its group's nor everyone's, in any view: so no
    mean, and no difference of two means (all workshops minus one, everyone minus the other
    groups), covers fewer than `min_group_size` people's ratings of the withheld cell.
    """
    cells: dict[int, dict[StakeholderGroup, dict[str, list[int]]]] = {n: {} for n in range(1, 8)}
    for perspective in perspectives:
        for number, rating in perspective.ratings.items():
            by_workshop = cells[number].setdefault(perspective.group, {})
            by_workshop.setdefault(perspective.workshop, []).append(rating)
    summary = []
    for number in range(1, 8):
        score = assessment.field(number).score if assessment is not None else None
        groups = []
        shown_of_everyone: list[int] = []
        participants = 0
        for group, by_workshop in sorted(cells[number].items(), key=lambda item: item[0].value):
            shown = [
                rating
                for ratings in by_workshop.values()
                if len(ratings) >= min_group_size
                for rating in ratings
            ]
            given = sum(len(ratings) for ratings in by_workshop.values())
            participants += given
            shown_of_everyone.extend(shown)
            mean = _mean(shown) if shown else None
            groups.append(
                GroupView(
                    group=group,
                    participants=given,
                    counted=len(shown),
                    mean=mean,
                    gap=_gap(mean, score),
                )
            )
        summary.append(
            FieldPerspectives(
                field=number,
                self_check_score=score,
                participants=participants,
                counted=len(shown_of_everyone),
                mean=_mean(shown_of_everyone) if shown_of_everyone else None,
                groups=tuple(groups),
            )
        )
    return tuple(summary)
