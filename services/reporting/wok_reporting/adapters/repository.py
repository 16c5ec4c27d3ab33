"""Where facts, digests and published snapshots are kept: the Protocols and in-memory versions."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from wok_contracts import ActivityDigest, AggregateSnapshot, new_envelope
from wok_contracts.topics import EXCHANGE_ACTIVITY
from wok_reporting.digests import digest_id
from wok_reporting.domain import MUNICIPALITY, Fact, Projection, as_utc, fold
from wok_runtime.outbox import OutboundEvent, with_outbox

SOURCE = "/wok/reporting"


@dataclass(frozen=True)
class FactBatch:
    """The facts of one partition's part of a consumed batch, and the highest offset of the
    partition it covers (stored with the facts: replays at or below it are skipped)."""

    topic: str
    partition: int
    last_offset: int
    facts: tuple[Fact, ...]


@dataclass(frozen=True)
class FactsSince:
    """What `ProjectionRepository.facts_since` found: the facts stored since `cursor` was
    handed out (maybe some seen before: applying a fact again changes nothing), the cursor
    to ask with next, and whether `facts` are all stored facts (after a rebuild, or on the
    first call: whoever keeps state from them starts over)."""

    facts: list[Fact]
    cursor: Any
    complete: bool


# (topic without prefix, partition) -> the first offset NOT covered (a rebuild's end)
EndOffsets = Mapping[tuple[str, int], int]


class ProjectionRepository(Protocol):
    async def record(self, fact: Fact) -> None:
        """Store a fact under its entity and event id (a second time changes nothing)."""
        ...

    async def record_batches(self, batches: Sequence[FactBatch]) -> None:
        """Store the facts of a consumed batch together with each partition's last offset
        (one write per partition part; storing the same facts again changes nothing)."""
        ...

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        """The highest offset of a partition stored with the facts (None: none yet)."""
        ...

    async def load(self) -> Projection: ...

    async def facts_since(self, cursor: Any) -> FactsSince:
        """The facts stored since `cursor` (None: all of them), at a cost that does not
        grow with what was stored before it."""
        ...

    async def facts(self) -> list[Fact]: ...

    async def municipality_name(self, ags: str, *, as_of: datetime) -> str:
        """The name the municipality had at `as_of` (its AGS if none is known yet)."""
        ...

    async def municipality_facts(self, ags: Collection[str]) -> dict[str, list[Fact]]:
        """The stored facts about these municipalities (what their names are made of)."""
        ...

    async def replace_all(self, facts: Iterable[Fact], *, up_to: EndOffsets | None = None) -> None:
        """Forget every fact, then store these (a rebuild of the topics read below `up_to`;
        facts stored from offsets at or above it stay, and so do the stored offsets)."""
        ...


def name_as_of(facts: Iterable[Fact], ags: str, as_of: datetime) -> str:
    known = [fact for fact in facts if as_utc(fact.time) <= as_utc(as_of)]
    name = fold(known).get("name")
    return str(name) if name else ags


class InMemoryProjectionRepository:
    def __init__(self) -> None:
        self.entities: dict[tuple[str, str], dict[str, Fact]] = {}
        self.offsets: dict[tuple[str, int], int] = {}
        self._log: list[Fact] = []  # every fact recorded since the last `replace_all`
        self._generation = 0

    async def record(self, fact: Fact) -> None:
        self.entities.setdefault((fact.entity, fact.entity_id), {})[fact.event_id] = fact
        self._log.append(fact)

    async def facts_since(self, cursor: Any) -> FactsSince:
        if cursor is None or cursor[0] != self._generation:
            return FactsSince(await self.facts(), (self._generation, len(self._log)), complete=True)
        return FactsSince(
            self._log[cursor[1] :], (self._generation, len(self._log)), complete=False
        )

    async def record_batches(self, batches: Sequence[FactBatch]) -> None:
        for batch in batches:
            for fact in batch.facts:
                await self.record(fact)
            key = (batch.topic, batch.partition)
            self.offsets[key] = max(batch.last_offset, self.offsets.get(key, batch.last_offset))

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        return self.offsets.get((topic, partition))

    async def load(self) -> Projection:
        return Projection.from_facts(await self.facts())

    async def facts(self) -> list[Fact]:
        return [fact for facts in self.entities.values() for fact in facts.values()]

    async def municipality_name(self, ags: str, *, as_of: datetime) -> str:
        return name_as_of(self.entities.get((MUNICIPALITY, ags), {}).values(), ags, as_of)

    async def municipality_facts(self, ags: Collection[str]) -> dict[str, list[Fact]]:
        return {
            code: list(self.entities[(MUNICIPALITY, code)].values())
            for code in ags
            if (MUNICIPALITY, code) in self.entities
        }

    async def replace_all(self, facts: Iterable[Fact], *, up_to: EndOffsets | None = None) -> None:
        self.entities.clear()
        self._log.clear()
        self._generation += 1
        for fact in facts:
            await self.record(fact)


class ActivityRepository(Protocol):
    async def add(self, digest: ActivityDigest, *, correlation_id: str, publish: bool) -> bool:
        """Store the digest of a source event once, with its pending publication if
        `publish`; False if that source event has its digest already."""
        ...

    async def add_many(
        self, digests: Sequence[tuple[ActivityDigest, str]], *, publish: bool
    ) -> int:
        """`add` for several (digest, correlation id) at once; how many were new."""
        ...

    async def recent(self, limit: int) -> list[ActivityDigest]:
        """The newest digests first."""
        ...

    async def all(self) -> list[ActivityDigest]:
        """Every digest, oldest first."""
        ...


def activity_document(
    digest: ActivityDigest, *, correlation_id: str, publish: bool
) -> dict[str, Any]:
    """The document of one digest, keyed by its source event id, with its outbox."""
    envelope = new_envelope(
        digest,
        source=SOURCE,
        municipality=digest.municipality,
        subject=digest.subject_id,
        correlation_id=correlation_id,
    ).model_copy(update={"id": digest_id(digest.source_event_id)})
    document = {
        "_id": digest.source_event_id,
        "ags": digest.municipality,
        "occurred_at": as_utc(digest.occurred_at).isoformat(timespec="microseconds"),
        "digest": digest.model_dump_json(),
    }
    events = [OutboundEvent(topic=EXCHANGE_ACTIVITY, envelope=envelope)] if publish else []
    return with_outbox(document, events)


def digest_from(document: dict[str, Any]) -> ActivityDigest:
    return ActivityDigest.model_validate_json(document["digest"])


class InMemoryActivityRepository:
    """Digest documents shaped like the MongoDB ones, so `InMemoryOutboxSource` relays them."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, Any]] = {}

    async def add(self, digest: ActivityDigest, *, correlation_id: str, publish: bool) -> bool:
        if digest.source_event_id in self.documents:
            return False
        self.documents[digest.source_event_id] = activity_document(
            digest, correlation_id=correlation_id, publish=publish
        )
        return True

    async def add_many(
        self, digests: Sequence[tuple[ActivityDigest, str]], *, publish: bool
    ) -> int:
        added = 0
        for digest, correlation_id in digests:
            added += await self.add(digest, correlation_id=correlation_id, publish=publish)
        return added

    async def recent(self, limit: int) -> list[ActivityDigest]:
        newest = sorted(
            self.documents.values(), key=lambda d: (d["occurred_at"], d["_id"]), reverse=True
        )
        return [digest_from(document) for document in newest[:limit]]

    async def all(self) -> list[ActivityDigest]:
        return (await self.recent(len(self.documents)))[::-1]


@dataclass(frozen=True)
class StoredSnapshot:
    scope_id: str
    snapshot: AggregateSnapshot
    published: bool


class SnapshotRepository(Protocol):
    async def latest(self, scope_id: str) -> StoredSnapshot | None: ...

    async def all(self) -> list[StoredSnapshot]: ...

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        """Store a new snapshot of a scope if the stored one still has `previous_sequence`
        (None: there is none yet); False if another writer got there first."""
        ...

    async def save_all(self, items: Sequence[tuple[StoredSnapshot, int | None]]) -> set[str]:
        """`save` for each (snapshot, previous sequence), in one write where the store can;
        the scope ids stored (the others were taken by another writer)."""
        ...

    async def mark_published(self, scope_id: str, sequence: int) -> None: ...

    async def mark_all_published(self, marks: Sequence[tuple[str, int]]) -> None:
        """`mark_published` for each (scope, sequence), in one write where the store can."""
        ...


class InMemorySnapshotRepository:
    def __init__(self) -> None:
        self.snapshots: dict[str, StoredSnapshot] = {}

    async def latest(self, scope_id: str) -> StoredSnapshot | None:
        return self.snapshots.get(scope_id)

    async def all(self) -> list[StoredSnapshot]:
        return list(self.snapshots.values())

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        current = self.snapshots.get(stored.scope_id)
        current_sequence = None if current is None else current.snapshot.sequence
        if current_sequence != previous_sequence:
            return False
        self.snapshots[stored.scope_id] = stored
        return True

    async def save_all(self, items: Sequence[tuple[StoredSnapshot, int | None]]) -> set[str]:
        return {
            stored.scope_id
            for stored, previous in items
            if await self.save(stored, previous_sequence=previous)
        }

    async def mark_published(self, scope_id: str, sequence: int) -> None:
        current = self.snapshots.get(scope_id)
        if current is not None and current.snapshot.sequence == sequence:
            self.snapshots[scope_id] = replace(current, published=True)

    async def mark_all_published(self, marks: Sequence[tuple[str, int]]) -> None:
        for scope_id, sequence in marks:
            await self.mark_published(scope_id, sequence)
