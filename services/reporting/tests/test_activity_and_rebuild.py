"""The exchange activity stream and the rebuild, through the service on the test broker."""

from datetime import UTC, datetime, timedelta

from faststream.kafka import TestKafkaBroker

from services.reporting.tests.test_service import listen
from wok_contracts import ActivityKind, RegistrationStatus, decode_envelope
from wok_contracts.topics import EXCHANGE_ACTIVITY, NOTIFICATION_EVENTS, REGISTRATION_EVENTS
from wok_reporting.digests import digest_id
from wok_reporting.domain import (
    PROGRAM,
    REGISTRATIONS_CANCELLED,
    REGISTRATIONS_TOTAL,
)
from wok_reporting.rebuild import rebuilt_from

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def program_story(events):
    """A municipality's activities and its residents' registrations, as envelopes in order."""
    ags = events.KAISERSLAUTERN
    dialogue = events.dialogue_event_scheduled(ags)
    registrations = [
        events.participant_registered(
            dialogue_event_id=dialogue.dialogue_event_id,
            status=RegistrationStatus.WAITLISTED if n == 6 else RegistrationStatus.CONFIRMED,
        )
        for n in range(7)
    ]
    payloads = [
        events.municipality_registered(ags, name="Kaiserslautern"),
        dialogue,
        *registrations,
        events.participant_cancelled(registrations[0]),
        events.participant_promoted(registrations[6]),
        events.participant_erased(registrations[1]),
        events.dialogue_event_rescheduled(
            dialogue, starts_at=datetime(2026, 12, 17, 17, tzinfo=UTC)
        ),
        events.attendance_recorded(dialogue, 6),
    ]
    envelopes = [
        events.envelope(data, time=T0 + timedelta(minutes=n)) for n, data in enumerate(payloads)
    ]
    mail = events.notification_sent(
        registration_id=registrations[2].registration_id,
        dialogue_event_id=dialogue.dialogue_event_id,
    )
    return envelopes, events.envelope(mail, time=T0 + timedelta(minutes=3))


async def test_each_municipality_activity_is_published_once_as_a_digest(service, events) -> None:
    activity = listen(service.runtime.broker, EXCHANGE_ACTIVITY)
    envelopes, _ = program_story(events)
    rescheduled = envelopes[-2]

    async with TestKafkaBroker(service.runtime.broker) as broker:
        for envelope in envelopes:
            await broker.publish(
                envelope.to_json_bytes(), topic=REGISTRATION_EVENTS, key=b"07312000"
            )
        # The same event again after a crash before its processed mark: same digest, once.
        await service.app.state.projector.apply(rescheduled)
        await service.runtime.relay.drain_once()
        await service.runtime.relay.drain_once()

    digests = [decode_envelope(value) for _, value in activity.messages]
    assert [d.data.kind for d in digests] == [
        ActivityKind.MUNICIPALITY_JOINED,
        ActivityKind.DIALOGUE_EVENT_SCHEDULED,
        ActivityKind.DIALOGUE_EVENT_RESCHEDULED,
        ActivityKind.ATTENDANCE_RECORDED,
    ]  # no digest of what residents did (registered, cancelled, promoted, erased)
    assert {headers["key"] for headers, _ in activity.messages} == {"07312000"}
    moved = digests[2]
    assert moved.id == digest_id(rescheduled.id)
    assert moved.municipality == "07312000"
    assert moved.data.municipality_name == "Kaiserslautern"
    assert (
        moved.data.text_en == "Kaiserslautern's dialogue event was rescheduled to 17 December 2026."
    )
    assert moved.data.text_de == (
        "Die Dialogveranstaltung von Kaiserslautern wurde auf den 17.12.2026 verlegt."
    )
    assert moved.data.source_event_id == rescheduled.id
    assert "6" not in digests[3].data.text_de  # attendance: no count of people
    assert moved.correlationid == rescheduled.correlationid


async def test_state_after_live_consumption_equals_the_state_after_a_rebuild(
    service, events
) -> None:
    envelopes, mail = program_story(events)
    raw = [envelope.to_json_bytes() for envelope in envelopes]

    async with TestKafkaBroker(service.runtime.broker) as broker:
        for value in raw:
            await broker.publish(value, topic=REGISTRATION_EVENTS, key=b"07312000")
        await broker.publish(mail.to_json_bytes(), topic=NOTIFICATION_EVENTS, key=b"07312000")
        await broker.publish(b"{not json", topic=REGISTRATION_EVENTS, key=b"07312000")
        await service.publisher.publish_changes()

    live = await service.projections.load()
    # The topics as a rebuild reads them: partitions interleaved, duplicates and poison included.
    rebuilt, read, skipped = await rebuilt_from(
        [mail.to_json_bytes(), *raw[::-1], raw[3], b"{not json"]
    )

    assert await rebuilt.projections.load() == live
    assert await rebuilt.activities.all() == await service.activities.all()
    assert (read, skipped) == (len(raw) + 3, 1)
    program = await service.publisher.current(PROGRAM)
    assert program is not None
    assert program.metrics[REGISTRATIONS_TOTAL] == 7
    assert program.metrics[REGISTRATIONS_CANCELLED] is None  # 1 person: withheld
    # The rebuilt digests are stored as published already: nothing to announce again.
    rebuilt_documents = rebuilt.activities.documents.values()
    assert all(document["outbox_pending"] == 0 for document in rebuilt_documents)
