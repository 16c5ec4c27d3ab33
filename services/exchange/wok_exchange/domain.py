"""Peer matchmaking as plain functions: no framework, no I/O.

A municipality's profile is its latest scoring (and the one before, for improvements). For
every field of action, a municipality whose latest scoring lists the field as a deficit is
paired with every other municipality that lists it as a strength, or whose score in it rose
by at least `IMPROVEMENT_POINTS` between its last two scorings. Each pair is told to both
municipalities, with the offering municipality's measures in that field (dropped ones left
out); a pair told that no longer holds after a new scoring is withdrawn from both. The
result depends only on the profiles, never on the order events came in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from wok_contracts.events.assessment import MeasureStatus
from wok_contracts.events.exchange import (
    PeerActivityKind,
    PeerReason,
    PeerRole,
    PeerWithdrawalReason,
)

IMPROVEMENT_POINTS = 15.0
FIELDS = range(1, 8)
FIELD_NAMES = {
    1: ("Management und Steuerung", "Management and steering"),
    2: ("Interkulturelle Öffnung und Antirassismus", "Intercultural opening and anti-racism"),
    3: ("Fairer Zugang und Teilhabechancen", "Fair access and opportunities"),
    4: ("Arbeit und wirtschaftliche Entwicklung", "Work and economic development"),
    5: ("Engagement und Beteiligung", "Engagement and participation"),
    6: ("Zusammenhalt und Begegnung", "Cohesion and encounter"),
    7: ("Kommunikation und Konfliktmanagement", "Communication and conflict management"),
}


@dataclass(frozen=True)
class Scoring:
    """One scored self-check of a municipality (from AssessmentScored)."""

    self_check_id: str
    ags: str
    sequence: int
    scores: Mapping[int, float | None]
    strengths: frozenset[int]
    deficits: frozenset[int]


@dataclass(frozen=True)
class Measure:
    measure_id: str
    ags: str
    field: int
    title: str
    status: MeasureStatus
    occurred_at: datetime


@dataclass(frozen=True)
class Profile:
    """What matchmaking knows of one municipality: its latest and previous scoring."""

    ags: str
    latest: Scoring
    previous: Scoring | None = None

    @property
    def deficits(self) -> frozenset[int]:
        return self.latest.deficits

    def improvement(self, field_number: int) -> float | None:
        if self.previous is None:
            return None
        now = self.latest.scores.get(field_number)
        before = self.previous.scores.get(field_number)
        if now is None or before is None:
            return None
        return round(now - before, 1)

    def offer(self, field_number: int) -> tuple[PeerReason, float | None] | None:
        """Why this municipality can help in the field, if it can."""
        if field_number in self.latest.deficits:
            return None
        if field_number in self.latest.strengths:
            return PeerReason.STRENGTH, self.improvement(field_number)
        gained = self.improvement(field_number)
        if gained is not None and gained >= IMPROVEMENT_POINTS:
            return PeerReason.IMPROVEMENT, gained
        return None


def profiles(scorings: Iterable[Scoring]) -> dict[str, Profile]:
    """Each municipality's latest two scorings by sequence (a repeated scoring counts once)."""
    by_ags: dict[str, dict[int, Scoring]] = {}
    for scoring in scorings:
        by_ags.setdefault(scoring.ags, {})[scoring.sequence] = scoring
    found: dict[str, Profile] = {}
    for ags, by_sequence in by_ags.items():
        ordered = [by_sequence[sequence] for sequence in sorted(by_sequence)]
        found[ags] = Profile(ags, ordered[-1], ordered[-2] if len(ordered) > 1 else None)
    return found


@dataclass(frozen=True)
class Suggestion:
    """Municipality `needing` lacks field `field`; municipality `offering` can help."""

    field: int
    needing: str
    offering: str
    reason: PeerReason
    needing_score: float | None
    offering_score: float | None
    improvement: float | None
    measures: tuple[Measure, ...] = ()

    @property
    def suggestion_id(self) -> str:
        return f"{self.field}:{self.needing}:{self.offering}"

    def role_of(self, ags: str) -> PeerRole:
        return PeerRole.LEARNS if ags == self.needing else PeerRole.SHARES

    def peer_of(self, ags: str) -> str:
        return self.offering if ags == self.needing else self.needing


def helpful_measures(
    measures: Iterable[Measure], *, ags: str, field_number: int
) -> tuple[Measure, ...]:
    found = [
        measure
        for measure in measures
        if measure.ags == ags
        and measure.field == field_number
        and measure.status is not MeasureStatus.DROPPED
    ]
    return tuple(sorted(found, key=lambda measure: (measure.occurred_at, measure.measure_id)))


def match(known: Mapping[str, Profile], measures: Iterable[Measure] = ()) -> list[Suggestion]:
    """Every pair (deficit here, strength or improvement there) for every field, sorted."""
    measure_list = list(measures)
    suggestions: list[Suggestion] = []
    for field_number in FIELDS:
        needing = sorted(ags for ags, profile in known.items() if field_number in profile.deficits)
        if not needing:
            continue
        for offering_ags in sorted(known):
            offer = known[offering_ags].offer(field_number)
            if offer is None:
                continue
            reason, improvement = offer
            for needing_ags in needing:
                if needing_ags == offering_ags:
                    continue
                suggestions.append(
                    Suggestion(
                        field=field_number,
                        needing=needing_ags,
                        offering=offering_ags,
                        reason=reason,
                        needing_score=known[needing_ags].latest.scores.get(field_number),
                        offering_score=known[offering_ags].latest.scores.get(field_number),
                        improvement=improvement,
                        measures=helpful_measures(
                            measure_list, ags=offering_ags, field_number=field_number
                        ),
                    )
                )
    return sorted(suggestions, key=lambda s: (s.field, s.needing, s.offering))


@dataclass(frozen=True)
class PairTold:
    """How often one municipality was told of one pair: suggested, and withdrawn again."""

    suggestion_id: str
    recipient: str
    suggested: int = 0
    withdrawn: int = 0

    @property
    def holds(self) -> bool:
        """Whether the recipient's last word on the pair was a suggestion."""
        return self.suggested > self.withdrawn


@dataclass(frozen=True)
class PairAnnouncements:
    """What to tell now: pairs to suggest (again) and pairs to withdraw, each with the stable
    id of its announcement (the n-th suggestion or withdrawal of the pair to that recipient)."""

    suggest: list[tuple[str, Suggestion, str]]
    withdraw: list[tuple[str, PairTold]]


def suggestion_announcement_id(suggestion_id: str, recipient: str, number: int) -> str:
    base = f"suggestion:{suggestion_id}:{recipient}"
    return base if number == 0 else f"{base}:{number}"


def withdrawal_announcement_id(suggestion_id: str, recipient: str, number: int) -> str:
    return f"withdrawal:{suggestion_id}:{recipient}:{number}"


def pair_announcements(
    suggestions: Iterable[Suggestion], told: Iterable[PairTold]
) -> PairAnnouncements:
    """Each pair that holds now and was not (or no longer) told is suggested to each side;
    each pair told and holding no more is withdrawn from each side. Announcing the same
    state twice gives the same ids, so stored announcements make it idempotent."""
    known = {(t.suggestion_id, t.recipient): t for t in told}
    wanted = {
        (suggestion.suggestion_id, recipient): suggestion
        for suggestion in suggestions
        for recipient in (suggestion.needing, suggestion.offering)
    }
    suggest = []
    for (suggestion_id, recipient), suggestion in sorted(wanted.items()):
        before = known.get((suggestion_id, recipient), PairTold(suggestion_id, recipient))
        if not before.holds:
            announcement = suggestion_announcement_id(suggestion_id, recipient, before.suggested)
            suggest.append((announcement, suggestion, recipient))
    withdraw = [
        (withdrawal_announcement_id(*key, told_before.withdrawn), told_before)
        for key, told_before in sorted(known.items())
        if told_before.holds and key not in wanted
    ]
    return PairAnnouncements(suggest=suggest, withdraw=withdraw)


def withdrawal_reason(suggestion_id: str, known: Mapping[str, Profile]) -> PeerWithdrawalReason:
    """Why pair `suggestion_id` ('<field>:<needing>:<offering>') stopped holding."""
    field_text, needing, _ = suggestion_id.split(":")
    profile = known.get(needing)
    if profile is None or int(field_text) not in profile.deficits:
        return PeerWithdrawalReason.DEFICIT_CLOSED
    return PeerWithdrawalReason.OFFER_ENDED


def suggestions_for(ags: str, suggestions: Iterable[Suggestion]) -> list[Suggestion]:
    """The pairs one municipality is part of, on either side."""
    return [s for s in suggestions if ags in (s.needing, s.offering)]


@dataclass(frozen=True)
class Activity:
    """Something a municipality did that peers may want to hear of."""

    source_event_id: str
    ags: str
    kind: PeerActivityKind
    text_de: str
    text_en: str
    occurred_at: datetime
    fields: frozenset[int] = field(default_factory=frozenset)


def relevant_fields(
    activity: Activity, *, recipient: Profile, suggestions: Iterable[Suggestion]
) -> frozenset[int]:
    """The recipient's deficits an activity of a peer touches (empty: not relevant).

    A measure touches its own field. Any other activity (a dialogue event, say) touches the
    fields in which its municipality is suggested to the recipient as the one who can help.
    """
    if activity.ags == recipient.ags:
        return frozenset()
    if activity.fields:
        return activity.fields & recipient.deficits
    return frozenset(
        s.field for s in suggestions if s.needing == recipient.ags and s.offering == activity.ags
    )


@dataclass(frozen=True)
class FeedItem:
    recipient: str
    activity: Activity
    fields: frozenset[int]

    @property
    def item_id(self) -> str:
        return f"{self.recipient}:{self.activity.source_event_id}"


def feed(
    ags: str,
    *,
    known: Mapping[str, Profile],
    activities: Iterable[Activity],
    suggestions: Iterable[Suggestion],
) -> list[FeedItem]:
    """A municipality's feed: its peers' activity touching its deficits, newest first."""
    recipient = known.get(ags)
    if recipient is None:
        return []
    pairs = list(suggestions)
    items = []
    for activity in activities:
        fields = relevant_fields(activity, recipient=recipient, suggestions=pairs)
        if fields:
            items.append(FeedItem(ags, activity, fields))
    return sorted(items, key=lambda item: (item.activity.occurred_at, item.item_id), reverse=True)


def recipients_of(
    activity: Activity, *, known: Mapping[str, Profile], suggestions: Iterable[Suggestion]
) -> list[FeedItem]:
    """Who should hear of one new activity now (the event side of the feed)."""
    pairs = list(suggestions)
    items = []
    for ags in sorted(known):
        fields = relevant_fields(activity, recipient=known[ags], suggestions=pairs)
        if fields:
            items.append(FeedItem(ags, activity, fields))
    return items


def measure_activity(
    measure: Measure, *, source_event_id: str, kind: PeerActivityKind, name: str
) -> Activity:
    """A peer's measure as a feed entry (German and English, like reporting's digests)."""
    field_de, field_en = FIELD_NAMES[measure.field]
    if kind is PeerActivityKind.MEASURE_PLANNED:
        text_de = f"{name} plant die Maßnahme „{measure.title}“ im Handlungsfeld {field_de}."
        text_en = f"{name} planned the measure “{measure.title}” in the field {field_en}."
    else:
        status_de = STATUS_DE[measure.status]
        text_de = f"{name}: Maßnahme „{measure.title}“ ({field_de}) ist jetzt {status_de}."
        text_en = f"{name}: measure “{measure.title}” ({field_en}) is now {measure.status.value}."
    return Activity(
        source_event_id=source_event_id,
        ags=measure.ags,
        kind=kind,
        text_de=text_de,
        text_en=text_en,
        occurred_at=measure.occurred_at,
        fields=frozenset({measure.field}),
    )


STATUS_DE = {
    MeasureStatus.PLANNED: "geplant",
    MeasureStatus.RUNNING: "in Umsetzung",
    MeasureStatus.DONE: "abgeschlossen",
    MeasureStatus.DROPPED: "verworfen",
}
