"""Batch consumption: every record ends stored once with its offset, skipped, or dead-lettered.

Fast: a fake sink and publisher, no broker, tiny backoff. The sink on the real database and
broker is exercised by reporting's storage tests and the e2e SIGKILL test.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import AutoReconnect

from tests.contracts.test_envelope import sample_events
from wok_contracts import (
    ContractError,
    Envelope,
    MunicipalityRegistered,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    decode_envelope,
    new_envelope,
)
from wok_contracts.registry import decode_carefully
from wok_runtime.batch import BatchProcessor, PartitionBatch
from wok_runtime.consumer import DLQ_REASON, ProcessorMetrics, Record, RetryPolicy
from wok_runtime.outbox import EVENT_TYPE_HEADER

CONSUMER = "reporting"
DEAD_LETTERS = "dead-letter.reporting.v1"
TOPIC = "registration.events.v1"
KAISERSLAUTERN = "07312000"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)


@dataclass
class RecordingPublisher:
    messages: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        self.messages.append((topic, key, value, headers))


@dataclass
class Sink:
    """Stores event ids per partition with the offset, like reporting's chunks; fails on
    request: `poison` ids always, `outages` times with a database error first."""

    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)  # event id -> times stored
    writes: int = 0
    poison: set[str] = field(default_factory=set)
    outages: int = 0

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        return self.offsets.get((topic, partition))

    async def store(self, batches: Sequence[PartitionBatch]) -> None:
        if self.outages:
            self.outages -= 1
            raise AutoReconnect("database away")
        ids = [item.envelope.id for batch in batches for item in batch.items]
        if self.poison & set(ids):
            raise ValueError("cannot project this event")
        self.writes += 1
        for event_id in ids:
            self.stored[event_id] = self.stored.get(event_id, 0) + 1
        for batch in batches:
            self.offsets[(batch.topic, batch.partition)] = batch.last_offset


def registered(registration_id: str) -> Envelope[Any]:
    return new_envelope(
        ParticipantRegistered(
            registration_id=registration_id,
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            status=RegistrationStatus.CONFIRMED,
            sector=Sector.RESIDENT,
        ),
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
    )


def record(offset: int, value: bytes, *, partition: int = 0) -> Record:
    return Record(
        topic=TOPIC, partition=partition, offset=offset, key=KAISERSLAUTERN.encode(), value=value
    )


@dataclass
class Consumer:
    processor: BatchProcessor
    sink: Sink
    dead_letters: RecordingPublisher
    outcomes: list[tuple[str, str]]


def consumer(
    sink: Sink | None = None,
    *,
    pipeline_records: int = 1000,
    event_types: frozenset[str] | set[str] | None = None,
) -> Consumer:
    sink = sink or Sink()
    dead_letters = RecordingPublisher()
    outcomes: list[tuple[str, str]] = []
    processor = BatchProcessor(
        consumer=CONSUMER,
        sink=sink,
        event_types=event_types or {ParticipantRegistered.event_type},
        dead_letters=dead_letters,
        dead_letter_topic=DEAD_LETTERS,
        retry=FAST_RETRY,
        metrics=ProcessorMetrics(on_outcome=lambda t, outcome: outcomes.append((t, outcome))),
        pipeline_records=pipeline_records,
    )
    return Consumer(processor, sink, dead_letters, outcomes)


async def test_a_batch_is_one_write_with_each_partitions_last_offset() -> None:
    c = consumer()
    events = [registered(f"reg-{n}") for n in range(6)]
    records = [record(10 + n, e.to_json_bytes(), partition=n % 2) for n, e in enumerate(events)]

    await c.processor.process(records)

    assert c.sink.writes == 1
    assert c.sink.stored == {e.id: 1 for e in events}
    assert c.sink.offsets == {(TOPIC, 0): 14, (TOPIC, 1): 15}
    assert c.outcomes.count((ParticipantRegistered.event_type, "processed")) == 6


async def test_a_large_batch_is_written_in_parts_in_order_while_the_next_is_decoded() -> None:
    @dataclass
    class OrderedSink(Sink):
        active: int = 0
        most_at_once: int = 0

        async def store(self, batches: Sequence[PartitionBatch]) -> None:
            self.active += 1
            self.most_at_once = max(self.most_at_once, self.active)
            try:
                await asyncio.sleep(0.01)  # a write takes a while: the next part is decoded
                await super().store(batches)
            finally:
                self.active -= 1

    sink = OrderedSink()
    c = consumer(sink, pipeline_records=2)
    events = [registered(f"reg-{n}") for n in range(7)]
    sink.poison = {events[4].id}

    await c.processor.process([record(n, e.to_json_bytes()) for n, e in enumerate(events)])

    # Parts of 2, each written after the one before it was stored; the poisoned event's
    # part falls back to one at a time and its event is dead-lettered.
    assert sink.most_at_once == 1
    assert sink.writes >= 4
    assert sink.stored == {e.id: 1 for e in events if e.id != events[4].id}
    assert sink.offsets == {(TOPIC, 0): 6}
    ((_, _, value, _),) = c.dead_letters.messages
    assert value == events[4].to_json_bytes()


async def test_records_at_or_below_the_stored_offset_are_skipped_after_an_assignment() -> None:
    """A batch stored but not committed (crash, rebalance) comes again: applied once."""
    events = [registered(f"reg-{n}") for n in range(5)]
    records = [record(n, e.to_json_bytes()) for n, e in enumerate(events)]
    first = consumer()
    await first.processor.process(records[:3])

    again = consumer(first.sink)  # a new member reads the position stored with the state
    await again.processor.process(records)

    assert first.sink.stored == {e.id: 1 for e in events}
    assert first.sink.offsets == {(TOPIC, 0): 4}
    assert again.outcomes.count(("replayed", "duplicate")) == 3


async def test_the_stored_offset_is_read_again_after_a_rebalance() -> None:
    c = consumer()
    events = [registered(f"reg-{n}") for n in range(4)]
    await c.processor.process([record(0, events[0].to_json_bytes())])
    # Meanwhile another member stored up to offset 2 of the partition.
    c.sink.offsets[(TOPIC, 0)] = 2
    c.processor.forget_positions([(TOPIC, 0)])

    await c.processor.process([record(n, e.to_json_bytes()) for n, e in enumerate(events)])

    assert set(c.sink.stored) == {events[0].id, events[3].id}


async def test_an_invalid_message_is_dead_lettered_and_its_offset_stored_with_the_rest() -> None:
    c = consumer()
    good = registered("reg-1")
    unknown_type = new_envelope(
        MunicipalityRegistered(ags=KAISERSLAUTERN, name="K", kind="city", land="07"),
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
    )

    await c.processor.process(
        [
            record(0, b"{not json"),
            record(1, good.to_json_bytes()),
            record(2, unknown_type.to_json_bytes()),
        ]
    )

    ((topic, key, value, headers),) = c.dead_letters.messages
    assert (topic, key, value) == (DEAD_LETTERS, KAISERSLAUTERN, b"{not json")
    assert headers[DLQ_REASON].startswith("not JSON")
    assert headers["wok-dlq-offset"] == "0"
    assert c.sink.stored == {good.id: 1}
    assert c.sink.offsets == {(TOPIC, 0): 2}  # past the ignored and dead-lettered ones
    assert (MunicipalityRegistered.event_type, "ignored") in c.outcomes


def typed(offset: int, value: bytes, event_type: str) -> Record:
    """A record as the outbox relay sends it: the event type in the `wok-event-type` header."""
    return Record(
        topic=TOPIC,
        partition=0,
        offset=offset,
        key=KAISERSLAUTERN.encode(),
        value=value,
        headers=(
            ("content-type", b"application/cloudevents+json"),
            (EVENT_TYPE_HEADER, event_type.encode()),
        ),
    )


async def test_a_record_whose_header_names_a_type_without_handler_is_skipped_undecoded() -> None:
    c = consumer()
    good = registered("reg-1")

    await c.processor.process(
        [
            # not even JSON: only a consumer handling the declared type would look inside
            typed(0, b"{not json", MunicipalityRegistered.event_type),
            typed(1, good.to_json_bytes(), ParticipantRegistered.event_type),
        ]
    )

    assert c.dead_letters.messages == []
    assert c.sink.stored == {good.id: 1}
    assert c.sink.offsets == {(TOPIC, 0): 1}
    assert (MunicipalityRegistered.event_type, "ignored") in c.outcomes


async def test_a_header_naming_a_handled_or_unknown_type_still_gets_the_body_checked() -> None:
    c = consumer()
    good = registered("reg-1")
    older = registered("reg-2")  # no header: written before the relay set one

    await c.processor.process(
        [
            typed(0, b"{not json", ParticipantRegistered.event_type),
            typed(1, b'{"also": "bad"}', "no.such.type.v1"),
            typed(2, good.to_json_bytes(), "no.such.type.v1"),
            record(3, older.to_json_bytes()),
        ]
    )

    reasons = [headers[DLQ_REASON] for _, _, _, headers in c.dead_letters.messages]
    assert len(reasons) == 3 and reasons[0].startswith("not JSON")
    assert [headers["wok-dlq-offset"] for *_, headers in c.dead_letters.messages] == [
        "0",
        "1",
        "2",
    ]
    # a good body under a header naming another type: consumers handling the body's type
    # would have skipped it, so it goes to the dead letters with both types named
    assert "'no.such.type.v1'" in reasons[2] and ParticipantRegistered.event_type in reasons[2]
    assert c.sink.stored == {older.id: 1}


async def test_a_body_under_a_header_naming_another_type_is_dead_lettered_by_its_readers() -> None:
    """Header says MunicipalityRegistered, body is a ParticipantRegistered: the consumers
    handling registrations skip it by the header, so one that reads it (this one handles
    the declared type) must not pass it over as "not mine" but dead-letter it."""
    c = consumer(event_types={MunicipalityRegistered.event_type})
    good = registered("reg-1")

    await c.processor.process([typed(0, good.to_json_bytes(), MunicipalityRegistered.event_type)])

    [(_, _, _, headers)] = c.dead_letters.messages
    assert MunicipalityRegistered.event_type in headers[DLQ_REASON]
    assert ParticipantRegistered.event_type in headers[DLQ_REASON]
    assert c.sink.stored == {}
    assert c.sink.offsets == {(TOPIC, 0): 0}


async def test_an_event_the_sink_keeps_failing_on_is_dead_lettered_and_the_others_stored() -> None:
    c = consumer()
    events = [registered(f"reg-{n}") for n in range(4)]
    c.sink.poison = {events[1].id}

    await c.processor.process([record(n, e.to_json_bytes()) for n, e in enumerate(events)])

    assert c.sink.stored == {e.id: 1 for e in events if e.id != events[1].id}
    ((_, _, value, headers),) = c.dead_letters.messages
    assert value == events[1].to_json_bytes()
    assert headers[DLQ_REASON].startswith("handler failed after 3 attempts")
    assert c.sink.offsets == {(TOPIC, 0): 3}
    assert (ParticipantRegistered.event_type, "dead_lettered") in c.outcomes


async def test_a_database_outage_is_waited_out_without_dead_letters() -> None:
    c = consumer(Sink(outages=10))  # more than max_attempts: outages do not count
    events = [registered(f"reg-{n}") for n in range(3)]

    await c.processor.process([record(n, e.to_json_bytes()) for n, e in enumerate(events)])

    assert c.dead_letters.messages == []
    assert c.sink.stored == {e.id: 1 for e in events}
    assert c.sink.writes == 1


def test_the_fast_decoder_answers_as_the_careful_one_does() -> None:
    for data in sample_events():
        raw = new_envelope(
            data, source="/test", municipality=getattr(data, "ags", None)
        ).to_json_bytes()
        assert decode_envelope(raw) == decode_carefully(raw)
    # A "type" inside the data ahead of the envelope's own: the guess is wrong, the answer not.
    envelope = registered("reg-9")
    document = envelope.model_dump(mode="json")
    reordered = {"data": {**document["data"], "type": "registration.municipality.registered.v1"}}
    reordered.update({k: v for k, v in document.items() if k != "data"})
    raw = json.dumps(reordered).encode()
    assert decode_envelope(raw) == decode_carefully(raw)
    assert decode_envelope(raw).type == ParticipantRegistered.event_type
    for bad in (
        b"{not json",
        b"",
        b'{"type": "nope.v1"}',
        b"\xff\xfe",
        raw.replace(b"07312000", b"x"),
    ):
        try:
            decode_carefully(bad)
        except ContractError as expected:
            try:
                decode_envelope(bad)
            except ContractError as error:
                assert error.reason == expected.reason
            else:
                raise AssertionError(f"{bad!r} decoded")
        else:
            raise AssertionError(f"{bad!r} is valid")


@dataclass
class PausingSink(Sink):
    """A sink asking for cyclic garbage collection paused; notes whether it was, per write."""

    pause_collection = True
    collecting: list[bool] = field(default_factory=list)

    async def store(self, batches: Sequence[PartitionBatch]) -> None:
        self.collecting.append(gc.isenabled())
        await super().store(batches)


async def test_a_sink_that_asks_stores_its_batches_with_cycle_collection_paused() -> None:
    """As reporting's projection does: a batch's thousands of objects are not promoted into
    full collections of the whole heap; the collector runs again once the batch is stored,
    and a sink that does not ask is stored with it running. (A partition's first batch after
    an assignment reads its stored offset, which may wait for the database: collecting.)"""
    assert gc.isenabled()
    pausing = consumer(PausingSink(), pipeline_records=2)
    events = [registered(f"reg-{n}") for n in range(5)]
    await pausing.processor.process([record(0, events[0].to_json_bytes())])
    assert pausing.sink.collecting == [True]

    await pausing.processor.process(
        [record(n, e.to_json_bytes()) for n, e in enumerate(events) if n > 0]
    )

    assert pausing.sink.collecting == [True, False, False]  # both parts of the batch
    assert gc.isenabled()
    assert pausing.sink.stored == {e.id: 1 for e in events}

    plain = consumer(Sink())
    seen: list[bool] = []
    original = plain.sink.store

    async def noting(batches: Sequence[PartitionBatch]) -> None:
        seen.append(gc.isenabled())
        await original(batches)

    plain.sink.store = noting  # type: ignore[method-assign]
    await plain.processor.process([record(0, events[0].to_json_bytes())])
    await plain.processor.process([record(1, events[1].to_json_bytes())])
    assert seen == [True, True]


async def test_a_paused_batch_collects_again_once_its_store_fails() -> None:
    """A database outage may last long: the pause ends with the first failed store."""
    c = consumer(PausingSink())
    first, second = registered("reg-1"), registered("reg-2")
    await c.processor.process([record(0, first.to_json_bytes())])
    c.sink.outages = 2

    await c.processor.process([record(1, second.to_json_bytes())])

    assert c.sink.collecting == [True, False, True, True]  # paused until the first failure
    assert c.sink.stored == {first.id: 1, second.id: 1}
    assert gc.isenabled()


async def test_a_collector_paused_by_someone_else_stays_paused_after_a_batch() -> None:
    c = consumer(PausingSink())
    await c.processor.process([record(0, registered("reg-1").to_json_bytes())])
    gc.disable()
    try:
        await c.processor.process([record(1, registered("reg-2").to_json_bytes())])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert c.sink.collecting == [True, False]


async def test_a_batchs_outcomes_are_counted_once_per_type_and_outcome_when_possible() -> None:
    """With `on_outcomes` (how many at once) a batch of 5 costs one call, not 5."""
    counted: list[tuple[str, str, int]] = []
    c = consumer()
    c.processor._metrics = ProcessorMetrics(
        on_outcome=lambda t, outcome: counted.append((t, outcome, 1)),
        on_outcomes=lambda t, outcome, n: counted.append((t, outcome, n)),
    )
    events = [registered(f"reg-{n}") for n in range(5)]

    await c.processor.process([record(n, e.to_json_bytes()) for n, e in enumerate(events)])

    assert counted == [(ParticipantRegistered.event_type, "processed", 5)]
