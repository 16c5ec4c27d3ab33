"""MongoDB versions of the repositories (string ids, whole-field $set, no array updates).

Event times are stored as ISO-8601 strings in UTC with microseconds: those sort and compare
as strings alike on MongoDB and on nx-27017 (which hands dates back as zone-less strings).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import DuplicateKeyError

from wok_contracts import AggregateSnapshot
from wok_reporting.adapters.repository import StoredSnapshot
from wok_reporting.domain import (
    DialogueEventRow,
    MunicipalityRow,
    NotificationRow,
    Projection,
    ProjectionRow,
    RegistrationRow,
    as_utc,
)

COLLECTIONS: dict[type[Any], str] = {
    MunicipalityRow: "municipalities",
    DialogueEventRow: "dialogue_events",
    RegistrationRow: "registrations",
    NotificationRow: "notifications",
}
SNAPSHOTS = "snapshots"


def stored_time(moment: datetime) -> str:
    return as_utc(moment).isoformat(timespec="microseconds")


def loaded_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return as_utc(value)
    return as_utc(datetime.fromisoformat(str(value)))


def _document(row: ProjectionRow) -> dict[str, Any]:
    fields = dataclasses.asdict(row)
    fields["event_time"] = stored_time(row.event_time)
    return {name: str(value) for name, value in fields.items()}


def _row(row_type: type[Any], document: dict[str, Any]) -> ProjectionRow:
    values = {f.name: document[f.name] for f in dataclasses.fields(row_type)}
    values["event_time"] = loaded_time(values["event_time"])
    row: ProjectionRow = row_type(**values)
    return row


class MongoProjectionRepository:
    def __init__(self, database: Any) -> None:
        self._database = database

    async def save(self, row: ProjectionRow) -> bool:
        document = _document(row)
        try:
            # Matches only if the stored row is not newer; otherwise the upsert tries to
            # insert a second document with the same _id, which the unique _id refuses.
            await self._database[COLLECTIONS[type(row)]].update_one(
                {"_id": row.entity_id, "event_time": {"$lte": document["event_time"]}},
                {"$set": document},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def load(self) -> Projection:
        rows: list[ProjectionRow] = []
        for row_type, collection in COLLECTIONS.items():
            async for document in self._database[collection].find({}):
                rows.append(_row(row_type, document))
        return Projection.of(rows)


class MongoSnapshotRepository:
    """The newest snapshot per scope, kept as its JSON so the store cannot reshape it."""

    def __init__(self, database: Any) -> None:
        self._collection = database[SNAPSHOTS]

    async def latest(self, scope_id: str) -> StoredSnapshot | None:
        document = await self._collection.find_one({"_id": scope_id})
        if document is None:
            return None
        return StoredSnapshot(
            scope_id=scope_id,
            snapshot=AggregateSnapshot.model_validate_json(document["snapshot"]),
            published=bool(document["published"]),
        )

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
