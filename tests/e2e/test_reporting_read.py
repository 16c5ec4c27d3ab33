"""Reporting's rebuild reads every message on the embedded broker, batched ones included."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import unique_ags
from wok_cli.devstack import EmbeddedStack
from wok_contracts import MunicipalityKind, MunicipalityProfileUpdated, new_envelope
from wok_reporting.rebuild import read_topics
from wok_reporting.settings import ReportingSettings


async def test_a_rebuild_reads_the_whole_of_a_batch_written_last(stack: EmbeddedStack) -> None:
    """tansu reports a partition's end as its last record batch's base offset + 1; a read
    that stopped there would miss the rest of a batch of several records."""
    ags = unique_ags()
    values = [
        new_envelope(
            MunicipalityProfileUpdated(
                ags=ags,
                name=f"Gemeinde {n} {uuid.uuid4().hex[:6]}",
                kind=MunicipalityKind.TOWN,
                land=ags[:2],
            ),
            source="/e2e/batch",
            municipality=ags,
        ).to_json_bytes()
        for n in range(12)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        topic = f"{stack.settings.topic_prefix}registration.events.v1"
        sent = [await producer.send(topic, value, key=ags.encode()) for value in values]
        offsets = [metadata.offset for metadata in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    assert offsets == list(range(offsets[0], offsets[0] + 12))  # one batch, one partition

    settings = ReportingSettings(
        kafka_bootstrap=stack.kafka_bootstrap, topic_prefix=stack.settings.topic_prefix
    )
    read, _ = await read_topics(settings)

    assert set(values) <= set(read)
