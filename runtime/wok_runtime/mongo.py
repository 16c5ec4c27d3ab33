"""MongoDB through PyMongo's async API; one database per service, string ids throughout."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.monitoring import CommandListener

PROCESSED_COLLECTION = "processed_events"
PROCESSED_RETENTION_S = 60 * 60 * 24 * 30  # replays older than 30 days come from a rebuild
DUPLICATE_KEY = 11000


def mongo_client(
    uri: str, *, listeners: Sequence[CommandListener] = ()
) -> AsyncMongoClient[dict[str, Any]]:
    """A client object; it connects lazily, on first use. `listeners` see every command
    (the service runtime counts them, see `wok_runtime.metrics.MongoCommandCounter`)."""
    return AsyncMongoClient(
        uri, serverSelectionTimeoutMS=5000, tz_aware=True, event_listeners=list(listeners)
    )


class MongoProcessedStore:
    """Processed event ids under a unique index (the `_id`), expired after the retention;
    read and written one at a time or for a whole batch at once (one round trip each)."""

    def __init__(self, database: Any) -> None:
        self._collection = database[PROCESSED_COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._collection.create_index(
            "processed_at", expireAfterSeconds=PROCESSED_RETENTION_S
        )

    async def seen(self, consumer: str, event_id: str) -> bool:
        return await self._collection.find_one({"_id": f"{consumer}:{event_id}"}) is not None

    async def mark(self, consumer: str, event_id: str) -> None:
        try:
            await self._collection.insert_one(
                {"_id": f"{consumer}:{event_id}", "processed_at": datetime.now(UTC)}
            )
        except DuplicateKeyError:
            pass

    async def seen_many(self, consumer: str, event_ids: Collection[str]) -> set[str]:
        prefix = f"{consumer}:"
        cursor = self._collection.find(
            {"_id": {"$in": [prefix + event_id for event_id in event_ids]}}, {"_id": 1}
        )
        return {document["_id"].removeprefix(prefix) async for document in cursor}

    async def mark_many(self, consumer: str, event_ids: Collection[str]) -> None:
        now = datetime.now(UTC)
        documents = [
            {"_id": f"{consumer}:{event_id}", "processed_at": now} for event_id in event_ids
        ]
        if not documents:
            return
        try:
            await self._collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            # marked before (a batch repeated after a crash): only duplicates are fine
            if any(
                failure.get("code") != DUPLICATE_KEY
                for failure in error.details.get("writeErrors", [])
            ):
                raise
