"""Reporting's projection consumed in batches (`wok_runtime.batch`).

A batch becomes facts (`handlers.fact_of`, so every event kind the mapping knows flows
through here unchanged) and digests (`digests.digest_of`), and is stored in a bounded few
writes whatever its size: the new digests in one insert (each keyed by its source event id,
so a digest is stored and published once), the municipality facts a digest's name comes
from, then the facts of each partition with its highest offset in one document per
partition. The digests are written first: a crash before the facts leaves the batch
uncommitted and unstored, and its replay finds the digests there already.

Digests name the municipality as it was called at the event's time, from the facts stored
before and those in the batch, as a rebuild does (all facts first, then the digests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from wok_contracts import ActivityDigest, Envelope
from wok_reporting.adapters.repository import FactBatch, name_as_of
from wok_reporting.digests import digest_of, has_digest
from wok_reporting.domain import MUNICIPALITY, Fact, as_utc
from wok_reporting.handlers import Projector, fact_of
from wok_runtime.batch import PartitionBatch


@dataclass(frozen=True)
class ProjectionSink:
    """The `BatchSink` of reporting's consumer group. Its batches pause cyclic garbage
    collection while they are decoded and stored (see `wok_runtime.batch`): the facts and
    envelopes of a batch hold no cycles."""

    pause_collection: ClassVar[bool] = True

    projector: Projector

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        return await self.projector.projections.stored_offset(topic, partition)

    async def store(self, batches: Sequence[PartitionBatch]) -> None:
        fact_batches = []
        projected: list[tuple[Envelope[Any], Fact]] = []
        for batch in batches:
            facts = []
            for item in batch.items:
                fact = fact_of(item.envelope)
                if fact is not None:
                    facts.append(fact)
                    projected.append((item.envelope, fact))
            fact_batches.append(
                FactBatch(
                    topic=batch.topic,
                    partition=batch.partition,
                    last_offset=batch.last_offset,
                    facts=tuple(facts),
                )
            )
        digests = await self.digests(projected)
        if digests:
            await self.projector.activities.add_many(digests, publish=self.projector.publish)
        await self.projector.projections.record_batches(fact_batches)
        if projected:
            self.projector.on_change()
        if digests:  # the relay has something to send (as before: once the batch is stored)
            self.projector.on_digests()

    async def digests(
        self, projected: Iterable[tuple[Envelope[Any], Fact]]
    ) -> list[tuple[ActivityDigest, str]]:
        """(digest, correlation id) of every projected event that has one."""
        projected = list(projected)
        candidates = [envelope for envelope, _ in projected if has_digest(envelope)]
        if not candidates:
            return []
        codes = {envelope.data.ags for envelope in candidates}
        known = await self.projector.projections.municipality_facts(codes)
        for _, fact in projected:
            if fact.entity == MUNICIPALITY and fact.entity_id in codes:
                known.setdefault(fact.entity_id, []).append(fact)
        found = []
        for envelope in candidates:
            ags = envelope.data.ags
            name = name_as_of(known.get(ags, []), ags, as_utc(envelope.time))
            digest = digest_of(envelope, municipality_name=name)
            if digest is not None:
                found.append((digest, envelope.correlationid))
        return found
