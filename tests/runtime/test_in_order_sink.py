"""`ServiceRuntime.consume` takes batches and runs the handlers one event at a time in the
batch's order (`InOrderHandlerSink`), with every guarantee of a message at a time: each
partition in order, an event id applied once, a failing handler retried and dead-lettered
with the reason, invalid messages dead-lettered whatever their type; and one processed-id
read and one write per batch instead of two round trips per event.

Fast: in-memory processed ids and a recording publisher, no broker; the processed-id store's
batch shapes against nx-27017 at the end. Assessment's and exchange's service tests run it
under FastStream's test broker, tests/faults on the real stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import TestKafkaBroker

from tests.runtime.test_batch_processor import (
    KAISERSLAUTERN,
    TOPIC,
    RecordingPublisher,
    record,
    registered,
)
from tests.runtime.test_keyed_sink import CountingStore, wired
from wok_contracts import Envelope, MunicipalityRegistered, ParticipantRegistered, new_envelope
from wok_runtime.batch import BatchProcessor
from wok_runtime.consumer import (
    DLQ_REASON,
    InMemoryProcessedStore,
    InOrderHandlerSink,
)
from wok_runtime.mongo import PROCESSED_COLLECTION, MongoProcessedStore, mongo_client
from wok_runtime.service import ServiceRuntime
from wok_runtime.settings import WokSettings

CONSUMER = "exchange"
DEAD_LETTERS = "dead-letter.exchange.v1"


@dataclass
class Harness:
    batch: BatchProcessor
    processed: CountingStore
    dead_letters: RecordingPublisher
    outcomes: list[tuple[str, str]] = field(default_factory=list)

    async def play(self, values: list[tuple[int, bytes]]) -> None:
        """Records (partition, value), offsets counted per partition."""
        offsets: dict[int, int] = {}
        records = []
        for partition, value in values:
            offsets[partition] = offsets.get(partition, -1) + 1
            records.append(record(offsets[partition], value, partition=partition))
        await self.batch.process(records)


def harness(handler: Callable[[Envelope[Any]], Any]) -> Harness:
    return Harness(
        *wired(handler, consumer=CONSUMER, dead_letter_topic=DEAD_LETTERS, sink=InOrderHandlerSink)
    )


def onboarding() -> Envelope[Any]:
    return new_envelope(
        MunicipalityRegistered(ags=KAISERSLAUTERN, name="Kaiserslautern", kind="city", land="07"),
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
    )


async def test_events_are_handled_one_at_a_time_each_partition_in_order() -> None:
    active = most = 0
    handled: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        handled.append(envelope.data.registration_id)
        active -= 1

    h = harness(handle)
    names = [("p0-a", 0), ("p1-a", 1), ("p0-b", 0), ("p1-b", 1), ("p0-c", 0)]
    await h.play([(partition, registered(name).to_json_bytes()) for name, partition in names])

    assert most == 1
    assert [n for n in handled if n.startswith("p0")] == ["p0-a", "p0-b", "p0-c"]
    assert [n for n in handled if n.startswith("p1")] == ["p1-a", "p1-b"]
    assert h.outcomes == [(ParticipantRegistered.event_type, "processed")] * 5
    assert h.dead_letters.messages == []


async def test_processed_ids_are_read_and_written_once_per_batch_and_repeats_skipped() -> None:
    applied: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        applied.append(envelope.id)

    h = harness(handle)
    first, second = registered("r-1"), registered("r-2")
    # the same event twice in one batch: applied once
    await h.play([(0, first.to_json_bytes()), (0, second.to_json_bytes())] * 2)
    assert applied == [first.id, second.id]
    assert (h.processed.reads, h.processed.writes) == (1, 1)
    assert await h.processed.seen_many(CONSUMER, [first.id, second.id]) == {first.id, second.id}

    # delivered again in a later batch (a redelivery after a crash): skipped
    await h.play([(0, first.to_json_bytes())])
    assert applied == [first.id, second.id]
    assert h.outcomes.count((ParticipantRegistered.event_type, "processed")) == 2
    assert h.outcomes.count((ParticipantRegistered.event_type, "duplicate")) == 3


async def test_a_failing_handler_is_dead_lettered_with_the_reason_and_not_marked() -> None:
    applied: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        if envelope.data.registration_id == "broken":
            raise ValueError("cannot apply this")
        applied.append(envelope.data.registration_id)

    h = harness(handle)
    broken = registered("broken")
    await h.play([(0, broken.to_json_bytes()), (0, registered("fine").to_json_bytes())])

    assert applied == ["fine"]
    [(topic, key, value, headers)] = h.dead_letters.messages
    assert (topic, key, value) == (DEAD_LETTERS, KAISERSLAUTERN, broken.to_json_bytes())
    assert headers[DLQ_REASON].startswith("handler failed after 3 attempts: ValueError")
    assert headers["wok-dlq-consumer"] == CONSUMER
    assert await h.processed.seen_many(CONSUMER, [broken.id]) == set()


async def test_other_types_are_ignored_and_invalid_messages_dead_lettered_whatever_their_type() -> (
    None
):
    handled: list[str] = []

    async def handle(envelope: Envelope[Any]) -> None:
        handled.append(envelope.id)

    h = harness(handle)
    other = onboarding()  # a type this consumer has no handler for
    invalid = json.loads(other.to_json_bytes())
    invalid["data"]["kind"] = "castle"
    invalid_bytes = json.dumps(invalid).encode()
    await h.play([(0, other.to_json_bytes()), (0, invalid_bytes), (0, b"{not json")])

    assert handled == []
    assert await h.processed.seen_many(CONSUMER, [other.id]) == set()  # never marked
    reasons = [headers[DLQ_REASON] for _, _, _, headers in h.dead_letters.messages]
    assert len(reasons) == 2
    assert reasons[0].startswith(f"invalid {MunicipalityRegistered.event_type}: data.kind")
    assert reasons[1].startswith("not JSON")
    assert (MunicipalityRegistered.event_type, "ignored") in h.outcomes


async def test_the_runtimes_consumer_applies_each_event_once_through_the_broker() -> None:
    runtime = ServiceRuntime(name="exchange", settings=WokSettings())
    handled: list[str] = []

    async def on_registered(envelope: Envelope[MunicipalityRegistered]) -> None:
        handled.append(envelope.id)

    processed = InMemoryProcessedStore()
    runtime.consume(
        group="exchange",
        topics=[TOPIC],
        handlers={MunicipalityRegistered: on_registered},
        processed=processed,
    )
    event = onboarding()
    async with TestKafkaBroker(runtime.broker) as broker:
        for _ in range(2):  # delivered twice
            await broker.publish(event.to_json_bytes(), topic=TOPIC, key=KAISERSLAUTERN.encode())

    assert handled == [event.id]
    assert await processed.seen("exchange", event.id)


# -- the processed ids of a batch on nx-27017 --------------------------------------------------


@pytest.fixture
async def database(mongodb_uri: str) -> AsyncIterator[Any]:
    client = mongo_client(mongodb_uri)
    try:
        yield client[f"wok_runtime_processed_{time.time_ns()}"]
    finally:
        await client.close()


async def test_the_mongo_store_reads_and_marks_a_batch_of_ids_at_once(database: Any) -> None:
    store = MongoProcessedStore(database)
    await store.ensure_indexes()
    await store.mark("exchange", "e-1")

    assert await store.seen_many("exchange", ["e-1", "e-2", "e-3"]) == {"e-1"}
    assert await store.seen_many("assessment", ["e-1"]) == set()
    # e-1 is there already: the others are still written, the duplicate is not an error
    await store.mark_many("exchange", ["e-1", "e-2", "e-3"])
    await store.mark_many("exchange", [])

    assert await store.seen_many("exchange", ["e-1", "e-2", "e-3", "e-4"]) == {"e-1", "e-2", "e-3"}
    assert await store.seen("exchange", "e-3")
    ids = sorted([d["_id"] async for d in database[PROCESSED_COLLECTION].find({})])
    assert ids == ["exchange:e-1", "exchange:e-2", "exchange:e-3"]
