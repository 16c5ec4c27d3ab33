"""The whole platform on the embedded stack, once per test session, as separate processes.

tansu, nx-27017, the SMTP sink and the four services are started here (nothing runs
beforehand); each test keeps to municipalities of its own, so tests share the stack safely.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings

_used_ags: set[str] = set()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    data_dir = tmp_path_factory.mktemp("wok-e2e")
    settings = StackSettings.with_free_ports(data_dir=Path(data_dir), topic_prefix="e2e.")
    with EmbeddedStack(settings) as running:
        yield running


def unique_ags() -> str:
    """A valid municipality key no other test in this session uses (cosmicpython's random refs)."""
    while True:
        ags = f"{random.randint(1, 16):02d}{random.randint(0, 999_999):06d}"
        if ags not in _used_ags:
            _used_ags.add(ags)
            return ags


@pytest.fixture
async def producer(stack: EmbeddedStack) -> AsyncIterator[AIOKafkaProducer]:
    """A plain Kafka producer, as a municipality's own system would use."""
    client = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await client.start()
    try:
        yield client
    finally:
        await client.stop()
