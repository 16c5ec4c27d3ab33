"""Where a municipality stands among the model municipalities, field by field.

Computed in Python from the latest submitted self-check of each municipality (nx-27017 has
no $percentile; DESIGN.md section 8). Only fields with sufficient data take part.

- rank: 1 + the number of municipalities with a strictly higher score (ties share a rank);
- quartiles: linear interpolation between the sorted scores at position p × (n − 1), the
  "inclusive" method of Python's `statistics.quantiles` (a single score is all three
  quartiles), computed exactly and rounded half up to 0.1;
- band: top_quarter (score ≥ Q3), upper_middle (≥ median), lower_middle (≥ Q1), else
  bottom_quarter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from wok_assessment.domain.scoring import Assessment, round_half_up


class BenchmarkBand(StrEnum):
    TOP_QUARTER = "top_quarter"
    UPPER_MIDDLE = "upper_middle"
    LOWER_MIDDLE = "lower_middle"
    BOTTOM_QUARTER = "bottom_quarter"


@dataclass(frozen=True)
class FieldBenchmark:
    field: int
    participants: int
    score: float | None
    rank: int | None
    lowest: float | None
    q1: float | None
    median: float | None
    q3: float | None
    highest: float | None
    band: BenchmarkBand | None


def quantile(sorted_scores: list[float], share: Fraction) -> float:
    """Linear interpolation at position share × (n − 1), exact, rounded half up to 0.1."""
    values = [Fraction(str(score)) for score in sorted_scores]
    position = share * (len(values) - 1)
    below = math.floor(position)
    value = values[below]
    if below + 1 < len(values):
        value += (position - below) * (values[below + 1] - values[below])
    return round_half_up(value)


def _quartiles(scores: list[float]) -> tuple[float, float, float]:
    return (
        quantile(scores, Fraction(1, 4)),
        quantile(scores, Fraction(1, 2)),
        quantile(scores, Fraction(3, 4)),
    )


def band_of(score: float, *, q1: float, median: float, q3: float) -> BenchmarkBand:
    if score >= q3:
        return BenchmarkBand.TOP_QUARTER
    if score >= median:
        return BenchmarkBand.UPPER_MIDDLE
    if score >= q1:
        return BenchmarkBand.LOWER_MIDDLE
    return BenchmarkBand.BOTTOM_QUARTER


def benchmark(latest: Mapping[str, Assessment], ags: str) -> tuple[FieldBenchmark, ...]:
    """Per field, `ags` among all municipalities in `latest` (AGS → latest assessment)."""
    own = latest.get(ags)
    result = []
    for number in range(1, 8):
        scores = sorted(
            field.score
            for assessment in latest.values()
            if (field := assessment.field(number)).sufficient and field.score is not None
        )
        own_field = own.field(number) if own is not None else None
        score = (
            own_field.score
            if own_field is not None and own_field.sufficient and own_field.score is not None
            else None
        )
        if not scores:
            result.append(
                FieldBenchmark(number, 0, score, None, None, None, None, None, None, None)
            )
            continue
        q1, median, q3 = _quartiles(scores)
        result.append(
            FieldBenchmark(
                field=number,
                participants=len(scores),
                score=score,
                rank=None if score is None else 1 + sum(1 for other in scores if other > score),
                lowest=scores[0],
                q1=q1,
                median=median,
                q3=q3,
                highest=scores[-1],
                band=None if score is None else band_of(score, q1=q1, median=median, q3=q3),
            )
        )
    return tuple(result)
