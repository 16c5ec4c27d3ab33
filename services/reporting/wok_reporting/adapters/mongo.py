"""MongoDB versions of the repositories (string ids, no array updates, see DESIGN.md 8).

Facts are kept in chunks, one document per consumed batch and partition (collection
`fact_chunks`): `{_id: "live|<topic>|<partition>|<n>", topic, partition, n, last, count,
facts: <zlib-compressed JSON array>}`. A batch of any size is one insert, so the cost of
consuming does not grow with what is stored; the chunk carries the partition's highest
offset it covers (`last`), written in the same document as the facts, and `n` numbers a
partition's chunks 0, 1, 2, ... without a gap (chunk n+1 is inserted once chunk n is
stored). A small document per partition in `fact_positions` names a chunk that is stored
(a hint, never ahead): written after the first chunk a process stores for a partition and
then after every `POSITION_EVERY`th, not after each (it was a second write per batch).
Whoever needs the newest chunk looks the chunks after the hint up by `_id`, a window of
them per query. The
facts are one compressed JSON array (binary): nx-27017 stores bytes as they are, while
every nested document costs it time (a compressed chunk costs it a sixth of a plain JSON
string), and a fact list is only ever written whole and read whole.

A fact is `[entity, entity id, AGS, event id, event type, time, fields]` (the time in
microseconds since 1970, UTC: exact, and cheap to write); facts fold by
(entity, entity id) and are deduplicated by event id when loaded, so a fact stored twice
(the same event at another offset, a batch stored again) counts once.

Municipality facts are also kept per municipality (`municipalities`, `{_id: AGS, ags,
facts: {<event key>: fact}}`, `$set` on a map key), so a digest finds the name a
municipality had at its event's time with one lookup.

A snapshot round reads only what was stored since the last one (`facts_since`): per
partition (those with a position document) the chunks after the newest it read, in windows
of `_id`s (one query for all partitions, reaching past each position hint; another only for
a partition whose window was full), and the loose chunks when `projection_meta.loose`,
counted up with each loose chunk, changed; everything only on its first call and after a
rebuild switched the base generation (reading on, then, from the newest chunks that read
saw).

A rebuild writes its facts as base chunks of a new generation (`base|<gen>|<n>`), switches
`projection_meta.base` to it, then empties the live chunks its read covered and deletes the
older generation: readers see the old state, then old and new together (the same facts),
then the new one, never less. Times elsewhere are ISO-8601 strings in UTC with microseconds.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import zlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from wok_contracts import ActivityDigest, AggregateSnapshot
from wok_reporting.adapters.repository import (
    EndOffsets,
    FactBatch,
    FactsSince,
    StoredSnapshot,
    activity_document,
    digest_from,
    name_as_of,
)
from wok_reporting.domain import MUNICIPALITY, Fact, Projection, as_utc
from wok_runtime.mongo import DUPLICATE_KEY

CHUNKS = "fact_chunks"
POSITIONS = "fact_positions"
META = "projection_meta"
MUNICIPALITIES = "municipalities"
# Collections of the earlier shape (one document per entity); migrated into chunks once.
LEGACY_COLLECTIONS = ("dialogue_events", "registrations", "notifications")
ACTIVITY = "activity"
SNAPSHOTS = "snapshots"
BASE_CHUNK_FACTS = 5000
# A partition's position hint is written again once this many chunks were stored after it.
POSITION_EVERY = 32
# Chunk ids looked up per partition and query after a position hint (more than
# POSITION_EVERY: the chunks stored after the hint are found with one query).
CHUNK_WINDOW = 64
# A snapshot round's first look past what it read (a round usually finds a chunk or two per
# partition); a window found full is followed by one twice as large.
READ_WINDOW = 4


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


def chunk_id(topic: str, partition: int, n: int) -> str:
    return f"live|{topic}|{partition}|{n}"


def position_id(topic: str, partition: int) -> str:
    return f"{topic}|{partition}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(moment: datetime) -> int:
    """Microseconds since 1970 (UTC); a time without zone is UTC, as in `as_utc`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1_000_000)


def encode_facts(facts: Iterable[Fact]) -> bytes:
    """A chunk's facts as one JSON array, zlib-compressed; times as microseconds since
    1970 (exact)."""
    text = json.dumps(
        [
            [
                fact.entity,
                fact.entity_id,
                fact.ags,
                fact.event_id,
                fact.event_type,
                epoch_us(fact.time),
                fact.fields if isinstance(fact.fields, dict) else dict(fact.fields),
            ]
            for fact in facts
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return zlib.compress(text.encode(), 1)


def decode_facts(stored: bytes | str | None) -> list[Fact]:
    """The facts of a chunk (compressed bytes, or a JSON string: an emptied chunk's `[]`)."""
    text = zlib.decompress(stored) if isinstance(stored, bytes) else (stored or "[]")
    return [
        Fact(
            entity=entity,
            entity_id=entity_id,
            ags=ags,
            event_id=event_id,
            event_type=event_type,
            time=EPOCH + timedelta(microseconds=time),
            fields=fields,
        )
        for entity, entity_id, ags, event_id, event_type, time, fields in json.loads(text)
    ]


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


def _fact_update(fact: Fact) -> UpdateOne:
    return UpdateOne(
        {"_id": fact.entity_id},
        {"$set": {"ags": fact.ags, f"facts.{fact_key(fact.event_id)}": _fact_document(fact)}},
        upsert=True,
    )


def _contiguous(after: int, numbers: Collection[int]) -> int:
    """The highest n such that every chunk after `after` up to n is among `numbers`."""
    newest = after
    while newest + 1 in numbers:
        newest += 1
    return newest


def unique_facts(facts: Iterable[Fact]) -> list[Fact]:
    """One fact per (entity, entity id, event id): the same event stored twice is one."""
    found: dict[tuple[str, str, str], Fact] = {}
    for fact in facts:
        found[(fact.entity, fact.entity_id, fact.event_id)] = fact
    return list(found.values())


@dataclass(frozen=True)
class ChunkCursor:
    """Where a reader of the chunks is: the base generation, the loose count, and per
    partition the newest live chunk read."""

    generation: str | None
    loose: int
    positions: dict[tuple[str, int], int]


class MongoProjectionRepository:
    def __init__(self, database: Any) -> None:
        self._database = database
        self._chunks = database[CHUNKS]
        self._positions = database[POSITIONS]
        self._meta = database[META]
        self._municipalities = database[MUNICIPALITIES]
        # Per partition: (number of its newest chunk, the offset it covers up to).
        self._newest: dict[tuple[str, int], tuple[int, int]] = {}
        # Per partition: the chunk number of the position hint this process wrote last.
        self._hinted: dict[tuple[str, int], int] = {}

    async def ensure_ready(self) -> None:
        """Start-up: move facts of the earlier one-document-per-entity shape into a chunk."""
        if await self._meta.find_one({"_id": "legacy"}) is not None:
            return
        facts: list[Fact] = []
        for entity, collection in (
            ("dialogue_event", "dialogue_events"),
            ("registration", "registrations"),
            ("notification", "notifications"),
            (MUNICIPALITY, MUNICIPALITIES),
        ):
            async for document in self._database[collection].find({}):
                facts.extend(_facts_of(entity, document))
        if facts:
            await self._insert_loose(facts)
        for collection in LEGACY_COLLECTIONS:
            await self._database[collection].delete_many({})
        await self._meta.update_one(
            {"_id": "legacy"}, {"$set": {"migrated": len(facts)}}, upsert=True
        )

    async def _insert_loose(self, facts: Sequence[Fact]) -> None:
        if not facts:
            return
        for start in range(0, len(facts), BASE_CHUNK_FACTS):
            part = facts[start : start + BASE_CHUNK_FACTS]
            await self._chunks.insert_one(
                {
                    "_id": f"loose|{uuid.uuid4().hex}",
                    "kind": "loose",
                    "count": len(part),
                    "facts": encode_facts(part),
                }
            )
        # After the chunks: a round that sees the new count finds them.
        await self._meta.update_one({"_id": "loose"}, {"$inc": {"count": 1}}, upsert=True)

    async def record(self, fact: Fact) -> None:
        """One fact outside any consumed batch (a rebuild catching up, a test)."""
        if fact.entity == MUNICIPALITY:
            await self._municipalities.bulk_write([_fact_update(fact)], ordered=True)
        await self._insert_loose([fact])

    async def record_batches(self, batches: Sequence[FactBatch]) -> None:
        municipal = [
            fact for batch in batches for fact in batch.facts if fact.entity == MUNICIPALITY
        ]
        if municipal:
            await self._municipalities.bulk_write(
                [_fact_update(fact) for fact in municipal], ordered=True
            )
        chunks: list[dict[str, Any]] = []
        for batch in batches:
            n, _ = await self._newest_chunk(batch.topic, batch.partition)
            chunks.append(
                {
                    "_id": chunk_id(batch.topic, batch.partition, n + 1),
                    "kind": "live",
                    "topic": batch.topic,
                    "partition": batch.partition,
                    "n": n + 1,
                    "last": batch.last_offset,
                    "count": len(batch.facts),
                    "facts": encode_facts(batch.facts),
                }
            )
        try:
            await self._chunks.insert_many(chunks, ordered=False)
        except BulkWriteError as error:
            # Another consumer stored that partition's next chunk (a rebalance): look the
            # newest chunks up again; the caller retries, and facts stored twice are one.
            self._newest.clear()
            raise RuntimeError(f"chunk already taken: {error.details.get('writeErrors')}") from None
        due: dict[tuple[str, int], int] = {}
        updates = []
        for chunk in chunks:
            key = (chunk["topic"], chunk["partition"])
            self._newest[key] = (chunk["n"], chunk["last"])
            hinted = self._hinted.get(key)
            if hinted is None or chunk["n"] - hinted >= POSITION_EVERY:
                due[key] = chunk["n"]
                updates.append(
                    UpdateOne(
                        {"_id": position_id(*key)},
                        {"$set": {"n": chunk["n"], "last": chunk["last"]}},
                        upsert=True,
                    )
                )
        if updates:  # the position hints due, of every partition in one write
            await self._positions.bulk_write(updates, ordered=False)
            self._hinted.update(due)

    async def _newest_chunk(self, topic: str, partition: int) -> tuple[int, int]:
        """(n, last) of the partition's newest chunk; (-1, -1) if there is none."""
        key = (topic, partition)
        if key in self._newest:
            return self._newest[key]
        hint = await self._positions.find_one({"_id": position_id(topic, partition)})
        n, last = (-1, -1) if hint is None else (int(hint["n"]), int(hint["last"]))
        while True:
            found = await self._chunks_after({key: n}, {key: n + CHUNK_WINDOW}, {"last": 1})
            newest = _contiguous(n, found.get(key, {}))
            for number in range(n + 1, newest + 1):
                last = max(last, int(found[key][number]["last"]))
            full = newest == n + CHUNK_WINDOW
            n = newest
            if not full:
                break
        self._newest[key] = (n, last)
        return n, last

    async def _chunks_after(
        self,
        after: dict[tuple[str, int], int],
        through: dict[tuple[str, int], int],
        projection: dict[str, int] | None = None,
    ) -> dict[tuple[str, int], dict[int, dict[str, Any]]]:
        """The stored live chunks numbered after[p] + 1 .. through[p] of each partition p,
        by partition and number, with one query."""
        wanted = [
            chunk_id(topic, partition, n)
            for (topic, partition), newest in after.items()
            for n in range(newest + 1, through[(topic, partition)] + 1)
        ]
        found: dict[tuple[str, int], dict[int, dict[str, Any]]] = {}
        if not wanted:
            return found
        shape = None if projection is None else {**projection, "topic": 1, "partition": 1, "n": 1}
        async for chunk in self._chunks.find({"_id": {"$in": wanted}}, shape):
            key = (chunk["topic"], int(chunk["partition"]))
            found.setdefault(key, {})[int(chunk["n"])] = chunk
        return found

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        self._newest.pop((topic, partition), None)  # asked after an assignment: read anew
        n, last = await self._newest_chunk(topic, partition)
        return None if n < 0 else last

    async def facts(self) -> list[Fact]:
        facts, _ = await self._all_facts()
        return facts

    async def _all_facts(self) -> tuple[list[Fact], dict[tuple[str, int], int]]:
        """Every stored fact, and per partition the newest live chunk such that the read
        saw every chunk up to it (chunks are numbered from 0 and never deleted)."""
        meta = await self._meta.find_one({"_id": "base"})
        generation = None if meta is None else meta.get("generation")
        found: list[Fact] = []
        numbers: dict[tuple[str, int], set[int]] = {}
        async for chunk in self._chunks.find({}):
            kind = chunk.get("kind")
            if kind == "base" and chunk.get("generation") != generation:
                continue
            if kind == "live":
                key = (chunk["topic"], int(chunk["partition"]))
                numbers.setdefault(key, set()).add(int(chunk["n"]))
            found.extend(decode_facts(chunk.get("facts")))
        read = {key: _contiguous(-1, seen) for key, seen in numbers.items()}
        return unique_facts(found), read

    async def load(self) -> Projection:
        return Projection.from_facts(await self.facts())

    async def facts_since(self, cursor: Any) -> FactsSince:
        """Three small reads whatever is stored: the meta documents, the partition
        positions, the chunks after the positions of `cursor` (module doc)."""
        meta = {
            document["_id"]: document
            async for document in self._meta.find({"_id": {"$in": ["base", "loose"]}})
        }
        generation = meta.get("base", {}).get("generation")
        loose = int(meta.get("loose", {}).get("count", 0))
        positions: dict[tuple[str, int], int] = {}
        async for document in self._positions.find({}):
            topic, partition = str(document["_id"]).rsplit("|", 1)
            positions[(topic, int(partition))] = int(document["n"])
        if cursor is None or cursor.generation != generation:
            # The next call reads on from the newest chunk this read saw, not from the
            # position hints (up to POSITION_EVERY chunks behind: read twice otherwise).
            facts, read = await self._all_facts()
            cursor_positions = {**dict.fromkeys(positions, -1), **read}
            return FactsSince(facts, ChunkCursor(generation, loose, cursor_positions), True)
        seen = dict(cursor.positions)
        found: list[Fact] = []
        # Every partition with a position, from the newest chunk read, through a window
        # past it and past the hint (what was stored after them); again, twice as far, for
        # those whose window was full.
        after = {key: seen.get(key, -1) for key in positions}
        window = READ_WINDOW
        through = {key: max(n, positions[key]) + window for key, n in after.items()}
        while after:
            chunks = await self._chunks_after(after, through)
            full: dict[tuple[str, int], int] = {}
            for key, start in after.items():
                newest = _contiguous(start, chunks.get(key, {}))
                for n in range(start + 1, newest + 1):
                    found.extend(decode_facts(chunks[key][n].get("facts")))
                seen[key] = max(seen.get(key, -1), newest)
                if newest == through[key]:
                    full[key] = newest
            after = full
            window = min(2 * window, 1024)
            through = {key: n + window for key, n in full.items()}
        if loose != cursor.loose:
            async for chunk in self._chunks.find({"kind": "loose"}):
                found.extend(decode_facts(chunk.get("facts")))
        return FactsSince(found, ChunkCursor(generation, loose, seen), complete=False)

    async def municipality_name(self, ags: str, *, as_of: datetime) -> str:
        facts = (await self.municipality_facts([ags])).get(ags, [])
        return name_as_of(facts, ags, as_of)

    async def municipality_facts(self, ags: Collection[str]) -> dict[str, list[Fact]]:
        if not ags:
            return {}
        cursor = self._municipalities.find({"_id": {"$in": sorted(set(ags))}})
        return {document["_id"]: _facts_of(MUNICIPALITY, document) async for document in cursor}

    async def replace_all(self, facts: Iterable[Fact], *, up_to: EndOffsets | None = None) -> None:
        facts = unique_facts(facts)
        meta = await self._meta.find_one({"_id": "base"})
        previous = None if meta is None else meta.get("generation")
        generation = uuid.uuid4().hex[:12]
        parts = [facts[i : i + BASE_CHUNK_FACTS] for i in range(0, len(facts), BASE_CHUNK_FACTS)]
        if parts:
            await self._chunks.insert_many(
                [
                    {
                        "_id": f"base|{generation}|{n}",
                        "kind": "base",
                        "generation": generation,
                        "count": len(part),
                        "facts": encode_facts(part),
                    }
                    for n, part in enumerate(parts)
                ]
            )
        await self._meta.update_one(
            {"_id": "base"}, {"$set": {"generation": generation}}, upsert=True
        )
        # The live chunks the rebuild's read covered, and every loose fact, are in the base
        # now; their documents stay (emptied) so the partition positions stay as they are.
        async for chunk in self._chunks.find(
            {"kind": "live"}, {"topic": 1, "partition": 1, "last": 1}
        ):
            end = None if up_to is None else up_to.get((chunk["topic"], chunk["partition"]))
            if up_to is None or (end is not None and chunk["last"] < end):
                await self._chunks.update_one(
                    {"_id": chunk["_id"]}, {"$set": {"facts": "[]", "count": 0}}
                )
        await self._chunks.delete_many({"kind": "loose"})
        if previous is not None:
            await self._chunks.delete_many({"kind": "base", "generation": previous})
        municipal = [fact for fact in facts if fact.entity == MUNICIPALITY]
        await self._municipalities.delete_many({})
        if municipal:
            await self._municipalities.bulk_write(
                [_fact_update(fact) for fact in municipal], ordered=True
            )


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

    async def add_many(
        self, digests: Sequence[tuple[ActivityDigest, str]], *, publish: bool
    ) -> int:
        """Store each (digest, correlation id) once, in one write; how many were new."""
        if not digests:
            return 0
        documents = [
            activity_document(digest, correlation_id=correlation_id, publish=publish)
            for digest, correlation_id in digests
        ]
        try:
            result = await self.collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise
            return int(error.details.get("nInserted", 0))
        return len(result.inserted_ids)

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

    @staticmethod
    def _document(stored: StoredSnapshot) -> dict[str, Any]:
        return {
            "_id": stored.scope_id,
            "sequence": stored.snapshot.sequence,
            "published": stored.published,
            "snapshot": stored.snapshot.model_dump_json(),
            "saved_at": stored_time(datetime.now(UTC)),
        }

    async def save_all(self, items: Sequence[tuple[StoredSnapshot, int | None]]) -> set[str]:
        """`save` for many scopes in one write: a new scope is inserted (refused if another
        writer inserted it), a stored one replaced only if it still has the sequence given.
        Only when fewer replacements matched than were asked is the store read back, to
        tell which ones another writer got to first (what is stored is not this JSON)."""
        if not items:
            return set()
        documents = [self._document(stored) for stored, _ in items]
        operations: list[InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]]] = [
            InsertOne(document)
            if previous is None
            else ReplaceOne({"_id": document["_id"], "sequence": previous}, document)
            for document, (_, previous) in zip(documents, items, strict=True)
        ]
        refused: set[int] = set()
        try:
            matched = (await self._collection.bulk_write(operations, ordered=False)).matched_count
        except BulkWriteError as error:
            for failure in error.details.get("writeErrors", []):
                if failure.get("code") != DUPLICATE_KEY:
                    raise
                refused.add(int(failure["index"]))
            matched = int(error.details.get("nMatched", 0))
        replaced = [index for index, (_, previous) in enumerate(items) if previous is not None]
        if matched < len(replaced):
            wanted = {documents[index]["_id"]: documents[index]["snapshot"] for index in replaced}
            cursor = self._collection.find({"_id": {"$in": list(wanted)}}, {"snapshot": 1})
            ours = {
                document["_id"]
                async for document in cursor
                if document.get("snapshot") == wanted[document["_id"]]
            }
            refused |= {index for index in replaced if documents[index]["_id"] not in ours}
        return {document["_id"] for index, document in enumerate(documents) if index not in refused}

    async def save(self, stored: StoredSnapshot, *, previous_sequence: int | None) -> bool:
        document = self._document(stored)
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

    async def mark_all_published(self, marks: Sequence[tuple[str, int]]) -> None:
        """`mark_published` for many scopes in one write (a round's snapshots)."""
        if not marks:
            return
        await self._collection.bulk_write(
            [
                UpdateOne({"_id": scope_id, "sequence": sequence}, {"$set": {"published": True}})
                for scope_id, sequence in marks
            ],
            ordered=False,
        )
