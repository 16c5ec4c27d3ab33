"""The incremental aggregates (`Tally`) equal the full recompute (`domain.aggregate`) after
every batch, whatever the order, the batching and the duplicates of the facts."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wok_contracts import (
    AssessmentLevel,
    MeasureStatus,
    MunicipalityKind,
    NotificationKind,
    Sector,
    StakeholderGroup,
    TaskforceRole,
    TaskforceSector,
)
from wok_reporting.disclosure import disclose
from wok_reporting.domain import (
    DIALOGUE_EVENT,
    MEASURE,
    MUNICIPALITY,
    NOTIFICATION,
    PERSPECTIVE,
    REGISTRATION,
    SELF_CHECK,
    TASKFORCE_MEMBER,
    Fact,
    Projection,
    aggregate,
)
from wok_reporting.tally import Tally

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
AGS = ("07312000", "07315000", "07111000", "09162000", "09564000", "01001000")


def _fields(kind: str, rng: random.Random, registrations: list[str]) -> tuple[str, dict[str, Any]]:
    """(event type, fields) of a random fact about an entity of `kind`."""
    if kind == MUNICIPALITY:
        kind_of = rng.choice(list(MunicipalityKind)).value
        fields = {"name": f"Gemeinde {rng.randrange(3)}", "kind": kind_of}
        return "registration.municipality.registered.v1", fields
    if kind == DIALOGUE_EVENT:
        return rng.choice(
            [
                ("registration.dialogue_event.scheduled.v1", {"status": "scheduled",
                 "starts_at": "2026-12-01T10:00:00+00:00"}),
                ("registration.dialogue_event.cancelled.v1", {"status": "cancelled"}),
                ("registration.dialogue_event.attendance_recorded.v1",
                 {"attended": rng.randrange(30)}),
            ]
        )  # fmt: skip
    if kind == REGISTRATION:
        return rng.choice(
            [
                ("registration.participant.registered.v1", {"dialogue_event_id": "event-1",
                 "status": rng.choice(["confirmed", "waitlisted"]),
                 "sector": rng.choice(list(Sector)).value}),
                ("registration.participant.cancelled.v1",
                 {"dialogue_event_id": "event-1", "status": "cancelled"}),
                ("registration.participant.promoted.v1", {"status": "confirmed"}),
                ("registration.participant.erased.v1", {"erased": True}),
            ]
        )  # fmt: skip
    if kind == NOTIFICATION:
        kinds = [NotificationKind.CONFIRMATION.value, NotificationKind.CONFIRMATION.value]
        kinds.append(rng.choice(list(NotificationKind)).value)
        fields = {"registration_id": rng.choice(registrations), "kind": rng.choice(kinds)}
        return "notification.message.sent.v1", fields
    if kind == SELF_CHECK:
        sequence = rng.randrange(1, 3)
        scored: dict[str, Any] = {"sequence": sequence, "scored": True,
                                  "overall": rng.randrange(0, 1000) / 10}  # fmt: skip
        for number in range(1, 8):
            scored[f"score_{number}"] = rng.randrange(0, 20) * 5.0
            scored[f"level_{number}"] = rng.choice(list(AssessmentLevel)).value
        return rng.choice(
            [
                ("assessment.self_check.started.v1", {"sequence": sequence, "started": True}),
                ("assessment.self_check.submitted.v1", {"sequence": sequence, "submitted": True}),
                ("assessment.self_check.scored.v1", scored),
            ]
        )
    if kind == PERSPECTIVE:
        fields = {"group": rng.choice(list(StakeholderGroup)).value}
        for number in rng.sample(range(1, 8), rng.randrange(1, 8)):
            fields[f"rating_{number}"] = rng.randrange(0, 101)
        return "assessment.workshop.perspective_recorded.v1", fields
    if kind == MEASURE:
        fields = {"field": rng.randrange(1, 8), "status": rng.choice(list(MeasureStatus)).value}
        return rng.choice(
            ["assessment.measure.planned.v1", "assessment.measure.status_changed.v1"]
        ), fields
    return rng.choice(
        [
            ("registration.taskforce.member_added.v1", {"removed": False,
             "role": rng.choice(list(TaskforceRole)).value,
             "sector": rng.choice(list(TaskforceSector)).value}),
            ("registration.taskforce.member_removed.v1", {"removed": True}),
        ]
    )  # fmt: skip


def history(rng: random.Random, size: int) -> list[Fact]:
    """Random facts about a few entities of every kind, some at equal times, some twice."""
    kinds = (MUNICIPALITY, DIALOGUE_EVENT, REGISTRATION, NOTIFICATION, SELF_CHECK,
             PERSPECTIVE, MEASURE, TASKFORCE_MEMBER)  # fmt: skip
    entities = [(kind, f"{kind}-{n}", rng.choice(AGS)) for kind in kinds for n in range(4)]
    entities += [(MUNICIPALITY, ags, ags) for ags in AGS]
    registrations = [entity_id for kind, entity_id, _ in entities if kind == REGISTRATION]
    facts = []
    for n in range(size):
        kind, entity_id, ags = rng.choice(entities)
        event_type, fields = _fields(kind, rng, registrations)
        moment = T0 + timedelta(hours=rng.randrange(60))  # equal times happen
        facts.append(Fact(kind, entity_id, ags, f"event-{n:05d}", event_type, moment, fields))
    facts += rng.sample(facts, len(facts) // 5)  # delivered twice
    rng.shuffle(facts)
    return facts


def assert_same(tallied: dict[str, Any], facts: list[Fact]) -> None:
    expected = aggregate(Projection.from_facts(facts))
    assert list(tallied) == list(expected)
    for scope, figures in expected.items():
        assert tallied[scope] == figures, scope
        assert list(tallied[scope].metrics) == list(figures.metrics)
        assert list(tallied[scope].daily) == list(figures.daily)
    assert disclose(tallied) == disclose(expected)


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(1, 120))
def test_the_tally_equals_the_full_recompute_after_every_batch(
    rng: random.Random, size: int
) -> None:
    facts = history(rng, size)
    tally = Tally()
    seen: list[Fact] = []
    while len(seen) < len(facts):
        batch = facts[len(seen) : len(seen) + rng.randrange(1, 30)]
        tally.add(batch)
        seen += batch
        assert_same(tally.figures(), seen)


def test_a_fact_applied_again_changes_nothing_and_an_empty_tally_is_the_empty_program() -> None:
    tally = Tally()
    assert_same(tally.figures(), [])
    facts = history(random.Random(3), 200)
    tally.add(facts)
    first = tally.figures()
    tally.add(reversed(facts))
    assert tally.figures() == first
    assert_same(first, facts)
