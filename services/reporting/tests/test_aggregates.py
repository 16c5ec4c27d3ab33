"""Counting the events into program, Land and municipality figures (no I/O)."""

import random
from datetime import UTC, datetime, timedelta

from wok_contracts import AggregateScope, MunicipalityKind, RegistrationStatus, Sector
from wok_reporting.domain import (
    ATTENDED,
    CONFIRMATIONS_SENT,
    DIALOGUE_EVENTS,
    DIALOGUE_EVENTS_CANCELLED,
    MUNICIPALITIES,
    PROGRAM,
    REGISTRATIONS_CANCELLED,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
    Projection,
    aggregate,
    kind_metric,
    sector_metric,
)
from wok_reporting.handlers import fact_of

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
KL, MZ, BOCHUM = "07312000", "07315000", "05911000"
WAITLISTED = RegistrationStatus.WAITLISTED


def project(events, timed) -> Projection:
    """The projection of `timed`: (payload, minutes after T0) pairs."""
    facts = [
        fact_of(events.envelope(data, time=T0 + timedelta(minutes=minutes)))
        for data, minutes in timed
    ]
    return Projection.from_facts(fact for fact in facts if fact is not None)


def test_program_each_land_and_each_municipality_are_counted(events) -> None:
    event_kl = events.dialogue_event_scheduled(KL)
    event_bo = events.dialogue_event_scheduled(BOCHUM)
    projection = project(
        events,
        [
            (events.municipality_registered(KL), 0),
            (events.municipality_registered(MZ), 0),
            (events.municipality_registered(BOCHUM), 0),
            (event_kl, 1),
            (event_bo, 1),
            (events.participant_registered(dialogue_event_id=event_kl.dialogue_event_id), 2),
            (events.participant_registered(dialogue_event_id=event_kl.dialogue_event_id), 2),
            (
                events.participant_registered(
                    dialogue_event_id=event_bo.dialogue_event_id, ags=BOCHUM, status=WAITLISTED
                ),
                3,
            ),
        ],
    )

    figures = aggregate(projection)

    assert list(figures) == [
        PROGRAM,
        "land:05",
        "land:07",
        f"municipality:{BOCHUM}",
        f"municipality:{KL}",
        f"municipality:{MZ}",
    ]
    assert figures[PROGRAM].metrics[MUNICIPALITIES] == 3
    assert figures[PROGRAM].metrics[REGISTRATIONS_TOTAL] == 3
    rhineland_palatinate = figures["land:07"]
    assert rhineland_palatinate.scope is AggregateScope.LAND
    assert rhineland_palatinate.key == "07"
    assert rhineland_palatinate.metrics[MUNICIPALITIES] == 2
    assert rhineland_palatinate.metrics[REGISTRATIONS_CONFIRMED] == 2
    assert figures["land:05"].metrics[REGISTRATIONS_WAITLISTED] == 1
    assert figures[f"municipality:{MZ}"].metrics[REGISTRATIONS_TOTAL] == 0
    assert figures[PROGRAM].as_of == T0 + timedelta(minutes=3)
    assert figures[f"municipality:{KL}"].as_of == T0 + timedelta(minutes=2)


def test_cancellations_and_promotions_move_registrations_between_statuses(events) -> None:
    dialogue = events.dialogue_event_scheduled(KL)
    first, second = (
        events.participant_registered(dialogue_event_id=dialogue.dialogue_event_id)
        for _ in range(2)
    )
    waiting = events.participant_registered(
        dialogue_event_id=dialogue.dialogue_event_id, status=WAITLISTED
    )
    timed = [
        (dialogue, 0),
        (first, 1),
        (second, 2),
        (waiting, 3),
        (events.participant_cancelled(first), 4),
        (events.participant_promoted(waiting), 5),
    ]

    metrics = aggregate(project(events, timed))[PROGRAM].metrics

    assert metrics[REGISTRATIONS_TOTAL] == 3
    assert metrics[REGISTRATIONS_CONFIRMED] == 2  # second, and waiting once promoted
    assert metrics[REGISTRATIONS_WAITLISTED] == 0
    assert metrics[REGISTRATIONS_CANCELLED] == 1
    # The fold does not depend on the order of arrival (a rebuild reads partitions apart).
    shuffled = timed[:]
    random.Random(7).shuffle(shuffled)
    assert project(events, shuffled) == project(events, timed)


def test_a_duplicate_under_a_new_event_id_is_one_registration(events) -> None:
    dialogue = events.dialogue_event_scheduled(KL)
    registered = events.participant_registered(dialogue_event_id=dialogue.dialogue_event_id)

    projection = project(events, [(dialogue, 0), (registered, 1), (registered, 1)])

    assert aggregate(projection)[PROGRAM].metrics[REGISTRATIONS_TOTAL] == 1


def test_an_erased_registration_stays_counted_as_an_anonymous_row(events) -> None:
    dialogue = events.dialogue_event_scheduled(KL)
    registered = events.participant_registered(dialogue_event_id=dialogue.dialogue_event_id)

    projection = project(
        events, [(dialogue, 0), (registered, 1), (events.participant_erased(registered), 2)]
    )

    (row,) = projection.registrations
    assert row.erased
    assert row.status == "confirmed"
    assert aggregate(projection)[PROGRAM].metrics[REGISTRATIONS_CONFIRMED] == 1
    # A redelivered registration event after the erasure still finds the row: counted once.
    again = project(
        events,
        [
            (dialogue, 0),
            (registered, 1),
            (events.participant_erased(registered), 2),
            (registered, 1),
        ],
    )
    assert aggregate(again)[PROGRAM].metrics[REGISTRATIONS_TOTAL] == 1


def test_the_funnel_counts_attendance_of_events_held_not_of_cancelled_ones(events) -> None:
    held = events.dialogue_event_scheduled(KL)
    called_off = events.dialogue_event_scheduled(KL)
    projection = project(
        events,
        [
            (held, 0),
            (called_off, 0),
            (events.attendance_recorded(held, 23), 10),
            (events.attendance_recorded(held, 21), 11),  # corrected later: the newest counts
            (events.attendance_recorded(called_off, 9), 12),
            (events.dialogue_event_cancelled(called_off), 13),
        ],
    )

    metrics = aggregate(projection)[PROGRAM].metrics

    assert metrics[DIALOGUE_EVENTS] == 1
    assert metrics[DIALOGUE_EVENTS_CANCELLED] == 1
    assert metrics[ATTENDED] == 21


def test_a_profile_update_changes_the_kind_and_name(events) -> None:
    projection = project(
        events,
        [
            (events.municipality_registered(KL), 0),
            (
                events.profile_updated(KL, name="Stadt Kaiserslautern", kind=MunicipalityKind.TOWN),
                1,
            ),
        ],
    )

    metrics = aggregate(projection)[PROGRAM].metrics

    assert metrics[kind_metric("town")] == 1
    assert metrics[kind_metric("city")] == 0
    assert projection.municipality_name(KL) == "Stadt Kaiserslautern"


def test_registrations_by_sector_and_by_day_in_berlin(events) -> None:
    dialogue = events.dialogue_event_scheduled(KL)
    late_evening = datetime(2026, 11, 1, 23, 30, tzinfo=UTC)  # 2 November in Berlin
    registrations = [
        events.participant_registered(dialogue_event_id=dialogue.dialogue_event_id, sector=sector)
        for sector in (Sector.BUSINESS, Sector.BUSINESS, Sector.POLITICS)
    ]
    facts = [fact_of(events.envelope(dialogue, time=T0))]
    facts += [fact_of(events.envelope(r, time=late_evening)) for r in registrations[:2]]
    facts.append(fact_of(events.envelope(registrations[2], time=T0)))

    figures = aggregate(Projection.from_facts(facts))[PROGRAM]

    assert figures.metrics[sector_metric("business")] == 2
    assert figures.metrics[sector_metric("politics")] == 1
    assert figures.metrics[sector_metric("resident")] == 0
    assert figures.daily == {"2026-11-01": 1, "2026-11-02": 2}


def test_a_second_confirmation_mail_to_the_same_registration_is_one_person(events) -> None:
    dialogue = events.dialogue_event_scheduled(KL)
    registered = events.participant_registered(dialogue_event_id=dialogue.dialogue_event_id)
    mail = {"registration_id": registered.registration_id, "dialogue_event_id": "x"}

    projection = project(
        events,
        [
            (registered, 0),
            (events.notification_sent(**mail), 1),
            (events.notification_sent(**mail), 2),
        ],
    )

    assert aggregate(projection)[PROGRAM].metrics[CONFIRMATIONS_SENT] == 1


def test_an_empty_program_has_zero_counts_and_no_as_of() -> None:
    figures = aggregate(Projection())

    assert list(figures) == [PROGRAM]
    assert set(figures[PROGRAM].metrics.values()) == {0}
    assert figures[PROGRAM].daily == {}
    assert figures[PROGRAM].as_of is None
