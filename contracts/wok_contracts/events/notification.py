"""Event payloads produced by the notification service (topic notification.events.v1).

No payload carries an e-mail address: recipients appear as registration ids.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData


class NotificationKind(StrEnum):
    CONFIRMATION = "confirmation"
    PROMOTION = "promotion"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    ERASURE = "erasure"
    ACCESS = "access"
    REMINDER = "reminder"
    # to a taskforce member not yet registered, before the registration deadline; the
    # recipient id is the member id
    TASKFORCE_REMINDER = "taskforce_reminder"
    # to the municipality's contact office (staff); the recipient id is `office:<ags>` and
    # the subject id the self-check id
    SELF_CHECK_SCORED = "self_check_scored"


class NotificationSent(EventData):
    event_type: ClassVar[str] = "notification.message.sent.v1"

    notification_id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: Ags
    language: str
    sent_at: datetime
    revision: int | None = Field(
        default=None, ge=0, description="The dialogue event's revision a reschedule mail told of"
    )
    digest_id: str | None = Field(
        default=None,
        description="Set when the message went out inside a digest (one mail gathering the"
        " messages held back by the one-message-per-hour limit)",
    )


class NotificationFailed(EventData):
    """The mail could not be delivered: refused for good, or the mail server stayed away
    longer than the retry limit (then the triggering event is also dead-lettered)."""

    event_type: ClassVar[str] = "notification.message.failed.v1"

    notification_id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: Ags
    attempts: int = Field(ge=0)
    reason: str = Field(max_length=500, description="Never quotes an address")
    failed_at: datetime
    revision: int | None = Field(default=None, ge=0)


EVENT_TYPES: tuple[type[EventData], ...] = (NotificationSent, NotificationFailed)
