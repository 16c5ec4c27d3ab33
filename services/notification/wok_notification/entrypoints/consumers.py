"""What the notification consumer group reacts to on `registration.events.v1`."""

from __future__ import annotations

from collections.abc import Mapping

from wok_contracts import DialogueEventScheduled, EventData, ParticipantRegistered
from wok_notification.handlers import NotificationHandlers
from wok_runtime.consumer import Handler

CONSUMER_GROUP = "notification"


def event_handlers(handlers: NotificationHandlers) -> Mapping[type[EventData], Handler]:
    return {
        DialogueEventScheduled: handlers.remember_dialogue_event,
        ParticipantRegistered: handlers.send_confirmation,
    }
