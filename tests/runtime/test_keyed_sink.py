"""Per-message handlers applied to a batch, keys side by side (`KeyedHandlerSink`): one
key's events in order, different keys at once, each event applied once, every guarantee of
the per-message processor (processed ids, retries, dead letters) kept.

Fast: in-memory processed ids and a recording publisher, no broker. Notification's service
tests run it under FastStream's test broker, and its e2e and SIGKILL tests on the real stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.runtime.test_batch_processor import (
    FAST_RETRY,
    TOPIC,
    RecordingPublisher,
    record,
    registered,
)
from wok_contracts import Envelope, ParticipantRegistered
from wok_runtime.batch import BatchProcessor, Item, KeyedHandlerSink, PartitionBatch
from wok_runtime.consumer import (
    DLQ_REASON,
    EventProcessor,
    InMemoryProcessedStore,
    ProcessorMetrics,
)

CONSUMER = "notification"
DEAD_LETTERS = "dead-letter.notification.v1"


def by_registration(envelope: Envelope[Any]) -> tuple[str, str | None]:
    """Test ordering: the chain is the dialogue event, the lane the registration; an id
    starting with "event" stands for an event about the whole dialogue event (no lane)."""
    registration_id = envelope.data.registration_id
    chain = f"event:{envelope.data.dialogue_event_id}"
    return chain, None if registration_id.startswith("event") else registration_id.split("#")[0]


def registered_in(dialogue_event_id: str, registration_id: str) -> Envelope[Any]:
    envelope = registered(registration_id)
    data = envelope.data.model_copy(update={"dialogue_event_id": dialogue_event_id})
    return envelope.model_copy(update={"data": data})


@dataclass
class CountingStore(InMemoryProcessedStore):
    reads: int = 0
    writes: int = 0

    def __post_init__(self) -> None:
        super().__init__()

    async def seen_many(self, consumer: str, event_ids: Any) -> set[str]:
        self.reads += 1
        return await super().seen_many(consumer, event_ids)

    async def mark_many(self, consumer: str, event_ids: Any) -> None:
        self.writes += 1
        await super().mark_many(consumer, event_ids)


@dataclass
class Harness:
    batch: BatchProcessor
    processed: CountingStore
    dead_letters: RecordingPublisher
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    async def play(self, envelopes: list[Envelope[Any]]) -> None:
        await self.batch.process(
            [record(offset, envelope.to_json_bytes()) for offset, envelope in enumerate(envelopes)]
        )


def wired(
    handler: Callable[[Envelope[Any]], Any],
    *,
    consumer: str,
    dead_letter_topic: str,
    sink: Callable[[EventProcessor], Any],
) -> tuple[BatchProcessor, CountingStore, RecordingPublisher, list[tuple[str, str]]]:
    """A batch processor over `sink(processor)` for one handler of ParticipantRegistered,
    with counted processed-id reads and writes, recorded dead letters and outcomes."""
    processed = CountingStore()
    dead_letters = RecordingPublisher()
    outcomes: list[tuple[str, str]] = []
    metrics = ProcessorMetrics(on_outcome=lambda t, outcome: outcomes.append((t, outcome)))
    processor = EventProcessor(
        consumer=consumer,
        handlers={ParticipantRegistered: handler},
        processed=processed,
        dead_letters=dead_letters,
        dead_letter_topic=dead_letter_topic,
        retry=FAST_RETRY,
        metrics=metrics,
    )
    batch = BatchProcessor(
        consumer=consumer,
        sink=sink(processor),
        event_types=processor.event_types,
        dead_letters=dead_letters,
        dead_letter_topic=dead_letter_topic,
        retry=FAST_RETRY,
        metrics=metrics,
    )
    return batch, processed, dead_letters, outcomes


def harness(
    handler: Callable[[Envelope[Any]], Any], *, concurrency: int = 32, **kwargs: Any
) -> Harness:
    return Harness(
        *wired(
            handler,
            consumer=CONSUMER,
            dead_letter_topic=DEAD_LETTERS,
            sink=lambda processor: KeyedHandlerSink(
                processor=processor, ordering=by_registration, concurrency=concurrency, **kwargs
            ),
        )
    )


async def test_different_keys_run_side_by_side_and_each_key_keeps_its_order() -> None:
    started: list[str] = []
    finished: list[str] = []
    # a's first event waits for b's: handled one at a time, this batch would never end
    b_started = asyncio.Event()

    async def handle(envelope: Envelope[Any]) -> None:
        name = envelope.data.registration_id
        started.append(name)
        if name == "a#1":
            await asyncio.wait_for(b_started.wait(), timeout=2)
        if name.startswith("b"):
            b_started.set()
        await asyncio.sleep(0)
        finished.append(name)

    h = harness(handle)
    await asyncio.wait_for(
        h.play([registered_in("dlg-1", name) for name in ("a#1", "a#2", "b#1", "a#3", "b#2")]),
        timeout=5,
    )

    assert [n for n in finished if n.startswith("a")] == ["a#1", "a#2", "a#3"]
    assert [n for n in finished if n.startswith("b")] == ["b#1", "b#2"]
    assert started.index("b#1") < finished.index("a#1")  # b did not wait for a
    assert h.outcomes.count((ParticipantRegistered.event_type, "processed")) == 5
    assert len(h.outcomes) == 5  # counted once, not again by the batch processor


async def test_an_event_about_the_whole_key_stands_between_what_came_before_and_after() -> None:
    log: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        name = envelope.data.registration_id
        log.append(f"start {name}")
        await asyncio.sleep(0.01 if name == "a" else 0)
        log.append(f"end {name}")

    h = harness(handle)
    names = ["a", "b", "event-rescheduled", "c", "d"]
    await h.play([registered_in("dlg-1", name) for name in names])

    barrier_start = log.index("start event-rescheduled")
    barrier_end = log.index("end event-rescheduled")
    assert log.index("end a") < barrier_start and log.index("end b") < barrier_start
    assert log.index("start c") > barrier_end and log.index("start d") > barrier_end


async def test_an_event_about_one_key_does_not_hold_back_another_key() -> None:
    log: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        name = envelope.data.registration_id
        log.append(f"start {name}")
        if name == "event-slow":
            await asyncio.sleep(0.05)
        log.append(f"end {name}")

    h = harness(handle)
    await h.play([registered_in("dlg-1", "event-slow"), registered_in("dlg-2", "x")])

    assert log.index("end x") < log.index("end event-slow")


async def test_no_more_handlers_at_once_than_the_limit() -> None:
    active = most = 0

    async def handle(envelope: Envelope[Any]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.005)
        active -= 1

    h = harness(handle, concurrency=3)
    await h.play([registered_in(f"dlg-{n % 4}", f"r{n}") for n in range(20)])

    assert most == 3
    assert h.outcomes.count((ParticipantRegistered.event_type, "processed")) == 20


async def test_processed_ids_are_read_and_written_once_per_batch_and_repeats_skipped() -> None:
    applied: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        applied.append(envelope.id)

    h = harness(handle)
    events = [registered_in("dlg-1", f"r{n}") for n in range(5)]
    await h.play(events[:3])
    assert (h.processed.reads, h.processed.writes) == (1, 1)

    await h.play(events)  # the first three again (a batch redelivered after a crash)

    assert applied == [e.id for e in events]
    assert (h.processed.reads, h.processed.writes) == (2, 2)
    assert h.outcomes.count((ParticipantRegistered.event_type, "duplicate")) == 3
    assert {event_id for _, event_id in h.processed.ids} == {e.id for e in events}


async def test_a_failing_event_is_dead_lettered_alone_and_not_marked() -> None:
    async def handle(envelope: Envelope[Any]) -> None:
        if envelope.data.registration_id == "bad":
            raise ValueError("template broken")

    h = harness(handle)
    good, bad, after = (registered_in("dlg-1", name) for name in ("good", "bad", "after"))
    await h.play([good, bad, after])

    [(topic, _, value, headers)] = h.dead_letters.messages
    assert topic == DEAD_LETTERS and value == bad.to_json_bytes()
    assert "template broken" in headers[DLQ_REASON]
    assert headers["wok-dlq-topic"] == TOPIC
    assert {event_id for _, event_id in h.processed.ids} == {good.id, after.id}


async def test_a_failure_that_escapes_lets_every_other_key_finish_before_the_batch_fails() -> None:
    finished: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        name = envelope.data.registration_id
        if name == "bad":
            raise ValueError("template broken")
        await asyncio.sleep(0.02)
        finished.append(name)

    h = harness(handle)
    broken = RecordingPublisher()

    async def refuse(**_: Any) -> None:
        raise RuntimeError("dead-letter topic refused")  # not a dependency outage

    broken.publish = refuse  # type: ignore[method-assign]
    sink = h.batch.sink
    assert isinstance(sink, KeyedHandlerSink)
    sink._processor._dead_letters = broken  # the dead letter itself fails

    bad, slow = registered_in("dlg-1", "bad"), registered_in("dlg-2", "slow")
    items = tuple(
        Item(record=record(n, e.to_json_bytes()), envelope=e) for n, e in enumerate([bad, slow])
    )
    batch = PartitionBatch(topic=TOPIC, partition=0, last_offset=1, items=items)

    with pytest.raises(RuntimeError, match="refused"):
        await sink.store([batch])

    # the other key was not abandoned half-way, and what it applied is marked
    assert finished == ["slow"]
    assert {event_id for _, event_id in h.processed.ids} == {slow.id}


async def test_reassigned_partitions_drop_what_the_handlers_keep_in_memory() -> None:
    dropped: list[bool] = []

    async def handle(envelope: Envelope[Any]) -> None:
        return None

    h = harness(handle, on_reassigned=lambda: dropped.append(True))
    h.batch.forget_positions([(TOPIC, 0)])

    assert dropped == [True]


async def test_a_batch_stored_one_at_a_time_counts_each_outcome_once() -> None:
    """When a batch fails, its events are stored one at a time; what the sink's handlers
    count themselves is not counted again by the batch processor."""

    async def handle(envelope: Envelope[Any]) -> None:
        if envelope.data.registration_id == "bad":
            raise ValueError("template broken")

    h = harness(handle)
    broken = RecordingPublisher()

    async def refuse(**_: Any) -> None:
        raise RuntimeError("dead-letter topic refused")  # not a dependency outage

    broken.publish = refuse  # type: ignore[method-assign]
    sink = h.batch.sink
    assert isinstance(sink, KeyedHandlerSink)
    sink._processor._dead_letters = broken  # the sink cannot dead-letter: the batch fails

    good, bad = registered_in("dlg-1", "good"), registered_in("dlg-2", "bad")
    await h.play([good, bad])

    kind = ParticipantRegistered.event_type
    # good: applied once (later attempts see it processed), bad: dead-lettered by the batch
    assert h.outcomes.count((kind, "processed")) == 1
    assert h.outcomes.count((kind, "dead_lettered")) == 1
    [(topic, _, value, _)] = h.dead_letters.messages
    assert topic == DEAD_LETTERS and value == bad.to_json_bytes()
