"""What the notification consumer group reacts to on `registration.events.v1` and
`assessment.events.v1` (every other event type there is skipped)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wok_contracts import (
    AssessmentScored,
    DialogueEventScheduled,
    Envelope,
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


def ordering(envelope: Envelope[Any]) -> tuple[str, str | None]:
    """Which messages must stay in order (see `wok_runtime.batch.KeyedHandlerSink`): a
    dialogue event's messages form one chain, in which a person's (registration's) messages
    keep their order and the event's own (scheduled, changed, rescheduled, cancelled) stand
    between what came before and after them; a self-check's mail is a chain of its own."""
    data = envelope.data
    dialogue_event_id = getattr(data, "dialogue_event_id", None)
    if dialogue_event_id is None:
        return f"{envelope.type}:{getattr(data, 'self_check_id', envelope.id)}", None
    return f"event:{dialogue_event_id}", getattr(data, "registration_id", None)
