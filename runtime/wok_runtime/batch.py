"""Batch consumption with the guarantees of the per-message `EventProcessor` (consumer.py).

A consumer that can store the effect of many events in one write (reporting's projection)
takes them in batches: FastStream's batch subscriber (`getmany`) hands over up to
`max_records` records, `BatchProcessor.process` stores their effect, and only then is the
batch acknowledged (the offsets committed). FastStream's own ack policies either lose or
duplicate (DESIGN.md section 8), so the acknowledgement is manual, as for single messages:

- an undecodable or invalid message goes to the dead-letter topic at once, with the reason,
  before anything after it is stored;
- the sink stores each partition's part of a batch together with the partition's highest
  offset in it; when a partition is assigned, the offset stored with the state is read back
  and every record at or below it is skipped, so a batch stored but not committed (a crash,
  a rebalance) is not applied twice;
- the sink's write is idempotent by event id as well (the same event at another offset,
  or a batch rewound after a failure, changes nothing);
- a sink failure is retried with backoff; if it persists, the batch is stored one event
  at a time and the event that still fails is dead-lettered with the reason;
- a dependency outage (database or broker away) is waited out without limit; if the batch
  still cannot be stored, the subscriber rewinds to its first records (nack) and the batch
  comes again.

A sink may ask for cyclic garbage collection to be paused while its batches are decoded
and stored (`pause_collection`, see `_CollectionPause`): it is CPU, not a guarantee.

A consumer whose handlers work one event at a time (notification: a lookup and an SMTP
delivery each) takes batches through `KeyedHandlerSink`: the events of a batch run through
the per-message `EventProcessor`, different keys side by side, one key's events in order,
and the batch is committed when every one of them is applied or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage

from wok_contracts import Envelope
from wok_runtime.consumer import (
    WAIT_ERRORS,
    EventProcessor,
    ProcessorMetrics,
    Record,
    RetryPolicy,
    admission,
)
from wok_runtime.logging import get_logger
from wok_runtime.outbox import Publisher
from wok_runtime.settings import WokSettings

log = get_logger(__name__)

DEFAULT_MAX_RECORDS = 2000
DEFAULT_PIPELINE_RECORDS = 1000


@dataclass(frozen=True)
class Item:
    """A decoded event of a type the sink handles, with the record it came in."""

    record: Record
    envelope: Envelope[Any]


@dataclass(frozen=True)
class PartitionBatch:
    """One partition's part of a batch: the events to apply, and the highest offset covered
    (which may belong to a record that was skipped, ignored or dead-lettered)."""

    topic: str
    partition: int
    last_offset: int
    items: tuple[Item, ...]


class BatchSink(Protocol):
    async def stored_offset(self, topic: str, partition: int) -> int | None:
        """The highest offset of the partition whose effect is stored (None: none yet)."""
        ...

    async def store(self, batches: Sequence[PartitionBatch]) -> None:
        """Store the effect of the items and, with it, each partition's `last_offset`.

        Must be idempotent by event id: storing an event again changes nothing."""
        ...


class _CollectionPause:
    """No cyclic garbage collection while a batch is decoded and stored (`end` earlier).

    A batch's records, envelopes and facts (a dozen objects per record, thousands per
    batch) live until the batch is stored, and reference counting frees them afterwards
    (they hold no cycles). Collected meanwhile, with CPython's thresholds, they outlive a
    dozen young collections, are promoted into the oldest generation and bring on full
    collections over the whole heap every few batches: on `bench/projection.py` a third of
    the projection's CPU (8 full collections, 0.5 s for 50,000 events); paused, 2-3 remain
    (0.1 s: what the Kafka client decodes ahead of a batch). A sink asks for the pause
    with `pause_collection = True` (reporting's projection); it ends early when the batch
    may take long (a failed write, a wait for a dependency, a dead letter to publish).

    The collector is left as it was found: one paused already (by another batch or a
    computation that pauses it) stays paused and is not resumed here."""

    def __init__(self) -> None:
        self._paused = False

    def __enter__(self) -> _CollectionPause:
        if gc.isenabled():
            gc.disable()
            self._paused = True
        return self

    def end(self) -> None:
        """Collect again (a failure is being waited out: that may take long)."""
        if self._paused:
            self._paused = False
            gc.enable()

    def __exit__(self, *exc_info: object) -> None:
        self.end()


Admit = Callable[[Record], Awaitable[Envelope[Any] | None]]
"""A consumer's own admission of a record (`EventProcessor.admit` or an override): the
envelope to store, or None once it has dealt with the record (dead-lettered, answered,
ignored) and counted it."""


class BatchProcessor:
    def __init__(
        self,
        *,
        consumer: str,
        sink: BatchSink,
        event_types: Collection[str],
        dead_letters: Publisher,
        dead_letter_topic: str,
        retry: RetryPolicy,
        metrics: ProcessorMetrics | None = None,
        pipeline_records: int = DEFAULT_PIPELINE_RECORDS,
        admit: Admit | None = None,
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self._admit = admit
        self._pipeline_records = max(1, pipeline_records)
        self.event_types = frozenset(event_types)
        self._retry = retry
        self._metrics = metrics or ProcessorMetrics()
        # Dead-lettering and storage retries as in the per-message processor.
        self._single = EventProcessor(
            consumer=consumer,
            handlers={},
            processed=_NothingProcessed(),
            dead_letters=dead_letters,
            dead_letter_topic=dead_letter_topic,
            retry=retry,
            metrics=self._metrics,
        )
        # Offsets stored with the state, read when a partition is first seen after its
        # assignment. Only these skip records: within one assignment Kafka hands each
        # offset over once, and a batch we rewind ourselves is stored idempotently.
        self._stored: dict[tuple[str, int], int | None] = {}
        self._pause: _CollectionPause | None = None  # while a batch pauses the collector

    def forget_positions(self, partitions: Collection[tuple[str, int]] | None = None) -> None:
        """Read the stored offsets again (after a rebalance: another member may have
        stored more of a partition meanwhile)."""
        if partitions is None:
            self._stored.clear()
        for key in partitions or ():
            self._stored.pop(key, None)
        reassigned = getattr(self.sink, "reassigned", None)
        if reassigned is not None:
            reassigned()

    async def process(self, records: Sequence[Record]) -> None:
        """Store the effect of `records` (or dead-letter them); returns when it is durable.

        A large batch is taken in parts of `pipeline_records`, each stored as its own
        write: while one part is being written, the next one is decoded. A part is written
        only after the one before it is stored, so each partition's stored offset only
        ever grows over what is stored below it."""
        with self.collection_paused():
            outcomes = await self._process(records)
        for (event_type, outcome), count in outcomes.items():
            self._metrics.count(event_type, outcome, count)

    @contextlib.contextmanager
    def collection_paused(self) -> Iterator[None]:
        """Cyclic garbage collection paused meanwhile, if the sink asks for it
        (`pause_collection`) and no batch of this processor paused it already."""
        if self._pause is not None or not getattr(self.sink, "pause_collection", False):
            yield
            return
        with _CollectionPause() as pause:
            self._pause = pause
            try:
                yield
            finally:
                self._pause = None

    async def _process(self, records: Sequence[Record]) -> Counter[tuple[str, str]]:
        outcomes: Counter[tuple[str, str]] = Counter()
        step = self._pipeline_records
        writing: asyncio.Task[Counter[tuple[str, str]]] | None = None
        try:
            for start in range(0, len(records), step):
                batches = await self._prepare(records[start : start + step], outcomes)
                if writing is not None:
                    outcomes.update(await writing)
                    writing = None
                if batches:
                    writing = asyncio.create_task(self._store(batches))
                    await asyncio.sleep(0)  # let it send its write before decoding on
            if writing is not None:
                outcomes.update(await writing)
                writing = None
        finally:
            if writing is not None:  # decoding failed: let the write end (it is idempotent)
                with contextlib.suppress(Exception):
                    await writing
        return outcomes

    async def _prepare(
        self, records: Sequence[Record], outcomes: Counter[tuple[str, str]]
    ) -> list[PartitionBatch]:
        """Decode, skip what is stored, dead-letter what is invalid: the parts to store."""
        by_partition: dict[tuple[str, int], list[Record]] = defaultdict(list)
        for record in records:
            by_partition[(record.topic, record.partition)].append(record)
        batches: list[PartitionBatch] = []
        for (topic, partition), found in by_partition.items():
            found.sort(key=lambda record: record.offset)
            stored = await self._stored_offset(topic, partition)
            items: list[Item] = []
            for record in found:
                if stored is not None and record.offset <= stored:
                    outcomes[("replayed", "duplicate")] += 1
                    continue
                if self._admit is not None:  # the consumer's own checks, which count
                    if (own := await self._admit(record)) is not None:
                        items.append(Item(record=record, envelope=own))
                    continue
                envelope, event_type, problem = admission(record, self.event_types)
                if problem is not None:
                    self._collect_again()  # publishing may wait out the broker
                    await self._single._dead_letter(record, problem)
                    outcomes[(event_type, "dead_lettered")] += 1
                elif envelope is None:
                    outcomes[(event_type, "ignored")] += 1
                else:
                    items.append(Item(record=record, envelope=envelope))
            if stored is None or found[-1].offset > stored:
                batches.append(
                    PartitionBatch(
                        topic=topic,
                        partition=partition,
                        last_offset=found[-1].offset,
                        items=tuple(items),
                    )
                )
        return batches

    async def _stored_offset(self, topic: str, partition: int) -> int | None:
        key = (topic, partition)
        if key not in self._stored:
            self._collect_again()  # may wait out the database
            self._stored[key] = await self._single._until_stored(
                lambda: self.sink.stored_offset(topic, partition)
            )
            log.info(
                "partition position read",
                topic=topic,
                partition=partition,
                stored=self._stored[key],
            )
        return self._stored[key]

    async def _store(self, batches: list[PartitionBatch]) -> Counter[tuple[str, str]]:
        outcomes: Counter[tuple[str, str]] = Counter()
        failure = await self._with_retries(lambda: self.sink.store(batches))
        sink_counts = getattr(self.sink, "counts_outcomes", False)
        if failure is None and sink_counts:
            return outcomes
        if failure is None:
            stored = Counter(item.envelope.type for batch in batches for item in batch.items)
            for event_type, count in stored.items():
                outcomes[(event_type, "processed")] += count
            return outcomes
        # Find the event that fails: store one at a time, dead-letter what still fails.
        log.warning("batch failed; storing its events one at a time", error=failure)
        for batch in batches:
            for item in batch.items:
                single = PartitionBatch(
                    topic=batch.topic,
                    partition=batch.partition,
                    last_offset=item.record.offset,
                    items=(item,),
                )
                reason = await self._with_retries(functools.partial(self.sink.store, [single]))
                if reason is None:
                    # a sink that counts has counted it (processed, duplicate, dead-lettered)
                    if not sink_counts:
                        outcomes[(item.envelope.type, "processed")] += 1
                else:
                    await self._single._dead_letter(item.record, reason)
                    outcomes[(item.envelope.type, "dead_lettered")] += 1
            # The offset of the batch's last record (maybe not an event applied) as well.
            rest = PartitionBatch(
                topic=batch.topic,
                partition=batch.partition,
                last_offset=batch.last_offset,
                items=(),
            )
            await self._single._until_stored(functools.partial(self.sink.store, [rest]))
        return outcomes

    def _collect_again(self) -> None:
        """The batch may take long now (a failure, a wait for a dependency): garbage is
        collected again meanwhile."""
        if self._pause is not None:
            self._pause.end()

    async def _with_retries(self, operation: Callable[[], Awaitable[None]]) -> str | None:
        """Run until it succeeds (None) or has failed `max_attempts` times (the reason);
        a dependency outage is waited out without counting."""
        attempt = failures = 0
        while True:
            attempt += 1
            try:
                await operation()
                return None
            except WAIT_ERRORS as error:
                self._collect_again()
                log.warning(
                    "dependency unavailable; will retry", attempt=attempt, error=repr(error)
                )
                attempt = min(attempt, self._retry.max_attempts)
            except Exception as error:
                self._collect_again()
                failures += 1
                if failures >= self._retry.max_attempts:
                    log.error("batch store failed", attempts=failures, error=repr(error))
                    return f"handler failed after {failures} attempts: {error!r}"
                log.warning("batch store failed; will retry", attempt=attempt, error=repr(error))
            await asyncio.sleep(self._retry.backoff(attempt))


Ordering = Callable[[Envelope[Any]], tuple[str, str | None]]


class KeyedHandlerSink:
    """Per-message handlers (an `EventProcessor`'s) applied to a batch, keys side by side.

    `ordering(envelope)` gives an event's chain and lane. The events of one chain are
    applied in their order on the partition; consecutive events with a lane (not None) may
    run side by side when their lanes differ, an event without a lane waits for everything
    before it in its chain and holds back everything after it. So a notification consumer
    keys its chains by dialogue event and lanes by registration: one person's messages stay
    in order, and a reschedule or cancellation of the event stays between what came before
    and after it. Different chains run side by side; at most `concurrency` handlers at once.

    Each event gets the guarantees of `EventProcessor`: skipped if its id is processed
    already (one read for the batch), its handler retried with backoff and dead-lettered
    after the limit, a dependency outage waited out; the ids are marked processed (one
    write) once every event of the batch is applied. `store` returns only when all of them
    are, so the batch's offsets are committed after the effects are stored; the handlers
    are idempotent by key, so a crash before the commit only repeats them harmlessly.
    """

    counts_outcomes = True

    def __init__(
        self,
        *,
        processor: EventProcessor,
        ordering: Ordering,
        concurrency: int = 32,
        on_reassigned: Callable[[], None] = lambda: None,
    ) -> None:
        self._processor = processor
        self._ordering = ordering
        self._limit = asyncio.Semaphore(max(1, concurrency))
        self._on_reassigned = on_reassigned

    def reassigned(self) -> None:
        """Partitions were revoked or assigned: what the handlers keep in memory about the
        partitions' state may be stale (another member may have applied events)."""
        self._on_reassigned()

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        return None  # no positions: the processed ids and idempotent handlers suffice

    async def store(self, batches: Sequence[PartitionBatch]) -> None:
        items = [item for batch in batches for item in batch.items]
        if not items:
            return
        seen = await self._processor.seen_among({item.envelope.id for item in items})
        chains: dict[str, list[list[Item]]] = defaultdict(list)
        lanes_open: dict[str, bool] = {}
        for item in items:
            if item.envelope.id in seen:
                log.info(
                    "duplicate event skipped", event_id=item.envelope.id, type=item.envelope.type
                )
                self._processor.count(item.envelope.type, "duplicate")
                continue
            chain, lane = self._ordering(item.envelope)
            steps = chains[chain]
            if lane is not None and lanes_open.get(chain):
                steps[-1].append(item)  # joins the run of laned events before it
            else:
                steps.append([item])
            lanes_open[chain] = lane is not None
        done: list[str] = []
        results = await asyncio.gather(
            *(self._chain(steps, done) for steps in chains.values()), return_exceptions=True
        )
        # what is applied is marked even if another chain failed (it would only repeat)
        await self._processor.mark_all(done)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _chain(self, steps: list[list[Item]], done: list[str]) -> None:
        for step in steps:
            if len(step) == 1:
                await self._lane(step, done)
                continue
            lanes: dict[str | None, list[Item]] = defaultdict(list)
            for item in step:
                lanes[self._ordering(item.envelope)[1]].append(item)
            results = await asyncio.gather(
                *(self._lane(lane, done) for lane in lanes.values()), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _lane(self, items: list[Item], done: list[str]) -> None:
        for item in items:
            async with self._limit:
                if await self._processor.apply(item.record, item.envelope):
                    done.append(item.envelope.id)


class _NothingProcessed:
    """The batch path keeps no processed-id list: its sink is idempotent by event id."""

    async def seen(self, consumer: str, event_id: str) -> bool:
        return False

    async def mark(self, consumer: str, event_id: str) -> None:
        return None


class _PositionsListener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, processor: BatchProcessor, prefix: str) -> None:
        self._processor = processor
        self._prefix = prefix

    def _keys(self, partitions: Collection[TopicPartition]) -> list[tuple[str, int]]:
        return [(tp.topic.removeprefix(self._prefix), tp.partition) for tp in partitions]

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._processor.forget_positions(self._keys(revoked))

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._processor.forget_positions(self._keys(assigned))


def subscribe_batches(
    broker: KafkaBroker,
    processor: BatchProcessor,
    *,
    topics: Sequence[str],
    settings: WokSettings,
    max_records: int = DEFAULT_MAX_RECORDS,
    batch_timeout_ms: int = 100,
) -> Any:
    """One consumer-group member over `topics` taking batches; commits after `process`."""

    async def consume(message: KafkaMessage) -> None:
        raw = message.raw_message
        # a tuple from getmany; a list from FastStream's test broker
        records = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        if not records:
            return
        try:
            with processor.collection_paused():  # from the first record object on
                await processor.process(
                    [
                        Record(
                            topic=record.topic.removeprefix(settings.topic_prefix),
                            partition=record.partition,
                            offset=record.offset,
                            key=record.key,
                            value=record.value,
                            headers=tuple(record.headers or ()),
                        )
                        for record in records
                    ]
                )
        except Exception as error:
            # Not acknowledged and not skipped: rewind every partition to its first record
            # of the batch; what was stored already is skipped or stored idempotently.
            log.error(
                "batch could not be processed; it will be redelivered",
                records=len(records),
                error=repr(error),
            )
            await message.nack()
            await asyncio.sleep(settings.consumer_backoff_max_s)
            return
        await message.ack()

    async def raw_only(message: Any) -> None:
        """No body: FastStream would otherwise parse and JSON-decode every record of the
        batch again (a third of the time), and `consume` reads the raw records only."""
        return None

    consume.__name__ = f"consume_batches_{processor.consumer.replace('-', '_')}"
    return broker.subscriber(
        *(settings.topic(topic) for topic in topics),
        group_id=settings.consumer_group(processor.consumer),
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        listener=_PositionsListener(processor, settings.topic_prefix),
        decoder=raw_only,
        no_reply=True,
    )(consume)
