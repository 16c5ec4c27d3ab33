"""Disclosure control over every cell reporting publishes (stream, API, exports).

The published table has one row per scope (program, each Land, each municipality) and
one column per cell: the metrics and the registrations of each day. A reader knows how
the cells relate, and each relation is a signed sum that equals zero:

- within a scope: total = confirmed + waitlisted + cancelled; total = the sum over the
  sectors; total = the sum over the days; workshop participants = the sum over the
  stakeholder groups; taskforce members = the sum over the roles = the sum over the sectors
  (`domain.BREAKDOWNS`);
- across scopes, for every people cell: a Land = the sum over its municipalities, and the
  program = the sum over the Länder (a scope's parent is its nearest ancestor in the table).

Primary suppression withholds people counts of 1 to 4. Complementary suppression then
withholds more until no withheld cell can be worked out from the published ones: first
cheaply (no relation may hold exactly one withheld cell), then exactly, by solving the
relations restricted to the withheld cells (a cell is recomputable if and only if its
unit vector lies in their row space). The complement chosen is the smallest non-zero
published cell of a relation that gives a cell away: least information lost, and a
withheld 0 beside a small cell is easily guessed, which would give the small cell away.

Statistics computed from people's answers (the mean workshop rating of a field and its gap
to the self-check score) share the fate of the people cell that counts whose answers they
average (`ScopeFigures.derived_from`): withheld when it is withheld (or 0). With the count
and the mean a reader has the sum of the ratings, and the sums obey the same relations
between scopes as the counts, so the pattern that protects the counts protects the sums.
Scores, quartiles and ranks of municipalities describe administrations, not people, and
are published as they are.

Not covered: differences between successive snapshots of one scope (a total going from 12
to 13 says one more person registered), and the bounds non-negativity puts on withheld
cells; the exact value of a withheld cell cannot be derived.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

from wok_reporting.domain import (
    BREAKDOWNS,
    MIN_PUBLISHABLE,
    PEOPLE_METRICS,
    REGISTRATIONS_TOTAL,
    ScopeFigures,
    parent_of,
)

Cell = tuple[str, str]  # (scope id, cell name)
Relation = tuple[tuple[Cell, int], ...]  # cells with coefficients +1 / -1, summing to 0

DAILY_PREFIX = "daily_registrations:"


@dataclass(frozen=True)
class Disclosed:
    """The cells of one scope as they may be published; withheld ones are None."""

    metrics: dict[str, int | None]
    suppressed: tuple[str, ...] = field(default=())
    complementary: tuple[str, ...] = field(default=())
    statistics: dict[str, float | None] = field(default_factory=dict)


@contextlib.contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile (for pure computations that make many
    objects and no cycles); as it was afterwards."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def counts_people(name: str) -> bool:
    return name in PEOPLE_METRICS or name.startswith(DAILY_PREFIX)


def needs_primary_suppression(name: str, value: int) -> bool:
    """A count of 1 to 4 people could point at someone; it is withheld.

    0 is published: it counts nobody, so it points at nobody. The most a 0 adds is a group
    fact (waitlisted 0: everyone who registered there was confirmed), about people who
    stay unnamed, and uncounted when they are few, and about an administrative status,
    not a personal attribute. Hiding zeros would blank most of a young program's table
    for that. Counts that are not people are never withheld.
    """
    return counts_people(name) and 0 < value < MIN_PUBLISHABLE


def _parent_in(scope: str, table: Mapping[str, object]) -> str | None:
    parent = parent_of(scope)
    while parent is not None and parent not in table:
        parent = parent_of(parent)
    return parent


def relations(table: Mapping[str, Mapping[str, int]]) -> list[Relation]:
    """Every relation between the cells of `table` that a reader can use (module doc)."""
    found: list[Relation] = []
    for scope, cells in table.items():
        days = tuple(name for name in cells if name.startswith(DAILY_PREFIX))
        for whole, breakdowns in BREAKDOWNS:
            if whole not in cells:
                continue
            total = ((scope, whole), 1)
            for parts in (*breakdowns, days) if whole == REGISTRATIONS_TOTAL else breakdowns:
                # A part missing from the cells is a known 0 (a day without registrations).
                present = [name for name in parts if name in cells]
                found.append((total, *(((scope, name), -1) for name in present)))
    children: dict[str, list[str]] = {}
    for scope in table:
        parent = _parent_in(scope, table)
        if parent is not None:
            children.setdefault(parent, []).append(scope)
    for parent, child_scopes in children.items():
        names = {
            cell
            for scope in (parent, *child_scopes)
            for cell in table[scope]
            if counts_people(cell)
        }
        for cell in sorted(names):
            parent_cell = [((parent, cell), 1)] if cell in table[parent] else []
            found.append(
                (
                    *parent_cell,
                    *(((scope, cell), -1) for scope in child_scopes if cell in table[scope]),
                )
            )
    return found


def recomputable(hidden: set[Cell], relations_: list[Relation]) -> set[Cell]:
    """The withheld cells a reader can work out exactly from the published ones and the
    relations: those whose unit vector is a row of the reduced row echelon form of the
    relations restricted to the withheld cells.

    Solved per group of withheld cells linked by relations (the row space is the sum of
    the groups' row spaces, so the answer is the same; the elimination's cost grows with
    the square of a group's size, not of all withheld cells)."""
    parent: dict[Cell, Cell] = {}

    def root(cell: Cell) -> Cell:
        while parent.get(cell, cell) != cell:
            parent[cell] = parent.get(parent[cell], parent[cell])
            cell = parent[cell]
        return cell

    restricted: list[tuple[Relation, Cell]] = []
    for relation in relations_:
        cells = [cell for cell, _ in relation if cell in hidden]
        if not cells:
            continue
        first = root(cells[0])
        for cell in cells[1:]:
            other = root(cell)
            if other != first:
                parent[other] = first
        restricted.append((relation, cells[0]))
    groups: dict[Cell, list[Relation]] = {}
    for relation, cell in restricted:
        groups.setdefault(root(cell), []).append(relation)
    found: set[Cell] = set()
    for group in groups.values():
        found |= _solved(hidden, group)
    return found


def _solved(hidden: set[Cell], relations_: list[Relation]) -> set[Cell]:
    """`recomputable` over one group of relations. Exact: integers while they stay
    integers (the coefficients are ±1, and mostly remain so), fractions where needed.

    Which cells are recomputable does not depend on the order of the relations or the
    choice of pivots, so both are chosen to keep the rows sparse: the shortest relations
    first, and as pivot the cell that occurs in the fewest relations."""
    occurs: dict[Cell, int] = {}
    for relation in relations_:
        for cell, _ in relation:
            if cell in hidden:
                occurs[cell] = occurs.get(cell, 0) + 1

    def length(relation: Relation) -> int:
        return sum(cell in hidden for cell, _ in relation)

    # The pivot preference as one number per cell (a C-level key for `min`).
    preference = {
        cell: rank for rank, cell in enumerate(sorted(occurs, key=lambda c: (occurs[c], c)))
    }

    pivots: dict[Cell, dict[Cell, Fraction | int]] = {}
    holders: dict[Cell, set[Cell]] = {}  # column -> the pivots whose rows have it
    for relation in sorted(relations_, key=length):
        row: dict[Cell, Fraction | int] = {
            cell: coefficient for cell, coefficient in relation if cell in hidden
        }
        for column in [column for column in row if column in pivots]:
            factor = row.get(column)
            if not factor:
                continue
            for cell, value in pivots[column].items():
                updated = row.get(cell, 0) - factor * value
                if updated:
                    row[cell] = updated
                else:
                    row.pop(cell, None)
        if not row:
            continue
        pivot = min(row, key=preference.__getitem__)
        scale = row[pivot]
        if scale == -1:
            row = {cell: -value for cell, value in row.items()}
        elif scale != 1:
            row = {cell: Fraction(value) / scale for cell, value in row.items()}
        # Clear the new pivot's column in the rows that have it (found by column, not by
        # looking through every row).
        for key in list(holders.get(pivot, ())):
            other = pivots[key]
            factor = other[pivot]
            for cell, value in row.items():
                updated = other.get(cell, 0) - factor * value
                if updated:
                    if cell not in other:
                        holders.setdefault(cell, set()).add(key)
                    other[cell] = updated
                elif other.pop(cell, None) is not None:
                    holders[cell].discard(key)
        pivots[pivot] = row
        for cell in row:
            holders.setdefault(cell, set()).add(pivot)
    return {column for column, row in pivots.items() if len(row) == 1}


def _nearest_with(
    start: Relation | list[Relation],
    by_cell: Mapping[Cell, list[Relation]],
    published: Callable[[Relation], list[tuple[Cell, int]]],
) -> list[Relation]:
    """The relations nearest to `start` that hold a published non-zero cell: `start`
    itself, else those reached through its cells, breadth first (a cell can be given away
    by a chain of relations whose nearer links are withheld or zero)."""
    layer: list[Relation] = [start] if isinstance(start, tuple) else list(start)
    seen: set[Relation] = set(layer)
    seen_cells: set[Cell] = set()
    while layer:
        with_published = [relation for relation in layer if published(relation)]
        if with_published:
            return with_published
        reached = {cell for relation in layer for cell, _ in relation} - seen_cells
        seen_cells |= reached
        layer = list(dict.fromkeys(r for c in reached for r in by_cell.get(c, []) if r not in seen))
        seen.update(layer)
    return []


def protect(table: Mapping[str, Mapping[str, int]]) -> dict[str, Disclosed]:
    """Disclosure control over a set of scopes published together (module doc).

    `table` maps scope ids (`program`, `land:07`, `municipality:07312000`) to their true
    cells; the parts must add up to their wholes.
    """
    values: dict[Cell, int] = {
        (scope, name): value for scope, cells in table.items() for name, value in cells.items()
    }
    primary = {cell for cell, value in values.items() if needs_primary_suppression(cell[1], value)}
    hidden = set(primary)
    relations_ = relations(table)
    by_cell: dict[Cell, list[Relation]] = {}
    for relation in relations_:
        for cell, _ in relation:
            by_cell.setdefault(cell, []).append(relation)

    def published(relation: Relation) -> list[tuple[Cell, int]]:
        return [(cell, sign) for cell, sign in relation if cell not in hidden and values[cell]]

    def complement(candidates_from: list[Relation]) -> Cell | None:
        """The smallest published non-zero cell; zeros are never withheld: every withheld
        cell is then non-zero, so a cell that can be worked out always depends on a
        published non-zero one, and withholding that one is what helps."""
        shown = [item for relation in candidates_from for item in published(relation)]
        if not shown:
            return None
        cell, _ = min(
            shown, key=lambda item: (values[item[0]], item[1] > 0, item[0][0], item[0][1])
        )
        return cell

    while True:
        changed = True
        while changed:
            changed = False
            for relation in relations_:
                if sum(cell in hidden for cell, _ in relation) != 1:
                    continue
                chosen = complement(
                    [relation]
                    if published(relation)
                    else _nearest_with(relation, by_cell, published)
                )
                if chosen is not None:
                    hidden.add(chosen)
                    changed = True
        exposed = recomputable(hidden, relations_)
        if not exposed:
            break
        for cell in sorted(exposed):
            chosen = complement(_nearest_with(by_cell.get(cell, []), by_cell, published))
            if chosen is not None:
                hidden.add(chosen)
    complementary = hidden - primary  # once: per cell it cost the table times the hidden
    return {
        scope: Disclosed(
            metrics={name: None if (scope, name) in hidden else v for name, v in cells.items()},
            suppressed=tuple(name for name in cells if (scope, name) in hidden),
            complementary=tuple(name for name in cells if (scope, name) in complementary),
        )
        for scope, cells in table.items()
    }


def disclose(figures: Mapping[str, ScopeFigures]) -> dict[str, Disclosed]:
    """Disclosure control over every scope published together: the people cells (`protect`),
    then the statistics derived from people's answers (module doc)."""
    # Many small objects, no reference cycles: the cyclic collector would scan the whole
    # heap (a large tally of the history among it) again and again meanwhile.
    with cycle_collection_paused():
        return _disclose(figures)


def _disclose(figures: Mapping[str, ScopeFigures]) -> dict[str, Disclosed]:
    disclosed = protect({scope: figure.cells() for scope, figure in figures.items()})
    result = {}
    for scope, figure in figures.items():
        cells = disclosed[scope]
        statistics: dict[str, float | None] = {}
        withheld: list[str] = []
        for name, value in figure.statistics.items():
            source = figure.derived_from.get(name)
            if source is not None and value is not None:
                source_scope, source_cell = source
                shown = disclosed.get(source_scope)
                count = None if shown is None else shown.metrics.get(source_cell)
                if not count:  # withheld, or nobody: a mean of nobody is no figure
                    value = None
                    withheld.append(name)
            statistics[name] = value
        result[scope] = Disclosed(
            metrics=cells.metrics,
            suppressed=(*cells.suppressed, *withheld),
            complementary=cells.complementary,
            statistics=statistics,
        )
    return result
