"""Storage of the exchange service: a repository Protocol, on MongoDB and in memory.

Only shapes nx-27017 handles (DESIGN.md section 8, checked in tests/test_storage.py):
string `_id`s, whole-document inserts (arrays only ever written whole, datetimes as ISO
strings), `update_one` with `$set` of strings and `upsert=True`, finds with projections on
top-level fields, `$in` and `$exists` filters. Pending events travel in the document that
announces them (outbox); an announcement about a pair records its kind, the pair and the
recipient, so what each municipality was told can be read back.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.errors import DuplicateKeyError

from wok_contracts.events.assessment import MeasureStatus
from wok_contracts.events.exchange import PeerActivityKind
from wok_exchange.domain import Activity, Measure, PairTold, Scoring
from wok_runtime.outbox import InMemoryOutboxSource, OutboundEvent, with_outbox

MUNICIPALITIES = "municipalities"
SCORINGS = "scorings"
MEASURES = "measures"
ACTIVITIES = "activities"
ANNOUNCEMENTS = "announcements"


class ExchangeRepository(Protocol):
    async def remember_municipality(self, *, ags: str, name: str, as_of: datetime) -> None:
        """Keep `name` unless a name of a later event (`as_of`: when the event carrying it
        was published) is stored: registration's MunicipalityRegistered and reporting's
        digests both carry names and come over different topics, in no fixed order."""
        ...

    async def municipality_names(self) -> dict[str, str]: ...

    async def add_scoring(self, scoring: Scoring) -> bool:
        """False if this self-check's scoring is already stored."""
        ...

    async def scorings(self) -> list[Scoring]: ...

    async def plan_measure(self, measure: Measure) -> None: ...

    async def change_measure_status(self, measure: Measure) -> None: ...

    async def measures(self) -> list[Measure]: ...

    async def add_activity(self, activity: Activity) -> bool:
        """Store the activity once per source event; False if it was stored already. A
        measure's own activity (the exchange reads measures itself) takes the place of the
        plain digest reporting sent for the same event, whichever arrived first: the two come
        over different topics, in no fixed order."""
        ...

    async def activities(self) -> list[Activity]: ...

    async def pairs_told(self) -> list[PairTold]:
        """Every pair announced to a recipient, with how often suggested and withdrawn."""
        ...

    async def announce(
        self,
        announcement_id: str,
        events: Sequence[OutboundEvent],
        *,
        pair: PairAnnouncement | None = None,
    ) -> bool:
        """Store the announcement (of a pair, if given) with its pending events in one write;
        False if it was made already."""
        ...


@dataclass(frozen=True)
class PairAnnouncement:
    """An announcement about a pair: `suggested` or `withdrawn`, to `recipient`."""

    kind: str
    suggestion_id: str
    recipient: str

    def fields(self) -> dict[str, str]:
        return {"kind": self.kind, "suggestion_id": self.suggestion_id, "recipient": self.recipient}


SUGGESTED = "suggested"
WITHDRAWN = "withdrawn"
FEED = "feed"


def _announcement_document(
    announcement_id: str, events: Sequence[OutboundEvent], pair: PairAnnouncement | None
) -> dict[str, Any]:
    fields = pair.fields() if pair is not None else {"kind": FEED}
    return with_outbox({"_id": announcement_id, **fields}, events)


def _pairs_told(documents: Iterable[dict[str, Any]]) -> list[PairTold]:
    counts: dict[tuple[str, str], list[int]] = {}
    for document in documents:
        counted = counts.setdefault((document["suggestion_id"], document["recipient"]), [0, 0])
        counted[0 if document["kind"] == SUGGESTED else 1] += 1
    return [
        PairTold(suggestion_id, recipient, suggested=suggested, withdrawn=withdrawn)
        for (suggestion_id, recipient), (suggested, withdrawn) in sorted(counts.items())
    ]


def _earlier_announcement_fields(announcement_id: str) -> dict[str, str]:
    """The kind (and pair) of an announcement stored before they were written down: a
    suggestion's id is 'suggestion:<field>:<needing>:<offering>:<recipient>'."""
    parts = announcement_id.split(":")
    if parts[0] == "suggestion" and len(parts) == 5:
        pair = PairAnnouncement(SUGGESTED, ":".join(parts[1:4]), parts[4])
        return pair.fields()
    return {"kind": FEED}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _stamp(moment: datetime) -> int:
    """A time as microseconds since 1970: nx-27017 compares ISO-8601 strings in update
    filters as times of millisecond precision, numbers exactly."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _scoring_document(scoring: Scoring) -> dict[str, Any]:
    return {
        "_id": scoring.self_check_id,
        "ags": scoring.ags,
        "sequence": scoring.sequence,
        "scores": {str(number): score for number, score in scoring.scores.items()},
        "strengths": sorted(scoring.strengths),
        "deficits": sorted(scoring.deficits),
    }


def _scoring(document: dict[str, Any]) -> Scoring:
    return Scoring(
        self_check_id=str(document["_id"]),
        ags=document["ags"],
        sequence=int(document["sequence"]),
        scores={int(number): score for number, score in document["scores"].items()},
        strengths=frozenset(int(number) for number in document["strengths"]),
        deficits=frozenset(int(number) for number in document["deficits"]),
    )


def _measure_document(measure: Measure) -> dict[str, Any]:
    return {
        "_id": measure.measure_id,
        "ags": measure.ags,
        "field": measure.field,
        "title": measure.title,
        "status": measure.status.value,
        "occurred_at": measure.occurred_at.isoformat(),
    }


def _measure(document: dict[str, Any]) -> Measure:
    return Measure(
        measure_id=str(document["_id"]),
        ags=document["ags"],
        field=int(document["field"]),
        title=document.get("title", ""),
        status=MeasureStatus(document["status"]),
        occurred_at=datetime.fromisoformat(document["occurred_at"]),
    )


def _activity_document(activity: Activity) -> dict[str, Any]:
    return {
        "_id": activity.source_event_id,
        "ags": activity.ags,
        "kind": activity.kind.value,
        "text_de": activity.text_de,
        "text_en": activity.text_en,
        "occurred_at": activity.occurred_at.isoformat(),
        "fields": sorted(activity.fields),
    }


def _activity(document: dict[str, Any]) -> Activity:
    return Activity(
        source_event_id=str(document["_id"]),
        ags=document["ags"],
        kind=PeerActivityKind(document["kind"]),
        text_de=document["text_de"],
        text_en=document["text_en"],
        occurred_at=datetime.fromisoformat(document["occurred_at"]),
        fields=frozenset(int(number) for number in document["fields"]),
    )


class MongoExchangeRepository:
    def __init__(self, database: Any) -> None:
        self.municipalities = database[MUNICIPALITIES]
        self.scorings_collection = database[SCORINGS]
        self.measures_collection = database[MEASURES]
        self.activities_collection = database[ACTIVITIES]
        self.announcements = database[ANNOUNCEMENTS]

    def outbox_collections(self) -> list[Any]:
        return [self.announcements]

    async def ensure_indexes(self) -> None:
        # Names stored before their time was kept give way to any name that comes now.
        await self.municipalities.update_many(
            {"name_as_of": {"$exists": False}}, {"$set": {"name_as_of": 0}}
        )
        await self.announcements.create_index("outbox_pending")
        await self.announcements.create_index("kind")
        # Announcements stored before their kind was written down get it once.
        cursor = self.announcements.find({"kind": {"$exists": False}}, {"_id": 1})
        async for document in cursor:
            await self.announcements.update_one(
                {"_id": document["_id"]},
                {"$set": _earlier_announcement_fields(str(document["_id"]))},
            )

    async def remember_municipality(self, *, ags: str, name: str, as_of: datetime) -> None:
        stamp = _stamp(as_of)
        renamed = await self.municipalities.update_one(
            {"_id": ags, "name_as_of": {"$lt": stamp}},
            {"$set": {"name": name, "name_as_of": stamp}},
        )
        if renamed.matched_count:
            return
        try:
            await self.municipalities.insert_one({"_id": ags, "name": name, "name_as_of": stamp})
        except DuplicateKeyError:
            pass  # known with a name at least as recent

    async def municipality_names(self) -> dict[str, str]:
        return {str(d["_id"]): d["name"] async for d in self.municipalities.find({})}

    async def add_scoring(self, scoring: Scoring) -> bool:
        try:
            await self.scorings_collection.insert_one(_scoring_document(scoring))
        except DuplicateKeyError:
            return False
        return True

    async def scorings(self) -> list[Scoring]:
        return [_scoring(document) async for document in self.scorings_collection.find({})]

    async def plan_measure(self, measure: Measure) -> None:
        try:
            await self.measures_collection.insert_one(_measure_document(measure))
        except DuplicateKeyError:
            # Its status may have moved on already: only the title is the plan's to set.
            await self.measures_collection.update_one(
                {"_id": measure.measure_id}, {"$set": {"title": measure.title}}
            )

    async def change_measure_status(self, measure: Measure) -> None:
        document = _measure_document(measure)
        document.pop("_id")
        document.pop("title")
        document.pop("occurred_at")
        await self.measures_collection.update_one(
            {"_id": measure.measure_id},
            {"$set": document},
            upsert=True,
        )
        # A status change that arrived first has no time of its own yet.
        await self.measures_collection.update_one(
            {"_id": measure.measure_id, "occurred_at": {"$exists": False}},
            {"$set": {"occurred_at": measure.occurred_at.isoformat()}},
        )

    async def measures(self) -> list[Measure]:
        return [_measure(document) async for document in self.measures_collection.find({})]

    async def add_activity(self, activity: Activity) -> bool:
        document = _activity_document(activity)
        try:
            await self.activities_collection.insert_one(document)
        except DuplicateKeyError:
            if activity.kind is PeerActivityKind.ACTIVITY:
                return False
            fields = {name: value for name, value in document.items() if name != "_id"}
            result = await self.activities_collection.update_one(
                {"_id": activity.source_event_id, "kind": PeerActivityKind.ACTIVITY.value},
                {"$set": fields},
            )
            return bool(result.modified_count)
        return True

    async def activities(self) -> list[Activity]:
        return [_activity(document) async for document in self.activities_collection.find({})]

    async def pairs_told(self) -> list[PairTold]:
        cursor = self.announcements.find(
            {"kind": {"$in": [SUGGESTED, WITHDRAWN]}},
            {"kind": 1, "suggestion_id": 1, "recipient": 1},
        )
        return _pairs_told([document async for document in cursor])

    async def announce(
        self,
        announcement_id: str,
        events: Sequence[OutboundEvent],
        *,
        pair: PairAnnouncement | None = None,
    ) -> bool:
        try:
            await self.announcements.insert_one(
                _announcement_document(announcement_id, events, pair)
            )
        except DuplicateKeyError:
            return False
        return True


class InMemoryExchangeRepository:
    """The same behaviour over dicts shaped like the MongoDB documents (fast tests)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.name_stamps: dict[str, int] = {}
        self.scoring_documents: dict[str, dict[str, Any]] = {}
        self.measure_documents: dict[str, dict[str, Any]] = {}
        self.activity_documents: dict[str, dict[str, Any]] = {}
        self.announcement_documents: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [InMemoryOutboxSource(self.announcement_documents)]

    async def remember_municipality(self, *, ags: str, name: str, as_of: datetime) -> None:
        stamp = _stamp(as_of)
        if stamp > self.name_stamps.get(ags, 0):
            self.names[ags], self.name_stamps[ags] = name, stamp

    async def municipality_names(self) -> dict[str, str]:
        return dict(self.names)

    async def add_scoring(self, scoring: Scoring) -> bool:
        if scoring.self_check_id in self.scoring_documents:
            return False
        self.scoring_documents[scoring.self_check_id] = _scoring_document(scoring)
        return True

    async def scorings(self) -> list[Scoring]:
        return [_scoring(copy.deepcopy(d)) for d in self.scoring_documents.values()]

    async def plan_measure(self, measure: Measure) -> None:
        existing = self.measure_documents.get(measure.measure_id)
        if existing is None:
            self.measure_documents[measure.measure_id] = _measure_document(measure)
        else:
            existing["title"] = measure.title

    async def change_measure_status(self, measure: Measure) -> None:
        document = self.measure_documents.setdefault(
            measure.measure_id, {"_id": measure.measure_id}
        )
        document.update(ags=measure.ags, field=measure.field, status=measure.status.value)
        document.setdefault("occurred_at", measure.occurred_at.isoformat())

    async def measures(self) -> list[Measure]:
        return [_measure(copy.deepcopy(d)) for d in self.measure_documents.values()]

    async def add_activity(self, activity: Activity) -> bool:
        stored = self.activity_documents.get(activity.source_event_id)
        if stored is not None and (
            activity.kind is PeerActivityKind.ACTIVITY
            or stored["kind"] != PeerActivityKind.ACTIVITY.value
        ):
            return False
        self.activity_documents[activity.source_event_id] = _activity_document(activity)
        return True

    async def activities(self) -> list[Activity]:
        return [_activity(copy.deepcopy(d)) for d in self.activity_documents.values()]

    async def pairs_told(self) -> list[PairTold]:
        return _pairs_told(
            d for d in self.announcement_documents.values() if d["kind"] in (SUGGESTED, WITHDRAWN)
        )

    async def announce(
        self,
        announcement_id: str,
        events: Sequence[OutboundEvent],
        *,
        pair: PairAnnouncement | None = None,
    ) -> bool:
        if announcement_id in self.announcement_documents:
            return False
        self.announcement_documents[announcement_id] = _announcement_document(
            announcement_id, events, pair
        )
        return True
