"""A running exchange app on in-memory storage and FastStream's test broker, fed the events
registration, assessment and reporting publish."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage

from wok_contracts import (
    ActivityDigest,
    ActivityKind,
    AssessmentLevel,
    AssessmentScored,
    EventData,
    FieldScore,
    MeasurePlanned,
    MeasureStatus,
    MeasureStatusChanged,
    MunicipalityKeyIssued,
    MunicipalityRegistered,
    decode_envelope,
    new_envelope,
)
from wok_contracts.topics import (
    ASSESSMENT_EVENTS,
    EXCHANGE_ACTIVITY,
    EXCHANGE_PEERS,
    REGISTRATION_EVENTS,
)
from wok_exchange.adapters import InMemoryExchangeRepository
from wok_exchange.app import build_app
from wok_exchange.settings import ExchangeSettings
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.municipal_keys import InMemoryKeyDirectory, hash_key
from wok_runtime.service import ServiceRuntime

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def scored(
    ags: str,
    *,
    sequence: int = 1,
    strengths: tuple[int, ...] = (),
    deficits: tuple[int, ...] = (),
    scores: dict[int, float] | None = None,
) -> AssessmentScored:
    values = scores or {}
    return AssessmentScored(
        self_check_id=f"sc-{ags}-{sequence}",
        ags=ags,
        sequence=sequence,
        catalogue_version="2026.1",
        fields=[
            FieldScore(
                field=number,
                score=values.get(
                    number, 80.0 if number in strengths else 20.0 if number in deficits else 50.0
                ),
                level=AssessmentLevel.DEVELOPING,
                coverage=1.0,
                answered=8,
                questions=8,
            )
            for number in range(1, 8)
        ],
        overall=50.0,
        overall_level=AssessmentLevel.DEVELOPING,
        strengths=list(strengths),
        deficits=list(deficits),
    )


def measure_planned(ags: str, field_number: int, title: str, measure_id: str) -> MeasurePlanned:
    return MeasurePlanned(
        measure_id=measure_id,
        ags=ags,
        field=field_number,
        title=title,
        owner_role="Integrationsbüro",
        status=MeasureStatus.PLANNED,
    )


def measure_running(ags: str, field_number: int, measure_id: str) -> MeasureStatusChanged:
    return MeasureStatusChanged(
        measure_id=measure_id,
        ags=ags,
        field=field_number,
        previous_status=MeasureStatus.PLANNED,
        status=MeasureStatus.RUNNING,
        changed_on=date(2026, 5, 2),
    )


def digest(ags: str, name: str) -> ActivityDigest:
    return ActivityDigest(
        municipality=ags,
        municipality_name=name,
        kind=ActivityKind.DIALOGUE_EVENT_SCHEDULED,
        text_de=f"{name} hat eine Dialogveranstaltung angesetzt.",
        text_en=f"{name} scheduled a dialogue event.",
        occurred_at=T0,
        subject_id="dlg-1",
        source_event_id=str(uuid.uuid4()),
    )


@dataclass
class Harness:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    broker: Any
    repository: InMemoryExchangeRepository
    published: list[tuple[bytes | None, bytes]]
    keys: dict[str, str] = field(default_factory=dict)

    async def deliver(self, topic: str, data: EventData, *, ags: str) -> Any:
        envelope = new_envelope(data, source="/test", municipality=ags)
        await self.broker.publish(envelope.to_json_bytes(), topic, key=ags.encode())
        return envelope

    async def redeliver(self, topic: str, envelope: Any) -> None:
        await self.broker.publish(
            envelope.to_json_bytes(), topic, key=envelope.municipality.encode()
        )

    async def onboard(self, ags: str, name: str) -> dict[str, str]:
        key = f"key-{uuid.uuid4().hex}"
        await self.deliver(
            REGISTRATION_EVENTS,
            MunicipalityRegistered(ags=ags, name=name, kind="city", land=ags[:2]),
            ags=ags,
        )
        await self.deliver(
            REGISTRATION_EVENTS,
            MunicipalityKeyIssued(ags=ags, key_id=f"id-{key}", key_hash=hash_key(key)),
            ags=ags,
        )
        self.keys[ags] = key
        return {"Authorization": f"Bearer {key}"}

    async def score(self, data: AssessmentScored) -> Any:
        return await self.deliver(ASSESSMENT_EVENTS, data, ags=data.ags)

    async def activity(self, data: ActivityDigest) -> Any:
        return await self.deliver(EXCHANGE_ACTIVITY, data, ags=data.municipality)

    scored = staticmethod(scored)
    measure_planned = staticmethod(measure_planned)
    measure_running = staticmethod(measure_running)
    digest = staticmethod(digest)

    async def published_events(self) -> list[tuple[bytes | None, Any]]:
        await self.runtime.relay.drain_once()
        return [(key, decode_envelope(value)) for key, value in self.published]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = ExchangeSettings()
    runtime = ServiceRuntime(name="exchange", settings=settings)
    repository = InMemoryExchangeRepository()
    app = build_app(
        settings,
        runtime=runtime,
        repository=repository,
        keys=InMemoryKeyDirectory(),
        processed=InMemoryProcessedStore(),
    )
    published: list[tuple[bytes | None, bytes]] = []

    @runtime.broker.subscriber(EXCHANGE_PEERS)
    async def capture(message: KafkaMessage) -> None:
        published.append((message.raw_message.key, message.raw_message.value))

    async with TestKafkaBroker(runtime.broker) as broker:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exchange") as client:
            yield Harness(client, runtime, broker, repository, published)
