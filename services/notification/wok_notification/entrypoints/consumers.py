"""What the notification consumer group reacts to on `registration.events.v1` and
`assessment.events.v1` (every other event type there is skipped)."""

from __future__ import annotations

from collections.abc import Mapping

from wok_contracts import (
    AssessmentScored,
    DialogueEventScheduled,
    EventData,
    ParticipantRegistered,
)
from wok_contracts.events.registration import (
    DialogueEventCancelled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
)
from wok_notification.handlers import NotificationHandlers
from wok_runtime.consumer import Handler

CONSUMER_GROUP = "notification"


def event_handlers(handlers: NotificationHandlers) -> Mapping[type[EventData], Handler]:
    return {
        DialogueEventScheduled: handlers.remember_dialogue_event,
        DialogueEventChanged: handlers.remember_dialogue_event,
        DialogueEventRescheduled: handlers.announce_reschedule,
        DialogueEventCancelled: handlers.announce_cancellation,
        ParticipantRegistered: handlers.send_confirmation,
        ParticipantPromoted: handlers.send_promotion,
        ParticipantCancelled: handlers.forget_cancelled,
        ParticipantErased: handlers.confirm_erasure,
        AssessmentScored: handlers.send_scored_report,
    }
