"""The event-to-handler mapping the runtime's consumer group dispatches on."""

from __future__ import annotations

from collections.abc import Mapping

from wok_contracts import EventData
from wok_contracts.topics import ASSESSMENT_EVENTS, NOTIFICATION_EVENTS, REGISTRATION_EVENTS
from wok_reporting.handlers import Projector, handlers_for
from wok_runtime.consumer import Handler

GROUP = "reporting"
# One group over every domain topic: every subscriber is a group join, and joins are slow
# on tansu.
TOPICS = (REGISTRATION_EVENTS, NOTIFICATION_EVENTS, ASSESSMENT_EVENTS)


def event_handlers(projector: Projector) -> Mapping[type[EventData], Handler]:
    return handlers_for(projector)
