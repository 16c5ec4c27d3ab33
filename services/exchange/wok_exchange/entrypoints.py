"""HTTP routes of the exchange service: the wire translated into handler calls.

Both routes take the municipality's own key (learnt from registration's key events): 401
without a key or with an unknown or revoked one, 403 with another municipality's.
No `from __future__ import annotations`: FastAPI reads the dependency aliases at runtime.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from wok_contracts.events.assessment import MeasureStatus
from wok_contracts.events.exchange import PeerActivityKind, PeerReason, PeerRole
from wok_exchange.domain import FIELD_NAMES
from wok_exchange.handlers import ExchangeHandlers, Standing
from wok_runtime.http_errors import problem
from wok_runtime.municipal_keys import KeyDirectory, municipality_key_dependency


class FieldPublic(BaseModel):
    number: int
    name_de: str
    name_en: str


def field_public(number: int) -> FieldPublic:
    name_de, name_en = FIELD_NAMES[number]
    return FieldPublic(number=number, name_de=name_de, name_en=name_en)


class MeasurePublic(BaseModel):
    measure_id: str
    title: str
    status: MeasureStatus


class SuggestionPublic(BaseModel):
    suggestion_id: str
    field: FieldPublic
    role: PeerRole = Field(description="learns: the field is your deficit; shares: your strength")
    peer: str = Field(description="AGS of the other municipality")
    peer_name: str
    reason: PeerReason = Field(description="Why the offering municipality can help")
    own_score: float | None
    peer_score: float | None
    improvement: float | None = Field(description="Points the offering side gained")
    measures: list[MeasurePublic] = Field(description="The offering side's measures in the field")


class PeersPublic(BaseModel):
    ags: str
    scored: bool = Field(description="False until a self-check of yours was scored")
    deficits: list[int]
    strengths: list[int]
    suggestions: list[SuggestionPublic]


class FeedItemPublic(BaseModel):
    item_id: str
    peer: str
    peer_name: str
    kind: PeerActivityKind
    fields: list[int] = Field(description="Your deficits the activity touches")
    text_de: str
    text_en: str
    occurred_at: datetime


class FeedPublic(BaseModel):
    ags: str
    deficits: list[int]
    items: list[FeedItemPublic]


def _own(standing: Standing, ags: str) -> tuple[bool, list[int], list[int]]:
    profile = standing.profiles.get(ags)
    if profile is None:
        return False, [], []
    return True, sorted(profile.deficits), sorted(profile.latest.strengths)


# What any route may answer besides its own responses (documented once for all of them).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: problem("No key, or an unknown or revoked one"),
    403: problem("Another municipality's key"),
}


def build_router(handlers: ExchangeHandlers, keys: KeyDirectory) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["exchange"], responses=ERROR_RESPONSES)
    OwnMunicipality = Annotated[str, Depends(municipality_key_dependency(keys))]

    @router.get("/municipalities/{ags}/peers", response_model=PeersPublic)
    async def get_peers(ags: OwnMunicipality) -> PeersPublic:
        """The pairs this municipality is part of: peers to learn from in its deficits (the
        strongest first), then peers who could learn from its strengths, each with the
        offering side's measures in the field."""
        standing, found = await handlers.peers(ags)
        # Peers to learn from first, by field, the strongest first; then those to share with.
        suggestions = sorted(
            found,
            key=lambda s: (
                s.role_of(ags) is not PeerRole.LEARNS,
                s.field,
                -((s.offering_score if ags == s.needing else s.needing_score) or 0),
                s.peer_of(ags),
            ),
        )
        scored, deficits, strengths = _own(standing, ags)
        return PeersPublic(
            ags=ags,
            scored=scored,
            deficits=deficits,
            strengths=strengths,
            suggestions=[
                SuggestionPublic(
                    suggestion_id=s.suggestion_id,
                    field=field_public(s.field),
                    role=s.role_of(ags),
                    peer=s.peer_of(ags),
                    peer_name=standing.name(s.peer_of(ags)),
                    reason=s.reason,
                    own_score=s.needing_score if ags == s.needing else s.offering_score,
                    peer_score=s.offering_score if ags == s.needing else s.needing_score,
                    improvement=s.improvement,
                    measures=[
                        MeasurePublic(measure_id=m.measure_id, title=m.title, status=m.status)
                        for m in s.measures
                    ],
                )
                for s in suggestions
            ],
        )

    @router.get("/municipalities/{ags}/feed", response_model=FeedPublic)
    async def get_feed(
        ags: OwnMunicipality,
        limit: Annotated[int, Query(ge=1, le=500, description="Newest first")] = 100,
    ) -> FeedPublic:
        """Peers' activity that touches this municipality's deficits, newest first."""
        standing, items = await handlers.feed(ags)
        _, deficits, _ = _own(standing, ags)
        return FeedPublic(
            ags=ags,
            deficits=deficits,
            items=[
                FeedItemPublic(
                    item_id=item.item_id,
                    peer=item.activity.ags,
                    peer_name=standing.name(item.activity.ags),
                    kind=item.activity.kind,
                    fields=sorted(item.fields),
                    text_de=item.activity.text_de,
                    text_en=item.activity.text_en,
                    occurred_at=item.activity.occurred_at,
                )
                for item in items[:limit]
            ],
        )

    return router
