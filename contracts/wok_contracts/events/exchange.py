"""Event payloads produced by the exchange service (topic exchange.peers.v1).

Peer matchmaking between model municipalities: when a field of action is a deficit in one
municipality and a strength (or a clear improvement between two scorings) in another, both
are told about the pair, with the measures that helped, and again when it stops holding; and
each municipality hears of its peers' activity where it touches its own deficits. Every
event is addressed to one municipality (`recipient`, also the message key). Municipalities
only, never a person.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from wok_contracts.ags import Ags
from wok_contracts.envelope import EventData
from wok_contracts.events.assessment import MeasureStatus


class PeerRole(StrEnum):
    """What the recipient is in a pair."""

    LEARNS = "learns"  # the field is a deficit of the recipient
    SHARES = "shares"  # the field is a strength or a clear improvement of the recipient


class PeerReason(StrEnum):
    """Why the offering municipality can help in the field."""

    STRENGTH = "strength"
    IMPROVEMENT = "improvement"


class PeerMeasure(EventData):
    """A measure of the offering municipality in the field (its owner is a role, never a person)."""

    measure_id: str
    title: str
    status: MeasureStatus


class PeerSuggested(EventData):
    """A pair of municipalities for one field, told to each of the two (one event each)."""

    event_type: ClassVar[str] = "exchange.peer.suggested.v1"

    suggestion_id: str = Field(description="'<field>:<needing AGS>:<offering AGS>', stable")
    recipient: Ags
    role: PeerRole
    field: int = Field(ge=1, le=7, description="Field of action, 1-7")
    needing: Ags = Field(description="The municipality with the deficit")
    offering: Ags = Field(description="The municipality with the strength or improvement")
    peer: Ags = Field(description="The other municipality of the pair, seen from the recipient")
    peer_name: str
    reason: PeerReason
    needing_score: float | None = Field(ge=0, le=100)
    offering_score: float | None = Field(ge=0, le=100)
    improvement: float | None = Field(
        default=None, description="Points gained by the offering municipality between scorings"
    )
    measures: list[PeerMeasure] = Field(
        default_factory=list, description="The offering municipality's measures in the field"
    )


class PeerWithdrawalReason(StrEnum):
    """Why a pair no longer holds."""

    DEFICIT_CLOSED = "deficit_closed"  # the needing municipality no longer lacks the field
    OFFER_ENDED = "offer_ended"  # the offering one is no longer strong or improving in it


class PeerSuggestionWithdrawn(EventData):
    """A pair told earlier no longer holds after a new scoring; told to each of the two.
    Should it hold again later, it is suggested again (a new `PeerSuggested`)."""

    event_type: ClassVar[str] = "exchange.peer.withdrawn.v1"

    suggestion_id: str = Field(description="The withdrawn suggestion's id")
    recipient: Ags
    role: PeerRole
    field: int = Field(ge=1, le=7, description="Field of action, 1-7")
    needing: Ags
    offering: Ags
    peer: Ags = Field(description="The other municipality of the pair, seen from the recipient")
    peer_name: str
    reason: PeerWithdrawalReason


class PeerActivityKind(StrEnum):
    MEASURE_PLANNED = "measure_planned"
    MEASURE_STATUS_CHANGED = "measure_status_changed"
    ACTIVITY = "activity"


class PeerActivityShared(EventData):
    """A peer's activity that touches one of the recipient's deficits."""

    event_type: ClassVar[str] = "exchange.feed.activity_shared.v1"

    item_id: str = Field(description="'<recipient AGS>:<source event id>', stable")
    recipient: Ags
    peer: Ags
    peer_name: str
    kind: PeerActivityKind
    fields: list[int] = Field(description="The recipient's deficits the activity touches")
    text_de: str
    text_en: str
    occurred_at: datetime
    source_event_id: str


EVENT_TYPES: tuple[type[EventData], ...] = (
    PeerSuggested,
    PeerSuggestionWithdrawn,
    PeerActivityShared,
)
