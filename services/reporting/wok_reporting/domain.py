"""Reporting rules as plain code: projection rows, aggregates per scope, disclosure control.

Nothing here does I/O. The projections hold one row per entity (keyed by its id), so
counting rows counts entities, however often an event announcing one was delivered.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from wok_contracts import AggregateScope, AggregateSnapshot, NotificationKind, RegistrationStatus

PROGRAM = "program"
MIN_PUBLISHABLE = 5  # DESIGN.md section 5: a cell counting fewer than 5 people is withheld

MUNICIPALITIES = "municipalities"
DIALOGUE_EVENTS = "dialogue_events"
REGISTRATIONS_TOTAL = "registrations_total"
REGISTRATIONS_CONFIRMED = "registrations_confirmed"
REGISTRATIONS_WAITLISTED = "registrations_waitlisted"
CONFIRMATIONS_SENT = "confirmations_sent"

METRICS = (
    MUNICIPALITIES,
    DIALOGUE_EVENTS,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_WAITLISTED,
    CONFIRMATIONS_SENT,
)
# Metrics whose value is a number of people; only these are subject to disclosure control.
PEOPLE_METRICS = (
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_WAITLISTED,
    CONFIRMATIONS_SENT,
)
# total = confirmed + waitlisted holds in every scope; a reader can use it to recompute cells.
STATUS_PARTS = (REGISTRATIONS_CONFIRMED, REGISTRATIONS_WAITLISTED)


def as_utc(moment: datetime) -> datetime:
    """Event times in UTC; a time without zone is taken as UTC (CloudEvents times are UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# --- projection rows: one per entity, the newest event about it wins ---------------------


@dataclass(frozen=True)
class MunicipalityRow:
    ags: str
    name: str
    kind: str
    land: str
    event_time: datetime

    @property
    def entity_id(self) -> str:
        return self.ags


@dataclass(frozen=True)
class DialogueEventRow:
    dialogue_event_id: str
    ags: str
    event_time: datetime

    @property
    def entity_id(self) -> str:
        return self.dialogue_event_id


@dataclass(frozen=True)
class RegistrationRow:
    registration_id: str
    dialogue_event_id: str
    ags: str
    status: str
    event_time: datetime

    @property
    def entity_id(self) -> str:
        return self.registration_id


@dataclass(frozen=True)
class NotificationRow:
    notification_id: str
    registration_id: str
    ags: str
    kind: str
    event_time: datetime

    @property
    def entity_id(self) -> str:
        return self.notification_id


ProjectionRow = MunicipalityRow | DialogueEventRow | RegistrationRow | NotificationRow
ROW_TYPES: tuple[type[ProjectionRow], ...] = (
    MunicipalityRow,
    DialogueEventRow,
    RegistrationRow,
    NotificationRow,
)


def supersedes(new: ProjectionRow, stored: ProjectionRow | None) -> bool:
    """Whether `new` may replace `stored`: a late, older event must not undo a newer one.

    Equal times replace (the same event delivered again writes the same row).
    """
    return stored is None or as_utc(new.event_time) >= as_utc(stored.event_time)


@dataclass(frozen=True)
class Projection:
    municipalities: tuple[MunicipalityRow, ...] = ()
    dialogue_events: tuple[DialogueEventRow, ...] = ()
    registrations: tuple[RegistrationRow, ...] = ()
    notifications: tuple[NotificationRow, ...] = ()

    @classmethod
    def of(cls, rows: Iterable[ProjectionRow]) -> Projection:
        rows = list(rows)
        return cls(
            municipalities=tuple(r for r in rows if isinstance(r, MunicipalityRow)),
            dialogue_events=tuple(r for r in rows if isinstance(r, DialogueEventRow)),
            registrations=tuple(r for r in rows if isinstance(r, RegistrationRow)),
            notifications=tuple(r for r in rows if isinstance(r, NotificationRow)),
        )

    def rows(self) -> Iterator[ProjectionRow]:
        yield from self.municipalities
        yield from self.dialogue_events
        yield from self.registrations
        yield from self.notifications

    def only(self, ags: str) -> Projection:
        return Projection.of(row for row in self.rows() if row.ags == ags)

    def known_ags(self) -> list[str]:
        return sorted({row.ags for row in self.rows()})


# --- aggregates ---------------------------------------------------------------------------


def scope_id(scope: AggregateScope, key: str) -> str:
    """A scope's id and the Kafka key of its snapshots: `program`, `municipality:07312000`."""
    return PROGRAM if scope is AggregateScope.PROGRAM else f"{scope.value}:{key}"


@dataclass(frozen=True)
class ScopeFigures:
    """The true counts of one scope, before disclosure control."""

    scope: AggregateScope
    key: str
    metrics: dict[str, int]
    as_of: datetime | None

    @property
    def id(self) -> str:
        return scope_id(self.scope, self.key)


def count(projection: Projection) -> dict[str, int]:
    statuses = [row.status for row in projection.registrations]
    # People who were sent a confirmation: a second confirmation mail to the same
    # registration (a resend under a new notification id) is still one person.
    confirmed_by_mail = {
        row.registration_id
        for row in projection.notifications
        if row.kind == NotificationKind.CONFIRMATION.value
    }
    return {
        MUNICIPALITIES: len(projection.municipalities),
        DIALOGUE_EVENTS: len(projection.dialogue_events),
        REGISTRATIONS_TOTAL: len(statuses),
        REGISTRATIONS_CONFIRMED: statuses.count(RegistrationStatus.CONFIRMED.value),
        REGISTRATIONS_WAITLISTED: statuses.count(RegistrationStatus.WAITLISTED.value),
        CONFIRMATIONS_SENT: len(confirmed_by_mail),
    }


def newest_event_time(projection: Projection) -> datetime | None:
    return max((as_utc(row.event_time) for row in projection.rows()), default=None)


def aggregate(projection: Projection) -> dict[str, ScopeFigures]:
    """The program scope and one scope per municipality that anything is known about."""
    figures = [
        ScopeFigures(
            AggregateScope.PROGRAM, PROGRAM, count(projection), newest_event_time(projection)
        )
    ]
    for ags in projection.known_ags():
        part = projection.only(ags)
        figures.append(
            ScopeFigures(AggregateScope.MUNICIPALITY, ags, count(part), newest_event_time(part))
        )
    return {figure.id: figure for figure in figures}


# --- disclosure control -------------------------------------------------------------------


@dataclass(frozen=True)
class Disclosed:
    """The metrics of one scope as they may be published; withheld ones are None."""

    metrics: dict[str, int | None]
    suppressed: tuple[str, ...] = field(default=())


Cell = tuple[str, str]  # (scope id, metric)


def needs_primary_suppression(metric: str, value: int) -> bool:
    """A count of 1 to 4 people could point at someone; it is withheld.

    0 is published: it counts nobody, so it points at nobody. The most a 0 adds is a group
    fact (waitlisted 0: everyone who registered there was confirmed), about people who
    stay unnamed, and uncounted when they are few, and about an administrative status,
    not a personal attribute. Hiding zeros would blank most of a young program's table
    for that. Counts that are not people are never withheld.
    """
    return metric in PEOPLE_METRICS and 0 < value < MIN_PUBLISHABLE


def _relations(table: Mapping[str, Mapping[str, int]], whole: str) -> list[list[Cell]]:
    """The cell groups that sum up (with signs) to zero, which a reader can solve for one cell.

    Within every scope: total - confirmed - waitlisted = 0. Across scopes, for each people
    metric: the whole (program) minus the sum over its parts (municipalities) = 0.
    """
    relations: list[list[Cell]] = []
    for scope, metrics in table.items():
        cells = [(scope, m) for m in (REGISTRATIONS_TOTAL, *STATUS_PARTS) if m in metrics]
        if len(cells) == 3:
            relations.append(cells)
    parts = [scope for scope in table if scope != whole]
    if whole in table and parts:
        for metric in PEOPLE_METRICS:
            cells = [(scope, metric) for scope in (whole, *parts) if metric in table[scope]]
            relations.append(cells)
    return relations


def protect(
    table: Mapping[str, Mapping[str, int]], *, whole: str = PROGRAM
) -> dict[str, Disclosed]:
    """Disclosure control over a set of scopes published together.

    `table` maps scope ids to their true counts; every scope other than `whole` must be a
    part of it, the parts adding up to the whole (municipalities within the program).

    Primary suppression withholds people counts of 1 to 4. Complementary suppression then
    withholds more cells until no relation (see `_relations`) has exactly one withheld
    cell, because from such a relation the cell is the difference of published ones. The
    relations form a two-way table (scopes by confirmed/waitlisted/total, with the program
    as the margin row) plus the one-way confirmations column; in such tables a withheld
    cell can be recomputed only if it lies on no cycle of withheld cells, which with three
    columns cannot happen once every relation holds none or at least two withheld cells.
    The complement chosen is the smallest non-zero published cell of the relation: least
    information lost, and a withheld 0 beside a small cell is easily guessed, which would
    give the small cell away.

    Not covered: differences between successive snapshots of one scope (a total going
    from 12 to 13 says one more person registered), and the bounds non-negativity puts on
    withheld cells; the exact value of a withheld cell cannot be derived.
    """
    values: dict[Cell, int] = {
        (scope, metric): value
        for scope, metrics in table.items()
        for metric, value in metrics.items()
    }
    hidden = {cell for cell, value in values.items() if needs_primary_suppression(cell[1], value)}
    relations = _relations(table, whole)
    changed = True
    while changed:
        changed = False
        for cells in relations:
            if sum(cell in hidden for cell in cells) != 1:
                continue
            shown = [cell for cell in cells if cell not in hidden]
            candidates = [cell for cell in shown if values[cell] > 0] or shown
            if not candidates:
                continue
            complement = min(
                candidates, key=lambda cell: (values[cell], cell[0] == whole, cell[0], cell[1])
            )
            hidden.add(complement)
            changed = True
    return {
        scope: Disclosed(
            metrics={m: None if (scope, m) in hidden else v for m, v in metrics.items()},
            suppressed=tuple(m for m in metrics if (scope, m) in hidden),
        )
        for scope, metrics in table.items()
    }


def snapshot(
    figures: ScopeFigures, disclosed: Disclosed, *, sequence: int, generated_at: datetime
) -> AggregateSnapshot:
    return AggregateSnapshot(
        scope=figures.scope,
        scope_key=figures.key,
        sequence=sequence,
        as_of=figures.as_of,
        generated_at=generated_at,
        metrics=dict(disclosed.metrics),
        suppressed=list(disclosed.suppressed),
    )


def same_content(a: AggregateSnapshot, b: AggregateSnapshot) -> bool:
    """Whether two snapshots tell the same (sequence and generation time aside)."""
    return (
        a.scope == b.scope
        and a.scope_key == b.scope_key
        and a.metrics == b.metrics
        and sorted(a.suppressed) == sorted(b.suppressed)
        and (a.as_of is None) == (b.as_of is None)
        and (a.as_of is None or b.as_of is None or as_utc(a.as_of) == as_utc(b.as_of))
    )
