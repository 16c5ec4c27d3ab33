"""MongoDB versions of the repositories (string ids, $set on map keys, no array updates).

An entity is one document `{_id: entity id, ags, facts: {<event key>: fact}}`; a fact is
added with `$set` on its own map key, so storing it again, or concurrently with other
facts about the entity, loses nothing. Times are stored as ISO-8601 strings in UTC with
microseconds: those sort and compare as strings alike on MongoDB and on nx-27017 (which
hands dates back as zone-less strings).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.errors import DuplicateKeyError

from wok_contracts import ActivityDigest, AggregateSnapshot
from wok_reporting.adapters.repository import (
    StoredSnapshot,
    activity_document,
    digest_from,
    name_as_of,
)
from wok_reporting.domain import (
    DIALOGUE_EVENT,
    MUNICIPALITY,
    NOTIFICATION,
    REGISTRATION,
    Fact,
    Projection,
    as_utc,
)

COLLECTIONS = {
    MUNICIPALITY: "municipalities",
    DIALOGUE_EVENT: "dialogue_events",
    REGISTRATION: "registrations",
    NOTIFICATION: "notifications",
}
ACTIVITY = "activity"
SNAPSHOTS = "snapshots"


def stored_time(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="microseconds")


def loaded_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def fact_key(event_id: str) -> str:
    """A map key for an event id: as it is, unless MongoDB would read it as a path."""
    if event_id and "." not in event_id and not event_id.startswith("$"):
        return event_id
    return "h" + hashlib.sha256(event_id.encode()).hexdigest()


def _fact_document(fact: Fact) -> dict[str, Any]:
    return {
        "event_id": fact.event_id,
        "event_type": fact.event_type,
        "time": stored_time(fact.time),
        "fields": dict(fact.fields),
    }


def _facts_of(entity: str, document: dict[str, Any]) -> list[Fact]:
    return [
        Fact(
            entity=entity,
            entity_id=document["_id"],
            ags=document["ags"],
            event_id=stored["event_id"],
            event_type=stored["event_type"],
            time=loaded_time(stored["time"]),
            fields=stored["fields"],
        )
        for stored in (document.get("facts") or {}).values()
    ]


def _fact_update(fact: Fact) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"_id": fact.entity_id},
        {"$set": {"ags": fact.ags, f"facts.{fact_key(fact.event_id)}": _fact_document(fact)}},
    )


class MongoProjectionRepository:
    def __init__(self, database: Any) -> None:
        self._database = database

    async def record(self, fact: Fact) -> None:
        query, update = _fact_update(fact)
        await self._database[COLLECTIONS[fact.entity]].update_one(query, update, upsert=True)

    async def facts(self) -> list[Fact]:
        found: list[Fact] = []
        for entity, collection in COLLECTIONS.items():
            async for document in self._database[collection].find({}):
                found.extend(_facts_of(entity, document))
        return found

    async def load(self) -> Projection:
        return Projection.from_facts(await self.facts())

    async def municipality_name(self, ags: str, *, as_of: datetime) -> str:
        document = await self._database[COLLECTIONS[MUNICIPALITY]].find_one({"_id": ags})
        facts = [] if document is None else _facts_of(MUNICIPALITY, document)
        return name_as_of(facts, ags, as_of)

    async def replace_all(self, facts: Iterable[Fact]) -> None:
        by_collection: dict[str, list[UpdateOne]] = {name: [] for name in COLLECTIONS.values()}
        for fact in facts:
            query, update = _fact_update(fact)
            by_collection[COLLECTIONS[fact.entity]].append(UpdateOne(query, update, upsert=True))
        for collection, updates in by_collection.items():
            await self._database[collection].delete_many({})
            if updates:
                await self._database[collection].bulk_write(updates, ordered=True)


class MongoActivityRepository:
    """Digest documents keyed by source event id, each carrying its outbox (the runtime's
    relay publishes them: `ServiceRuntime.add_outbox(repository.collection)`)."""

    def __init__(self, database: Any) -> None:
        self.collection = database[ACTIVITY]

    async def add(self, digest: ActivityDigest, *, correlation_id: str, publish: bool) -> bool:
        document = activity_document(digest, correlation_id=correlation_id, publish=publish)
        try:
            await self.collection.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def recent(self, limit: int) -> list[ActivityDigest]:
        cursor = self.collection.find({}).sort("occurred_at", -1).limit(limit)
        return [digest_from(document) async for document in cursor]

    async def all(self) -> list[ActivityDigest]:
        cursor = self.collection.find({}).sort([("occurred_at", 1), ("_id", 1)])
        return [digest_from(document) async for document in cursor]


class MongoSnapshotRepository:
    """The newest snapshot per scope, kept as its JSON so the store cannot reshape it."""

    def __init__(self, database: Any) -> None:
        self._collection = database[SNAPSHOTS]

    @staticmethod
    def _stored(document: dict[str, Any]) -> StoredSnapshot:
        return StoredSnapshot(
            scope_id=document["_id"],
            snapshot=AggregateSnapshot.model_validate_json(document["snapshot"]),
            published=bool(document["published"]),
        )

    async def latest(self, scope_id: str) -> StoredSnapshot | None:
        document = await self._collection.find_one({"_id": scope_id})
        return None if document is None else self._stored(document)

    async def all(self) -> list[StoredSnapshot]:
        return [self._stored(document) async for document in self._collection.find({})]

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        document = {
            "_id": stored.scope_id,
            "sequence": stored.snapshot.sequence,
            "published": stored.published,
            "snapshot": stored.snapshot.model_dump_json(),
            "saved_at": stored_time(datetime.now(UTC)),
        }
        if previous_sequence is None:
            try:
                await self._collection.insert_one(document)
            except DuplicateKeyError:
                return False
            return True
        result = await self._collection.replace_one(
            {"_id": stored.scope_id, "sequence": previous_sequence}, document
        )
        return bool(result.matched_count)

    async def mark_published(self, scope_id: str, sequence: int) -> None:
        await self._collection.update_one(
            {"_id": scope_id, "sequence": sequence}, {"$set": {"published": True}}
        )
