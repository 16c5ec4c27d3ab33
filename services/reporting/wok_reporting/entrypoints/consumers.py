"""The event-to-handler mapping the runtime's consumer group dispatches on."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from wok_contracts import (
    DialogueEventScheduled,
    EventData,
    MunicipalityRegistered,
    NotificationSent,
    ParticipantRegistered,
)
from wok_contracts.topics import NOTIFICATION_EVENTS, REGISTRATION_EVENTS
from wok_reporting import handlers
from wok_reporting.adapters.repository import ProjectionRepository
from wok_runtime.consumer import Handler

GROUP = "reporting"
# One group over both topics: every subscriber is a group join, and joins are slow on tansu.
TOPICS = (REGISTRATION_EVENTS, NOTIFICATION_EVENTS)


def event_handlers(
    projections: ProjectionRepository, *, on_change: handlers.OnChange
) -> Mapping[type[EventData], Handler]:
    def bind(handler: handlers.ProjectionHandler) -> Handler:
        return functools.partial(handler, projections=projections, on_change=on_change)

    return {
        MunicipalityRegistered: bind(handlers.record_municipality),
        DialogueEventScheduled: bind(handlers.record_dialogue_event),
        ParticipantRegistered: bind(handlers.record_registration),
        NotificationSent: bind(handlers.record_notification),
    }
