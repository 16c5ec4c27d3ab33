"""The aggregates kept up to date fact by fact, so a snapshot round costs what changed.

`aggregate(Projection.from_facts(facts))` recomputes every scope from every stored fact:
its cost grows with the history. `Tally` holds the same figures and updates them from each
new fact: an entity's fields are folded incrementally (per field the value of the newest
fact setting it, compared by `Fact.order`, so the order facts arrive in does not matter
and a fact applied twice changes nothing), and when an entity's row changes, its old row's
contribution to its municipality, Land and the program is taken out and the new one's put
in. Only the scopes touched since the last round are computed again (`figures`); every
count it holds is a sum over rows, a set or a maximum that grows with the facts, so
`figures()` equals `aggregate` over the same facts (tests/test_tally.py checks it on
random histories). Disclosure control is not here: it runs over all scopes together.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from wok_contracts import AggregateScope, NotificationKind
from wok_reporting.disclosure import cycle_collection_paused
from wok_reporting.domain import (
    ATTENDED,
    CANCELLED,
    CONFIRMATIONS_SENT,
    CONFIRMED,
    DIALOGUE_EVENTS,
    DIALOGUE_EVENTS_CANCELLED,
    FIELDS,
    KIND_METRICS,
    MEASURE,
    MEASURE_FIELD_METRICS,
    MEASURE_STATUS_METRICS,
    MEASURES,
    METRICS,
    MUNICIPALITIES,
    MUNICIPALITIES_SCORED,
    PERSPECTIVE,
    PERSPECTIVE_GROUP_METRICS,
    PERSPECTIVES,
    PROGRAM,
    REGISTRATIONS_CANCELLED,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
    SECTOR_METRICS,
    SELF_CHECK,
    SELF_CHECKS_SCORED,
    SELF_CHECKS_STARTED,
    SELF_CHECKS_SUBMITTED,
    TASKFORCE_MEMBERS,
    TASKFORCE_ROLE_METRICS,
    TASKFORCE_SECTOR_METRICS,
    WAITLISTED,
    DialogueEventRow,
    Fact,
    MeasureRow,
    MunicipalityRow,
    NotificationRow,
    PerspectiveRow,
    ProgramScores,
    ProjectionRow,
    RegistrationRow,
    ScopeFigures,
    SelfCheckRow,
    TaskforceMemberRow,
    as_utc,
    field_figures_of,
    kind_metric,
    measure_field_metric,
    measure_status_metric,
    perspective_field_metric,
    perspective_group_metric,
    round_half_up,
    row_from,
    scope_figures,
    scope_id,
    sector_metric,
    taskforce_role_metric,
    taskforce_sector_metric,
)

CONFIRMATION = NotificationKind.CONFIRMATION.value
STATUS_METRIC = {
    CONFIRMED: REGISTRATIONS_CONFIRMED,
    WAITLISTED: REGISTRATIONS_WAITLISTED,
    CANCELLED: REGISTRATIONS_CANCELLED,
}
# Each breakdown counts only the values its contract knows (as `domain.count` does).
KNOWN = frozenset(
    (
        *KIND_METRICS,
        *SECTOR_METRICS,
        *MEASURE_STATUS_METRICS,
        *MEASURE_FIELD_METRICS,
        *PERSPECTIVE_GROUP_METRICS,
        *TASKFORCE_ROLE_METRICS,
        *TASKFORCE_SECTOR_METRICS,
    )
)
FIELD_ENTITIES = (SELF_CHECK, MEASURE, PERSPECTIVE)
Order = tuple[datetime, int, str]


@dataclass(slots=True)
class _Entity:
    """One entity's folded fields: per field (order of the fact that set it, value)."""

    ags: str
    best: dict[str, tuple[Order, Any]] = field(default_factory=dict)
    first: Order | None = None
    last: Order | None = None
    row: ProjectionRow | None = None

    def apply(self, fact: Fact) -> bool:
        """Fold one fact in; whether anything changed."""
        order = fact.order()
        changed = False
        for name, value in fact.fields.items():
            known = self.best.get(name)
            if known is None or order > known[0] or (order == known[0] and value != known[1]):
                self.best[name] = (order, value)
                changed = True
        if self.first is None or order < self.first:
            self.first, changed = order, True
        if self.last is None or order > self.last:
            self.last, changed = order, True
        return changed

    def values(self) -> dict[str, Any]:
        """What `domain.fold` gives for the facts applied so far."""
        if self.first is None or self.last is None:
            return {}
        found = {name: value for name, (_, value) in self.best.items()}
        found["_first"] = as_utc(self.first[0])
        found["_last"] = as_utc(self.last[0])
        return found


@dataclass
class _Counts:
    """The additive part of one scope's figures: sums over its rows."""

    metrics: Counter[str] = field(default_factory=Counter)
    daily: Counter[str] = field(default_factory=Counter)
    confirmed: Counter[str] = field(default_factory=Counter)  # registration id -> mails
    ratings: dict[int, list[int]] = field(default_factory=dict)  # field -> [sum, count]
    as_of: datetime | None = None
    rows: int = 0

    def add(self, row: ProjectionRow, sign: int) -> None:
        self.rows += sign
        metrics = self.metrics
        if isinstance(row, RegistrationRow):
            if row.counted:
                metrics[REGISTRATIONS_TOTAL] += sign
                if row.status in STATUS_METRIC:
                    metrics[STATUS_METRIC[row.status]] += sign
                _known(metrics, sector_metric(str(row.sector)), sign)
                _bump(self.daily, row.registered_on, sign)
        elif isinstance(row, NotificationRow):
            if row.kind == CONFIRMATION:
                _bump(self.confirmed, row.registration_id, sign)
        elif isinstance(row, DialogueEventRow):
            if row.status != CANCELLED:
                metrics[DIALOGUE_EVENTS] += sign
                metrics[ATTENDED] += sign * (row.attended or 0)
            else:
                metrics[DIALOGUE_EVENTS_CANCELLED] += sign
        elif isinstance(row, MunicipalityRow):
            metrics[MUNICIPALITIES] += sign
            _known(metrics, kind_metric(row.kind), sign)
        else:
            self._add_assessment(row, sign)

    def _add_assessment(self, row: ProjectionRow, sign: int) -> None:
        metrics = self.metrics
        if isinstance(row, SelfCheckRow):
            metrics[SELF_CHECKS_STARTED] += sign
            metrics[SELF_CHECKS_SUBMITTED] += sign * row.submitted
            metrics[SELF_CHECKS_SCORED] += sign * row.scored
        elif isinstance(row, MeasureRow):
            if row.status is not None:
                metrics[MEASURES] += sign
                _known(metrics, measure_status_metric(row.status), sign)
                if row.field in FIELDS:
                    metrics[measure_field_metric(int(row.field))] += sign
        elif isinstance(row, PerspectiveRow):
            if row.group is not None:
                metrics[PERSPECTIVES] += sign
                _known(metrics, perspective_group_metric(row.group), sign)
                for number, rating in row.ratings.items():
                    metrics[perspective_field_metric(number)] += sign
                    tally = self.ratings.setdefault(number, [0, 0])
                    tally[0] += sign * rating
                    tally[1] += sign
        elif isinstance(row, TaskforceMemberRow) and row.counted:
            metrics[TASKFORCE_MEMBERS] += sign
            _known(metrics, taskforce_role_metric(str(row.role)), sign)
            _known(metrics, taskforce_sector_metric(str(row.sector)), sign)

    def seen(self, moment: datetime) -> None:
        """A row's event time (in UTC: rows are made from folded values)."""
        if self.as_of is None or moment > self.as_of:
            self.as_of = moment

    def metric_values(self, scored: int) -> dict[str, int]:
        found = {name: self.metrics.get(name, 0) for name in METRICS}
        found[CONFIRMATIONS_SENT] = len(self.confirmed)
        found[MUNICIPALITIES_SCORED] = scored
        return found

    def means(self) -> dict[int, float]:
        return {
            number: round_half_up(Fraction(total, counted))
            for number in FIELDS
            for total, counted in [self.ratings.get(number, [0, 0])]
            if counted
        }


def _known(metrics: Counter[str], name: str, sign: int) -> None:
    if name in KNOWN:
        metrics[name] += sign


def _bump(counter: Counter[str], key: str, sign: int) -> None:
    counter[key] += sign
    if not counter[key]:
        del counter[key]


def _latest(rows: Iterable[SelfCheckRow]) -> SelfCheckRow | None:
    """`domain.latest_scored` for one municipality's scored self-checks."""
    latest = None
    for row in sorted(rows, key=repr):
        if latest is None or (row.sequence, as_utc(row.event_time)) > (
            latest.sequence,
            as_utc(latest.event_time),
        ):
            latest = row
    return latest


class Tally:
    """Every scope's figures, updated from new facts (`add`), computed again only where
    something changed (`figures`)."""

    def __init__(self) -> None:
        self._entities: dict[tuple[str, str], _Entity] = {}
        self._counts: dict[str, _Counts] = defaultdict(_Counts)
        self._scored: dict[str, dict[str, SelfCheckRow]] = defaultdict(dict)
        self._latest: dict[str, SelfCheckRow] = {}
        self._measures: dict[int, Counter[str]] = defaultdict(Counter)  # field -> statuses
        self._field_rows = 0
        self._field_as_of: datetime | None = None
        self._program: ProgramScores = ProgramScores.of({})
        self._figures: dict[str, ScopeFigures] = {}
        self._dirty: set[str] = {PROGRAM}
        self._scores_changed = False
        self.facts_applied = 0

    def add(self, facts: Iterable[Fact]) -> None:
        # No reference cycles are made here; the cyclic collector would only scan the
        # ever larger tally again and again while a large batch goes in (a third of the time).
        with cycle_collection_paused():
            self._add(facts)

    def _add(self, facts: Iterable[Fact]) -> None:
        for fact in facts:
            self.facts_applied += 1
            key = (fact.entity, fact.entity_id)
            entity = self._entities.get(key)
            if entity is None:
                entity = self._entities[key] = _Entity(ags=fact.ags)
            if not entity.apply(fact):
                continue
            row = row_from(fact.entity, fact.entity_id, entity.ags, entity.values())
            if row != entity.row:
                self._replace(fact.entity, entity, row)

    def _replace(self, kind: str, entity: _Entity, row: ProjectionRow | None) -> None:
        old, entity.row = entity.row, row
        ags = entity.ags
        scopes = (PROGRAM, f"land:{ags[:2]}", f"municipality:{ags}")
        for scope in scopes:
            counts = self._counts[scope]
            if old is not None:
                counts.add(old, -1)
            if row is not None:
                counts.add(row, 1)
                counts.seen(row.event_time)
        self._dirty.update(scopes)
        if kind in FIELD_ENTITIES:
            self._field_changed(old, row)

    def _field_changed(self, old: ProjectionRow | None, row: ProjectionRow | None) -> None:
        self._field_rows += (row is not None) - (old is not None)
        if row is not None:
            moment = as_utc(row.event_time)
            if self._field_as_of is None or moment > self._field_as_of:
                self._field_as_of = moment
        for one, sign in ((old, -1), (row, 1)):
            if isinstance(one, MeasureRow) and one.status and one.field is not None:
                _bump(self._measures[one.field], one.status, sign)  # type: ignore[arg-type]
            if isinstance(one, SelfCheckRow):
                self._self_check_changed(one, sign)
        self._dirty.update(scope_id(AggregateScope.FIELD, str(n)) for n in FIELDS)

    def _self_check_changed(self, row: SelfCheckRow, sign: int) -> None:
        checks = self._scored[row.ags]
        if sign < 0:
            checks.pop(row.self_check_id, None)
        elif row.scored:
            checks[row.self_check_id] = row
        latest = _latest(checks.values())
        if latest != self._latest.get(row.ags):
            if latest is None:
                self._latest.pop(row.ags, None)
            else:
                self._latest[row.ags] = latest
            self._scores_changed = True
            self._dirty.add(f"land:{row.ags[:2]}")

    def figures(self) -> dict[str, ScopeFigures]:
        """Every scope's figures, as `domain.aggregate` gives them (scopes in its order)."""
        if self._scores_changed:
            self._program = ProgramScores.of(self._latest)
            self._dirty.update(f"municipality:{ags}" for ags in self._latest)
            self._dirty.update(
                scope for scope, figures in self._figures.items() if _has_score(figures)
            )
            self._dirty.add(PROGRAM)
            self._scores_changed = False
        for scope in self._dirty:
            if scope.startswith("field:"):
                if self._field_rows:
                    self._figures[scope] = self._field_figures(int(scope.removeprefix("field:")))
            elif scope == PROGRAM or self._counts[scope].rows:
                self._figures[scope] = self._scope_figures(scope)
        self._dirty.clear()
        return {scope: self._figures[scope] for scope in sorted(self._figures, key=_scope_order)}

    def _scope_figures(self, scope: str) -> ScopeFigures:
        counts = self._counts[scope]
        if scope == PROGRAM:
            kind, key = AggregateScope.PROGRAM, PROGRAM
            latest = self._latest
        else:
            name, key = scope.split(":", 1)
            kind = AggregateScope(name)
            if kind is AggregateScope.LAND:
                latest = {ags: row for ags, row in self._latest.items() if ags[:2] == key}
            else:
                latest = {key: self._latest[key]} if key in self._latest else {}
        return scope_figures(
            kind,
            key,
            metrics=counts.metric_values(len(latest)),
            daily=dict(sorted(counts.daily.items())),
            as_of=counts.as_of,
            latest=latest,
            means=counts.means(),
            program=self._program,
        )

    def _field_figures(self, number: int) -> ScopeFigures:
        statuses = self._measures.get(number, Counter())
        return field_figures_of(
            number,
            latest=self._latest,
            statuses=list(statuses.elements()),
            means=self._counts[PROGRAM].means(),
            as_of=self._field_as_of,
        )


def _has_score(figures: ScopeFigures) -> bool:
    return figures.scope is AggregateScope.MUNICIPALITY and any(
        figures.statistics.get(f"{subject}_score") is not None
        for subject in (*(f"field_{n}" for n in FIELDS), "overall")
    )


_SCOPE_RANK = {"program": 0, "land": 1, "municipality": 2, "field": 3}


def _scope_order(scope: str) -> tuple[int, str]:
    kind, _, key = scope.partition(":")
    return (_SCOPE_RANK[kind], key.zfill(3) if kind == "field" else key)
