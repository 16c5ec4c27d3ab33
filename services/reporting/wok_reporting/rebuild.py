"""Rebuild: recompute every projection from the event topics (DESIGN.md section 5, Replay).

Reads registration.events.v1 and notification.events.v1 from the beginning (no consumer
group, so the service's own offsets stay as they are) into fresh in-memory projections,
then replaces the stored facts with them, and applies what arrived meanwhile. Facts fold
the same whatever their order, so the rebuilt state equals what live consumption built.
Digests already published stay as they are; missing ones are stored as published (a
rebuild never announces old activities again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from wok_contracts import ContractError, decode_envelope
from wok_reporting.adapters.repository import (
    ActivityRepository,
    InMemoryActivityRepository,
    InMemoryProjectionRepository,
    ProjectionRepository,
)
from wok_reporting.domain import ENTITY_KINDS, Projection
from wok_reporting.entrypoints.consumers import TOPICS
from wok_reporting.handlers import Projector
from wok_runtime.kafka import kafka_client_options
from wok_runtime.logging import get_logger
from wok_runtime.settings import WokSettings

log = get_logger(__name__)

Offsets = dict[TopicPartition, int]


@dataclass
class RebuildReport:
    events_read: int = 0
    skipped: int = 0  # undecodable, invalid, or of a type reporting does not project
    entities_before: dict[str, int] = field(default_factory=dict)
    entities_after: dict[str, int] = field(default_factory=dict)
    caught_up: int = 0
    same_as_before: bool = False
    applied: bool = False


def entity_counts(projection: Projection) -> dict[str, int]:
    return projection.entity_counts()


async def replay(values: Iterable[bytes | None], projector: Projector) -> tuple[int, int]:
    """Apply raw messages to `projector`; returns (read, skipped).

    All facts first, then the digests: partitions are read interleaved, and a digest
    names its municipality from the facts before it.
    """
    read = skipped = 0
    projected = []
    for value in values:
        read += 1
        try:
            envelope = decode_envelope(value)
        except ContractError:
            skipped += 1
            continue
        if await projector.record_fact(envelope):
            projected.append(envelope)
        else:
            skipped += 1
    for envelope in projected:
        await projector.record_digest(envelope)
    return read, skipped


async def rebuilt_from(values: Iterable[bytes | None]) -> tuple[Projector, int, int]:
    projector = Projector(
        projections=InMemoryProjectionRepository(),
        activities=InMemoryActivityRepository(),
        publish=False,
    )
    read, skipped = await replay(values, projector)
    return projector, read, skipped


READ_ATTEMPTS = 3


class IncompleteRead(RuntimeError):
    """The broker did not hand over every message below the end offsets."""


async def read_topics(
    settings: WokSettings, *, since: Offsets | None = None
) -> tuple[list[bytes | None], Offsets]:
    """Every message on reporting's topics from `since` (default: the beginning) to their
    end now, and the end offsets reached.

    The read is checked: these topics are never compacted, so each partition must yield
    exactly `end - start` messages. A short read (seen once under load on tansu, where a
    fetch can reset a partition's position to its end) is retried, then refused, so a
    rebuild never mistakes a partial read for the topics' content.
    """
    for attempt in range(1, READ_ATTEMPTS + 1):
        values, ends, missing = await _read_once(settings, since=since)
        if not missing:
            return values, ends
        log.warning(
            "incomplete read of the topics; reading again", attempt=attempt, missing=missing
        )
    raise IncompleteRead(f"the broker did not return every message: {missing} missing")


async def _read_once(
    settings: WokSettings, *, since: Offsets | None
) -> tuple[list[bytes | None], Offsets, int]:
    consumer = AIOKafkaConsumer(
        **kafka_client_options(settings),  # with the deployment's SASL/TLS settings
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        assignment = [
            TopicPartition(settings.topic(topic), partition)
            for topic in TOPICS
            for partition in sorted(consumer.partitions_for_topic(settings.topic(topic)) or ())
        ]
        if not assignment:
            return [], {}, 0
        consumer.assign(assignment)
        ends = await consumer.end_offsets(assignment)
        firsts = await consumer.beginning_offsets(assignment)
        starts: Offsets = {}
        for partition in assignment:
            if since is not None and partition in since:
                starts[partition] = since[partition]
            else:
                starts[partition] = firsts[partition]
            # Where tansu answers short of the end (see below), a catch-up may start past it.
            ends[partition] = max(ends[partition], starts[partition])
            consumer.seek(partition, starts[partition])
        by_partition: dict[TopicPartition, dict[int, bytes | None]] = {tp: {} for tp in assignment}
        while True:
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= ends[tp] for tp in assignment):
                break
            batches = await consumer.getmany(*assignment, timeout_ms=200)
            for partition, records in batches.items():
                for record in records:
                    if starts[partition] <= record.offset:
                        by_partition[partition][record.offset] = record.value
                        # tansu answers the end offset as the last record batch's base
                        # offset + 1, short of its end when that batch holds several
                        # records; the fetch hands over the whole batch, so take it all.
                        ends[partition] = max(ends[partition], record.offset + 1)
        missing = sum((ends[tp] - starts[tp]) - len(by_partition[tp]) for tp in assignment)
        values = [
            by_partition[tp][offset] for tp in assignment for offset in sorted(by_partition[tp])
        ]
        return values, ends, missing
    finally:
        await consumer.stop()


async def rebuild(
    settings: WokSettings,
    *,
    projections: ProjectionRepository,
    activities: ActivityRepository,
    apply: bool = True,
    allow_shrinking: bool = False,
) -> RebuildReport:
    """Rebuild the stored projections from the topics (see the module doc).

    Refuses (applies nothing) when the topics know fewer entities of some kind than the
    store, unless `allow_shrinking`: the embedded broker keeps messages in memory only, so
    after its restart a rebuild would otherwise empty the database.
    """
    report = RebuildReport()
    before = await projections.load()
    report.entities_before = entity_counts(before)
    values, ends = await read_topics(settings)
    fresh, report.events_read, report.skipped = await rebuilt_from(values)
    after = await fresh.projections.load()
    report.entities_after = entity_counts(after)
    report.same_as_before = after == before
    shrinks = any(
        report.entities_after.get(kind, 0) < report.entities_before.get(kind, 0)
        for kind in ENTITY_KINDS
    )
    if not apply or (shrinks and not allow_shrinking):
        return report
    # Facts stored live from offsets the read did not reach stay; the positions stay too.
    covered = {
        (partition.topic.removeprefix(settings.topic_prefix), partition.partition): end
        for partition, end in ends.items()
    }
    await projections.replace_all(await fresh.projections.facts(), up_to=covered)
    stored = Projector(projections=projections, activities=activities, publish=False)
    await activities.add_many(
        [(digest, "") for digest in await fresh.activities.all()], publish=False
    )
    # What arrived while the topics were read: applied on top (facts are idempotent).
    later, _ = await read_topics(settings, since=ends)
    read, _ = await replay(later, stored)
    report.caught_up = read
    report.applied = True
    return report
