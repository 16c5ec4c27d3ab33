"""Reporting rules as plain code: facts, projection rows, aggregates per scope.

Nothing here does I/O. Every consumed event becomes a `Fact` about one entity (a
municipality, dialogue event, registration or notification), stored under the entity's
id and the event's id. An entity's row is the fold of its facts: for each field, the value
of the newest fact that sets it. Storing a fact twice changes nothing, and the fold does
not depend on the order facts arrive in, so live consumption and a rebuild from the topics
end in the same rows; counting rows counts entities, however often an event announcing
one was delivered. Disclosure control is in `wok_reporting.disclosure`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from wok_contracts import (
    AggregateScope,
    AssessmentLevel,
    MeasureStatus,
    MunicipalityKind,
    NotificationKind,
    Sector,
    StakeholderGroup,
    TaskforceRole,
    TaskforceSector,
)

PROGRAM = "program"
MIN_PUBLISHABLE = 5  # DESIGN.md section 5: a cell counting fewer than 5 people is withheld
BERLIN = ZoneInfo("Europe/Berlin")

# Entity kinds: one collection of facts each.
MUNICIPALITY = "municipality"
DIALOGUE_EVENT = "dialogue_event"
REGISTRATION = "registration"
NOTIFICATION = "notification"
SELF_CHECK = "self_check"
PERSPECTIVE = "perspective"  # one workshop participant's ratings: one person
MEASURE = "measure"
TASKFORCE_MEMBER = "taskforce_member"  # one person
ENTITY_KINDS = (
    MUNICIPALITY,
    DIALOGUE_EVENT,
    REGISTRATION,
    NOTIFICATION,
    SELF_CHECK,
    PERSPECTIVE,
    MEASURE,
    TASKFORCE_MEMBER,
)
FIELDS = tuple(range(1, 8))  # the seven fields of action
# Their names as the program sets them (DESIGN.md section 1; assessment's catalogue).
FIELD_NAMES_DE = {
    1: "Management und Steuerung",
    2: "Interkulturelle Öffnung und Antirassismus",
    3: "Fairer Zugang und Teilhabechancen",
    4: "Arbeit und wirtschaftliche Entwicklung",
    5: "Engagement und Beteiligung",
    6: "Zusammenhalt und Begegnung",
    7: "Kommunikation und Konfliktmanagement",
}
FIELD_NAMES_EN = {
    1: "Management and governance",
    2: "Intercultural opening and anti-racism",
    3: "Fair access and opportunities to participate",
    4: "Work and economic development",
    5: "Engagement and participation",
    6: "Cohesion and encounter",
    7: "Communication and conflict management",
}

# Registration and dialogue-event statuses as the projection knows them.
CONFIRMED = "confirmed"
WAITLISTED = "waitlisted"
CANCELLED = "cancelled"
SCHEDULED = "scheduled"

MUNICIPALITIES = "municipalities"
DIALOGUE_EVENTS = "dialogue_events"
DIALOGUE_EVENTS_CANCELLED = "dialogue_events_cancelled"
REGISTRATIONS_TOTAL = "registrations_total"
REGISTRATIONS_CONFIRMED = "registrations_confirmed"
REGISTRATIONS_WAITLISTED = "registrations_waitlisted"
REGISTRATIONS_CANCELLED = "registrations_cancelled"
ATTENDED = "attended"
CONFIRMATIONS_SENT = "confirmations_sent"
# The self-check funnel counts self-checks of administrations, not people.
SELF_CHECKS_STARTED = "self_checks_started"
SELF_CHECKS_SUBMITTED = "self_checks_submitted"
SELF_CHECKS_SCORED = "self_checks_scored"
MUNICIPALITIES_SCORED = "municipalities_scored"
MEASURES = "measures"
PERSPECTIVES = "perspectives"
TASKFORCE_MEMBERS = "taskforce_members"


def kind_metric(kind: str) -> str:
    return f"municipalities_{kind}"


def sector_metric(sector: str) -> str:
    return f"registrations_sector_{sector}"


def measure_status_metric(status: str) -> str:
    return f"measures_{status}"


def measure_field_metric(number: int) -> str:
    return f"measures_field_{number}"


def perspective_group_metric(group: str) -> str:
    return f"perspectives_group_{group}"


def perspective_field_metric(number: int) -> str:
    """Workshop participants who rated field `number` (people)."""
    return f"perspectives_field_{number}"


def taskforce_role_metric(role: str) -> str:
    return f"taskforce_role_{role}"


def taskforce_sector_metric(sector: str) -> str:
    return f"taskforce_sector_{sector}"


def daily_cell(day: str) -> str:
    """The name of a day's registrations cell, as listed in a snapshot's `suppressed`."""
    return f"daily_registrations:{day}"


KIND_METRICS = tuple(kind_metric(kind.value) for kind in MunicipalityKind)
SECTOR_METRICS = tuple(sector_metric(sector.value) for sector in Sector)
# total = confirmed + waitlisted + cancelled, in every scope.
STATUS_PARTS = (REGISTRATIONS_CONFIRMED, REGISTRATIONS_WAITLISTED, REGISTRATIONS_CANCELLED)

MEASURE_STATUS_METRICS = tuple(measure_status_metric(status.value) for status in MeasureStatus)
MEASURE_FIELD_METRICS = tuple(measure_field_metric(number) for number in FIELDS)
PERSPECTIVE_GROUP_METRICS = tuple(
    perspective_group_metric(group.value) for group in StakeholderGroup
)
PERSPECTIVE_FIELD_METRICS = tuple(perspective_field_metric(number) for number in FIELDS)
TASKFORCE_ROLE_METRICS = tuple(taskforce_role_metric(role.value) for role in TaskforceRole)
TASKFORCE_SECTOR_METRICS = tuple(
    taskforce_sector_metric(sector.value) for sector in TaskforceSector
)

METRICS = (
    MUNICIPALITIES,
    *KIND_METRICS,
    DIALOGUE_EVENTS,
    DIALOGUE_EVENTS_CANCELLED,
    REGISTRATIONS_TOTAL,
    *STATUS_PARTS,
    *SECTOR_METRICS,
    ATTENDED,
    CONFIRMATIONS_SENT,
    SELF_CHECKS_STARTED,
    SELF_CHECKS_SUBMITTED,
    SELF_CHECKS_SCORED,
    MUNICIPALITIES_SCORED,
    MEASURES,
    *MEASURE_STATUS_METRICS,
    *MEASURE_FIELD_METRICS,
    PERSPECTIVES,
    *PERSPECTIVE_GROUP_METRICS,
    *PERSPECTIVE_FIELD_METRICS,
    TASKFORCE_MEMBERS,
    *TASKFORCE_ROLE_METRICS,
    *TASKFORCE_SECTOR_METRICS,
)
# Metrics whose value is a number of people; only these are subject to disclosure control.
# Self-checks, scores and measures are the work of an administration, not people: their
# counts and figures are published as they are (docs/data-dictionary.md).
PEOPLE_METRICS = (
    REGISTRATIONS_TOTAL,
    *STATUS_PARTS,
    *SECTOR_METRICS,
    ATTENDED,
    CONFIRMATIONS_SENT,
    PERSPECTIVES,
    *PERSPECTIVE_GROUP_METRICS,
    *PERSPECTIVE_FIELD_METRICS,
    TASKFORCE_MEMBERS,
    *TASKFORCE_ROLE_METRICS,
    *TASKFORCE_SECTOR_METRICS,
)
# Within a scope: each total is the sum of each of its breakdowns (a reader knows it too).
BREAKDOWNS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    (REGISTRATIONS_TOTAL, (STATUS_PARTS, SECTOR_METRICS)),
    (PERSPECTIVES, (PERSPECTIVE_GROUP_METRICS,)),
    (TASKFORCE_MEMBERS, (TASKFORCE_ROLE_METRICS, TASKFORCE_SECTOR_METRICS)),
)


def as_utc(moment: datetime) -> datetime:
    """Event times in UTC; a time without zone is taken as UTC (CloudEvents times are UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def berlin_day(moment: datetime) -> str:
    return as_utc(moment).astimezone(BERLIN).date().isoformat()


# --- facts ---------------------------------------------------------------------------------

FactValue = str | int | float | bool | None


@dataclass(frozen=True)
class Fact:
    """What one event says about one entity: the fields it sets, as of the event's time."""

    entity: str  # one of ENTITY_KINDS
    entity_id: str
    ags: str
    event_id: str
    event_type: str
    time: datetime
    fields: Mapping[str, FactValue]

    def order(self) -> tuple[datetime, int, str]:
        return (as_utc(self.time), PRECEDENCE.get(self.event_type, 1), self.event_id)


# At equal times, which fact is newer: a cancellation after the registration it ends.
PRECEDENCE = {
    "registration.participant.registered.v1": 0,
    "registration.participant.promoted.v1": 1,
    "registration.participant.cancelled.v1": 2,
    "registration.participant.erased.v1": 3,
    "registration.municipality.registered.v1": 0,
    "registration.dialogue_event.scheduled.v1": 0,
    "registration.dialogue_event.cancelled.v1": 2,
    "registration.dialogue_event.attendance_recorded.v1": 3,
    "assessment.self_check.started.v1": 0,
    "assessment.self_check.submitted.v1": 1,
    "assessment.self_check.scored.v1": 2,
    "assessment.measure.planned.v1": 0,
    "assessment.measure.status_changed.v1": 1,
    "registration.taskforce.member_added.v1": 0,
    "registration.taskforce.member_removed.v1": 2,
}


def fold(facts: Iterable[Fact]) -> dict[str, Any]:
    """Each field's value from the newest fact setting it, plus `_first` and `_last` times."""
    ordered = sorted(facts, key=Fact.order)
    values: dict[str, Any] = {}
    for fact in ordered:
        values.update(fact.fields)
    if ordered:
        values["_first"] = as_utc(ordered[0].time)
        values["_last"] = as_utc(ordered[-1].time)
    return values


# --- projection rows ---------------------------------------------------------------------


@dataclass(frozen=True)
class MunicipalityRow:
    ags: str
    name: str
    kind: str
    event_time: datetime

    @property
    def land(self) -> str:
        return self.ags[:2]


@dataclass(frozen=True)
class DialogueEventRow:
    dialogue_event_id: str
    ags: str
    status: str
    starts_at: str | None
    attended: int | None
    event_time: datetime


@dataclass(frozen=True)
class RegistrationRow:
    """A registration; `status` and `sector` are None until its registration event is known.

    Erased registrations stay (marked): the row holds no personal data, only an opaque id,
    and keeping it keeps the counts and stops a redelivered event from counting it again.
    """

    registration_id: str
    dialogue_event_id: str
    ags: str
    status: str | None
    sector: str | None
    registered_on: str  # the day (Europe/Berlin) of its first fact
    erased: bool
    event_time: datetime

    @property
    def counted(self) -> bool:
        return self.status is not None and self.sector is not None


@dataclass(frozen=True)
class NotificationRow:
    notification_id: str
    registration_id: str
    ags: str
    kind: str
    event_time: datetime


@dataclass(frozen=True)
class SelfCheckRow:
    """A self-check: started, submitted, scored. `scores` maps a field to its score where the
    field had sufficient data (what takes part in quartiles and ranks, as in assessment's
    benchmark)."""

    self_check_id: str
    ags: str
    sequence: int
    submitted: bool
    scored: bool
    scores: Mapping[int, float]
    overall: float | None
    event_time: datetime


@dataclass(frozen=True)
class PerspectiveRow:
    """One workshop participant's ratings (0-100) by field, known only by stakeholder group."""

    perspective_id: str
    ags: str
    group: str | None
    ratings: Mapping[int, int]
    event_time: datetime


@dataclass(frozen=True)
class MeasureRow:
    measure_id: str
    ags: str
    field: int | None
    status: str | None
    event_time: datetime


@dataclass(frozen=True)
class TaskforceMemberRow:
    """A taskforce member as role and sector; `removed` once they left (row kept: a late
    redelivery of the addition must not count them again)."""

    member_id: str
    ags: str
    role: str | None
    sector: str | None
    removed: bool
    event_time: datetime

    @property
    def counted(self) -> bool:
        return not self.removed and self.role is not None and self.sector is not None


ProjectionRow = (
    MunicipalityRow
    | DialogueEventRow
    | RegistrationRow
    | NotificationRow
    | SelfCheckRow
    | PerspectiveRow
    | MeasureRow
    | TaskforceMemberRow
)


def _sufficient_scores(values: Mapping[str, Any]) -> dict[int, float]:
    scores = {}
    for number in FIELDS:
        score = values.get(f"score_{number}")
        level = values.get(f"level_{number}")
        if score is not None and level != AssessmentLevel.INSUFFICIENT_DATA.value:
            scores[number] = float(score)
    return scores


def row_of(entity: str, entity_id: str, ags: str, facts: Iterable[Fact]) -> ProjectionRow | None:
    return row_from(entity, entity_id, ags, fold(facts))


def row_from(
    entity: str, entity_id: str, ags: str, values: Mapping[str, Any]
) -> ProjectionRow | None:
    """The row of an entity from its folded fields (`fold`)."""
    if not values:
        return None
    last: datetime = values["_last"]
    if entity == MUNICIPALITY:
        if "name" not in values:
            return None
        return MunicipalityRow(ags=ags, name=values["name"], kind=values["kind"], event_time=last)
    if entity == DIALOGUE_EVENT:
        return DialogueEventRow(
            dialogue_event_id=entity_id,
            ags=ags,
            status=values.get("status", SCHEDULED),
            starts_at=values.get("starts_at"),
            attended=values.get("attended"),
            event_time=last,
        )
    if entity == REGISTRATION:
        return RegistrationRow(
            registration_id=entity_id,
            dialogue_event_id=values.get("dialogue_event_id", ""),
            ags=ags,
            status=values.get("status"),
            sector=values.get("sector"),
            registered_on=berlin_day(values["_first"]),
            erased=bool(values.get("erased", False)),
            event_time=last,
        )
    if entity == SELF_CHECK:
        scored = bool(values.get("scored", False))
        overall = values.get("overall") if scored else None
        return SelfCheckRow(
            self_check_id=entity_id,
            ags=ags,
            sequence=int(values.get("sequence", 1)),
            submitted=scored or bool(values.get("submitted", False)),
            scored=scored,
            scores=_sufficient_scores(values) if scored else {},
            overall=None if overall is None else float(overall),
            event_time=last,
        )
    if entity == PERSPECTIVE:
        return PerspectiveRow(
            perspective_id=entity_id,
            ags=ags,
            group=values.get("group"),
            ratings={n: int(values[f"rating_{n}"]) for n in FIELDS if f"rating_{n}" in values},
            event_time=last,
        )
    if entity == MEASURE:
        return MeasureRow(
            measure_id=entity_id,
            ags=ags,
            field=values.get("field"),
            status=values.get("status"),
            event_time=last,
        )
    if entity == TASKFORCE_MEMBER:
        return TaskforceMemberRow(
            member_id=entity_id,
            ags=ags,
            role=values.get("role"),
            sector=values.get("sector"),
            removed=bool(values.get("removed", False)),
            event_time=last,
        )
    return NotificationRow(
        notification_id=entity_id,
        registration_id=values.get("registration_id", ""),
        ags=ags,
        kind=values.get("kind", ""),
        event_time=last,
    )


@dataclass(frozen=True)
class Projection:
    municipalities: tuple[MunicipalityRow, ...] = ()
    dialogue_events: tuple[DialogueEventRow, ...] = ()
    registrations: tuple[RegistrationRow, ...] = ()
    notifications: tuple[NotificationRow, ...] = ()
    self_checks: tuple[SelfCheckRow, ...] = ()
    perspectives: tuple[PerspectiveRow, ...] = ()
    measures: tuple[MeasureRow, ...] = ()
    taskforce_members: tuple[TaskforceMemberRow, ...] = ()

    @classmethod
    def of(cls, rows: Iterable[ProjectionRow]) -> Projection:
        rows = list(rows)

        def pick(row_type: type[Any]) -> tuple[Any, ...]:
            return tuple(sorted((r for r in rows if isinstance(r, row_type)), key=repr))

        return cls(
            municipalities=pick(MunicipalityRow),
            dialogue_events=pick(DialogueEventRow),
            registrations=pick(RegistrationRow),
            notifications=pick(NotificationRow),
            self_checks=pick(SelfCheckRow),
            perspectives=pick(PerspectiveRow),
            measures=pick(MeasureRow),
            taskforce_members=pick(TaskforceMemberRow),
        )

    @classmethod
    def from_facts(cls, facts: Iterable[Fact]) -> Projection:
        by_entity: dict[tuple[str, str], list[Fact]] = defaultdict(list)
        for fact in facts:
            by_entity[(fact.entity, fact.entity_id)].append(fact)
        rows = (
            row_of(entity, entity_id, entity_facts[0].ags, entity_facts)
            for (entity, entity_id), entity_facts in by_entity.items()
        )
        return cls.of(row for row in rows if row is not None)

    def rows(self) -> Iterator[ProjectionRow]:
        yield from self.municipalities
        yield from self.dialogue_events
        yield from self.registrations
        yield from self.notifications
        yield from self.self_checks
        yield from self.perspectives
        yield from self.measures
        yield from self.taskforce_members

    def entity_counts(self) -> dict[str, int]:
        """Rows per entity kind (what a rebuild compares)."""
        return {
            MUNICIPALITY: len(self.municipalities),
            DIALOGUE_EVENT: len(self.dialogue_events),
            REGISTRATION: len(self.registrations),
            NOTIFICATION: len(self.notifications),
            SELF_CHECK: len(self.self_checks),
            PERSPECTIVE: len(self.perspectives),
            MEASURE: len(self.measures),
            TASKFORCE_MEMBER: len(self.taskforce_members),
        }

    def only(self, ags: str) -> Projection:
        return Projection.of(row for row in self.rows() if row.ags == ags)

    def in_land(self, land: str) -> Projection:
        return Projection.of(row for row in self.rows() if row.ags[:2] == land)

    def known_ags(self) -> list[str]:
        return sorted({row.ags for row in self.rows()})

    def municipality_name(self, ags: str) -> str:
        return next((row.name for row in self.municipalities if row.ags == ags), ags)


# --- aggregates ---------------------------------------------------------------------------


def scope_id(scope: AggregateScope, key: str) -> str:
    """A scope's id and the Kafka key of its snapshots: `program`, `land:07`,
    `municipality:07312000`."""
    return PROGRAM if scope is AggregateScope.PROGRAM else f"{scope.value}:{key}"


def parent_of(scope: str) -> str | None:
    """The scope a scope is a part of: a municipality's Land, a Land's program."""
    if scope.startswith("municipality:"):
        return f"land:{scope.removeprefix('municipality:')[:2]}"
    if scope.startswith("land:"):
        return PROGRAM
    return None


@dataclass(frozen=True)
class ScopeFigures:
    """The true counts of one scope, before disclosure control."""

    scope: AggregateScope
    key: str
    metrics: dict[str, int]
    daily: dict[str, int]
    as_of: datetime | None
    statistics: dict[str, float | None] = field(default_factory=dict)
    # A statistic computed from people's answers → the people cell (scope id, cell name) it
    # shares its fate with under disclosure control.
    derived_from: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return scope_id(self.scope, self.key)

    def cells(self) -> dict[str, int]:
        """Every published cell of the scope: the metrics and the days' registrations."""
        return {**self.metrics, **{daily_cell(day): n for day, n in self.daily.items()}}


def latest_scored(projection: Projection) -> dict[str, SelfCheckRow]:
    """Each municipality's latest scored self-check (highest sequence, then newest)."""
    latest: dict[str, SelfCheckRow] = {}
    for row in projection.self_checks:
        if not row.scored:
            continue
        known = latest.get(row.ags)
        if known is None or (row.sequence, as_utc(row.event_time)) > (
            known.sequence,
            as_utc(known.event_time),
        ):
            latest[row.ags] = row
    return latest


def count(projection: Projection) -> dict[str, int]:
    counted = [row for row in projection.registrations if row.counted]
    statuses = [row.status for row in counted]
    sectors = [row.sector for row in counted]
    kinds = [row.kind for row in projection.municipalities]
    held = [row for row in projection.dialogue_events if row.status != CANCELLED]
    # People who were sent a confirmation: a second confirmation mail to the same
    # registration (a resend under a new notification id) is still one person.
    confirmed_by_mail = {
        row.registration_id
        for row in projection.notifications
        if row.kind == NotificationKind.CONFIRMATION.value
    }
    return {
        MUNICIPALITIES: len(projection.municipalities),
        **{kind_metric(kind.value): kinds.count(kind.value) for kind in MunicipalityKind},
        DIALOGUE_EVENTS: len(held),
        DIALOGUE_EVENTS_CANCELLED: len(projection.dialogue_events) - len(held),
        REGISTRATIONS_TOTAL: len(counted),
        REGISTRATIONS_CONFIRMED: statuses.count(CONFIRMED),
        REGISTRATIONS_WAITLISTED: statuses.count(WAITLISTED),
        REGISTRATIONS_CANCELLED: statuses.count(CANCELLED),
        **{sector_metric(sector.value): sectors.count(sector.value) for sector in Sector},
        ATTENDED: sum(row.attended or 0 for row in held),
        CONFIRMATIONS_SENT: len(confirmed_by_mail),
        **count_assessment(projection),
    }


def count_assessment(projection: Projection) -> dict[str, int]:
    """The self-check funnel, measures by status and field, workshop participants by group
    and by field rated, taskforce members by role and sector."""
    checks = projection.self_checks
    measures = [row for row in projection.measures if row.status is not None]
    statuses = [row.status for row in measures]
    measure_fields = [row.field for row in measures]
    perspectives = [row for row in projection.perspectives if row.group is not None]
    groups = [row.group for row in perspectives]
    members = [row for row in projection.taskforce_members if row.counted]
    roles = [row.role for row in members]
    member_sectors = [row.sector for row in members]
    return {
        SELF_CHECKS_STARTED: len(checks),  # a submitted self-check was started, seen or not
        SELF_CHECKS_SUBMITTED: sum(row.submitted for row in checks),
        SELF_CHECKS_SCORED: sum(row.scored for row in checks),
        MUNICIPALITIES_SCORED: len(latest_scored(projection)),
        MEASURES: len(measures),
        **{measure_status_metric(s.value): statuses.count(s.value) for s in MeasureStatus},
        **{measure_field_metric(n): measure_fields.count(n) for n in FIELDS},
        PERSPECTIVES: len(perspectives),
        **{perspective_group_metric(g.value): groups.count(g.value) for g in StakeholderGroup},
        **{
            perspective_field_metric(n): sum(n in row.ratings for row in perspectives)
            for n in FIELDS
        },
        TASKFORCE_MEMBERS: len(members),
        **{taskforce_role_metric(r.value): roles.count(r.value) for r in TaskforceRole},
        **{
            taskforce_sector_metric(s.value): member_sectors.count(s.value) for s in TaskforceSector
        },
    }


# --- statistics: scores, quartiles, ranks, perspective means --------------------------------


def round_half_up(value: Fraction | float) -> float:
    """To 0.1, halves up (as assessment rounds its scores and quartiles)."""
    if isinstance(value, Fraction):
        exact = Decimal(value.numerator) / Decimal(value.denominator)
    else:
        exact = Decimal(str(value))
    return float(exact.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def quantile(sorted_values: Sequence[float], share: Fraction) -> float:
    """Linear interpolation at position share × (n − 1) (the "inclusive" method of Python's
    `statistics.quantiles`; one value is every quantile), exact, rounded half up to 0.1:
    the same rule as assessment's benchmark."""
    values = [Fraction(str(value)) for value in sorted_values]
    position = share * (len(values) - 1)
    below = math.floor(position)
    value = values[below]
    if below + 1 < len(values):
        value += (position - below) * (values[below + 1] - values[below])
    return round_half_up(value)


@dataclass(frozen=True)
class Distribution:
    """Scores across municipalities: lowest, quartiles, highest, mean."""

    count: int
    lowest: float
    q1: float
    median: float
    q3: float
    highest: float
    mean: float

    @classmethod
    def of(cls, scores: Iterable[float]) -> Distribution | None:
        ordered = sorted(scores)
        if not ordered:
            return None
        return cls(
            count=len(ordered),
            lowest=ordered[0],
            q1=quantile(ordered, Fraction(1, 4)),
            median=quantile(ordered, Fraction(1, 2)),
            q3=quantile(ordered, Fraction(3, 4)),
            highest=ordered[-1],
            mean=round_half_up(sum(Fraction(str(s)) for s in ordered) / len(ordered)),
        )

    def items(self, prefix: str) -> dict[str, float]:
        return {
            f"{prefix}min": self.lowest,
            f"{prefix}q1": self.q1,
            f"{prefix}median": self.median,
            f"{prefix}q3": self.q3,
            f"{prefix}max": self.highest,
            f"{prefix}mean": self.mean,
        }


def ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """1 + the number of strictly higher scores: the best is 1, ties share a rank."""
    ordered = sorted(scores.values())
    return {key: 1 + len(ordered) - bisect_right(ordered, score) for key, score in scores.items()}


def quartile_band(score: float, distribution: Distribution) -> int:
    """4: score ≥ Q3 (top quarter), 3: ≥ median, 2: ≥ Q1, 1: below Q1."""
    if score >= distribution.q3:
        return 4
    if score >= distribution.median:
        return 3
    if score >= distribution.q1:
        return 2
    return 1


def field_scores(latest: Mapping[str, SelfCheckRow], number: int) -> dict[str, float]:
    return {ags: row.scores[number] for ags, row in latest.items() if number in row.scores}


def overall_scores(latest: Mapping[str, SelfCheckRow]) -> dict[str, float]:
    return {ags: row.overall for ags, row in latest.items() if row.overall is not None}


def subject_scores(latest: Mapping[str, SelfCheckRow]) -> dict[str, dict[str, float]]:
    """Per subject (`field_1` … `field_7`, `overall`): the municipalities' scores."""
    found = {f"field_{number}": field_scores(latest, number) for number in FIELDS}
    found["overall"] = overall_scores(latest)
    return found


def perspective_means(projection: Projection) -> dict[int, float]:
    """Per field, the mean rating of the workshop participants who rated it."""
    means = {}
    counted = [row for row in projection.perspectives if row.group is not None]
    for number in FIELDS:
        ratings = [row.ratings[number] for row in counted if number in row.ratings]
        if ratings:
            means[number] = round_half_up(Fraction(sum(ratings), len(ratings)))
    return means


def daily_registrations(projection: Projection) -> dict[str, int]:
    days: dict[str, int] = defaultdict(int)
    for row in projection.registrations:
        if row.counted:
            days[row.registered_on] += 1
    return dict(sorted(days.items()))


def newest_event_time(projection: Projection) -> datetime | None:
    return max((as_utc(row.event_time) for row in projection.rows()), default=None)


def perspective_mean_name(number: int) -> str:
    return f"field_{number}_perspective_mean"


def gap_name(number: int) -> str:
    return f"field_{number}_gap"


def _perspective_statistics(
    scope: str, means: Mapping[int, float], score_means: Mapping[int, float]
) -> tuple[dict[str, float | None], dict[str, tuple[str, str]]]:
    """Mean workshop rating per field and its gap to the scope's mean self-check score
    (perspective minus score: positive when the participants see the field better than the
    administration does); both derive from people's ratings."""
    statistics: dict[str, float | None] = {}
    sources: dict[str, tuple[str, str]] = {}
    for number in FIELDS:
        mean = means.get(number)
        score = score_means.get(number)
        statistics[perspective_mean_name(number)] = mean
        statistics[gap_name(number)] = (
            None
            if mean is None or score is None
            else round_half_up(Fraction(str(mean)) - Fraction(str(score)))
        )
        for name in (perspective_mean_name(number), gap_name(number)):
            sources[name] = (scope, perspective_field_metric(number))
    return statistics, sources


@dataclass(frozen=True)
class ProgramScores:
    """Per subject (`field_1` … `field_7`, `overall`): the latest scores of all scored
    municipalities, their distribution and ranks (computed once, not per municipality)."""

    scores: dict[str, dict[str, float]]
    distributions: dict[str, Distribution | None]
    ranked: dict[str, dict[str, int]]

    @classmethod
    def of(cls, latest: Mapping[str, SelfCheckRow]) -> ProgramScores:
        scores = subject_scores(latest)
        return cls(
            scores=scores,
            distributions={s: Distribution.of(found.values()) for s, found in scores.items()},
            ranked={subject: ranks(found) for subject, found in scores.items()},
        )


def _municipality_statistics(
    ags: str, means: Mapping[int, float], program: ProgramScores
) -> tuple[dict[str, float | None], dict[str, tuple[str, str]]]:
    """The municipality's latest scores, its rank among all scored municipalities and its
    quartile band (4 = top quarter), per field and overall."""
    statistics: dict[str, float | None] = {}
    for subject, scores in program.scores.items():
        score = scores.get(ags)
        distribution = program.distributions[subject]
        statistics[f"{subject}_score"] = score
        statistics[f"{subject}_rank"] = None if score is None else program.ranked[subject][ags]
        statistics[f"{subject}_quartile"] = (
            None if score is None or distribution is None else quartile_band(score, distribution)
        )
    fields = program.scores
    own = {n: fields[f"field_{n}"][ags] for n in FIELDS if ags in fields[f"field_{n}"]}
    perspective, sources = _perspective_statistics(
        scope_id(AggregateScope.MUNICIPALITY, ags), means, own
    )
    return {**statistics, **perspective}, sources


def _distribution_statistics(
    scope: str, latest: Mapping[str, SelfCheckRow], means: Mapping[int, float]
) -> tuple[dict[str, float | None], dict[str, tuple[str, str]]]:
    """Lowest, quartiles, highest and mean of the latest scores of the scope's
    municipalities (`latest`), per field and overall."""
    statistics: dict[str, float | None] = {}
    score_means: dict[int, float] = {}
    for subject, scores in subject_scores(latest).items():
        distribution = Distribution.of(scores.values())
        for suffix in ("min", "q1", "median", "q3", "max", "mean"):
            statistics[f"{subject}_score_{suffix}"] = None
        if distribution is not None:
            statistics.update(distribution.items(f"{subject}_score_"))
            if subject.startswith("field_"):
                score_means[int(subject.removeprefix("field_"))] = distribution.mean
    perspective, sources = _perspective_statistics(scope, means, score_means)
    return {**statistics, **perspective}, sources


def _figures(
    scope: AggregateScope, key: str, part: Projection, program_scores: ProgramScores
) -> ScopeFigures:
    return scope_figures(
        scope,
        key,
        metrics=count(part),
        daily=daily_registrations(part),
        as_of=newest_event_time(part),
        latest=latest_scored(part),
        means=perspective_means(part),
        program=program_scores,
    )


def scope_figures(
    scope: AggregateScope,
    key: str,
    *,
    metrics: dict[str, int],
    daily: dict[str, int],
    as_of: datetime | None,
    latest: Mapping[str, SelfCheckRow],
    means: Mapping[int, float],
    program: ProgramScores,
) -> ScopeFigures:
    """A program, Land or municipality scope's figures from its counts, its municipalities'
    latest scored self-checks and its mean workshop ratings (`aggregate` and the
    incremental `wok_reporting.tally` both make them here)."""
    if scope is AggregateScope.MUNICIPALITY:
        statistics, sources = _municipality_statistics(key, means, program)
    else:
        statistics, sources = _distribution_statistics(scope_id(scope, key), latest, means)
    return ScopeFigures(
        scope, key, metrics, daily, as_of, statistics=statistics, derived_from=sources
    )


def field_figures(number: int, projection: Projection) -> ScopeFigures:
    """One field of action across all municipalities: the distribution of the latest scores
    with each municipality's score and rank, measures by status, and the participants'
    mean rating (shares the fate of the program's `perspectives_field_<n>` cell)."""
    measures = [row for row in projection.measures if row.field == number and row.status]
    relevant = [
        *(row.event_time for row in projection.self_checks),
        *(row.event_time for row in projection.measures),
        *(row.event_time for row in projection.perspectives),
    ]
    return field_figures_of(
        number,
        latest=latest_scored(projection),
        statuses=[str(row.status) for row in measures],
        means=perspective_means(projection),
        as_of=max((as_utc(moment) for moment in relevant), default=None),
    )


def field_figures_of(
    number: int,
    *,
    latest: Mapping[str, SelfCheckRow],
    statuses: Sequence[str],
    means: Mapping[int, float],
    as_of: datetime | None,
) -> ScopeFigures:
    """`field_figures` from the latest scored self-checks, the statuses of the field's
    measures, the program's mean workshop ratings and the newest relevant event time."""
    scores = field_scores(latest, number)
    statistics: dict[str, float | None] = {
        f"score_{suffix}": None for suffix in ("min", "q1", "median", "q3", "max", "mean")
    }
    distribution = Distribution.of(scores.values())
    if distribution is not None:
        statistics.update(distribution.items("score_"))
    ranked = ranks(scores)
    for ags in sorted(scores):
        statistics[f"score:{ags}"] = scores[ags]
        statistics[f"rank:{ags}"] = ranked[ags]
    mean = means.get(number)
    statistics["perspective_mean"] = mean
    statistics["gap"] = (
        None
        if mean is None or distribution is None
        else round_half_up(Fraction(str(mean)) - Fraction(str(distribution.mean)))
    )
    source = (PROGRAM, perspective_field_metric(number))
    return ScopeFigures(
        AggregateScope.FIELD,
        str(number),
        {
            MUNICIPALITIES_SCORED: len(scores),
            MEASURES: len(statuses),
            **{measure_status_metric(s.value): statuses.count(s.value) for s in MeasureStatus},
        },
        {},
        as_of,
        statistics=statistics,
        derived_from={"perspective_mean": source, "gap": source},
    )


SUBJECTS = (*(f"field_{number}" for number in FIELDS), "overall")
DISTRIBUTION_SUFFIXES = ("min", "q1", "median", "q3", "max", "mean")
# The statistics of the program, Land and municipality scopes, in export column order.
STATISTICS = (
    *(f"{subject}_{kind}" for subject in SUBJECTS for kind in ("score", "rank", "quartile")),
    *(f"{subject}_score_{suffix}" for subject in SUBJECTS for suffix in DISTRIBUTION_SUFFIXES),
    *(name for number in FIELDS for name in (perspective_mean_name(number), gap_name(number))),
)
# The statistics of a field scope (besides `score:<AGS>` and `rank:<AGS>` per municipality).
FIELD_STATISTICS = (
    *(f"score_{suffix}" for suffix in DISTRIBUTION_SUFFIXES),
    "perspective_mean",
    "gap",
)
FIELD_METRICS = (MUNICIPALITIES_SCORED, MEASURES, *MEASURE_STATUS_METRICS)


def aggregate(projection: Projection) -> dict[str, ScopeFigures]:
    """The program, each Land, each municipality that anything is known about, and the
    seven fields of action once there is a self-check, measure or workshop perspective."""
    program_scores = ProgramScores.of(latest_scored(projection))
    figures = [_figures(AggregateScope.PROGRAM, PROGRAM, projection, program_scores)]
    # The rows grouped by AGS once: filtering every row for each scope would cost the
    # history times the number of scopes.
    by_ags: dict[str, list[ProjectionRow]] = defaultdict(list)
    for row in projection.rows():
        by_ags[row.ags].append(row)
    known = sorted(by_ags)
    for land in sorted({ags[:2] for ags in known}):
        rows = [row for ags in known if ags[:2] == land for row in by_ags[ags]]
        figures.append(_figures(AggregateScope.LAND, land, Projection.of(rows), program_scores))
    for ags in known:
        part = Projection.of(by_ags[ags])
        figures.append(_figures(AggregateScope.MUNICIPALITY, ags, part, program_scores))
    if projection.self_checks or projection.measures or projection.perspectives:
        figures.extend(field_figures(number, projection) for number in FIELDS)
    return {figure.id: figure for figure in figures}
