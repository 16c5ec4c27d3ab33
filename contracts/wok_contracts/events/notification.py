"""Event payloads produced by the notification service (topic notification.events.v1).

No payload carries an e-mail address: recipients appear as registration ids.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData


class NotificationKind(StrEnum):
    CONFIRMATION = "confirmation"


class NotificationSent(EventData):
    event_type: ClassVar[str] = "notification.message.sent.v1"

    notification_id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: Ags
    language: str
    sent_at: datetime


EVENT_TYPES: tuple[type[EventData], ...] = (NotificationSent,)
