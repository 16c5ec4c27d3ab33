"""Disclosure control: small people counts are withheld, and cannot be worked out again."""

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_reporting.domain import (
    CONFIRMATIONS_SENT,
    DIALOGUE_EVENTS,
    MUNICIPALITIES,
    PEOPLE_METRICS,
    PROGRAM,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
    Disclosed,
    protect,
)

Cell = tuple[str, str]


def scope(
    *, confirmed: int, waitlisted: int, sent: int = 0, municipalities: int = 1, events: int = 1
) -> dict[str, int]:
    return {
        MUNICIPALITIES: municipalities,
        DIALOGUE_EVENTS: events,
        REGISTRATIONS_TOTAL: confirmed + waitlisted,
        REGISTRATIONS_CONFIRMED: confirmed,
        REGISTRATIONS_WAITLISTED: waitlisted,
        CONFIRMATIONS_SENT: sent,
    }


def program_with(parts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """A table as reporting publishes it: the program is the sum of its municipalities."""
    metrics = scope(confirmed=0, waitlisted=0)
    program = {metric: sum(part[metric] for part in parts.values()) for metric in metrics}
    return {PROGRAM: program, **parts}


# --- what a reader can work out -----------------------------------------------------------
# Written from the meaning of the numbers, independently of how `protect` finds complements:
# every scope has total = confirmed + waitlisted, and each people count of the program is
# the sum over the municipalities. A withheld cell is recomputable exactly when its unit
# vector lies in the row space of these equations restricted to the withheld cells.


def _rank(rows: list[list[Fraction]]) -> int:
    matrix = [row[:] for row in rows]
    rank = 0
    columns = len(matrix[0]) if matrix else 0
    for column in range(columns):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][column] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        for r in range(len(matrix)):
            if r != rank and matrix[r][column] != 0:
                factor = matrix[r][column] / matrix[rank][column]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        rank += 1
    return rank


def recomputable(
    table: dict[str, dict[str, int]], disclosed: dict[str, Disclosed]
) -> set[Cell]:
    withheld = [
        (name, metric) for name, result in disclosed.items() for metric in result.suppressed
    ]
    equations: list[dict[Cell, int]] = [
        {
            (name, REGISTRATIONS_TOTAL): 1,
            (name, REGISTRATIONS_CONFIRMED): -1,
            (name, REGISTRATIONS_WAITLISTED): -1,
        }
        for name in table
    ]
    parts = [name for name in table if name != PROGRAM]
    if PROGRAM in table and parts:
        for metric in PEOPLE_METRICS:
            equations.append({(PROGRAM, metric): 1, **{(name, metric): -1 for name in parts}})
    matrix = [[Fraction(equation.get(cell, 0)) for cell in withheld] for equation in equations]
    base = _rank(matrix)
    found = set()
    for index, cell in enumerate(withheld):
        unit = [Fraction(int(i == index)) for i in range(len(withheld))]
        if _rank([*matrix, unit]) == base:
            found.add(cell)
    return found


# --- examples -----------------------------------------------------------------------------


def test_a_count_of_one_to_four_people_is_withheld_and_listed() -> None:
    result = protect({PROGRAM: scope(confirmed=3, waitlisted=0)})[PROGRAM]

    assert result.metrics[REGISTRATIONS_TOTAL] is None
    assert result.metrics[REGISTRATIONS_CONFIRMED] is None
    assert set(result.suppressed) == {REGISTRATIONS_TOTAL, REGISTRATIONS_CONFIRMED}


def test_zero_and_counts_of_five_or_more_are_published() -> None:
    result = protect({PROGRAM: scope(confirmed=5, waitlisted=0, sent=5)})[PROGRAM]

    assert result.metrics[REGISTRATIONS_WAITLISTED] == 0
    assert result.metrics[REGISTRATIONS_CONFIRMED] == 5
    assert result.suppressed == ()


def test_counts_that_are_not_people_are_never_withheld() -> None:
    result = protect(
        {PROGRAM: scope(confirmed=0, waitlisted=0, municipalities=1, events=2)}
    )[PROGRAM]

    assert result.metrics[MUNICIPALITIES] == 1
    assert result.metrics[DIALOGUE_EVENTS] == 2


def test_one_waitlisted_person_hides_the_confirmed_count_too_while_the_total_stays() -> None:
    result = protect({PROGRAM: scope(confirmed=5, waitlisted=1)})[PROGRAM]

    assert result.metrics[REGISTRATIONS_TOTAL] == 6
    assert result.metrics[REGISTRATIONS_CONFIRMED] is None
    assert result.metrics[REGISTRATIONS_WAITLISTED] is None
    assert set(result.suppressed) == {REGISTRATIONS_CONFIRMED, REGISTRATIONS_WAITLISTED}


def test_a_municipality_cell_cannot_be_recovered_from_the_program_and_the_others() -> None:
    table = program_with(
        {
            "municipality:07312000": scope(confirmed=3, waitlisted=7),
            "municipality:07315000": scope(confirmed=8, waitlisted=9),
        }
    )

    disclosed = protect(table)

    kaiserslautern = disclosed["municipality:07312000"]
    mainz = disclosed["municipality:07315000"]
    assert kaiserslautern.metrics[REGISTRATIONS_CONFIRMED] is None
    # Without complements: program confirmed 11 - Mainz 8 = 3 would give it away.
    assert mainz.metrics[REGISTRATIONS_CONFIRMED] is None
    assert kaiserslautern.metrics[REGISTRATIONS_TOTAL] == 10
    assert disclosed[PROGRAM].suppressed == ()
    assert recomputable(table, disclosed) == set()


def test_a_lone_municipality_cell_also_hides_the_program_cell_it_equals() -> None:
    table = program_with({"municipality:07312000": scope(confirmed=12, waitlisted=0, sent=2)})

    disclosed = protect(table)

    assert disclosed[PROGRAM].metrics[CONFIRMATIONS_SENT] is None
    assert disclosed["municipality:07312000"].metrics[CONFIRMATIONS_SENT] is None


def test_the_reader_check_itself_finds_an_unprotected_cell() -> None:
    table = {PROGRAM: scope(confirmed=5, waitlisted=1)}
    naive = {PROGRAM: Disclosed(metrics={}, suppressed=(REGISTRATIONS_WAITLISTED,))}

    assert recomputable(table, naive) == {(PROGRAM, REGISTRATIONS_WAITLISTED)}


# --- properties ---------------------------------------------------------------------------

counts = st.integers(min_value=0, max_value=12)
municipality_scopes = st.builds(
    lambda confirmed, waitlisted, sent: scope(
        confirmed=confirmed, waitlisted=waitlisted, sent=min(sent, confirmed)
    ),
    counts,
    counts,
    counts,
)
tables = st.lists(municipality_scopes, max_size=6).map(
    lambda parts: program_with(
        {f"municipality:07{index:03d}000": part for index, part in enumerate(parts, start=311)}
    )
)


@settings(max_examples=400, deadline=None)
@given(tables)
def test_no_withheld_cell_can_be_recomputed_from_the_published_ones(
    table: dict[str, dict[str, int]],
) -> None:
    assert recomputable(table, protect(table)) == set()


@settings(max_examples=400, deadline=None)
@given(tables)
def test_every_small_people_count_is_withheld_and_the_rest_is_true(
    table: dict[str, dict[str, int]],
) -> None:
    disclosed = protect(table)

    for name, metrics in table.items():
        result = disclosed[name]
        assert set(result.suppressed) == {m for m, v in result.metrics.items() if v is None}
        for metric, value in metrics.items():
            if metric in PEOPLE_METRICS and 1 <= value <= 4:
                assert result.metrics[metric] is None
            elif metric not in PEOPLE_METRICS or value == 0:
                assert result.metrics[metric] == value
            else:
                assert result.metrics[metric] in (None, value)
