"""Disclosure control: small people counts are withheld, and cannot be worked out again."""

from collections import Counter
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_reporting.disclosure import Disclosed, counts_people, protect
from wok_reporting.domain import (
    ATTENDED,
    CONFIRMATIONS_SENT,
    DIALOGUE_EVENTS,
    MUNICIPALITIES,
    PROGRAM,
    REGISTRATIONS_CANCELLED,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
    SECTOR_METRICS,
    daily_cell,
    sector_metric,
)

Cell = tuple[str, str]
STATUS = {
    "confirmed": REGISTRATIONS_CONFIRMED,
    "waitlisted": REGISTRATIONS_WAITLISTED,
    "cancelled": REGISTRATIONS_CANCELLED,
}
DAYS = ("2026-11-01", "2026-11-02", "2026-11-03")


def cells_of(registrations: list[tuple[str, str, str]], *, sent: int, attended: int) -> dict:
    """A municipality's published cells, from its registrations (status, sector, day)."""
    statuses = Counter(status for status, _, _ in registrations)
    sectors = Counter(sector for _, sector, _ in registrations)
    days = Counter(day for _, _, day in registrations)
    return {
        MUNICIPALITIES: 1,
        DIALOGUE_EVENTS: 1,
        REGISTRATIONS_TOTAL: len(registrations),
        **{metric: statuses[status] for status, metric in STATUS.items()},
        **{metric: sectors[metric] for metric in SECTOR_METRICS},
        ATTENDED: attended,
        CONFIRMATIONS_SENT: min(sent, statuses["confirmed"]),
        **{daily_cell(day): n for day, n in days.items()},
    }


def summed(parts: list[dict]) -> dict:
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def table_of(municipalities: dict[str, dict]) -> dict[str, dict]:
    """The program, each Land and each municipality, as reporting publishes them together."""
    lands: dict[str, list[dict]] = {}
    for ags, cells in municipalities.items():
        lands.setdefault(ags[:2], []).append(cells)
    return {
        PROGRAM: summed(list(municipalities.values())),
        **{f"land:{land}": summed(parts) for land, parts in lands.items()},
        **{f"municipality:{ags}": cells for ags, cells in municipalities.items()},
    }


# --- what a reader can work out -----------------------------------------------------------
# Written from the meaning of the numbers, independently of how `protect` finds complements:
# in every scope, total = confirmed + waitlisted + cancelled = the sum over the sectors =
# the sum over the days; every people cell of a Land is the sum over its municipalities and
# every one of the program the sum over the Länder. A withheld cell is recomputable exactly
# when its unit vector lies in the row space of these equations restricted to the withheld
# cells, i.e. when it is a row of their reduced row echelon form.


def equations(table: dict[str, dict]) -> list[dict[Cell, int]]:
    found = []
    for name, cells in table.items():
        total = {(name, REGISTRATIONS_TOTAL): 1}
        found.append({**total, **{(name, metric): -1 for metric in STATUS.values()}})
        found.append({**total, **{(name, metric): -1 for metric in SECTOR_METRICS}})
        days = [cell for cell in cells if cell.startswith("daily_registrations:")]
        found.append({**total, **{(name, day): -1 for day in days}})
    lands = [name for name in table if name.startswith("land:")]
    groups = [(PROGRAM, lands)] + [
        (land, [n for n in table if n.startswith(f"municipality:{land[5:]}")]) for land in lands
    ]
    for whole, parts in groups:
        names = {cell for scope in (whole, *parts) for cell in table[scope]}
        for cell in names:
            if counts_people(cell):
                equation = {(whole, cell): 1} if cell in table[whole] else {}
                equation.update({(part, cell): -1 for part in parts if cell in table[part]})
                found.append(equation)
    return found


def recomputable(table: dict[str, dict], disclosed: dict[str, Disclosed]) -> set[Cell]:
    withheld = [(name, cell) for name, result in disclosed.items() for cell in result.suppressed]
    index = {cell: i for i, cell in enumerate(withheld)}
    matrix = [[Fraction(0)] * len(withheld) for _ in range(len(equations(table)))]
    for row, equation in zip(matrix, equations(table), strict=True):
        for cell, coefficient in equation.items():
            if cell in index:
                row[index[cell]] = Fraction(coefficient)
    rank = 0
    pivots = []
    for column in range(len(withheld)):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][column] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        head = matrix[rank][column]
        matrix[rank] = [value / head for value in matrix[rank]]
        for r in range(len(matrix)):
            if r != rank and matrix[r][column] != 0:
                factor = matrix[r][column]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        pivots.append(column)
        rank += 1
    return {
        withheld[column]
        for row, column in zip(matrix[:rank], pivots, strict=True)
        if sum(value != 0 for value in row) == 1
    }


# --- examples -----------------------------------------------------------------------------


def resident(status: str, day: str = DAYS[0]) -> tuple[str, str, str]:
    return (status, sector_metric("resident"), day)


def test_a_count_of_one_to_four_people_is_withheld_and_listed() -> None:
    table = table_of({"07312000": cells_of([resident("confirmed")] * 3, sent=0, attended=0)})

    result = protect(table)["municipality:07312000"]

    assert result.metrics[REGISTRATIONS_TOTAL] is None
    assert result.metrics[REGISTRATIONS_CONFIRMED] is None
    assert result.metrics[daily_cell(DAYS[0])] is None
    assert REGISTRATIONS_TOTAL in result.suppressed


def test_zero_and_counts_of_five_or_more_are_published() -> None:
    table = table_of({"07312000": cells_of([resident("confirmed")] * 5, sent=5, attended=7)})

    result = protect(table)[PROGRAM]

    assert result.metrics[REGISTRATIONS_WAITLISTED] == 0
    assert result.metrics[REGISTRATIONS_CONFIRMED] == 5
    assert result.metrics[ATTENDED] == 7
    assert result.suppressed == ()


def test_counts_that_are_not_people_are_never_withheld() -> None:
    table = table_of({"07312000": cells_of([resident("confirmed")], sent=0, attended=0)})

    result = protect(table)["municipality:07312000"]

    assert result.metrics[MUNICIPALITIES] == 1
    assert result.metrics[DIALOGUE_EVENTS] == 1


def test_a_municipality_cell_cannot_be_recovered_from_its_land_and_the_others() -> None:
    table = table_of(
        {
            "07312000": cells_of(
                [resident("confirmed")] * 3 + [resident("waitlisted")] * 7, sent=0, attended=0
            ),
            "07315000": cells_of(
                [resident("confirmed")] * 8 + [resident("waitlisted")] * 9, sent=0, attended=0
            ),
        }
    )

    disclosed = protect(table)

    assert disclosed["municipality:07312000"].metrics[REGISTRATIONS_CONFIRMED] is None
    # Without complements: Land confirmed 11 - Mainz 8 = 3 would give it away.
    assert disclosed["municipality:07315000"].metrics[REGISTRATIONS_CONFIRMED] is None
    assert disclosed["municipality:07312000"].metrics[REGISTRATIONS_TOTAL] == 10
    assert set(disclosed["municipality:07312000"].complementary) <= set(
        disclosed["municipality:07312000"].suppressed
    )
    assert recomputable(table, disclosed) == set()


def test_a_lone_municipality_in_its_land_hides_the_land_cell_it_equals() -> None:
    table = table_of(
        {
            "07312000": cells_of([resident("confirmed")] * 12, sent=2, attended=0),
            "05911000": cells_of([resident("confirmed")] * 12, sent=9, attended=0),
        }
    )

    disclosed = protect(table)

    assert disclosed["land:07"].metrics[CONFIRMATIONS_SENT] is None
    assert disclosed["municipality:07312000"].metrics[CONFIRMATIONS_SENT] is None
    assert recomputable(table, disclosed) == set()


def test_the_reader_check_itself_finds_an_unprotected_cell() -> None:
    table = table_of({"07312000": cells_of([resident("confirmed")] * 9, sent=0, attended=0)})
    naive = {
        name: Disclosed(
            metrics={}, suppressed=(REGISTRATIONS_CONFIRMED,) if name == PROGRAM else ()
        )
        for name in table
    }

    assert recomputable(table, naive) == {(PROGRAM, REGISTRATIONS_CONFIRMED)}


# --- properties ---------------------------------------------------------------------------

registrations = st.lists(
    st.tuples(
        st.sampled_from(sorted(STATUS)),
        st.sampled_from([sector_metric(s) for s in ("resident", "business", "politics")]),
        st.sampled_from(DAYS),
    ),
    max_size=14,
)
municipality_cells = st.builds(
    lambda regs, sent, attended: cells_of(regs, sent=sent, attended=attended),
    registrations,
    st.integers(0, 12),
    st.integers(0, 12),
)
tables = st.dictionaries(
    st.sampled_from(["07312000", "07315000", "07111000", "05911000", "05315000", "09162000"]),
    municipality_cells,
    max_size=6,
).map(table_of)


@settings(max_examples=150, deadline=None)
@given(tables)
def test_no_withheld_cell_can_be_recomputed_from_the_published_ones(
    table: dict[str, dict[str, int]],
) -> None:
    assert recomputable(table, protect(table)) == set()


@settings(max_examples=150, deadline=None)
@given(tables)
def test_every_small_people_count_is_withheld_and_the_rest_is_true(
    table: dict[str, dict[str, int]],
) -> None:
    disclosed = protect(table)

    for name, cells in table.items():
        result = disclosed[name]
        assert set(result.suppressed) == {m for m, v in result.metrics.items() if v is None}
        for cell, value in cells.items():
            if counts_people(cell) and 1 <= value <= 4:
                assert result.metrics[cell] is None
            elif not counts_people(cell) or value == 0:
                assert result.metrics[cell] == value
            else:
                assert result.metrics[cell] in (None, value)
