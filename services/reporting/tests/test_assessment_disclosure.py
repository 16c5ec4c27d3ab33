"""Disclosure control over workshop participants and taskforce members: small counts are
withheld, cannot be worked out again, and the means of their ratings go with them; scores of
municipalities are not people and stay published."""

from datetime import UTC, datetime
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_contracts import StakeholderGroup, TaskforceRole, TaskforceSector
from wok_reporting.disclosure import Disclosed, counts_people, disclose
from wok_reporting.domain import (
    FIELDS,
    PERSPECTIVE,
    PERSPECTIVE_GROUP_METRICS,
    PERSPECTIVES,
    PROGRAM,
    SELF_CHECK,
    TASKFORCE_MEMBER,
    TASKFORCE_MEMBERS,
    TASKFORCE_ROLE_METRICS,
    TASKFORCE_SECTOR_METRICS,
    Fact,
    Projection,
    ScopeFigures,
    aggregate,
    perspective_field_metric,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
Cell = tuple[str, str]
PLACES = ["07312000", "07315000", "07111000", "05911000", "05315000", "09162000"]


def fact(entity: str, entity_id: str, ags: str, fields: dict) -> Fact:
    return Fact(
        entity=entity,
        entity_id=entity_id,
        ags=ags,
        event_id=f"e-{entity_id}",
        event_type=f"test.{entity}",
        time=T0,
        fields=fields,
    )


# --- what a reader can work out (written from the meaning of the numbers) ----------------
# In every scope: participants = the sum over the stakeholder groups; taskforce members = the
# sum over the roles = the sum over the sectors. Across scopes every people cell of a Land is
# the sum over its municipalities and every one of the program the sum over the Länder.


def equations(table: dict[str, dict[str, int]]) -> list[dict[Cell, int]]:
    found: list[dict[Cell, int]] = []
    for name in table:
        for whole, parts in (
            (PERSPECTIVES, PERSPECTIVE_GROUP_METRICS),
            (TASKFORCE_MEMBERS, TASKFORCE_ROLE_METRICS),
            (TASKFORCE_MEMBERS, TASKFORCE_SECTOR_METRICS),
        ):
            found.append({(name, whole): 1, **{(name, part): -1 for part in parts}})
    lands = [name for name in table if name.startswith("land:")]
    groups = [(PROGRAM, lands)] + [
        (land, [n for n in table if n.startswith(f"municipality:{land[5:]}")]) for land in lands
    ]
    for whole, parts in groups:
        for cell in table[whole]:
            if counts_people(cell):
                found.append({(whole, cell): 1, **{(part, cell): -1 for part in parts}})
    return found


def recomputable(table: dict[str, dict[str, int]], disclosed: dict[str, Disclosed]) -> set[Cell]:
    withheld = [
        (name, cell)
        for name, result in disclosed.items()
        for cell in result.suppressed
        if cell in table[name]
    ]
    index = {cell: i for i, cell in enumerate(withheld)}
    rows = []
    for equation in equations(table):
        row = [Fraction(0)] * len(withheld)
        for cell, coefficient in equation.items():
            if cell in index:
                row[index[cell]] = Fraction(coefficient)
        rows.append(row)
    rank, pivots = 0, []
    for column in range(len(withheld)):
        pivot = next((r for r in range(rank, len(rows)) if rows[r][column] != 0), None)
        if pivot is None:
            continue
        rows[rank], rows[pivot] = rows[pivot], rows[rank]
        head = rows[rank][column]
        rows[rank] = [value / head for value in rows[rank]]
        for r in range(len(rows)):
            if r != rank and rows[r][column] != 0:
                factor = rows[r][column]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[rank], strict=True)]
        pivots.append(column)
        rank += 1
    return {
        withheld[column]
        for row, column in zip(rows[:rank], pivots, strict=True)
        if sum(value != 0 for value in row) == 1
    }


# --- random programs ---------------------------------------------------------------------

participants = st.lists(
    st.tuples(
        st.sampled_from(PLACES),
        st.sampled_from([StakeholderGroup.POLITICS, StakeholderGroup.CIVIL_SOCIETY]),
        st.sets(st.sampled_from([1, 6]), min_size=1),
        st.integers(0, 100),
    ),
    max_size=30,
)
members = st.lists(
    st.tuples(
        st.sampled_from(PLACES),
        st.sampled_from([TaskforceRole.LEAD, TaskforceRole.MEMBER]),
        st.sampled_from([TaskforceSector.ADMINISTRATION, TaskforceSector.ORGANISATIONS]),
    ),
    max_size=30,
)


def figures_of(people: list, team: list) -> dict[str, ScopeFigures]:
    facts = [
        fact(
            PERSPECTIVE,
            f"p{i}",
            ags,
            {"group": group.value, **{f"rating_{n}": rating for n in fields}},
        )
        for i, (ags, group, fields, rating) in enumerate(people)
    ]
    facts += [
        fact(TASKFORCE_MEMBER, f"t{i}", ags, {"role": r.value, "sector": s.value, "removed": False})
        for i, (ags, r, s) in enumerate(team)
    ]
    # Every municipality scored its self-check: scores are published whatever the people.
    facts += [
        fact(SELF_CHECK, f"s{i}", ags, {"sequence": 1, "scored": True, "score_1": 10.0 * i})
        for i, ags in enumerate(PLACES)
    ]
    return aggregate(Projection.from_facts(facts))


@settings(max_examples=60, deadline=None)
@given(participants, members)
def test_no_withheld_participant_or_member_count_can_be_worked_out(people, team) -> None:
    figures = figures_of(people, team)
    table = {scope: figure.cells() for scope, figure in figures.items()}

    disclosed = disclose(figures)

    assert recomputable(table, disclosed) == set()
    for scope, cells in table.items():
        for name, value in cells.items():
            shown = disclosed[scope].metrics[name]
            if counts_people(name) and 1 <= value <= 4:
                assert shown is None and name in disclosed[scope].suppressed
            elif not counts_people(name) or value == 0:
                assert shown == value
            else:
                assert shown in (None, value)


@settings(max_examples=60, deadline=None)
@given(participants, members)
def test_a_rating_mean_is_shown_only_beside_its_published_count(people, team) -> None:
    figures = figures_of(people, team)

    disclosed = disclose(figures)

    for scope, figure in figures.items():
        result = disclosed[scope]
        for name, value in figure.statistics.items():
            shown = result.statistics[name]
            source = figure.derived_from.get(name)
            if source is None:
                assert shown == value  # scores, quartiles, ranks: not people
                continue
            count = disclosed[source[0]].metrics[source[1]]
            if value is None or not count:
                assert shown is None
                assert value is None or name in result.suppressed
            else:
                assert shown == value


def test_three_participants_hide_their_mean_and_the_gap_but_not_the_scores() -> None:
    people = [("07312000", StakeholderGroup.POLITICS, {6}, rating) for rating in (10, 20, 30)]
    figures = figures_of(people, [])

    disclosed = disclose(figures)
    kl = disclosed["municipality:07312000"]

    assert kl.metrics[perspective_field_metric(6)] is None
    assert kl.statistics["field_6_perspective_mean"] is None
    assert "field_6_perspective_mean" in kl.suppressed
    assert kl.statistics["field_6_gap"] is None
    assert kl.statistics["field_1_score"] == 0.0
    assert kl.statistics["field_1_rank"] == len(PLACES)
    assert all(disclosed[f"field:{n}"].statistics["perspective_mean"] is None for n in FIELDS)
