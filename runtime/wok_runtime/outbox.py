"""Transactional outbox: pending events live in the document whose change caused them.

A state change and the events it causes are one document write (MongoDB is atomic per
document), so neither exists without the other. The outbox is a map keyed by event id
with a pending counter to query on: nx-27017 corrupts array updates (DESIGN.md section 8).
A relay publishes each pending event, then removes it from the map. A crash between the
two publishes it again; consumers deduplicate by event id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wok_contracts import CONTENT_TYPE, Envelope
from wok_runtime.logging import get_logger

OUTBOX_FIELD = "outbox"
PENDING_FIELD = "outbox_pending"

log = get_logger(__name__)


@dataclass(frozen=True)
class OutboundEvent:
    """One event bound for a topic (unprefixed name), keyed by the municipality's AGS."""

    topic: str
    envelope: Envelope[Any]

    @property
    def key(self) -> str:
        return self.envelope.municipality or self.envelope.subject or self.envelope.id


def _entry(event: OutboundEvent, order: int) -> dict[str, Any]:
    return {
        "topic": event.topic,
        "key": event.key,
        "value": event.envelope.to_json_bytes().decode(),
        "correlation_id": event.envelope.correlationid,
        "type": event.envelope.type,
        "order": order,
    }


def _entries(events: Sequence[OutboundEvent]) -> dict[str, dict[str, Any]]:
    base = time.time_ns()
    return {event.envelope.id: _entry(event, base + index) for index, event in enumerate(events)}


def with_outbox(document: dict[str, Any], events: Sequence[OutboundEvent]) -> dict[str, Any]:
    """A new document carrying its pending events, for `insert_one`."""
    return {**document, OUTBOX_FIELD: _entries(events), PENDING_FIELD: len(events)}


def outbox_update(
    events: Sequence[OutboundEvent], *, set_fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An update that changes `set_fields` and adds the pending events in the same write."""
    assignments = dict(set_fields or {})
    for event_id, entry in _entries(events).items():
        assignments[f"{OUTBOX_FIELD}.{event_id}"] = entry
    update: dict[str, Any] = {"$inc": {PENDING_FIELD: len(events)}}
    if assignments:
        update["$set"] = assignments
    return update


@dataclass(frozen=True)
class PendingMessage:
    document_id: str
    event_id: str
    topic: str
    key: str
    value: bytes
    correlation_id: str
    order: int
    event_type: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"content-type": CONTENT_TYPE, "correlation_id": self.correlation_id}


def pending_messages(document: dict[str, Any]) -> list[PendingMessage]:
    entries = document.get(OUTBOX_FIELD) or {}
    messages = [
        PendingMessage(
            document_id=document["_id"],
            event_id=event_id,
            topic=entry["topic"],
            key=entry["key"],
            value=entry["value"].encode(),
            correlation_id=entry.get("correlation_id", ""),
            order=entry.get("order", 0),
            event_type=entry.get("type", ""),
        )
        for event_id, entry in entries.items()
    ]
    return sorted(messages, key=lambda message: message.order)


class OutboxSource(Protocol):
    """Where a relay finds pending events: a MongoDB collection, or an in-memory store in tests."""

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]: ...

    async def mark_published(self, message: PendingMessage) -> None: ...


class Publisher(Protocol):
    async def publish(
        self, *, topic: str, key: str, value: bytes, headers: dict[str, str]
    ) -> None: ...


class MongoOutboxSource:
    def __init__(self, collection: Any) -> None:
        self._collection = collection

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]:
        # Only the outbox: a document may be large (a dialogue event holds its registrations).
        cursor = self._collection.find({PENDING_FIELD: {"$gt": 0}}, {OUTBOX_FIELD: 1}).limit(limit)
        return [document async for document in cursor]

    async def mark_published(self, message: PendingMessage) -> None:
        await self._collection.update_one(
            {"_id": message.document_id, f"{OUTBOX_FIELD}.{message.event_id}": {"$exists": True}},
            {"$unset": {f"{OUTBOX_FIELD}.{message.event_id}": ""}, "$inc": {PENDING_FIELD: -1}},
        )


class InMemoryOutboxSource:
    """Pending events in a dict of documents shaped like the MongoDB ones (unit tests)."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self._documents = documents

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]:
        found = [d for d in self._documents.values() if d.get(PENDING_FIELD, 0) > 0]
        return found[:limit]

    async def mark_published(self, message: PendingMessage) -> None:
        document = self._documents[message.document_id]
        if document.get(OUTBOX_FIELD, {}).pop(message.event_id, None) is not None:
            document[PENDING_FIELD] -= 1


class OutboxRelay:
    """Publishes pending events from its sources; woken on every write, polling as a fallback."""

    def __init__(
        self,
        *,
        sources: Iterable[OutboxSource],
        publisher: Publisher,
        poll_interval_s: float = 0.5,
        batch_size: int = 200,
        on_published: Callable[[PendingMessage], None] | None = None,
        key_concurrency: int = 16,
    ) -> None:
        self._sources = list(sources)
        self._key_concurrency = key_concurrency
        self._publisher = publisher
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wakeup = asyncio.Event()
        self._on_published = on_published

    def add_source(self, source: OutboxSource) -> None:
        self._sources.append(source)

    def wake(self) -> None:
        self._wakeup.set()

    async def drain_once(self) -> int:
        """Publish everything pending now; returns how many events went out."""
        published = 0
        for source in self._sources:
            while True:
                documents = await source.documents_with_pending(self._batch_size)
                # In write order across the batch, so one municipality's events keep theirs.
                messages = sorted(
                    (message for document in documents for message in pending_messages(document)),
                    key=lambda message: message.order,
                )
                sent = await self._publish_by_key(source, messages)
                published += sent
                if len(documents) < self._batch_size or sent == 0:
                    break
        return published

    async def _publish_by_key(self, source: OutboxSource, messages: list[PendingMessage]) -> int:
        """Each key's messages one after another in write order; different keys side by side
        (at most `key_concurrency` at once), so the round trips to the broker and the database
        overlap instead of adding up. Only a key's order matters: it picks the partition."""
        chains: dict[str, list[PendingMessage]] = {}
        for message in messages:
            chains.setdefault(message.key, []).append(message)
        limit = asyncio.Semaphore(self._key_concurrency)

        async def publish_in_order(chain: list[PendingMessage]) -> int:
            async with limit:
                for message in chain:
                    await self._publisher.publish(
                        topic=message.topic,
                        key=message.key,
                        value=message.value,
                        headers=message.headers,
                    )
                    await source.mark_published(message)
                    if self._on_published is not None:
                        self._on_published(message)
                return len(chain)

        outcomes = await asyncio.gather(
            *(publish_in_order(chain) for chain in chains.values()), return_exceptions=True
        )
        for outcome in outcomes:
            # A failed key keeps the rest of its chain pending; the first error is reported.
            if isinstance(outcome, BaseException):
                raise outcome
        return sum(outcome for outcome in outcomes if isinstance(outcome, int))

    async def run(self) -> None:
        """Relay until cancelled; a failure (broker or database away) is logged and retried."""
        while True:
            self._wakeup.clear()
            try:
                await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay failed; retrying", error=repr(error))
                await asyncio.sleep(self._poll_interval_s)
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
            except TimeoutError:
                pass
