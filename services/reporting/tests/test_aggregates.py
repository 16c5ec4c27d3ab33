"""Counting the projections into program and municipality figures (no I/O)."""

from datetime import UTC, datetime, timedelta

from wok_contracts import AggregateScope
from wok_reporting.domain import (
    CONFIRMATIONS_SENT,
    DIALOGUE_EVENTS,
    MUNICIPALITIES,
    PROGRAM,
    REGISTRATIONS_CONFIRMED,
    REGISTRATIONS_TOTAL,
    REGISTRATIONS_WAITLISTED,
    DialogueEventRow,
    MunicipalityRow,
    NotificationRow,
    Projection,
    RegistrationRow,
    aggregate,
    supersedes,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
KL, MZ = "07312000", "07315000"


def municipality(ags: str, at: datetime = T0) -> MunicipalityRow:
    return MunicipalityRow(ags=ags, name=f"Gemeinde {ags}", kind="city", land="07", event_time=at)


def registration(
    registration_id: str, ags: str, status: str = "confirmed", at: datetime = T0
) -> RegistrationRow:
    return RegistrationRow(
        registration_id=registration_id,
        dialogue_event_id=f"event-{ags}",
        ags=ags,
        status=status,
        event_time=at,
    )


def confirmation(notification_id: str, registration_id: str, ags: str) -> NotificationRow:
    return NotificationRow(
        notification_id=notification_id,
        registration_id=registration_id,
        ags=ags,
        kind="confirmation",
        event_time=T0,
    )


def test_program_and_each_municipality_are_counted_from_their_rows() -> None:
    projection = Projection.of(
        [
            municipality(KL),
            municipality(MZ),
            DialogueEventRow(dialogue_event_id="event-kl", ags=KL, event_time=T0),
            registration("r1", KL),
            registration("r2", KL, "waitlisted"),
            registration("r3", MZ, at=T0 + timedelta(hours=2)),
            confirmation("n1", "r1", KL),
        ]
    )

    figures = aggregate(projection)

    assert set(figures) == {PROGRAM, f"municipality:{KL}", f"municipality:{MZ}"}
    assert figures[PROGRAM].metrics == {
        MUNICIPALITIES: 2,
        DIALOGUE_EVENTS: 1,
        REGISTRATIONS_TOTAL: 3,
        REGISTRATIONS_CONFIRMED: 2,
        REGISTRATIONS_WAITLISTED: 1,
        CONFIRMATIONS_SENT: 1,
    }
    kaiserslautern = figures[f"municipality:{KL}"]
    assert kaiserslautern.scope is AggregateScope.MUNICIPALITY
    assert kaiserslautern.key == KL
    assert kaiserslautern.metrics[REGISTRATIONS_TOTAL] == 2
    assert figures[f"municipality:{MZ}"].metrics[MUNICIPALITIES] == 1


def test_as_of_is_the_newest_event_time_within_the_scope() -> None:
    later = T0 + timedelta(hours=2)
    figures = aggregate(Projection.of([registration("r1", KL), registration("r2", MZ, at=later)]))

    assert figures[PROGRAM].as_of == later
    assert figures[f"municipality:{KL}"].as_of == T0


def test_an_empty_program_has_zero_counts_and_no_as_of() -> None:
    figures = aggregate(Projection())

    assert list(figures) == [PROGRAM]
    assert set(figures[PROGRAM].metrics.values()) == {0}
    assert figures[PROGRAM].as_of is None


def test_a_second_confirmation_mail_to_the_same_registration_is_one_person() -> None:
    projection = Projection.of(
        [registration("r1", KL), confirmation("n1", "r1", KL), confirmation("n2", "r1", KL)]
    )

    assert aggregate(projection)[PROGRAM].metrics[CONFIRMATIONS_SENT] == 1


def test_a_late_older_event_does_not_replace_a_newer_row() -> None:
    newer = registration("r1", KL, "confirmed", at=T0 + timedelta(minutes=5))
    older = registration("r1", KL, "waitlisted", at=T0)

    assert not supersedes(older, newer)
    assert supersedes(newer, older)
    assert supersedes(newer, newer)
    assert supersedes(older, None)
