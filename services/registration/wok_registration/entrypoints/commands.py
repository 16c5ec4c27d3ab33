"""Commands from municipal systems over Kafka (`registration.commands.v1`).

The same contract bounds and domain rules as the HTTP routes. A command that breaks them
changes nothing; the sender learns why from a `CommandRejected` event (keyed by its AGS,
one reason per field) on `registration.events.v1`, and the original message goes to
`dead-letter.registration-commands.v1` with the reason, its bytes, key and headers.

Who may send is the broker's business (SASL and ACLs per municipality in production);
here the envelope's `municipality` must be the command's `ags`, onboarded.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from wok_contracts import (
    CancelDialogueEvent,
    ChangeDialogueEvent,
    CommandRejected,
    Envelope,
    FieldProblem,
    RecordAttendance,
    RescheduleDialogueEvent,
    ScheduleDialogueEvent,
    new_envelope,
    validate_ags,
)
from wok_contracts.events.registration import REGISTRATION_COMMANDS
from wok_contracts.topics import REGISTRATION_EVENTS, TopicSpec, dead_letter_topic
from wok_registration import domain
from wok_registration.adapters.repository import AlreadyExists
from wok_registration.handlers import SOURCE, Conflict, NotFound, RegistrationHandlers
from wok_runtime.consumer import EventProcessor, ProcessedStore, Record, RetryPolicy
from wok_runtime.logging import get_logger
from wok_runtime.outbox import Publisher

COMMAND_GROUP = "registration-commands"
COMMANDS: dict[str, type[Any]] = {
    model.event_type: model
    for model in (
        ScheduleDialogueEvent,
        CancelDialogueEvent,
        ChangeDialogueEvent,
        RescheduleDialogueEvent,
        RecordAttendance,
    )
}
# Rejection ids derive from the command id, so a redelivered command is rejected once.
_REJECTION_NAMESPACE = uuid.UUID("6f1d0c8e-2b1a-4f4e-9a51-5d0c2f1e7a10")

log = get_logger(__name__)


class Rejected(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


def command_topics(partitions: int) -> list[TopicSpec]:
    return [
        TopicSpec(REGISTRATION_COMMANDS, partitions),
        TopicSpec(dead_letter_topic(COMMAND_GROUP), partitions=1),
    ]


def contract_problems(value: bytes | None) -> tuple[dict[str, Any], list[FieldProblem]]:
    """The envelope as far as it could be read, and what is wrong with it (empty if valid)."""
    try:
        raw = json.loads(value or b"")
    except ValueError as error:
        return {}, [FieldProblem(field="message", reason=f"not JSON: {error}")]
    if not isinstance(raw, dict):
        return {}, [FieldProblem(field="message", reason="not a JSON object")]
    model = COMMANDS.get(str(raw.get("type")))
    if model is None:
        known = ", ".join(sorted(COMMANDS))
        return raw, [FieldProblem(field="type", reason=f"unknown command; one of {known}")]
    try:
        Envelope[model].model_validate(raw)  # type: ignore[valid-type]
    except ValidationError as error:
        return raw, [
            FieldProblem(field=".".join(str(part) for part in e["loc"]), reason=e["msg"])
            for e in error.errors()
        ]
    return raw, []


class CommandProcessor(EventProcessor):
    """The runtime's reliable processor, plus rejections the sender can read."""

    def __init__(
        self,
        *,
        handlers: RegistrationHandlers,
        processed: ProcessedStore,
        publisher: Publisher,
        retry: RetryPolicy,
    ) -> None:
        self._registration = handlers
        self._publisher = publisher
        self._current: Record | None = None
        super().__init__(
            consumer=COMMAND_GROUP,
            handlers={
                ScheduleDialogueEvent: self.schedule_dialogue_event,
                CancelDialogueEvent: self.cancel_dialogue_event,
                ChangeDialogueEvent: self.change_dialogue_event,
                RescheduleDialogueEvent: self.reschedule_dialogue_event,
                RecordAttendance: self.record_attendance,
            },
            processed=processed,
            dead_letters=publisher,
            dead_letter_topic=dead_letter_topic(COMMAND_GROUP),
            retry=retry,
        )

    async def admit(self, record: Record) -> Envelope[Any] | None:
        """A command that breaks its contract is rejected (a reply and a dead letter) with
        one reason per field; the rest as any consumer admits a record."""
        raw, problems = contract_problems(record.value)
        if problems:
            await self.reject(record, raw, problems)
            self.count(str(raw.get("type") or "unknown"), "dead_lettered")
            return None
        return await super().admit(record)

    async def apply(self, record: Record, envelope: Envelope[Any]) -> bool:
        # One command at a time (in batch order): the handlers reject the current record.
        self._current = record
        try:
            return await super().apply(record, envelope)
        finally:
            self._current = None

    async def reject(
        self, record: Record, raw: dict[str, Any], problems: list[FieldProblem]
    ) -> None:
        data: dict[str, Any] = raw["data"] if isinstance(raw.get("data"), dict) else {}
        ags = _readable_ags(raw.get("municipality")) or _readable_ags(data.get("ags"))
        command_id = str(raw.get("id") or f"{record.topic}:{record.partition}:{record.offset}")
        rejection = new_envelope(
            CommandRejected(
                ags=ags,
                command_id=command_id,
                command_type=str(raw.get("type") or "unknown"),
                problems=problems,
            ),
            source=SOURCE,
            municipality=ags,
            subject=command_id,
            correlation_id=str(raw.get("correlationid") or "") or None,
        )
        rejection.id = str(uuid.uuid5(_REJECTION_NAMESPACE, command_id))
        await self._publisher.publish(
            topic=REGISTRATION_EVENTS,
            key=ags or "",
            value=rejection.to_json_bytes(),
            headers={"content-type": "application/cloudevents+json"},
        )
        reason = "; ".join(f"{p.field}: {p.reason}" for p in problems)
        await self._dead_letter(record, f"command rejected: {reason}")
        log.info("command rejected", command_id=command_id, ags=ags, problems=len(problems))

    async def _run_domain(self, envelope: Envelope[Any], action: Any) -> None:
        data = envelope.data
        try:
            if envelope.municipality != data.ags:
                raise Rejected(
                    [FieldProblem(field="municipality", reason=f"must be data.ags ({data.ags})")]
                )
            try:
                await self._registration.get_municipality(data.ags)
            except NotFound as error:
                raise Rejected([FieldProblem(field="data.ags", reason=str(error))]) from error
            await action(data)
        except Rejected as rejected:
            assert self._current is not None
            raw = json.loads(self._current.value or b"{}")
            await self.reject(self._current, raw, rejected.problems)

    async def schedule_dialogue_event(self, envelope: Envelope[Any]) -> None:
        async def schedule(data: ScheduleDialogueEvent) -> None:
            fields = data.model_dump(exclude={"ags"})
            fields["languages"] = tuple(fields["languages"])
            fields["target_sectors"] = tuple(data.target_sectors)
            try:
                await self._registration.schedule_dialogue_event(
                    ags=data.ags,
                    fields=fields,
                    dialogue_event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, envelope.id)),
                )
            except domain.InvalidSchedule as error:
                raise Rejected(
                    [FieldProblem(field=f"data.{error.field}", reason=error.reason)]
                ) from error
            except AlreadyExists:
                log.info("command already applied", command_id=envelope.id)

        await self._run_domain(envelope, schedule)

    async def cancel_dialogue_event(self, envelope: Envelope[Any]) -> None:
        async def cancel(data: CancelDialogueEvent) -> None:
            try:
                await self._registration.cancel_dialogue_event(
                    ags=data.ags,
                    dialogue_event_id=data.dialogue_event_id,
                    reason=data.reason,
                    command_id=envelope.id,
                )
            except NotFound as error:
                raise Rejected(
                    [FieldProblem(field="data.dialogue_event_id", reason=str(error))]
                ) from error
            except domain.EventNotChangeable as error:
                if "cancelled" in str(error):
                    return  # already done (perhaps by this very command, delivered twice)
                raise Rejected(
                    [FieldProblem(field="data.dialogue_event_id", reason=str(error))]
                ) from error

        await self._run_domain(envelope, cancel)

    async def change_dialogue_event(self, envelope: Envelope[Any]) -> None:
        async def change(data: ChangeDialogueEvent) -> None:
            changes = data.changes()
            if not changes:
                raise Rejected([FieldProblem(field="data", reason="nothing to change")])
            for name in ("languages", "target_sectors"):
                if changes.get(name) is not None:
                    changes[name] = tuple(changes[name])
            with _rejected_on_domain_errors():
                await self._registration.change_dialogue_event(
                    ags=data.ags,
                    dialogue_event_id=data.dialogue_event_id,
                    changes=changes,
                    command_id=envelope.id,
                )

        await self._run_domain(envelope, change)

    async def reschedule_dialogue_event(self, envelope: Envelope[Any]) -> None:
        async def reschedule(data: RescheduleDialogueEvent) -> None:
            with _rejected_on_domain_errors():
                current = await self._registration.get_dialogue_event(data.dialogue_event_id)
                if _already_rescheduled(current, data):
                    # the same command again (redelivered after a crash): participants must not
                    # get a second "rescheduled" e-mail for one change
                    log.info("command already applied", command_id=envelope.id)
                    return
                await self._registration.reschedule_dialogue_event(
                    ags=data.ags,
                    dialogue_event_id=data.dialogue_event_id,
                    starts_at=data.starts_at,
                    ends_at=data.ends_at,
                    registration_deadline=data.registration_deadline,
                    place=data.place,
                    command_id=envelope.id,
                )

        await self._run_domain(envelope, reschedule)

    async def record_attendance(self, envelope: Envelope[Any]) -> None:
        async def record(data: RecordAttendance) -> None:
            with _rejected_on_domain_errors():
                await self._registration.record_attendance(
                    ags=data.ags,
                    dialogue_event_id=data.dialogue_event_id,
                    attended=data.attended,
                    command_id=envelope.id,
                )

        await self._run_domain(envelope, record)


@contextlib.contextmanager
def _rejected_on_domain_errors() -> Iterator[None]:
    """The domain's refusals as rejections naming the field, like the HTTP routes' 4xx."""
    try:
        yield
    except NotFound as error:
        raise Rejected([FieldProblem(field="data.dialogue_event_id", reason=str(error))]) from error
    except domain.InvalidSchedule as error:
        raise Rejected([FieldProblem(field=f"data.{error.field}", reason=error.reason)]) from error
    except (Conflict, domain.DomainError) as error:
        raise Rejected([FieldProblem(field="data", reason=str(error))]) from error


def _already_rescheduled(current: domain.DialogueEvent, data: RescheduleDialogueEvent) -> bool:
    return (
        current.starts_at == data.starts_at
        and current.ends_at == data.ends_at
        and (data.registration_deadline in (None, current.registration_deadline))
        and (data.place in (None, current.place))
    )


def _readable_ags(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return validate_ags(value)
    except ValueError:
        return None
