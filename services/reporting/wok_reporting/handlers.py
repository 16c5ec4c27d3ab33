"""One handler per consumed event: contract in, facts and (maybe) a digest out, stored by key.

Facts are stored under their entity's id and the event's id, so a second delivery of the
same event changes nothing, and a second announcement of the same fact under another
event id folds into the same row: the count cannot grow twice. A digest is stored once per
source event (its document is keyed by the source event id and carries its outbox), so
it is published once, however often its event is delivered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from wok_contracts import (
    AssessmentScored,
    AttendanceRecorded,
    DialogueEventCancelled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    DialogueEventScheduled,
    Envelope,
    EventData,
    MeasurePlanned,
    MeasureStatusChanged,
    MunicipalityProfileUpdated,
    MunicipalityRegistered,
    NotificationSent,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
    ParticipantRegistered,
    SelfCheckStarted,
    SelfCheckSubmitted,
    TaskforceMemberAdded,
    TaskforceMemberRemoved,
    WorkshopPerspectiveRecorded,
)
from wok_reporting.adapters.repository import ActivityRepository, ProjectionRepository
from wok_reporting.digests import digest_of
from wok_reporting.domain import (
    CANCELLED,
    CONFIRMED,
    DIALOGUE_EVENT,
    MEASURE,
    MUNICIPALITY,
    NOTIFICATION,
    PERSPECTIVE,
    REGISTRATION,
    SCHEDULED,
    SELF_CHECK,
    TASKFORCE_MEMBER,
    Fact,
    FactValue,
    as_utc,
)

OnChange = Callable[[], None]


def _fields(data: Any) -> tuple[str, str, dict[str, FactValue]] | None:
    """(entity kind, entity id, the fields it sets) of a consumed event (the most frequent
    kinds first; isinstance with a tuple, much cheaper than with a `X | Y` union)."""
    fields: dict[str, FactValue]
    if isinstance(data, ParticipantRegistered):
        fields = {
            "dialogue_event_id": data.dialogue_event_id,
            "status": data.status.value,
            "sector": data.sector.value,
        }
        return REGISTRATION, data.registration_id, fields
    if isinstance(data, NotificationSent):
        fields = {"registration_id": data.registration_id, "kind": data.kind.value}
        return NOTIFICATION, data.notification_id, fields
    if isinstance(data, ParticipantCancelled):
        fields = {"dialogue_event_id": data.dialogue_event_id, "status": CANCELLED}
        return REGISTRATION, data.registration_id, fields
    if isinstance(data, ParticipantPromoted):
        return REGISTRATION, data.registration_id, {"status": CONFIRMED}
    if isinstance(data, ParticipantErased):
        # Reporting holds nothing personal about the person; the anonymous counts stay.
        return REGISTRATION, data.registration_id, {"erased": True}
    if isinstance(data, (MunicipalityRegistered, MunicipalityProfileUpdated)):
        return MUNICIPALITY, data.ags, {"name": data.name, "kind": data.kind.value}
    if isinstance(data, DialogueEventScheduled):
        fields = {"status": SCHEDULED, "starts_at": data.starts_at.isoformat()}
        return DIALOGUE_EVENT, data.dialogue_event_id, fields
    if isinstance(data, (DialogueEventChanged, DialogueEventRescheduled)):
        return DIALOGUE_EVENT, data.dialogue_event_id, {"starts_at": data.starts_at.isoformat()}
    if isinstance(data, DialogueEventCancelled):
        return DIALOGUE_EVENT, data.dialogue_event_id, {"status": CANCELLED}
    if isinstance(data, AttendanceRecorded):
        return DIALOGUE_EVENT, data.dialogue_event_id, {"attended": data.attended}
    return _assessment_fields(data)


def _assessment_fields(data: Any) -> tuple[str, str, dict[str, FactValue]] | None:
    """Self-checks, workshop perspectives, measures and taskforce members."""
    if isinstance(data, SelfCheckStarted):
        return SELF_CHECK, data.self_check_id, {"sequence": data.sequence, "started": True}
    if isinstance(data, SelfCheckSubmitted):
        return SELF_CHECK, data.self_check_id, {"sequence": data.sequence, "submitted": True}
    if isinstance(data, AssessmentScored):
        fields: dict[str, FactValue] = {
            "sequence": data.sequence,
            "scored": True,
            "overall": data.overall,
        }
        for score in data.fields:
            fields[f"score_{score.field}"] = score.score
            fields[f"level_{score.field}"] = score.level.value
        return SELF_CHECK, data.self_check_id, fields
    if isinstance(data, WorkshopPerspectiveRecorded):
        # The stakeholder group and the ratings only; the workshop's name is not needed.
        fields = {"group": data.stakeholder_group.value}
        fields.update({f"rating_{rating.field}": rating.rating for rating in data.ratings})
        return PERSPECTIVE, data.perspective_id, fields
    if isinstance(data, (MeasurePlanned, MeasureStatusChanged)):
        return MEASURE, data.measure_id, {"field": data.field, "status": data.status.value}
    if isinstance(data, TaskforceMemberAdded):
        fields = {"role": data.role.value, "sector": data.sector.value, "removed": False}
        return TASKFORCE_MEMBER, data.member_id, fields
    if isinstance(data, TaskforceMemberRemoved):
        return TASKFORCE_MEMBER, data.member_id, {"removed": True}
    return None


def fact_of(envelope: Envelope[Any]) -> Fact | None:
    found = _fields(envelope.data)
    if found is None:
        return None
    entity, entity_id, fields = found
    return Fact(
        entity=entity,
        entity_id=entity_id,
        ags=envelope.data.ags,
        event_id=envelope.id,
        event_type=envelope.type,
        time=envelope.time,  # as it came (UTC); every use of a fact's time normalises it
        fields=fields,
    )


@dataclass(frozen=True)
class Projector:
    """Applies consumed events to the projections; `publish` False stores digests as
    already published (a rebuild must not announce old activities again). `on_change`:
    facts were stored; `on_digests`: digests were stored (the outbox relay has something to
    send, which most events, registrations among them, do not give it)."""

    projections: ProjectionRepository
    activities: ActivityRepository
    on_change: OnChange = lambda: None
    publish: bool = True
    on_digests: OnChange = lambda: None

    async def apply(self, envelope: Envelope[Any]) -> None:
        if await self.record_fact(envelope):
            await self.record_digest(envelope)
            self.on_change()

    async def record_fact(self, envelope: Envelope[Any]) -> bool:
        fact = fact_of(envelope)
        if fact is None:
            return False
        await self.projections.record(fact)
        return True

    async def record_digest(self, envelope: Envelope[Any]) -> None:
        """The digest names the municipality as it was called at the event's time, so it
        reads the same whenever it is made once the municipality's earlier facts are in."""
        ags = envelope.data.ags
        name = await self.projections.municipality_name(ags, as_of=as_utc(envelope.time))
        digest = digest_of(envelope, municipality_name=name)
        if digest is not None:
            await self.activities.add(
                digest, correlation_id=envelope.correlationid, publish=self.publish
            )
            self.on_digests()


CONSUMED: tuple[type[EventData], ...] = (
    MunicipalityRegistered,
    MunicipalityProfileUpdated,
    DialogueEventScheduled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    DialogueEventCancelled,
    AttendanceRecorded,
    ParticipantRegistered,
    ParticipantCancelled,
    ParticipantPromoted,
    ParticipantErased,
    NotificationSent,
    TaskforceMemberAdded,
    TaskforceMemberRemoved,
    SelfCheckStarted,
    SelfCheckSubmitted,
    AssessmentScored,
    WorkshopPerspectiveRecorded,
    MeasurePlanned,
    MeasureStatusChanged,
)


def handlers_for(projector: Projector) -> Mapping[type[EventData], Any]:
    return {event_type: projector.apply for event_type in CONSUMED}
