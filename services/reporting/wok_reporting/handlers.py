"""One handler per consumed event: contract in, projection row out, stored by entity id.

Each write is an upsert keyed by the entity's id, so a second delivery of the same fact,
even under another event id, leaves one row: the count cannot grow twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from wok_contracts import (
    DialogueEventScheduled,
    Envelope,
    MunicipalityRegistered,
    NotificationSent,
    ParticipantRegistered,
)
from wok_reporting.adapters.repository import ProjectionRepository
from wok_reporting.domain import (
    DialogueEventRow,
    MunicipalityRow,
    NotificationRow,
    ProjectionRow,
    RegistrationRow,
    as_utc,
)

OnChange = Callable[[], None]
# A handler below, before its repository and change callback are bound.
ProjectionHandler = Callable[..., Awaitable[None]]


async def _store(
    row: ProjectionRow, *, projections: ProjectionRepository, on_change: OnChange
) -> None:
    if await projections.save(row):
        on_change()


async def record_municipality(
    envelope: Envelope[Any], *, projections: ProjectionRepository, on_change: OnChange
) -> None:
    data: MunicipalityRegistered = envelope.data
    row = MunicipalityRow(
        ags=data.ags,
        name=data.name,
        kind=data.kind.value,
        land=data.land,
        event_time=as_utc(envelope.time),
    )
    await _store(row, projections=projections, on_change=on_change)


async def record_dialogue_event(
    envelope: Envelope[Any], *, projections: ProjectionRepository, on_change: OnChange
) -> None:
    data: DialogueEventScheduled = envelope.data
    row = DialogueEventRow(
        dialogue_event_id=data.dialogue_event_id, ags=data.ags, event_time=as_utc(envelope.time)
    )
    await _store(row, projections=projections, on_change=on_change)


async def record_registration(
    envelope: Envelope[Any], *, projections: ProjectionRepository, on_change: OnChange
) -> None:
    data: ParticipantRegistered = envelope.data
    row = RegistrationRow(
        registration_id=data.registration_id,
        dialogue_event_id=data.dialogue_event_id,
        ags=data.ags,
        status=data.status.value,
        event_time=as_utc(envelope.time),
    )
    await _store(row, projections=projections, on_change=on_change)


async def record_notification(
    envelope: Envelope[Any], *, projections: ProjectionRepository, on_change: OnChange
) -> None:
    data: NotificationSent = envelope.data
    row = NotificationRow(
        notification_id=data.notification_id,
        registration_id=data.registration_id,
        ags=data.ags,
        kind=data.kind.value,
        event_time=as_utc(envelope.time),
    )
    await _store(row, projections=projections, on_change=on_change)
