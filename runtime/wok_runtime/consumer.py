"""Reliable consumption, written once for every service (DESIGN.md sections 5 and 8).

FastStream's ack policies alone either lose or duplicate messages, so the subscriber
acknowledges manually, after `EventProcessor.process` returns, and `process` returns only
when the message's effect is stored or the message is in the dead-letter topic:

- undecodable or invalid messages go to the dead-letter topic at once, with the reason;
  so does an event whose Kafka key is not its municipality (`key_problem`);
- a handler that fails is retried with exponential backoff, then dead-lettered;
- infrastructure failures (database or broker away) are retried without limit, so
  nothing is skipped while a dependency is down: the partition waits;
- an event id already processed is skipped; handlers write idempotently by key, so a
  crash between the effect and the processed mark cannot double count either;
- a record whose `wok-event-type` header (set by the outbox relay) names a registered type
  this consumer has no handler for is skipped without decoding it and without touching the
  processed ids: validating it is the business of the consumers that handle it. A record
  without the header (older ones, other producers) is decoded to find its type; one whose
  header names another type than its body is dead-lettered by the consumers that read it
  (`header_problem`: the body's own consumers skipped it).

`ServiceRuntime.consume` takes the records in batches (`wok_runtime.batch`) and hands them
to `InOrderHandlerSink` (below), which applies them through the same `EventProcessor` one
at a time in the batch's order; the batch is acknowledged once all of it is applied or
dead-lettered. A consumer with checks of its own (registration answers a malformed command)
passes its processor's `admit` to `ServiceRuntime.consume_batches`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from aiokafka.errors import KafkaError
from pymongo.errors import ConnectionFailure, NetworkTimeout, WriteConcernError

from wok_contracts import ContractError, Envelope, EventData, decode_envelope
from wok_contracts.registry import REGISTRY
from wok_runtime.logging import correlation, get_logger
from wok_runtime.outbox import EVENT_TYPE_HEADER, Publisher

log = get_logger(__name__)

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure,
    NetworkTimeout,
    WriteConcernError,
    KafkaError,
    ConnectionError,
    TimeoutError,
)

Handler = Callable[[Envelope[Any]], Awaitable[None]]


class TransientError(Exception):
    """Raise from a handler when a dependency is away and the message must wait, not fail."""


# Waited out without limit: a dependency is away, the message or batch is not at fault.
WAIT_ERRORS: tuple[type[BaseException], ...] = (TransientError, *TRANSIENT_ERRORS)


@dataclass(frozen=True)
class Record:
    """A message as it came off the wire."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class ProcessedStore(Protocol):
    async def seen(self, consumer: str, event_id: str) -> bool: ...

    async def mark(self, consumer: str, event_id: str) -> None: ...


class InMemoryProcessedStore:
    def __init__(self) -> None:
        self.ids: set[tuple[str, str]] = set()

    async def seen(self, consumer: str, event_id: str) -> bool:
        return (consumer, event_id) in self.ids

    async def mark(self, consumer: str, event_id: str) -> None:
        self.ids.add((consumer, event_id))

    async def seen_many(self, consumer: str, event_ids: Collection[str]) -> set[str]:
        return {event_id for event_id in event_ids if (consumer, event_id) in self.ids}

    async def mark_many(self, consumer: str, event_ids: Collection[str]) -> None:
        self.ids.update((consumer, event_id) for event_id in event_ids)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


@dataclass
class ProcessorMetrics:
    """Hooks for counting outcomes; the runtime wires them to Prometheus. `on_outcomes`
    (event type, outcome, how many) counts several at once (a batch's, once per type and
    outcome); without it `count` calls `on_outcome` once for each."""

    on_outcome: Callable[[str, str], None] = field(default=lambda event_type, outcome: None)
    on_outcomes: Callable[[str, str, int], None] | None = None

    def count(self, event_type: str, outcome: str, n: int) -> None:
        if self.on_outcomes is not None:
            self.on_outcomes(event_type, outcome, n)
            return
        for _ in range(n):
            self.on_outcome(event_type, outcome)


DLQ_REASON = "wok-dlq-reason"


def key_problem(record: Record, envelope: Envelope[Any]) -> str | None:
    """Why a record's Kafka key disqualifies it, or None.

    A municipality's events are keyed by its AGS, so they share a partition and stay in
    order (DESIGN.md section 4). An event keyed otherwise can overtake or trail the others
    (a registration before its dialogue event), so it is dead-lettered with this reason
    instead of applied out of order. A record without a key, or an envelope naming no
    municipality, is not judged.
    """
    if record.key is None or envelope.municipality is None:
        return None
    if record.key == envelope.municipality.encode():
        return None
    key = record.key.decode("utf-8", "replace")[:100]
    return (
        f"wrong key: {key!r} is not the envelope's municipality {envelope.municipality!r} "
        "(a municipality's events are keyed by its AGS to stay in order)"
    )


def header_problem(record: Record, envelope: Envelope[Any]) -> str | None:
    """Why a record's `wok-event-type` header disqualifies it, or None: a header naming
    another type than the body's would have the consumers handling the body's type skip it
    unread, so the consumers that do read it dead-letter it rather than let it pass."""
    for name, value in record.headers:
        if name == EVENT_TYPE_HEADER:
            declared = (value or b"").decode("utf-8", "replace")[:100]
            if declared != envelope.type:
                return (
                    f"{EVENT_TYPE_HEADER} header {declared!r} is not the event's type "
                    f"{envelope.type!r} (consumers skip events by that header)"
                )
    return None


def declared_type(record: Record) -> str | None:
    """The event type the record's producer declared in its `wok-event-type` header, if it
    is a registered type; None for records without one (older records, other producers),
    which are decoded to find out. The header is only used to skip what a consumer has no
    handler for: a consumer that handles the type decodes and validates the body."""
    for name, value in record.headers:
        if name == EVENT_TYPE_HEADER and value:
            try:
                event_type = value.decode()
            except UnicodeDecodeError:
                return None
            return event_type if event_type in REGISTRY else None
    return None


class Admission(NamedTuple):
    """What a consumer does with a record: hand `envelope` to its handler; or, without an
    envelope, dead-letter it for `problem`, or (no problem) ignore it. `event_type` names
    the outcome."""

    envelope: Envelope[Any] | None
    event_type: str
    problem: str | None = None


def admission(record: Record, handled: Collection[str]) -> Admission:
    """The one order of checks every consumer applies to a record: skipped unread when its
    header names a type not `handled`; dead-lettered when undecodable, of another type than
    its header names, or wrongly keyed; ignored when of a type not handled."""
    declared = declared_type(record)
    if declared is not None and declared not in handled:
        return Admission(None, declared)  # a consumer handling this type validates it
    try:
        envelope = decode_envelope(record.value)
    except ContractError as error:
        return Admission(None, "undecodable", error.reason)
    wrong_header = header_problem(record, envelope)
    if wrong_header is not None:
        return Admission(None, envelope.type, wrong_header)
    if envelope.type not in handled:
        return Admission(None, envelope.type)
    wrong_key = key_problem(record, envelope)
    if wrong_key is not None:
        return Admission(None, envelope.type, wrong_key)
    return Admission(envelope, envelope.type)


class EventProcessor:
    def __init__(
        self,
        *,
        consumer: str,
        handlers: Mapping[type[EventData], Handler],
        processed: ProcessedStore,
        dead_letters: Publisher,
        dead_letter_topic: str,
        retry: RetryPolicy,
        metrics: ProcessorMetrics | None = None,
    ) -> None:
        self.consumer = consumer
        self._handlers = {model.event_type: handler for model, handler in handlers.items()}
        self._processed = processed
        self._dead_letters = dead_letters
        self._dead_letter_topic = dead_letter_topic
        self._retry = retry
        self._metrics = metrics or ProcessorMetrics()

    @property
    def event_types(self) -> list[str]:
        return sorted(self._handlers)

    async def process(self, record: Record) -> None:
        envelope = await self.admit(record)
        if envelope is None:
            return
        with correlation(envelope.correlationid):
            if await self._until_stored(lambda: self._processed.seen(self.consumer, envelope.id)):
                log.info("duplicate event skipped", event_id=envelope.id, type=envelope.type)
                self._metrics.on_outcome(envelope.type, "duplicate")
                return
            if await self.apply(record, envelope):
                await self._until_stored(lambda: self._processed.mark(self.consumer, envelope.id))

    async def admit(self, record: Record) -> Envelope[Any] | None:
        """The record's envelope if a handler takes it; None if it was dead-lettered (undecodable,
        invalid, wrongly keyed) or is of a type this consumer ignores."""
        envelope, event_type, problem = admission(record, self._handlers)
        if problem is not None:
            await self._dead_letter(record, problem)
            self._metrics.on_outcome(event_type, "dead_lettered")
        elif envelope is None:
            self._metrics.on_outcome(event_type, "ignored")
        return envelope

    async def apply(self, record: Record, envelope: Envelope[Any]) -> bool:
        """Run the event's handler (retried as below) or dead-letter it; True when its effect
        is stored, so the caller marks the event id processed. No processed-id check here."""
        handler = self._handlers[envelope.type]
        with correlation(envelope.correlationid):
            failure = await self._run_handler(handler, envelope)
            if failure is not None:
                await self._dead_letter(record, failure)
                self._metrics.on_outcome(envelope.type, "dead_lettered")
                return False
            self._metrics.on_outcome(envelope.type, "processed")
            return True

    async def seen_among(self, event_ids: Collection[str]) -> set[str]:
        """Which of `event_ids` are processed already (one read if the store can)."""
        many = getattr(self._processed, "seen_many", None)
        if many is not None:
            found: set[str] = await self._until_stored(lambda: many(self.consumer, event_ids))
            return found
        return {
            event_id
            for event_id in event_ids
            if await self._until_stored(
                functools.partial(self._processed.seen, self.consumer, event_id)
            )
        }

    async def mark_all(self, event_ids: Collection[str]) -> None:
        """Mark `event_ids` processed (one write if the store can)."""
        if not event_ids:
            return
        many = getattr(self._processed, "mark_many", None)
        if many is not None:
            await self._until_stored(lambda: many(self.consumer, event_ids))
            return
        for event_id in event_ids:
            await self._until_stored(
                functools.partial(self._processed.mark, self.consumer, event_id)
            )

    def count(self, event_type: str, outcome: str) -> None:
        self._metrics.on_outcome(event_type, outcome)

    async def _run_handler(self, handler: Handler, envelope: Envelope[Any]) -> str | None:
        """Run the handler until it succeeds (None) or has failed for good (the reason)."""
        attempt = 0
        # Only the handler's own failures count towards max_attempts: a dependency outage
        # must not use up the budget and get the next ordinary failure dead-lettered at once.
        failures = 0
        while True:
            attempt += 1
            try:
                await handler(envelope)
                return None
            except WAIT_ERRORS as error:
                log.warning(
                    "dependency unavailable; will retry",
                    event_id=envelope.id,
                    attempt=attempt,
                    error=repr(error),
                )
                attempt = min(attempt, self._retry.max_attempts)
            except Exception as error:
                failures += 1
                if failures >= self._retry.max_attempts:
                    log.error(
                        "handler failed; dead-lettering",
                        event_id=envelope.id,
                        type=envelope.type,
                        attempts=failures,
                        error=repr(error),
                    )
                    return f"handler failed after {failures} attempts: {error!r}"
                log.warning("handler failed; will retry", event_id=envelope.id, attempt=attempt)
            await asyncio.sleep(self._retry.backoff(attempt))

    async def _until_stored(self, operation: Callable[[], Awaitable[Any]]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation()
            except TRANSIENT_ERRORS as error:
                log.warning("storage unavailable; will retry", attempt=attempt, error=repr(error))
                await asyncio.sleep(self._retry.backoff(min(attempt, self._retry.max_attempts)))

    async def _dead_letter(self, record: Record, reason: str) -> None:
        # Kafka allows a header without a value; keep it rather than fail to dead-letter
        headers = {
            name: (value or b"").decode("utf-8", "replace") for name, value in record.headers
        }
        headers.update(
            {
                DLQ_REASON: reason[:2000],
                "wok-dlq-consumer": self.consumer,
                "wok-dlq-topic": record.topic,
                "wok-dlq-partition": str(record.partition),
                "wok-dlq-offset": str(record.offset),
                "wok-dlq-failed-at": datetime.now(UTC).isoformat(),
            }
        )
        log.warning(
            "message dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            reason=reason[:300],
        )
        key = record.key.decode("utf-8", "replace") if record.key else ""
        await self._until_stored(
            lambda: self._dead_letters.publish(
                topic=self._dead_letter_topic,
                key=key,
                value=record.value or b"",
                headers=headers,
            )
        )


class _BatchItem(Protocol):
    @property
    def record(self) -> Record: ...

    @property
    def envelope(self) -> Envelope[Any]: ...


class _PartitionItems(Protocol):
    @property
    def items(self) -> Sequence[_BatchItem]: ...


class InOrderHandlerSink:
    """A batch sink (`wok_runtime.batch.BatchSink`) running an `EventProcessor`'s handlers
    one event at a time, in the order of the batch (each partition's events in offset order),
    exactly as the processor's `process` would one message at a time: an event id processed
    already is skipped (one read for the whole batch; a second copy within the batch is
    skipped once the first is applied), a failing handler is retried and dead-lettered, a
    dependency outage is waited out. The applied ids are marked processed with one write at
    the end of the batch, before it is committed; a crash before that only re-runs handlers,
    which are idempotent by key.

    What it saves against one message at a time: FastStream's per-message dispatch, one
    offset commit per message and two processed-store round trips per event; and events of
    types without a handler cost a look at their headers (their decoding, for records
    without the `wok-event-type` header); they are never marked."""

    counts_outcomes = True

    def __init__(self, processor: EventProcessor) -> None:
        self.processor = processor

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        return None  # no positions: the processed ids and idempotent handlers suffice

    async def store(self, batches: Sequence[_PartitionItems]) -> None:
        items = [item for batch in batches for item in batch.items]
        if not items:
            return
        processor = self.processor
        seen = await processor.seen_among({item.envelope.id for item in items})
        done: list[str] = []
        try:
            for item in items:
                envelope = item.envelope
                if envelope.id in seen:
                    with correlation(envelope.correlationid):
                        log.info(
                            "duplicate event skipped", event_id=envelope.id, type=envelope.type
                        )
                    processor.count(envelope.type, "duplicate")
                    continue
                if await processor.apply(item.record, envelope):
                    done.append(envelope.id)
                    seen.add(envelope.id)
        except Exception:
            # what is applied is marked even if a later event failed (it would only repeat)
            await processor.mark_all(done)
            raise
        await processor.mark_all(done)
