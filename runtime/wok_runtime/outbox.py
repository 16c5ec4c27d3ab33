"""Transactional outbox: pending events live in the document whose change caused them.

A state change and the events it causes are one document write (MongoDB is atomic per
document), so neither exists without the other. The outbox is a map keyed by event id
with a pending counter to query on: nx-27017 corrupts array updates (DESIGN.md section 8).
A relay publishes pending events, then removes them from the map. A crash between the two
publishes them again; consumers deduplicate by event id.

One relay round: one find per source (or none: see `OutboxRelay.offer`), every message
handed to the producer in write order without waiting for the broker
(`KafkaPublisher.send_all`: a partition's messages in a few batches, order kept), the
acknowledgements (acks=all) awaited together. The acknowledged entries are removed a little
later, one bulk write per source for several rounds, or by the writer's own next write to
the document (`OutboxWriter`). A message that could not be handed over holds back the rest
of its key until the next round; one the broker did not acknowledge stays pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo import UpdateOne

from wok_contracts import CONTENT_TYPE, Envelope
from wok_runtime.logging import get_logger

OUTBOX_FIELD = "outbox"
EVENT_TYPE_HEADER = "wok-event-type"
"""The envelope's `type`, repeated as a Kafka header by the relay: a consumer skips the
events it has no handler for without decoding them (`wok_runtime.batch`)."""
PENDING_FIELD = "outbox_pending"
WRITER = uuid.uuid4().hex[:12]
"""Tags the entries this process writes: its relay leaves young entries of other processes
to their own relays (see `OutboxRelay`)."""

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
        "writer": WRITER,
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
    writer: str = ""
    """The process that wrote it (`WRITER`); empty for entries of older versions."""

    @property
    def headers(self) -> dict[str, str]:
        headers = {"content-type": CONTENT_TYPE, "correlation_id": self.correlation_id}
        if self.event_type:  # entries of older versions have none: consumers decode those
            headers[EVENT_TYPE_HEADER] = self.event_type
        return headers


def _message(document_id: str, event_id: str, entry: dict[str, Any]) -> PendingMessage:
    return PendingMessage(
        document_id=document_id,
        event_id=event_id,
        topic=entry["topic"],
        key=entry["key"],
        value=entry["value"].encode(),
        correlation_id=entry.get("correlation_id", ""),
        order=entry.get("order", 0),
        event_type=entry.get("type", ""),
        writer=entry.get("writer", ""),
    )


def pending_messages(document: dict[str, Any]) -> list[PendingMessage]:
    entries = document.get(OUTBOX_FIELD) or {}
    messages = [_message(document["_id"], event_id, entry) for event_id, entry in entries.items()]
    return sorted(messages, key=lambda message: message.order)


def written_messages(document_id: str, update: dict[str, Any]) -> list[PendingMessage]:
    """The pending events an `outbox_update` (applied to `document_id`) added, for
    `OutboxRelay.offer` once the write succeeded."""
    prefix = f"{OUTBOX_FIELD}."
    messages = [
        _message(document_id, path.removeprefix(prefix), entry)
        for path, entry in update.get("$set", {}).items()
        if path.startswith(prefix)
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


def with_removal(
    condition: dict[str, Any], update: dict[str, Any], event_ids: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A write to one document that also removes these published entries from it, matching
    only if all of them are still there (the same guard as the relay's own removal)."""
    present, removal = _removal(event_ids)
    merged = dict(update)
    merged["$unset"] = {**update.get("$unset", {}), **removal["$unset"]}
    increments = dict(update.get("$inc", {}))
    increments[PENDING_FIELD] = increments.get(PENDING_FIELD, 0) + removal["$inc"][PENDING_FIELD]
    merged["$inc"] = increments
    return {**condition, **present}, merged


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
        self.find_calls = 0

    async def documents_with_pending(self, limit: int) -> list[dict[str, Any]]:
        self.find_calls += 1
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


Pair = tuple[OutboxSource, PendingMessage]


class OutboxRelay:
    """Publishes pending events from its sources; woken on every write, polling as a fallback.

    While events keep coming, rounds start at most every `min_round_interval_s`, so one round
    carries what was written meanwhile (fewer database round trips per event); after a round
    that found nothing, a write is relayed at once. A round after `wake()` (or the first, or
    one after a failure, or every `rescan_interval_s` while busy and every `poll_interval_s`
    while quiet) looks at every source (their finds side by side) and publishes in write
    order across them. Events a writer handed over with `offer` once its write succeeded go
    out in a round of their own without any find: the database is not read for them.

    Events found by a full round are removed from their documents right after it (one bulk
    write per source). Offered ones are removed `mark_interval_s` after their publication, one
    bulk write per source for several rounds (one document write for several of its events),
    unless a writer removed them in its own next write to the document meanwhile
    (`take_published`). A full round skips what is published and not yet removed, and the
    entries another process wrote less than `foreign_grace_s` ago (its own relay publishes
    them; after that, a crashed writer's are taken over).

    While nothing happens, the look every `poll_interval_s` (for the events other processes
    wrote) comes less and less often, the interval doubling up to `idle_poll_interval_s`
    (default: `poll_interval_s`, no backing off); a write of this process wakes the relay
    at once, and publishing something brings the interval back to `poll_interval_s`.
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
        mark_interval_s: float = 0.5,
        rescan_interval_s: float = 30.0,
        foreign_grace_s: float = 2.0,
        idle_poll_interval_s: float | None = None,
    ) -> None:
        self._sources = list(sources)
        self._publisher = publisher
        self._poll_interval_s = poll_interval_s
        self._idle_poll_interval_s = max(poll_interval_s, idle_poll_interval_s or 0.0)
        self._quiet_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._min_round_interval_s = min_round_interval_s
        self._mark_interval_s = mark_interval_s
        self._rescan_interval_s = max(rescan_interval_s, poll_interval_s)
        self._foreign_grace_ns = int(foreign_grace_s * 1e9)
        self._wakeup = asyncio.Event()
        self._on_published = on_published
        self._full_round_due = True
        self._last_full_round = float("-inf")
        self._foreign_check_at = float("inf")
        self._offered: list[Pair] = []
        # Acknowledged, not yet removed: by (source, document), with when the first was.
        self._unmarked: dict[tuple[int, str], tuple[OutboxSource, list[PendingMessage], float]] = {}
        # their ids, and those a writer took to remove in its own write (full rounds skip them)
        self._unmarked_ids: set[str] = set()

    def add_source(self, source: OutboxSource) -> None:
        self._sources.append(source)

    def wake(self) -> None:
        """Something was written to a source: the next round looks at every source."""
        self._full_round_due = True
        self._wakeup.set()

    def offer(self, source: OutboxSource, messages: Sequence[PendingMessage]) -> None:
        """These pending events were just written to `source` (the write succeeded): the next
        round publishes them without reading the database."""
        self._offered.extend((source, message) for message in messages)
        self._wakeup.set()

    async def drain_once(self) -> int:
        """Publish everything pending now (looking at every source) and remove it from its
        documents; returns how many events went out."""
        published = 0
        try:
            while True:
                sent, more = await self._round(full=True)
                published += sent
                if not more or sent == 0:
                    return published
                await self._mark()  # so the next find reaches the documents after these
        finally:
            await self._mark()

    async def _round(self, *, full: bool) -> tuple[int, bool]:
        """One round; returns how many went out and whether a source had a full batch (so
        more may be pending)."""
        offered, self._offered = self._offered, []
        more = False
        if full:
            # What was offered before the finds began is in what they find.
            self._full_round_due = False
            self._last_full_round = asyncio.get_running_loop().time()
            self._foreign_check_at = float("inf")
            pairs, more = await self._find()
        else:
            pairs = sorted(offered, key=lambda pair: pair[1].order)
        if not pairs:
            return 0, more
        acknowledged, error = await self._publish(pairs)
        if self._offered:  # offered during this round; a full round may have sent them
            sent = {message.event_id for _, message in acknowledged}
            self._offered = [pair for pair in self._offered if pair[1].event_id not in sent]
        # Found by reading: removed at once (or the next full round reads them again).
        self._keep_unmarked(acknowledged, since=float("-inf") if full else None)
        if self._on_published is not None:
            for _, message in acknowledged:
                self._on_published(message)
        if error is not None:
            # What failed stays pending, and later events of its key must not overtake it:
            # the next round reads everything in write order again.
            self._full_round_due = True
            self._offered = []
            raise error
        return len(acknowledged), more

    async def _find(self) -> tuple[list[Pair], bool]:
        sources = list(self._sources)
        found = await asyncio.gather(
            *(source.documents_with_pending(self._batch_size) for source in sources)
        )
        foreign_before = time.time_ns() - self._foreign_grace_ns
        pairs: list[Pair] = []
        young_foreign = False
        for source, documents in zip(sources, found, strict=True):
            for document in documents:
                for message in pending_messages(document):
                    if message.event_id in self._unmarked_ids:
                        continue  # published, not yet removed
                    if message.writer not in ("", WRITER) and message.order >= foreign_before:
                        young_foreign = True  # its writer's relay has it
                        continue
                    pairs.append((source, message))
        if young_foreign:  # look again once they are old enough to be taken over
            loop = asyncio.get_running_loop()
            self._foreign_check_at = loop.time() + self._foreign_grace_ns / 1e9
        # In write order across the round, so one municipality's events keep theirs.
        pairs.sort(key=lambda pair: pair[1].order)
        return pairs, any(len(documents) >= self._batch_size for documents in found)

    def _keep_unmarked(self, pairs: Iterable[Pair], *, since: float | None = None) -> None:
        now = asyncio.get_running_loop().time() if since is None else since
        for source, message in pairs:
            key = (id(source), message.document_id)
            entry = self._unmarked.setdefault(key, (source, [], now))
            entry[1].append(message)
            self._unmarked_ids.add(message.event_id)

    def _next_removal(self) -> float | None:
        """When the oldest acknowledged, not yet removed events are due for removal."""
        if not self._unmarked:
            return None
        return min(since for _, _, since in self._unmarked.values()) + self._mark_interval_s

    def take_published(self, source: OutboxSource, document_id: str) -> list[PendingMessage]:
        """The acknowledged events of this document not yet removed from it, for a writer
        to remove in its next write to the document (`with_removal`) instead of a write of
        the relay's own. Hand them back with `published_removed` or `published_kept`."""
        entry = self._unmarked.pop((id(source), document_id), None)
        return entry[1] if entry else []

    def published_removed(self, messages: Sequence[PendingMessage]) -> None:
        """A writer removed these (taken with `take_published`) from their document."""
        self._unmarked_ids.difference_update(message.event_id for message in messages)

    def published_kept(self, source: OutboxSource, messages: Sequence[PendingMessage]) -> None:
        """A writer did not remove these after all: the relay does."""
        self._keep_unmarked(((source, message) for message in messages), since=float("-inf"))

    async def _mark(self, *, due_by: float | None = None) -> None:
        """Remove the acknowledged events from their documents (those first acknowledged
        before `due_by`, or all): one bulk write per source."""
        if due_by is None:
            done, self._unmarked = self._unmarked, {}
        else:
            done = {key: entry for key, entry in self._unmarked.items() if entry[2] <= due_by}
            for key in done:
                del self._unmarked[key]
        if not done:
            return
        by_source: dict[int, tuple[OutboxSource, list[PendingMessage]]] = {}
        for source, messages, _ in done.values():
            by_source.setdefault(id(source), (source, []))[1].extend(messages)
        try:
            await asyncio.gather(
                *(source.mark_all_published(messages) for source, messages in by_source.values())
            )
        except BaseException:
            for source, messages, since in done.values():  # again (each removal is guarded)
                self._keep_unmarked(((source, m) for m in messages), since=since)
            raise
        for _, messages in by_source.values():
            self.published_removed(messages)

    async def _publish(self, pairs: list[Pair]) -> tuple[list[Pair], BaseException | None]:
        """Hand every message over in write order, then await the acknowledgements together.
        Returns the acknowledged ones and the first error."""
        acks = await self._publisher.send_all([message for _, message in pairs])
        outcomes = await asyncio.gather(*acks, return_exceptions=True)
        acknowledged = []
        error: BaseException | None = None
        for pair, outcome in zip(pairs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                # Not handed over or not acknowledged: stays pending, sent again next round
                # (maybe twice: consumers deduplicate by id).
                error = error or outcome
            else:
                acknowledged.append(pair)
        return acknowledged, error

    async def _relay_now(self) -> int:
        """One wake-up's work: a full round (and more while batches are full) when due, else
        a round of the offered events; then the removals if quiet or due."""
        loop = asyncio.get_running_loop()
        sent = 0
        now = loop.time()
        full = (
            self._full_round_due
            or now - self._last_full_round >= self._rescan_interval_s
            or now >= self._foreign_check_at
        )
        if full or self._offered:
            sent, more = await self._round(full=full)
            while full and more and sent:
                await self._mark()  # so the next find reaches the documents after these
                more_sent, more = await self._round(full=True)
                sent += more_sent
        if self._unmarked:
            await self._mark(due_by=loop.time() - self._mark_interval_s)
        return sent

    async def run(self) -> None:
        """Relay until cancelled; a failure (broker or database away) is logged and retried."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wakeup.clear()
                started = loop.time()
                try:
                    sent = await self._relay_now()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("outbox relay failed; retrying", error=repr(error))
                    self._full_round_due = True
                    await asyncio.sleep(self._poll_interval_s)
                    continue
                if sent or self._unmarked or self._offered:
                    self._quiet_interval_s = self._poll_interval_s
                timeout = self._quiet_interval_s
                removal = self._next_removal()
                if removal is not None:  # removals due then at the latest
                    timeout = min(timeout, max(removal - loop.time(), 0.0))
                if self._foreign_check_at < float("inf"):  # another writer's young entries
                    timeout = min(timeout, max(self._foreign_check_at - loop.time(), 0.0))
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=timeout)
                except TimeoutError:
                    if not self._unmarked:
                        self._full_round_due = True  # quiet: look for other writers' events
                        # Quiet for longer: look less often (a write here wakes the relay
                        # at once; only other processes' writes wait for the look).
                        self._quiet_interval_s = min(
                            self._quiet_interval_s * 2, self._idle_poll_interval_s
                        )
                    continue
                self._quiet_interval_s = self._poll_interval_s  # woken: something was written
                if sent:
                    # Busy: the next round no sooner than `min_round_interval_s` after this
                    # one began, carrying whatever was written meanwhile.
                    pause = started + self._min_round_interval_s - loop.time()
                    if pause > 0:
                        await asyncio.sleep(pause)
        finally:
            # Stopping: remove what went out, so a restart does not send it again.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._mark(), timeout=2.0)


class OutboxWriter:
    """What a repository that writes one source's documents often tells the relay: the
    events a write added (`written`: published without a read), and the removal of already
    published ones folded into its next write to their document (`take_published`, then
    `removed` or `kept`), which spares the relay a write of that document."""

    def __init__(self, relay: OutboxRelay, source: OutboxSource) -> None:
        self._relay = relay
        self._source = source

    def written(self, document_id: str, update: dict[str, Any]) -> None:
        self._relay.offer(self._source, written_messages(document_id, update))

    def take_published(self, document_id: str) -> list[PendingMessage]:
        return self._relay.take_published(self._source, document_id)

    def removed(self, messages: Sequence[PendingMessage]) -> None:
        self._relay.published_removed(messages)

    def kept(self, messages: Sequence[PendingMessage]) -> None:
        self._relay.published_kept(self._source, messages)

    def uncertain(self) -> None:
        """A write failed without an answer (it may have happened): read everything."""
        self._relay.wake()
