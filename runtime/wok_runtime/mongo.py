"""MongoDB through PyMongo's async API; one database per service, string ids throughout."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

PROCESSED_COLLECTION = "processed_events"
PROCESSED_RETENTION_S = 60 * 60 * 24 * 30  # replays older than 30 days come from a rebuild


def mongo_client(uri: str) -> AsyncMongoClient[dict[str, Any]]:
    """A client object; it connects lazily, on first use."""
    return AsyncMongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)


class MongoProcessedStore:
    """Processed event ids under a unique index (the `_id`), expired after the retention."""

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
