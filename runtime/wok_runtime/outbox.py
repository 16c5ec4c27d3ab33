"""Transactional outbox: pending events live in the document whose change caused them.

A state change and the events it causes are one document write (MongoDB is atomic per
document), so neither exists without the other. The outbox is a map keyed by event id
with a pending counter to query on: nx-27017 corrupts array updates (DESIGN.md section 8).
A relay publishes pending events, then removes them from the map. A crash between the two
publishes them again; consumers deduplicate by event id.

One relay round: one find per source, every message handed to the producer in write order
without waiting for the broker (`KafkaPublisher.send_all`: a partition's messages in a few
batches, order kept), the acknowledgements (acks=all) awaited together, then one bulk write
per source removing what was acknowledged. A message that could not be handed over holds
back the rest of its key until the next round; one the broker did not acknowledge stays
pending.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import UpdateOne

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

    async def mark_all_published(self, messages: Sequence[PendingMessage]) -> None: ...


class Publisher(Protocol):
    """Publishes one message and waits for the broker (dead letters, snapshots)."""

    async def publish(
        self, *, topic: str, key: str, value: bytes, headers: dict[str, str]
    ) -> None: ...


class RelayPublisher(Protocol):
    """Hands the relay's messages to the producer in the order given, without waiting for
    the broker (`KafkaPublisher.send_all`)."""

    async def send_all(self, messages: Sequence[PendingMessage]) -> list[Awaitable[object]]:
        """One awaitable per message, completing with the broker's acknowledgement or raising.
        One that could not be handed over gets a failed awaitable, and so does every later
        message of its key (not handed over): none overtakes another of its key."""
        ...


def _removal(event_ids: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update removing these entries of one document, only if all are still there
    (so the pending counter is never decremented twice for one entry)."""
    present = {f"{OUTBOX_FIELD}.{event_id}": {"$exists": True} for event_id in event_ids}
    update = {
        "$unset": {f"{OUTBOX_FIELD}.{event_id}": "" for event_id in event_ids},
        "$inc": {PENDING_FIELD: -len(event_ids)},
    }
    return present, update


def _by_document(messages: Iterable[PendingMessage]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for message in messages:
        grouped.setdefault(message.document_id, []).append(message.event_id)
    return grouped


class MongoOutboxSource:
    def __init__(self, collection: Any) -> None:
        self._collection = collection

    async def ensure_indexes(self) -> None:
        """Every relay round looks for pending events: with this index nx-27017 reads only the
        documents that have some (1/10 of the CPU of a scan over 5,000 documents)."""
        await self._collection.create_index(PENDING_FIELD)

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]:
        # Only the outbox: a document may be large (a dialogue event holds its registrations).
        cursor = self._collection.find({PENDING_FIELD: {"$gt": 0}}, {OUTBOX_FIELD: 1}).limit(limit)
        return [document async for document in cursor]

    async def mark_published(self, message: PendingMessage) -> None:
        present, update = _removal([message.event_id])
        await self._collection.update_one({"_id": message.document_id, **present}, update)

    async def mark_all_published(self, messages: Sequence[PendingMessage]) -> None:
        """One round trip: one update per document, removing all its published entries."""
        grouped = _by_document(messages)
        if not grouped:
            return
        operations = []
        for document_id, event_ids in grouped.items():
            present, update = _removal(event_ids)
            operations.append(UpdateOne({"_id": document_id, **present}, update))
        result = await self._collection.bulk_write(operations, ordered=False)
        if result.matched_count < len(operations):
            # Some entry was removed meanwhile (by another relay): entry by entry, each guarded;
            # the documents the bulk write did change match none of these any more.
            for message in messages:
                await self.mark_published(message)


class InMemoryOutboxSource:
    """Pending events in a dict of documents shaped like the MongoDB ones (unit tests)."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self._documents = documents
        self.mark_calls = 0

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]:
        found = [d for d in self._documents.values() if d.get(PENDING_FIELD, 0) > 0]
        return found[:limit]

    async def mark_published(self, message: PendingMessage) -> None:
        await self.mark_all_published([message])

    async def mark_all_published(self, messages: Sequence[PendingMessage]) -> None:
        self.mark_calls += 1
        for message in messages:
            document = self._documents[message.document_id]
            if document.get(OUTBOX_FIELD, {}).pop(message.event_id, None) is not None:
                document[PENDING_FIELD] -= 1


class OutboxRelay:
    """Publishes pending events from its sources; woken on every write, polling as a fallback.

    While events keep coming, rounds start at most every `min_round_interval_s`, so one round
    carries what was written meanwhile (fewer database round trips per event); after a round
    that found nothing, a write is relayed at once. Every round looks at every source (their
    finds side by side) and publishes in write order across them.
    """

    def __init__(
        self,
        *,
        sources: Iterable[OutboxSource],
        publisher: RelayPublisher,
        poll_interval_s: float = 0.5,
        batch_size: int = 200,
        on_published: Callable[[PendingMessage], None] | None = None,
        min_round_interval_s: float = 0.025,
    ) -> None:
        self._sources = list(sources)
        self._publisher = publisher
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._min_round_interval_s = min_round_interval_s
        self._wakeup = asyncio.Event()
        self._on_published = on_published

    def add_source(self, source: OutboxSource) -> None:
        self._sources.append(source)

    def wake(self) -> None:
        self._wakeup.set()

    async def drain_once(self) -> int:
        """Publish everything pending now; returns how many events went out."""
        published = 0
        while True:
            sent, more = await self._round(self._sources)
            published += sent
            if not more or sent == 0:
                return published

    async def _round(self, sources: list[OutboxSource]) -> tuple[int, bool]:
        """One round over these sources; returns how many went out and whether a source had
        a full batch (so more may be pending)."""
        found = await asyncio.gather(
            *(source.documents_with_pending(self._batch_size) for source in sources)
        )
        # In write order across the round, so one municipality's events keep theirs.
        messages = sorted(
            (
                (source, message)
                for source, documents in zip(sources, found, strict=True)
                for document in documents
                for message in pending_messages(document)
            ),
            key=lambda pair: pair[1].order,
        )
        more = any(len(documents) >= self._batch_size for documents in found)
        if not messages:
            return 0, more
        acknowledged, error = await self._publish(messages)
        by_source: dict[int, tuple[OutboxSource, list[PendingMessage]]] = {}
        for source, message in acknowledged:
            by_source.setdefault(id(source), (source, []))[1].append(message)
        await asyncio.gather(
            *(source.mark_all_published(done) for source, done in by_source.values())
        )
        if self._on_published is not None:
            for _, message in acknowledged:
                self._on_published(message)
        if error is not None:
            raise error
        return len(acknowledged), more

    async def _publish(
        self, messages: list[tuple[OutboxSource, PendingMessage]]
    ) -> tuple[list[tuple[OutboxSource, PendingMessage]], BaseException | None]:
        """Hand every message over in write order, then await the acknowledgements together.
        Returns the acknowledged ones and the first error."""
        acks = await self._publisher.send_all([message for _, message in messages])
        outcomes = await asyncio.gather(*acks, return_exceptions=True)
        acknowledged = []
        error: BaseException | None = None
        for (source, message), outcome in zip(messages, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Not handed over or not acknowledged: stays pending, sent again next round
                # (maybe twice: consumers deduplicate by id).
                error = error or outcome
            else:
                acknowledged.append((source, message))
        return acknowledged, error

    async def run(self) -> None:
        """Relay until cancelled; a failure (broker or database away) is logged and retried."""
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            started = loop.time()
            try:
                sent = await self.drain_once()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("outbox relay failed; retrying", error=repr(error))
                await asyncio.sleep(self._poll_interval_s)
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
            except TimeoutError:
                continue
            if sent:
                # Busy: the next round no sooner than `min_round_interval_s` after this one
                # began, carrying whatever was written meanwhile.
                pause = started + self._min_round_interval_s - loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
