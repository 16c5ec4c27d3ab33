"""A municipality's own system sends commands over Kafka with the contracts package as its
SDK: the same rules as HTTP; a refused command comes back as `CommandRejected` (keyed by the
AGS, one reason per field) and the original goes to the dead-letter topic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.registration.tests.conftest import KAISERSLAUTERN, STARTS, Harness
from wok_contracts import (
    CancelDialogueEvent,
    ChangeDialogueEvent,
    EventFormat,
    RecordAttendance,
    RescheduleDialogueEvent,
    ScheduleDialogueEvent,
    new_envelope,
)
from wok_contracts.events.registration import REGISTRATION_COMMANDS


def schedule_command(**overrides: Any) -> ScheduleDialogueEvent:
    fields: dict[str, Any] = {
        "ags": KAISERSLAUTERN,
        "title": "Dialog aus dem Fachverfahren",
        "starts_at": STARTS,
        "ends_at": STARTS + timedelta(hours=2),
        "format": EventFormat.IN_PERSON,
        "place": "Rathaus",
        "capacity": 30,
        "registration_deadline": STARTS - timedelta(days=5),
    }
    return ScheduleDialogueEvent(**(fields | overrides))


async def send(harness: Harness, value: bytes, key: str = KAISERSLAUTERN) -> None:
    await harness.runtime.broker.publish(value, topic=REGISTRATION_COMMANDS, key=key.encode())


def envelope_bytes(data: Any, municipality: str = KAISERSLAUTERN) -> bytes:
    return new_envelope(
        data, source="/kaiserslautern/fachverfahren", municipality=municipality
    ).to_json_bytes()


async def rejections(harness: Harness) -> list[Any]:
    return [e for e in await harness.published_events() if e.type.endswith("rejected.v1")]


async def test_a_schedule_command_schedules_once_even_when_delivered_twice(
    harness: Harness,
) -> None:
    await harness.onboard()
    value = envelope_bytes(schedule_command())
    await send(harness, value)
    await send(harness, value)
    scheduled = [e for e in await harness.published_events() if "scheduled" in e.type]
    assert len(scheduled) == 1
    event_id = scheduled[0].data.dialogue_event_id
    view = await harness.event(event_id)
    assert view["title"] == "Dialog aus dem Fachverfahren"
    assert view["when"] == "Dienstag, 10. Dezember 2030, 18:00–20:00 Uhr"
    assert harness.dead_letters == [] and await rejections(harness) == []

    await send(
        harness,
        envelope_bytes(
            CancelDialogueEvent(ags=KAISERSLAUTERN, dialogue_event_id=event_id, reason="Umzug")
        ),
    )
    assert (await harness.event(event_id))["status"] == "cancelled"


def _raw_schedule(**data_overrides: Any) -> bytes:
    envelope = json.loads(envelope_bytes(schedule_command()))
    envelope["data"].update(data_overrides)
    envelope["data"] = {k: v for k, v in envelope["data"].items() if v is not ...}
    return json.dumps(envelope).encode()


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (_raw_schedule(title=...), "data.title"),
        (_raw_schedule(starts_at="2030-12-10T18:00:00"), "data.starts_at"),
        (_raw_schedule(capacity=0), "data.capacity"),
        (_raw_schedule(ags="17000000"), "data.ags"),
        (_raw_schedule(format="in_person", place=None), "data.place"),
        (
            _raw_schedule(
                starts_at=(datetime.now(UTC) - timedelta(days=2)).isoformat(),
                ends_at=(datetime.now(UTC) - timedelta(days=1)).isoformat(),
                registration_deadline=(datetime.now(UTC) - timedelta(days=3)).isoformat(),
            ),
            "data.starts_at",
        ),
        (_raw_schedule(ends_at=(STARTS - timedelta(hours=1)).isoformat()), "data.ends_at"),
        (_raw_schedule(ags="05911000"), "municipality"),
    ],
)
async def test_an_invalid_command_is_rejected_per_field_and_dead_lettered(
    harness: Harness, value: bytes, field: str
) -> None:
    await harness.onboard()
    before = [e for e in await harness.published_events() if not e.type.endswith("rejected.v1")]
    await send(harness, value)
    [rejection] = await rejections(harness)
    assert rejection.municipality == KAISERSLAUTERN
    assert rejection.data.ags == KAISERSLAUTERN
    assert field in [problem.field for problem in rejection.data.problems]
    assert rejection.data.command_id == json.loads(value)["id"]
    [dead] = harness.dead_letters
    assert dead.value == value
    assert field in dict(dead.headers)["wok-dlq-reason"].decode()
    after = [e for e in await harness.published_events() if not e.type.endswith("rejected.v1")]
    assert after == before, "nothing was scheduled"


@pytest.mark.parametrize("harness", ["memory"], indirect=True)
async def test_a_command_for_a_municipality_not_onboarded_or_unreadable_is_rejected(
    harness: Harness,
) -> None:
    await send(harness, envelope_bytes(schedule_command()))
    await send(harness, b"not json at all", key="07312000")
    await send(harness, json.dumps({"type": "registration.command.delete_everything.v1"}).encode())
    found = await rejections(harness)
    assert [[p.field for p in r.data.problems] for r in found] == [
        ["data.ags"],
        ["message"],
        ["type"],
    ]
    assert "not onboarded" in found[0].data.problems[0].reason
    assert len(harness.dead_letters) == 3
    assert harness.dead_letters[1].value == b"not json at all"


async def test_cancelling_an_unknown_event_by_command_is_rejected(harness: Harness) -> None:
    await harness.onboard()
    await send(
        harness, envelope_bytes(CancelDialogueEvent(ags=KAISERSLAUTERN, dialogue_event_id="nope"))
    )
    [rejection] = await rejections(harness)
    assert [p.field for p in rejection.data.problems] == ["data.dialogue_event_id"]


def command(data: Any) -> bytes:
    return envelope_bytes(data)


async def test_change_reschedule_and_attendance_commands_do_what_http_does(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    await harness.register(event_id, 1)

    await send(
        harness,
        command(
            ChangeDialogueEvent(
                ags=KAISERSLAUTERN,
                dialogue_event_id=event_id,
                title="Dialog: Nachbarschaft",
                capacity=40,
            )
        ),
    )
    changed = await harness.event(event_id)
    assert changed["title"] == "Dialog: Nachbarschaft"
    assert changed["capacity"] == 40

    later = STARTS + timedelta(days=7)
    reschedule = command(
        RescheduleDialogueEvent(
            ags=KAISERSLAUTERN,
            dialogue_event_id=event_id,
            starts_at=later,
            ends_at=later + timedelta(hours=2),
        )
    )
    await send(harness, reschedule)
    assert (await harness.event(event_id))["when"] == "Dienstag, 17. Dezember 2030, 18:00–20:00 Uhr"

    harness.set_clock(lambda: later + timedelta(hours=3))
    await send(
        harness,
        command(RecordAttendance(ags=KAISERSLAUTERN, dialogue_event_id=event_id, attended=23)),
    )
    types = await harness.types()
    assert types.count("dialogue_event.changed.v1") == 1
    assert types.count("dialogue_event.rescheduled.v1") == 1
    assert types.count("dialogue_event.attendance_recorded.v1") == 1
    assert harness.dead_letters == [] and await rejections(harness) == []


@pytest.mark.parametrize("kind", ["change", "reschedule", "cancel", "attendance"])
async def test_a_command_carried_out_again_after_a_crash_changes_and_tells_once(
    harness: Harness, kind: str
) -> None:
    """A crash between a command's write and its processed mark delivers it again: its
    handler runs once more with the same envelope, and must change and announce nothing."""
    await harness.onboard()
    event_id = await harness.schedule()
    later = STARTS + timedelta(days=7)
    data: Any = {
        "change": ChangeDialogueEvent(
            ags=KAISERSLAUTERN, dialogue_event_id=event_id, title="Dialog: Nachbarschaft"
        ),
        "reschedule": RescheduleDialogueEvent(
            ags=KAISERSLAUTERN,
            dialogue_event_id=event_id,
            starts_at=later,
            ends_at=later + timedelta(hours=2),
        ),
        "cancel": CancelDialogueEvent(
            ags=KAISERSLAUTERN, dialogue_event_id=event_id, reason="Umzug"
        ),
        "attendance": RecordAttendance(ags=KAISERSLAUTERN, dialogue_event_id=event_id, attended=23),
    }[kind]
    if kind == "attendance":
        harness.set_clock(lambda: STARTS + timedelta(hours=3))
    envelope = new_envelope(
        data, source="/kaiserslautern/fachverfahren", municipality=KAISERSLAUTERN
    )
    await send(harness, envelope.to_json_bytes())
    carried_out = await harness.event(event_id)
    announced = await harness.types()

    handler = {
        "change": harness.commands.change_dialogue_event,
        "reschedule": harness.commands.reschedule_dialogue_event,
        "cancel": harness.commands.cancel_dialogue_event,
        "attendance": harness.commands.record_attendance,
    }[kind]
    await handler(envelope)

    assert await harness.event(event_id) == carried_out
    assert await harness.types() == announced
    assert announced[-2] == "dialogue_event.scheduled.v1"  # then this command's one event
    assert harness.dead_letters == [] and await rejections(harness) == []


async def test_the_same_reschedule_sent_again_as_a_new_command_tells_participants_once(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    later = STARTS + timedelta(days=7)

    def reschedule() -> bytes:  # a new envelope id each time: not caught as a duplicate id
        return command(
            RescheduleDialogueEvent(
                ags=KAISERSLAUTERN,
                dialogue_event_id=event_id,
                starts_at=later,
                ends_at=later + timedelta(hours=2),
            )
        )

    await send(harness, reschedule())
    await send(harness, reschedule())
    types = await harness.types()
    assert types.count("dialogue_event.rescheduled.v1") == 1


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (
            ChangeDialogueEvent(ags=KAISERSLAUTERN, dialogue_event_id="nope", title="X"),
            "data.dialogue_event_id",
        ),
        (
            RecordAttendance(ags=KAISERSLAUTERN, dialogue_event_id="EVENT", attended=5),
            "data",  # before the event started
        ),
        (
            RescheduleDialogueEvent(
                ags=KAISERSLAUTERN,
                dialogue_event_id="EVENT",
                starts_at=STARTS,
                ends_at=STARTS - timedelta(hours=1),
            ),
            "data.ends_at",
        ),
        (ChangeDialogueEvent(ags=KAISERSLAUTERN, dialogue_event_id="EVENT"), "data"),
    ],
)
async def test_refused_change_reschedule_and_attendance_commands_name_the_field(
    harness: Harness, data: Any, field: str
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    if getattr(data, "dialogue_event_id", None) == "EVENT":
        data = data.model_copy(update={"dialogue_event_id": event_id})
    before = await harness.event(event_id)
    await send(harness, command(data))
    [rejection] = await rejections(harness)
    assert [p.field for p in rejection.data.problems] == [field]
    assert len(harness.dead_letters) == 1
    assert await harness.event(event_id) == before
