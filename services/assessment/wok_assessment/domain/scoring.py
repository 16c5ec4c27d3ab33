"""Scoring of a self-check: pure, deterministic, exact (docs/assessment-scoring.md).

Per field of action, over the questions ANSWERED on the scale (a skipped question and a
"don't know" are left out, they never count as "no"):

    score = 100 × Σ weight·points / (max_points × Σ weight)      rounded half up to 0.1

    coverage = answered questions / questions of the field
    level    = insufficient_data when coverage < minimum_coverage, else the highest band
               whose from_score ≤ score

The overall index is the mean of the (rounded) scores of the fields with sufficient data,
when at least `minimum_fields_for_overall` fields have it. Strengths are fields with
sufficient data and score ≥ strength_from_score, deficits those below deficit_below_score.
Arithmetic is done in fractions, so the same answers give the same result everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from wok_assessment.domain.catalogue import BANDED_LEVELS, Catalogue, Text
from wok_contracts.events.assessment import AssessmentLevel

LOW_ANSWERS = 2  # answers scoring below this many points are listed as open points


def round_half_up(value: Fraction, *, digits: int = 1) -> float:
    scale = 10**digits
    return math.floor(value * scale + Fraction(1, 2)) / scale


@dataclass(frozen=True)
class FieldAssessment:
    field: int
    score: float | None
    level: AssessmentLevel
    coverage: float
    answered: int
    dont_know: int
    questions: int
    suggestion: Text
    open_points: tuple[str, ...]
    """Ids of the questions answered below "partly", heaviest first: where to start."""

    @property
    def sufficient(self) -> bool:
        return self.level is not AssessmentLevel.INSUFFICIENT_DATA


@dataclass(frozen=True)
class Assessment:
    catalogue_version: str
    fields: tuple[FieldAssessment, ...]
    overall: float | None
    overall_level: AssessmentLevel
    strengths: tuple[int, ...]
    deficits: tuple[int, ...]

    def field(self, number: int) -> FieldAssessment:
        return self.fields[number - 1]

    @property
    def answered(self) -> int:
        return sum(field.answered for field in self.fields)

    @property
    def dont_know(self) -> int:
        return sum(field.dont_know for field in self.fields)

    @property
    def questions(self) -> int:
        return sum(field.questions for field in self.fields)


def level_for(catalogue: Catalogue, score: float) -> AssessmentLevel:
    level = BANDED_LEVELS[0]
    for band in catalogue.levels:
        if score >= band.from_score:
            level = band.level
    return level


def score_field(catalogue: Catalogue, number: int, answers: Mapping[str, str]) -> FieldAssessment:
    field = catalogue.field(number)
    points = catalogue.points
    numerator = 0
    denominator = 0
    answered = 0
    dont_know = 0
    low: list[tuple[int, str]] = []
    for question in field.questions:
        value = answers.get(question.id)
        if value is None:
            continue
        if value == catalogue.dont_know.value:
            dont_know += 1
            continue
        answered += 1
        numerator += question.weight * points[value]
        denominator += question.weight
        if points[value] < LOW_ANSWERS:
            low.append((-question.weight, question.id))
    coverage = Fraction(answered, len(field.questions))
    score = (
        round_half_up(Fraction(100 * numerator, catalogue.max_points * denominator))
        if denominator
        else None
    )
    if score is None or coverage < catalogue.minimum_coverage_exact:
        level = AssessmentLevel.INSUFFICIENT_DATA
        suggestion = catalogue.insufficient_data.suggestion
    else:
        level = level_for(catalogue, score)
        suggestion = field.suggestions[level]
    return FieldAssessment(
        field=number,
        score=score,
        level=level,
        coverage=round_half_up(coverage, digits=3),
        answered=answered,
        dont_know=dont_know,
        questions=len(field.questions),
        suggestion=suggestion,
        open_points=tuple(question_id for _, question_id in sorted(low)),
    )


def assess(catalogue: Catalogue, answers: Mapping[str, str]) -> Assessment:
    """The assessment of a self-check's answers under the catalogue version it belongs to."""
    fields = tuple(score_field(catalogue, number, answers) for number in range(1, 8))
    sufficient = [field for field in fields if field.sufficient and field.score is not None]
    overall: float | None = None
    overall_level = AssessmentLevel.INSUFFICIENT_DATA
    if len(sufficient) >= catalogue.minimum_fields_for_overall:
        total = sum((Fraction(str(field.score)) for field in sufficient), Fraction(0))
        overall = round_half_up(total / len(sufficient))
        overall_level = level_for(catalogue, overall)
    strengths = sorted(
        (f for f in sufficient if f.score is not None and f.score >= catalogue.strength_from_score),
        key=lambda f: (-(f.score or 0), f.field),
    )
    deficits = sorted(
        (f for f in sufficient if f.score is not None and f.score < catalogue.deficit_below_score),
        key=lambda f: (f.score or 0, f.field),
    )
    return Assessment(
        catalogue_version=catalogue.version,
        fields=fields,
        overall=overall,
        overall_level=overall_level,
        strengths=tuple(f.field for f in strengths),
        deficits=tuple(f.field for f in deficits),
    )


@dataclass(frozen=True)
class FieldProgress:
    field: int
    previous_score: float | None
    score: float | None
    change: float | None
    previous_level: AssessmentLevel
    level: AssessmentLevel


def progress(current: Assessment, previous: Assessment) -> tuple[FieldProgress, ...]:
    """Per field, the change against the previous submitted self-check (None without scores).

    The two may have been scored under different catalogue versions; each keeps its own.
    """
    changes = []
    for now, before in zip(current.fields, previous.fields, strict=True):
        change = (
            round_half_up(Fraction(str(now.score)) - Fraction(str(before.score)))
            if now.score is not None and before.score is not None
            else None
        )
        changes.append(
            FieldProgress(
                field=now.field,
                previous_score=before.score,
                score=now.score,
                change=change,
                previous_level=before.level,
                level=now.level,
            )
        )
    return tuple(changes)
