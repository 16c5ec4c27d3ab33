"""An event travels as a CloudEvents envelope in bytes and comes back as the same typed event."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import (
    CONTENT_TYPE,
    REGISTRY,
    ActivityDigest,
    ActivityKind,
    AggregateScope,
    AggregateSnapshot,
    ContractError,
    DialogueEventScheduled,
    EventData,
    EventFormat,
    MunicipalityKind,
    MunicipalityRegistered,
    NotificationKind,
    NotificationSent,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    decode_envelope,
    events,
    new_envelope,
)
from wok_contracts.topics import (
    ALL_TOPICS,
    EXCHANGE_AGGREGATES,
    dead_letter_topic,
    topic_specs,
)

KAISERSLAUTERN = "07312000"
STARTS_AT = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)


def sample_events() -> list[EventData]:
    """One payload of every contract, as the producers would build them."""
    return [
        MunicipalityRegistered(
            ags=KAISERSLAUTERN,
            name="Kaiserslautern",
            kind=MunicipalityKind.CITY,
            land="07",
            population=101_000,
        ),
        DialogueEventScheduled(
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            title="Dialog: Zusammenhalt in der Stadt",
            starts_at=STARTS_AT,
            ends_at=STARTS_AT + timedelta(hours=2, minutes=30),
            format=EventFormat.ONLINE,
            capacity=80,
            registration_deadline=STARTS_AT - timedelta(days=10),
            languages=["de", "en"],
        ),
        ParticipantRegistered(
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            status=RegistrationStatus.CONFIRMED,
            sector=Sector.CIVIL_SOCIETY,
        ),
        NotificationSent(
            notification_id="ntf-1",
            kind=NotificationKind.CONFIRMATION,
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            language="de",
            sent_at=STARTS_AT - timedelta(days=20),
        ),
        AggregateSnapshot(
            scope=AggregateScope.LAND,
            scope_key="07",
            sequence=3,
            as_of=STARTS_AT,
            generated_at=STARTS_AT,
            metrics={"registrations": 12, "sector.business": None},
            suppressed=["sector.business"],
        ),
        ActivityDigest(
            municipality="07312000",
            municipality_name="Kaiserslautern",
            kind=ActivityKind.DIALOGUE_EVENT_SCHEDULED,
            text_de="Kaiserslautern hat eine Dialogveranstaltung am 10.12.2026 angesetzt.",
            text_en="Kaiserslautern scheduled a dialogue event on 10 December 2026.",
            occurred_at=STARTS_AT - timedelta(days=30),
            subject_id="event-1",
            source_event_id="00000000-0000-4000-8000-000000000001",
        ),
        *registration_samples(),
        # assessment samples: append the assessment service's payloads here
        *assessment_samples(),
        # notification samples: append the notification service's payloads here
        NotificationSent(
            notification_id="rescheduled:reg-1:2",
            kind=NotificationKind.RESCHEDULED,
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            language="ar",
            sent_at=STARTS_AT - timedelta(days=5),
            revision=2,
        ),
        events.NotificationFailed(
            notification_id="reminder:reg-1",
            kind=NotificationKind.REMINDER,
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            attempts=8,
            reason="mail server unavailable for 900 s after 8 attempts",
            failed_at=STARTS_AT - timedelta(days=1),
        ),
        # exchange samples: the exchange service's payloads
        *exchange_samples(),
    ]


def exchange_samples() -> list[EventData]:
    """The exchange service's payloads: a pair told to one side and withdrawn, a peer's
    measure shared."""
    return [
        events.PeerSuggested(
            suggestion_id=f"2:{KAISERSLAUTERN}:07315000",
            recipient=KAISERSLAUTERN,
            role=events.PeerRole.LEARNS,
            field=2,
            needing=KAISERSLAUTERN,
            offering="07315000",
            peer="07315000",
            peer_name="Mainz",
            reason=events.PeerReason.STRENGTH,
            needing_score=22.5,
            offering_score=81.0,
            measures=[
                events.PeerMeasure(
                    measure_id="m-1",
                    title="Antirassismus-Schulungen der Verwaltung",
                    status=events.MeasureStatus.RUNNING,
                )
            ],
        ),
        events.PeerSuggestionWithdrawn(
            suggestion_id=f"2:{KAISERSLAUTERN}:07315000",
            recipient="07315000",
            role=events.PeerRole.SHARES,
            field=2,
            needing=KAISERSLAUTERN,
            offering="07315000",
            peer=KAISERSLAUTERN,
            peer_name="Kaiserslautern",
            reason=events.PeerWithdrawalReason.DEFICIT_CLOSED,
        ),
        events.PeerActivityShared(
            item_id=f"{KAISERSLAUTERN}:00000000-0000-4000-8000-000000000002",
            recipient=KAISERSLAUTERN,
            peer="07315000",
            peer_name="Mainz",
            kind=events.PeerActivityKind.MEASURE_PLANNED,
            fields=[2],
            text_de="Mainz plant die Maßnahme „Beratungsstelle“.",
            text_en="Mainz planned the measure “Beratungsstelle”.",
            occurred_at=STARTS_AT - timedelta(days=20),
            source_event_id="00000000-0000-4000-8000-000000000002",
        ),
    ]


def assessment_samples() -> list[EventData]:
    """The assessment service's payloads: a self-check, its score, a workshop, a measure."""
    scores = [
        events.FieldScore(
            field=number,
            score=None if number == 7 else 12.5 * number,
            level="insufficient_data" if number == 7 else "developing",
            coverage=0.25 if number == 7 else 0.875,
            answered=2 if number == 7 else 7,
            questions=8,
        )
        for number in range(1, 8)
    ]
    return [
        events.SelfCheckStarted(
            self_check_id="07312000-1", ags=KAISERSLAUTERN, sequence=1, catalogue_version="2026.1"
        ),
        events.SelfCheckSubmitted(
            self_check_id="07312000-1",
            ags=KAISERSLAUTERN,
            sequence=1,
            catalogue_version="2026.1",
            questions=58,
            answered=44,
            dont_know=3,
            submitted_at=STARTS_AT,
        ),
        events.AssessmentScored(
            self_check_id="07312000-1",
            ags=KAISERSLAUTERN,
            sequence=1,
            catalogue_version="2026.1",
            fields=scores,
            overall=43.8,
            overall_level="developing",
            strengths=[6],
            deficits=[1, 2, 3],
        ),
        events.WorkshopPerspectiveRecorded(
            perspective_id="psp-1",
            ags=KAISERSLAUTERN,
            workshop="2026-05 Auftakt",
            stakeholder_group=events.StakeholderGroup.CIVIL_SOCIETY,
            ratings=[
                events.FieldRating(field=6, rating=40),
                events.FieldRating(field=2, rating=35),
            ],
        ),
        events.MeasurePlanned(
            measure_id="msr-1",
            ags=KAISERSLAUTERN,
            field=6,
            title="Offener Treffpunkt im Quartier",
            owner_role="Quartiersmanagement",
            status=events.MeasureStatus.PLANNED,
            starts_on=STARTS_AT.date(),
            due_on=STARTS_AT.date() + timedelta(days=180),
        ),
        events.MeasureStatusChanged(
            measure_id="msr-1",
            ags=KAISERSLAUTERN,
            field=6,
            previous_status=events.MeasureStatus.PLANNED,
            status=events.MeasureStatus.RUNNING,
            changed_on=STARTS_AT.date(),
        ),
    ]


def registration_samples() -> list[EventData]:
    """The registration service's payloads beyond the walking skeleton's."""
    ends_at = STARTS_AT + timedelta(hours=2)
    return [
        events.MunicipalityKeyIssued(ags=KAISERSLAUTERN, key_id="key-1", key_hash="0" * 64),
        events.MunicipalityKeyRevoked(ags=KAISERSLAUTERN, key_id="key-1"),
        events.MunicipalityProfileUpdated(
            ags=KAISERSLAUTERN,
            name="Kaiserslautern",
            kind=MunicipalityKind.CITY,
            land="07",
            contact_office="Büro für Integration",
        ),
        events.DialogueEventChanged(
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            title="Dialog: Zusammenhalt",
            starts_at=STARTS_AT,
            ends_at=ends_at,
            format=EventFormat.HYBRID,
            place="Rathaus",
            capacity=60,
            registration_deadline=STARTS_AT - timedelta(days=10),
            revision=1,
        ),
        events.DialogueEventRescheduled(
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            title="Dialog: Zusammenhalt",
            starts_at=STARTS_AT + timedelta(days=7),
            ends_at=ends_at + timedelta(days=7),
            previous_starts_at=STARTS_AT,
            format=EventFormat.ONLINE,
            registration_deadline=STARTS_AT,
            revision=2,
        ),
        events.DialogueEventCancelled(
            dialogue_event_id="dlg-1", ags=KAISERSLAUTERN, revision=3, reason="Krankheit"
        ),
        events.DialogueEventScheduled(
            dialogue_event_id="dlg-2",
            ags=KAISERSLAUTERN,
            title="Jugend im Dialog",
            starts_at=STARTS_AT,
            ends_at=ends_at,
            format=EventFormat.IN_PERSON,
            place="Jugendzentrum",
            capacity=40,
            reserved_places=10,
            registration_deadline=STARTS_AT - timedelta(days=3),
            languages=["de", "tr", "ar"],
            target_sectors=[Sector.YOUTH_PARLIAMENT, Sector.RESIDENT],
        ),
        events.ParticipantRegistered(
            registration_id="reg-3",
            dialogue_event_id="dlg-2",
            ags=KAISERSLAUTERN,
            status=RegistrationStatus.WAITLISTED,
            sector=Sector.RESIDENT,
            language="tr",
            age_band=events.AgeBand.FROM_18_TO_29,
        ),
        events.AttendanceRecorded(dialogue_event_id="dlg-1", ags=KAISERSLAUTERN, attended=31),
        events.ParticipantCancelled(
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            previous_status=RegistrationStatus.CONFIRMED,
        ),
        events.ParticipantPromoted(
            registration_id="reg-2", dialogue_event_id="dlg-1", ags=KAISERSLAUTERN
        ),
        events.ParticipantErased(
            registration_id="reg-1", dialogue_event_id="dlg-1", ags=KAISERSLAUTERN
        ),
        events.TaskforceMemberAdded(
            member_id="tf-1",
            ags=KAISERSLAUTERN,
            role=events.TaskforceRole.LEAD,
            sector=events.TaskforceSector.MIGRANT_ADVISORY_COUNCIL,
        ),
        events.TaskforceMemberRemoved(member_id="tf-1", ags=KAISERSLAUTERN),
        events.ScheduleDialogueEvent(
            ags=KAISERSLAUTERN,
            title="Dialog aus dem Fachverfahren",
            starts_at=STARTS_AT,
            ends_at=ends_at,
            format=EventFormat.ONLINE,
            online_link="https://meet.example.org/x",
            capacity=25,
            registration_deadline=STARTS_AT - timedelta(days=2),
            target_sectors=[Sector.BUSINESS],
        ),
        events.CancelDialogueEvent(ags=KAISERSLAUTERN, dialogue_event_id="dlg-1", reason="Umzug"),
        events.ChangeDialogueEvent(
            ags=KAISERSLAUTERN,
            dialogue_event_id="dlg-1",
            title="Dialog: Nachbarschaft",
            capacity=40,
            remove=["online_link"],
        ),
        events.RescheduleDialogueEvent(
            ags=KAISERSLAUTERN,
            dialogue_event_id="dlg-1",
            starts_at=datetime(2030, 12, 17, 17, 0, tzinfo=UTC),
            ends_at=datetime(2030, 12, 17, 19, 0, tzinfo=UTC),
        ),
        events.RecordAttendance(ags=KAISERSLAUTERN, dialogue_event_id="dlg-1", attended=23),
        events.CommandRejected(
            ags=KAISERSLAUTERN,
            command_id="cmd-1",
            command_type="registration.command.schedule_dialogue_event.v1",
            problems=[events.FieldProblem(field="data.starts_at", reason="is in the past")],
        ),
    ]


def test_every_contract_has_a_sample() -> None:
    assert {event.event_type for event in sample_events()} == set(REGISTRY)


@pytest.mark.parametrize("data", sample_events(), ids=lambda data: data.event_type)
def test_an_envelope_survives_the_round_trip_through_bytes(data: EventData) -> None:
    envelope = new_envelope(
        data,
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
        subject="dlg-1",
        correlation_id="corr-42",
    )

    decoded = decode_envelope(envelope.to_json_bytes())

    assert type(decoded.data) is type(data)
    assert decoded.data == data
    assert decoded.id == envelope.id
    assert decoded.type == data.event_type
    assert decoded.source == "/wok/registration"
    assert decoded.specversion == "1.0"
    assert decoded.subject == "dlg-1"
    assert decoded.municipality == KAISERSLAUTERN
    assert decoded.correlationid == "corr-42"
    assert decoded.time == envelope.time
    assert decoded.datacontenttype == "application/json"


def test_new_envelope_fills_id_time_and_correlation() -> None:
    first = new_envelope(sample_events()[0], source="/wok/registration", municipality=None)
    second = new_envelope(sample_events()[0], source="/wok/registration", municipality=None)

    assert uuid.UUID(first.id).version == 4
    assert first.id != second.id
    assert first.correlationid and first.correlationid != second.correlationid
    assert first.time.tzinfo is not None
    assert datetime.now(UTC) - first.time < timedelta(minutes=1)
    assert CONTENT_TYPE == "application/cloudevents+json"


def test_absent_optional_attributes_are_left_out_of_the_bytes() -> None:
    envelope = new_envelope(sample_events()[0], source="/wok/registration", municipality=None)

    document = json.loads(envelope.to_json_bytes())

    assert "subject" not in document
    assert "municipality" not in document
    assert decode_envelope(envelope.to_json_bytes()).municipality is None


def test_the_envelope_refuses_a_bad_municipality() -> None:
    with pytest.raises(ValueError, match="Land code 17"):
        new_envelope(sample_events()[0], source="/wok/registration", municipality="17000000")


def valid_document() -> dict[str, Any]:
    envelope = new_envelope(
        sample_events()[2], source="/wok/registration", municipality=KAISERSLAUTERN
    )
    document: dict[str, Any] = json.loads(envelope.to_json_bytes())
    return document


def as_bytes(document: Any) -> bytes:
    return json.dumps(document).encode()


def without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != key}


def with_data(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**document, "data": {**document["data"], **changes}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty message"),
        (b"", "empty message"),
        (b"{not json", "not JSON: "),
        (b"\xff\xfe\x00garbage", "not JSON: "),
        (b"[1, 2, 3]", "not a CloudEvents envelope: expected a JSON object"),
        (b'"a string"', "not a CloudEvents envelope: expected a JSON object"),
        (as_bytes(without(valid_document(), "type")), "not a CloudEvents envelope: missing 'type'"),
        (as_bytes({**valid_document(), "type": 7}), "not a CloudEvents envelope: missing 'type'"),
        (
            as_bytes({**valid_document(), "type": "registration.participant.registered.v9"}),
            "unknown event type 'registration.participant.registered.v9'",
        ),
    ],
    ids=[
        "none",
        "empty",
        "not-json",
        "not-utf8",
        "json-array",
        "json-string",
        "missing-type",
        "type-not-a-string",
        "unknown-type",
    ],
)
def test_an_undecodable_message_gets_a_specific_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ContractError) as caught:
        decode_envelope(raw)

    assert caught.value.reason.startswith(reason)
    assert str(caught.value) == caught.value.reason


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (with_data(valid_document(), status="maybe"), "data.status"),
        (with_data(valid_document(), ags="17000000"), "data.ags"),
        (with_data(valid_document(), language="Deutsch"), "data.language"),
        (with_data(valid_document(), sector=None), "data.sector"),
        (
            {**valid_document(), "data": without(valid_document()["data"], "registration_id")},
            "data.registration_id",
        ),
        (without(valid_document(), "data"), "data"),
        (without(valid_document(), "source"), "source"),
        ({**valid_document(), "municipality": "0731"}, "municipality"),
        ({**valid_document(), "time": "yesterday"}, "time"),
    ],
    ids=[
        "enum",
        "data-ags",
        "pattern",
        "null",
        "missing-field",
        "missing-data",
        "missing-source",
        "bad-municipality",
        "bad-time",
    ],
)
def test_invalid_data_is_refused_with_a_reason_naming_the_field(
    document: dict[str, Any], field: str
) -> None:
    with pytest.raises(ContractError) as caught:
        decode_envelope(as_bytes(document))

    reason = caught.value.reason
    assert reason.startswith("invalid registration.participant.registered.v1: ")
    assert f"{field}: " in reason


def test_a_naive_datetime_in_the_data_is_refused() -> None:
    envelope = new_envelope(sample_events()[1], source="/wok/registration", municipality=None)
    document = json.loads(envelope.to_json_bytes())
    document["data"]["starts_at"] = "2026-12-10T18:00:00"

    with pytest.raises(ContractError, match=r"data\.starts_at: "):
        decode_envelope(as_bytes(document))


def test_unknown_cloud_events_extensions_are_kept() -> None:
    document = {**valid_document(), "traceparent": "00-abc-def-01"}

    envelope = decode_envelope(as_bytes(document))

    assert envelope.model_extra == {"traceparent": "00-abc-def-01"}
    assert json.loads(envelope.to_json_bytes())["traceparent"] == "00-abc-def-01"


def test_topics_are_provisioned_with_a_compacted_aggregate_stream() -> None:
    specs = {spec.name: spec for spec in topic_specs(("reporting",), partitions=6)}

    assert set(ALL_TOPICS) <= set(specs)
    assert specs[EXCHANGE_AGGREGATES].compacted
    assert specs["registration.events.v1"].partitions == 6
    assert dead_letter_topic("reporting") == "dead-letter.reporting.v1"
    assert specs["dead-letter.reporting.v1"].partitions == 1


def test_an_event_from_a_newer_producer_with_an_added_optional_field_is_accepted() -> None:
    from wok_contracts import ParticipantRegistered, decode_envelope, new_envelope

    envelope = new_envelope(
        ParticipantRegistered(
            registration_id="r-1",
            dialogue_event_id="d-1",
            ags="07312000",
            status="confirmed",
            sector="resident",
        ),
        source="/test",
        municipality="07312000",
    )
    document = json.loads(envelope.to_json_bytes())
    document["data"]["channel"] = "newsletter"
    decoded = decode_envelope(json.dumps(document).encode())
    assert decoded.data.registration_id == "r-1"


def test_a_snapshot_without_events_keeps_its_null_as_of_on_the_wire() -> None:
    from datetime import UTC, datetime

    from wok_contracts import AggregateSnapshot, decode_envelope, new_envelope

    snapshot = AggregateSnapshot(
        scope="program",
        scope_key="program",
        sequence=1,
        as_of=None,
        generated_at=datetime.now(UTC),
        metrics={"registrations_total": None},
    )
    wire = new_envelope(snapshot, source="/wok/reporting", municipality=None).to_json_bytes()
    decoded = decode_envelope(wire)
    assert decoded.data.as_of is None
    assert decoded.data.metrics == {"registrations_total": None}
    assert b'"subject"' not in wire and b'"municipality"' not in wire
