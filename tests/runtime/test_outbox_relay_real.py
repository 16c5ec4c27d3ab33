"""The outbox relay on the real thing: nx-27017 for the documents, tansu for the topic.

Twins of the in-memory tests in test_outbox_relay.py: every event reaches the topic once,
each municipality's in the order written, and a round marks what it published with one
bulk write per collection.
"""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings
from wok_contracts import MunicipalityRegistered, new_envelope
from wok_runtime.kafka import KafkaPublisher, build_broker
from wok_runtime.metrics import MongoCommandCounter
from wok_runtime.outbox import (
    OUTBOX_FIELD,
    PENDING_FIELD,
    MongoOutboxSource,
    OutboundEvent,
    OutboxRelay,
    outbox_update,
    pending_messages,
    with_outbox,
)
from wok_runtime.settings import WokSettings

PREFIX = "relay."
REGISTRATION_EVENTS = "registration.events.v1"
MUNICIPALITIES = ["07312000", "07315000", "07111000", "07131000"]


@pytest.fixture(scope="module")
def infrastructure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """tansu and nx-27017 (no services), the platform's topics created with a prefix."""
    settings = StackSettings.with_free_ports(
        data_dir=Path(tmp_path_factory.mktemp("relay")),
        topic_prefix=PREFIX,
        stack_stop_grace_s=5.0,
        stack_ready_timeout_s=30.0,
    )
    with EmbeddedStack(settings, services=()) as stack:
        yield stack


@pytest.fixture
async def database(infrastructure: EmbeddedStack, request: pytest.FixtureRequest) -> Any:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infrastructure.mongodb_uri)
    yield client[f"relay_{request.node.name[-40:]}"]
    await client.close()


@pytest.fixture
async def publisher(infrastructure: EmbeddedStack) -> AsyncIterator[KafkaPublisher]:
    settings = WokSettings(
        kafka_bootstrap=infrastructure.kafka_bootstrap,
        mongodb_uri=infrastructure.mongodb_uri,
        topic_prefix=PREFIX,
    )
    broker = build_broker(settings, client_id="relay-test")
    await broker.start()
    publisher = KafkaPublisher(broker, settings, client_id="relay-test")
    await publisher.start()  # its own producer: a partition's messages in a few batches
    yield publisher
    await publisher.stop()
    await broker.stop()


def registered(ags: str, name: str) -> OutboundEvent:
    data = MunicipalityRegistered(ags=ags, name=name, kind="city", land=ags[:2])
    return OutboundEvent(
        REGISTRATION_EVENTS, new_envelope(data, source="/wok/registration", municipality=ags)
    )


async def topic_records(bootstrap: str) -> tuple[list[Any], int]:
    """Every record on the registration topic, each partition's in offset order, and the sum
    of the partitions' end offsets."""
    topic = PREFIX + REGISTRATION_EVENTS
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        async with asyncio.timeout(20):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
        return records, sum(ends.values())
    finally:
        await consumer.stop()


async def test_a_round_on_nx_and_tansu_keeps_each_municipality_in_write_order(
    infrastructure: EmbeddedStack, database: Any, publisher: KafkaPublisher
) -> None:
    collection = database["dialogue_events"]
    written: dict[str, list[str]] = {ags: [] for ags in MUNICIPALITIES}
    for ags in MUNICIPALITIES:
        for number in range(3):
            await collection.insert_one(with_outbox({"_id": f"{ags}-{number}"}, []))
    # 120 events: each municipality's spread over three documents, interleaved.
    for round_number in range(10):
        for ags in MUNICIPALITIES:
            for number in range(3):
                event = registered(ags, f"{ags} {round_number} {number}")
                await collection.update_one({"_id": f"{ags}-{number}"}, outbox_update([event]))
                written[ags].append(event.envelope.id)
    commands = MongoCommandCounter(CollectorRegistry())
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        infrastructure.mongodb_uri, event_listeners=[commands]
    )
    try:
        source = MongoOutboxSource(client[database.name]["dialogue_events"])
        relay = OutboxRelay(sources=[source], publisher=publisher)

        assert await relay.drain_once() == 120
    finally:
        await client.close()

    records, end = await topic_records(infrastructure.kafka_bootstrap)
    # Every record is before its partition's end offset, which readers "to the end" trust
    # (tansu counts a multi-record batch as one there; the publisher sends one per batch).
    assert len(records) == end == 120
    on_topic: dict[str, list[str]] = {ags: [] for ags in MUNICIPALITIES}
    for record in records:
        on_topic[record.key.decode()].append(json.loads(record.value)["id"])
    assert on_topic == written
    by_name = collections.Counter[str]()
    for (name, _), count in commands.counts().items():
        by_name[name] += count
    assert by_name["update"] == 1  # one bulk write for the twelve documents
    assert by_name["find"] == 1  # fewer documents than a batch: one round
    async for document in collection.find({}):
        assert document[PENDING_FIELD] == 0
        assert document[OUTBOX_FIELD] == {}


async def test_marking_in_bulk_on_nx_removes_exactly_the_published_entries(
    database: Any,
) -> None:
    collection = database["deliveries"]
    first, second = (registered(MUNICIPALITIES[0], f"A {n}") for n in range(2))
    third, fourth = (registered(MUNICIPALITIES[1], f"B {n}") for n in range(2))
    await collection.insert_one(with_outbox({"_id": "a", "kept": 1}, [first, second]))
    await collection.insert_one(with_outbox({"_id": "b"}, [third, fourth]))
    source = MongoOutboxSource(collection)
    documents = {d["_id"]: d for d in await source.documents_with_pending(10)}
    a_first, _ = pending_messages(documents["a"])
    b_third, b_fourth = pending_messages(documents["b"])

    await source.mark_all_published([a_first, b_third, b_fourth])

    a = await collection.find_one({"_id": "a"})
    b = await collection.find_one({"_id": "b"})
    assert (a[PENDING_FIELD], list(a[OUTBOX_FIELD]), a["kept"]) == (1, [second.envelope.id], 1)
    assert (b[PENDING_FIELD], b[OUTBOX_FIELD]) == (0, {})

    # Marked again (a second relay got there first): no counter goes below what is pending.
    await source.mark_all_published([a_first, b_third])
    a = await collection.find_one({"_id": "a"})
    b = await collection.find_one({"_id": "b"})
    assert (a[PENDING_FIELD], list(a[OUTBOX_FIELD])) == (1, [second.envelope.id])
    assert b[PENDING_FIELD] == 0
    assert [d["_id"] for d in await source.documents_with_pending(10)] == ["a"]


async def test_finding_pending_events_on_nx_reads_the_pending_index_not_every_document(
    database: Any,
) -> None:
    collection = database["deliveries"]
    await collection.insert_many([with_outbox({"_id": f"sent-{n}"}, []) for n in range(50)])
    waiting = registered(MUNICIPALITIES[0], "waiting")
    await collection.insert_one(with_outbox({"_id": "waiting"}, [waiting]))
    source = MongoOutboxSource(collection)

    await source.ensure_indexes()
    await source.ensure_indexes()  # at every start: nothing changes

    plan = await collection.find({PENDING_FIELD: {"$gt": 0}}).explain()
    assert "USING INDEX" in str(plan["queryPlanner"]["winningPlan"])
    (document,) = await source.documents_with_pending(10)
    assert [m.event_id for m in pending_messages(document)] == [waiting.envelope.id]
