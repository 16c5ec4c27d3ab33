"""Workshop means never reveal a person's rating: a stakeholder group with fewer ratings of a
field in a workshop than the minimum shows "too few ratings", and its ratings enter no mean."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_assessment.domain.catalogue import load_catalogues
from wok_assessment.domain.scoring import assess
from wok_assessment.domain.workshop import Perspective, summarize
from wok_contracts.events.assessment import StakeholderGroup

NOW = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
GROUPS = list(StakeholderGroup)
WORKSHOPS = ["2026-05", "2026-09"]
CATALOGUE = load_catalogues().current
ASSESSMENT = assess(CATALOGUE, {q: "partly" for q in CATALOGUE.question_ids()})


def perspective(index: int, workshop: str, group: StakeholderGroup, rating: int) -> Perspective:
    return Perspective(
        id=f"p{index}",
        ags="07312000",
        workshop=workshop,
        group=group,
        ratings={1: rating},
        recorded_at=NOW,
    )


def shown_figures(perspectives: list[Perspective], *, workshop: str | None) -> Any:
    """Everything a reader sees apart from head counts, in one view."""
    chosen = [p for p in perspectives if workshop is None or p.workshop == workshop]
    field = summarize(chosen, ASSESSMENT, min_group_size=3)[0]
    return field.mean, [(g.group, g.mean, g.gap) for g in field.groups]


cells = st.dictionaries(
    st.tuples(st.sampled_from(WORKSHOPS), st.sampled_from(GROUPS)),
    st.lists(st.integers(0, 100), min_size=1, max_size=6),
    min_size=1,
)


@settings(max_examples=200, deadline=None)
@given(cells=cells, changed=st.lists(st.integers(0, 100), min_size=1, max_size=6))
def test_a_cell_below_the_minimum_changes_no_mean_in_any_view(
    cells: dict[tuple[str, StakeholderGroup], list[int]], changed: list[int]
) -> None:
    small = [cell for cell, ratings in cells.items() if len(ratings) < 3]
    if not small:
        return
    target = small[0]
    altered = {**cells, target: changed[: len(cells[target])]}
    altered[target] += [0] * (len(cells[target]) - len(altered[target]))

    def build(source: dict[tuple[str, StakeholderGroup], list[int]]) -> list[Perspective]:
        return [
            perspective(index, workshop, group, rating)
            for index, ((workshop, group), ratings) in enumerate(sorted(source.items()))
            for rating in ratings
        ]

    for view in (None, *WORKSHOPS):
        assert shown_figures(build(cells), workshop=view) == shown_figures(
            build(altered), workshop=view
        )


def test_a_group_of_one_shows_too_few_ratings_and_three_show_their_mean() -> None:
    lone = [perspective(0, "2026-05", StakeholderGroup.BUSINESS, 12)]
    field = summarize(lone, ASSESSMENT, min_group_size=3)[0]
    assert field.participants == 1 and field.mean is None and field.counted == 0
    assert field.groups[0].mean is None and field.groups[0].gap is None
    assert field.widest_gap is None

    three = [
        *lone,
        perspective(1, "2026-05", StakeholderGroup.BUSINESS, 30),
        perspective(2, "2026-05", StakeholderGroup.BUSINESS, 33),
    ]
    field = summarize(three, ASSESSMENT, min_group_size=3)[0]
    assert (field.groups[0].mean, field.groups[0].counted, field.mean) == (25.0, 3, 25.0)
    assert field.groups[0].gap == round(25.0 - ASSESSMENT.field(1).score, 1)  # type: ignore[operator]
