"""Handlers: a contract in, the domain called, state and pending events stored together.

Every handler is idempotent by key: scorings by self-check id, measures by measure id,
activities by the id of the event they come from, and each announcement (a suggestion or a
feed entry told to one municipality, a pair's n-th suggestion or withdrawal) by its stable
id, stored with its event in one write. A redelivered or replayed event therefore changes
nothing and announces nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wok_contracts import (
    ActivityDigest,
    AssessmentScored,
    Envelope,
    MeasurePlanned,
    MeasureStatusChanged,
    MunicipalityRegistered,
    new_envelope,
)
from wok_contracts.events.exchange import (
    PeerActivityKind,
    PeerActivityShared,
    PeerMeasure,
    PeerRole,
    PeerSuggested,
    PeerSuggestionWithdrawn,
)
from wok_contracts.topics import EXCHANGE_PEERS
from wok_exchange.adapters import SUGGESTED, WITHDRAWN, ExchangeRepository, PairAnnouncement
from wok_exchange.domain import (
    Activity,
    FeedItem,
    Measure,
    PairTold,
    Profile,
    Scoring,
    Suggestion,
    feed,
    match,
    measure_activity,
    pair_announcements,
    profiles,
    recipients_of,
    suggestions_for,
    withdrawal_reason,
)
from wok_runtime.outbox import OutboundEvent

SOURCE = "/wok/exchange"


@dataclass(frozen=True)
class Standing:
    """What the service knows now: profiles, pairs, names."""

    profiles: dict[str, Profile]
    suggestions: list[Suggestion]
    names: dict[str, str]

    def name(self, ags: str) -> str:
        return self.names.get(ags, ags)


def feed_announcement(item: FeedItem) -> str:
    return f"feed:{item.item_id}"


STANDING_TTL_S = 1.0
"""How long a standing computed here serves (unless this process changes what it rests on
before): another instance's writes show after at most this long, as if its events had been
consumed that much later."""


class ExchangeHandlers:
    """The standing (every municipality's profile, the pairs, the names) rests on all scorings,
    measures and names; it is computed once and serves every event and request until this
    process stores a scoring, a measure or another name, or `STANDING_TTL_S` has passed.
    Activities (most of the events) change none of it."""

    def __init__(
        self,
        *,
        repository: ExchangeRepository,
        events_stored: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repository = repository
        self._events_stored = events_stored
        self._clock = clock
        self._standing: tuple[float, Standing] | None = None  # (computed at, standing)
        self._generation = 0  # raised by each change: a standing computed across one is not kept

    def _changed(self) -> None:
        self._generation += 1
        self._standing = None

    # -- consumed events --------------------------------------------------------------------

    async def remember_municipality(self, envelope: Envelope[Any]) -> None:
        data: MunicipalityRegistered = envelope.data
        await self._remember_name(data.ags, data.name, as_of=envelope.time)

    async def record_scoring(self, envelope: Envelope[Any]) -> None:
        data: AssessmentScored = envelope.data
        scoring = Scoring(
            self_check_id=data.self_check_id,
            ags=data.ags,
            sequence=data.sequence,
            scores={score.field: score.score for score in data.fields},
            strengths=frozenset(data.strengths),
            deficits=frozenset(data.deficits),
        )
        await self.repository.add_scoring(scoring)
        self._changed()
        # Announce every pair not yet told, also after a crash between the two writes.
        await self._announce_suggestions(await self.standing(), envelope.correlationid)

    async def record_measure_planned(self, envelope: Envelope[Any]) -> None:
        data: MeasurePlanned = envelope.data
        measure = Measure(
            measure_id=data.measure_id,
            ags=data.ags,
            field=data.field,
            title=data.title,
            status=data.status,
            occurred_at=envelope.time,
        )
        await self.repository.plan_measure(measure)
        self._changed()
        await self._share(measure, envelope=envelope, kind=PeerActivityKind.MEASURE_PLANNED)

    async def record_measure_status(self, envelope: Envelope[Any]) -> None:
        data: MeasureStatusChanged = envelope.data
        known = {m.measure_id: m for m in await self.repository.measures()}
        previous = known.get(data.measure_id)
        measure = Measure(
            measure_id=data.measure_id,
            ags=data.ags,
            field=data.field,
            title=previous.title if previous else "",
            status=data.status,
            occurred_at=envelope.time,
        )
        await self.repository.change_measure_status(measure)
        self._changed()
        await self._share(measure, envelope=envelope, kind=PeerActivityKind.MEASURE_STATUS_CHANGED)

    async def record_activity(self, envelope: Envelope[Any]) -> None:
        data: ActivityDigest = envelope.data
        await self._remember_name(data.municipality, data.municipality_name, as_of=envelope.time)
        activity = Activity(
            source_event_id=data.source_event_id,
            ags=data.municipality,
            kind=PeerActivityKind.ACTIVITY,
            text_de=data.text_de,
            text_en=data.text_en,
            occurred_at=data.occurred_at,
        )
        await self.repository.add_activity(activity)
        await self._announce_feed(activity, envelope.correlationid)

    # -- queries ----------------------------------------------------------------------------

    async def _remember_name(self, ags: str, name: str, *, as_of: datetime) -> None:
        await self.repository.remember_municipality(ags=ags, name=name, as_of=as_of)
        if self._standing is None or self._standing[1].names.get(ags) != name:
            self._changed()  # (the same name again changes nothing here)

    async def standing(self) -> Standing:
        now = self._clock()
        if self._standing is not None and now - self._standing[0] < STANDING_TTL_S:
            return self._standing[1]
        generation = self._generation
        known = profiles(await self.repository.scorings())
        standing = Standing(
            profiles=known,
            suggestions=match(known, await self.repository.measures()),
            names=await self.repository.municipality_names(),
        )
        if generation == self._generation:
            self._standing = (now, standing)
        return standing

    async def peers(self, ags: str) -> tuple[Standing, list[Suggestion]]:
        standing = await self.standing()
        return standing, suggestions_for(ags, standing.suggestions)

    async def feed(self, ags: str) -> tuple[Standing, list[FeedItem]]:
        standing = await self.standing()
        items = feed(
            ags,
            known=standing.profiles,
            activities=await self.repository.activities(),
            suggestions=standing.suggestions,
        )
        return standing, items

    # -- announcements ----------------------------------------------------------------------

    async def _share(
        self, measure: Measure, *, envelope: Envelope[Any], kind: PeerActivityKind
    ) -> None:
        standing = await self.standing()  # (the feed announcement below reuses it)
        activity = measure_activity(
            measure, source_event_id=envelope.id, kind=kind, name=standing.name(measure.ags)
        )
        await self.repository.add_activity(activity)
        await self._announce_feed(activity, envelope.correlationid)

    async def _announce_suggestions(self, standing: Standing, correlation_id: str) -> None:
        """Tell each side of every pair that began to hold, and withdraw every pair told
        that holds no more."""
        due = pair_announcements(standing.suggestions, await self.repository.pairs_told())
        stored = False
        for announcement_id, suggestion, recipient in due.suggest:
            event: Any = self._suggested(suggestion, recipient=recipient, standing=standing)
            stored |= await self.repository.announce(
                announcement_id,
                [self._outbound(event, recipient, correlation_id)],
                pair=PairAnnouncement(SUGGESTED, suggestion.suggestion_id, recipient),
            )
        for announcement_id, told in due.withdraw:
            event = self._withdrawn(told, standing=standing)
            stored |= await self.repository.announce(
                announcement_id,
                [self._outbound(event, told.recipient, correlation_id)],
                pair=PairAnnouncement(WITHDRAWN, told.suggestion_id, told.recipient),
            )
        if stored:
            self._events_stored()

    async def _announce_feed(self, activity: Activity, correlation_id: str) -> None:
        standing = await self.standing()
        items = recipients_of(activity, known=standing.profiles, suggestions=standing.suggestions)
        stored = False
        for item in items:
            event = PeerActivityShared(
                item_id=item.item_id,
                recipient=item.recipient,
                peer=activity.ags,
                peer_name=standing.name(activity.ags),
                kind=activity.kind,
                fields=sorted(item.fields),
                text_de=activity.text_de,
                text_en=activity.text_en,
                occurred_at=activity.occurred_at,
                source_event_id=activity.source_event_id,
            )
            stored |= await self.repository.announce(
                feed_announcement(item), [self._outbound(event, item.recipient, correlation_id)]
            )
        if stored:
            self._events_stored()

    def _suggested(
        self, suggestion: Suggestion, *, recipient: str, standing: Standing
    ) -> PeerSuggested:
        peer = suggestion.peer_of(recipient)
        return PeerSuggested(
            suggestion_id=suggestion.suggestion_id,
            recipient=recipient,
            role=suggestion.role_of(recipient),
            field=suggestion.field,
            needing=suggestion.needing,
            offering=suggestion.offering,
            peer=peer,
            peer_name=standing.name(peer),
            reason=suggestion.reason,
            needing_score=suggestion.needing_score,
            offering_score=suggestion.offering_score,
            improvement=suggestion.improvement,
            measures=peer_measures(suggestion.measures),
        )

    @staticmethod
    def _withdrawn(told: PairTold, *, standing: Standing) -> PeerSuggestionWithdrawn:
        field_text, needing, offering = told.suggestion_id.split(":")
        peer = offering if told.recipient == needing else needing
        return PeerSuggestionWithdrawn(
            suggestion_id=told.suggestion_id,
            recipient=told.recipient,
            role=PeerRole.LEARNS if told.recipient == needing else PeerRole.SHARES,
            field=int(field_text),
            needing=needing,
            offering=offering,
            peer=peer,
            peer_name=standing.name(peer),
            reason=withdrawal_reason(told.suggestion_id, standing.profiles),
        )

    @staticmethod
    def _outbound(event: Any, recipient: str, correlation_id: str) -> OutboundEvent:
        return OutboundEvent(
            EXCHANGE_PEERS,
            new_envelope(
                event, source=SOURCE, municipality=recipient, correlation_id=correlation_id
            ),
        )


def peer_measures(measures: Sequence[Measure]) -> list[PeerMeasure]:
    return [PeerMeasure(measure_id=m.measure_id, title=m.title, status=m.status) for m in measures]
