"""A running assessment app on in-memory storage and the test broker, with municipal keys
issued the way registration issues them: by MunicipalityKeyIssued events on the topic."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from wok_assessment.adapters.repository import (
    InMemoryAssessmentRepository,
    InMemoryMunicipalityDirectory,
)
from wok_assessment.app import build_app
from wok_assessment.domain.catalogue import Catalogues, load_catalogues
from wok_assessment.settings import AssessmentSettings
from wok_contracts import (
    MunicipalityKeyIssued,
    MunicipalityKeyRevoked,
    MunicipalityRegistered,
    decode_envelope,
    new_envelope,
)
from wok_contracts.topics import ASSESSMENT_EVENTS, REGISTRATION_EVENTS
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.municipal_keys import InMemoryKeyDirectory, hash_key
from wok_runtime.service import ServiceRuntime

SERVICE_KEY = "assessment-tests-service-key"

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
TRIER = "07211000"


@dataclass
class Harness:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    broker: Any
    repository: InMemoryAssessmentRepository
    keys: InMemoryKeyDirectory
    published: list[tuple[bytes | None, bytes]]
    municipal_keys: dict[str, str] = field(default_factory=dict)

    async def onboard(self, ags: str, name: str = "Modellstadt") -> dict[str, str]:
        """Registration's events for a new municipality; answers its Authorization header."""
        key = f"key-{uuid.uuid4().hex}"
        for data in (
            MunicipalityRegistered(ags=ags, name=name, kind="city", land=ags[:2]),
            MunicipalityKeyIssued(ags=ags, key_id=f"id-{key}", key_hash=hash_key(key)),
        ):
            envelope = new_envelope(data, source="/wok/registration", municipality=ags)
            await self.broker.publish(
                envelope.to_json_bytes(), REGISTRATION_EVENTS, key=ags.encode()
            )
        self.municipal_keys[ags] = key
        return {"Authorization": f"Bearer {key}"}

    async def revoke(self, ags: str) -> None:
        key = self.municipal_keys[ags]
        envelope = new_envelope(
            MunicipalityKeyRevoked(ags=ags, key_id=f"id-{key}"),
            source="/wok/registration",
            municipality=ags,
        )
        await self.broker.publish(envelope.to_json_bytes(), REGISTRATION_EVENTS, key=ags.encode())

    async def published_events(self) -> list[Any]:
        await self.runtime.relay.drain_once()
        return [decode_envelope(value) for _, value in self.published]

    async def published_keys(self) -> list[bytes | None]:
        await self.runtime.relay.drain_once()
        return [key for key, _ in self.published]


HarnessFactory = Callable[..., contextlib.AbstractAsyncContextManager[Harness]]


@pytest.fixture
def catalogues() -> Catalogues:
    return load_catalogues()


@pytest.fixture
async def harness(catalogues: Catalogues) -> AsyncIterator[Harness]:
    async with running_harness(catalogues) as running:
        yield running


@pytest.fixture
def make_harness() -> HarnessFactory:
    """Another app over given storage (e.g. after a new catalogue version is published)."""
    return running_harness


@contextlib.asynccontextmanager
async def running_harness(
    catalogues: Catalogues,
    *,
    repository: InMemoryAssessmentRepository | None = None,
    keys: InMemoryKeyDirectory | None = None,
) -> AsyncIterator[Harness]:
    settings = AssessmentSettings(service_key=SERVICE_KEY)
    runtime = ServiceRuntime(name="assessment", settings=settings)
    repository = repository or InMemoryAssessmentRepository()
    keys = keys or InMemoryKeyDirectory()
    app = build_app(
        settings,
        runtime=runtime,
        directory=InMemoryMunicipalityDirectory(),
        repository=repository,
        keys=keys,
        catalogues=catalogues,
        processed=InMemoryProcessedStore(),
    )
    published: list[tuple[bytes | None, bytes]] = []

    @runtime.broker.subscriber(ASSESSMENT_EVENTS)
    async def capture(message: KafkaMessage) -> None:
        published.append((message.raw_message.key, message.raw_message.value))

    async with TestKafkaBroker(runtime.broker) as broker:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://assessment") as client:
            yield Harness(client, runtime, broker, repository, keys, published)
