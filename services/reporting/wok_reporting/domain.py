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

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from wok_contracts import AggregateScope, MunicipalityKind, NotificationKind, Sector

PROGRAM = "program"
MIN_PUBLISHABLE = 5  # DESIGN.md section 5: a cell counting fewer than 5 people is withheld
BERLIN = ZoneInfo("Europe/Berlin")

# Entity kinds: one collection of facts each.
MUNICIPALITY = "municipality"
DIALOGUE_EVENT = "dialogue_event"
REGISTRATION = "registration"
NOTIFICATION = "notification"
ENTITY_KINDS = (MUNICIPALITY, DIALOGUE_EVENT, REGISTRATION, NOTIFICATION)

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


def kind_metric(kind: str) -> str:
    return f"municipalities_{kind}"


def sector_metric(sector: str) -> str:
    return f"registrations_sector_{sector}"


def daily_cell(day: str) -> str:
    """The name of a day's registrations cell, as listed in a snapshot's `suppressed`."""
    return f"daily_registrations:{day}"


KIND_METRICS = tuple(kind_metric(kind.value) for kind in MunicipalityKind)
SECTOR_METRICS = tuple(sector_metric(sector.value) for sector in Sector)
# total = confirmed + waitlisted + cancelled, in every scope.
STATUS_PARTS = (REGISTRATIONS_CONFIRMED, REGISTRATIONS_WAITLISTED, REGISTRATIONS_CANCELLED)

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
)
# Metrics whose value is a number of people; only these are subject to disclosure control.
PEOPLE_METRICS = (REGISTRATIONS_TOTAL, *STATUS_PARTS, *SECTOR_METRICS, ATTENDED, CONFIRMATIONS_SENT)


def as_utc(moment: datetime) -> datetime:
    """Event times in UTC; a time without zone is taken as UTC (CloudEvents times are UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def berlin_day(moment: datetime) -> str:
    return as_utc(moment).astimezone(BERLIN).date().isoformat()


# --- facts ---------------------------------------------------------------------------------

FactValue = str | int | bool | None


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


ProjectionRow = MunicipalityRow | DialogueEventRow | RegistrationRow | NotificationRow


def row_of(entity: str, entity_id: str, ags: str, facts: Iterable[Fact]) -> ProjectionRow | None:
    values = fold(facts)
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

    @property
    def id(self) -> str:
        return scope_id(self.scope, self.key)

    def cells(self) -> dict[str, int]:
        """Every published cell of the scope: the metrics and the days' registrations."""
        return {**self.metrics, **{daily_cell(day): n for day, n in self.daily.items()}}


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
    }


def daily_registrations(projection: Projection) -> dict[str, int]:
    days: dict[str, int] = defaultdict(int)
    for row in projection.registrations:
        if row.counted:
            days[row.registered_on] += 1
    return dict(sorted(days.items()))


def newest_event_time(projection: Projection) -> datetime | None:
    return max((as_utc(row.event_time) for row in projection.rows()), default=None)


def _figures(scope: AggregateScope, key: str, part: Projection) -> ScopeFigures:
    return ScopeFigures(scope, key, count(part), daily_registrations(part), newest_event_time(part))


def aggregate(projection: Projection) -> dict[str, ScopeFigures]:
    """The program, each Land and each municipality that anything is known about."""
    figures = [_figures(AggregateScope.PROGRAM, PROGRAM, projection)]
    known = projection.known_ags()
    for land in sorted({ags[:2] for ags in known}):
        figures.append(_figures(AggregateScope.LAND, land, projection.in_land(land)))
    for ags in known:
        figures.append(_figures(AggregateScope.MUNICIPALITY, ags, projection.only(ags)))
    return {figure.id: figure for figure in figures}
