"""Reporting on the embedded stack: Land snapshots, the activity stream, and the rebuild."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import accounts_for, eventually, latest_snapshot, read_topic
from wok_cli.devstack import EmbeddedStack
from wok_cli.main import app
from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    MunicipalityKind,
    MunicipalityRegistered,
    ParticipantCancelled,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    new_envelope,
)
from wok_reporting.adapters.mongo import MongoProjectionRepository
from wok_runtime.mongo import mongo_client


async def test_a_municipality_system_publishes_and_reporting_follows(
    stack: EmbeddedStack, producer: AIOKafkaProducer
) -> None:
    prefix = stack.settings.topic_prefix
    ags = unique_ags()
    event_id = f"event-{uuid.uuid4().hex[:8]}"
    starts = datetime(2030, 12, 10, 17, 0, tzinfo=UTC)
    registrations = [
        ParticipantRegistered(
            registration_id=f"registration-{uuid.uuid4().hex[:8]}",
            dialogue_event_id=event_id,
            ags=ags,
            status=RegistrationStatus.CONFIRMED,
            sector=Sector.RESIDENT,
        )
        for _ in range(8)
    ]
    payloads = [
        MunicipalityRegistered(
            ags=ags, name="Modellstadt", kind=MunicipalityKind.CITY, land=ags[:2]
        ),
        DialogueEventScheduled(
            dialogue_event_id=event_id,
            ags=ags,
            title="Dialog",
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            format=EventFormat.ONLINE,
            capacity=30,
            registration_deadline=starts - timedelta(days=10),
        ),
        *registrations,
        ParticipantCancelled(
            registration_id=registrations[0].registration_id,
            dialogue_event_id=event_id,
            ags=ags,
            previous_status=RegistrationStatus.CONFIRMED,
        ),
    ]
    for data in payloads:
        envelope = new_envelope(data, source="/e2e/municipality-system", municipality=ags)
        await producer.send_and_wait(
            f"{prefix}registration.events.v1", envelope.to_json_bytes(), key=ags.encode()
        )

    aggregates = f"{prefix}exchange.aggregates.v1"
    municipality = await eventually(
        lambda: latest_snapshot(stack.kafka_bootstrap, aggregates, f"municipality:{ags}"),
        lambda s: accounts_for(
            s,
            {"registrations_total": 8, "registrations_confirmed": 7, "registrations_cancelled": 1},
        ),
        what="the municipality snapshot",
    )
    # People counts may be withheld as complements of other municipalities' small cells on
    # the shared stack; the dialogue events are not people and always published.
    assert municipality["metrics"]["dialogue_events"] == 1
    land = await latest_snapshot(stack.kafka_bootstrap, aggregates, f"land:{ags[:2]}")
    assert land is not None and land["scope"] == "land"
    assert land["metrics"]["municipalities"] >= 1

    async def digests() -> list[dict]:
        records = await read_topic(stack.kafka_bootstrap, f"{prefix}exchange.activity.v1")
        return [json.loads(r.value) for r in records if r.key == ags.encode()]

    found = await eventually(digests, lambda d: len(d) == 2, what="the activity digests")
    assert [d["data"]["kind"] for d in found] == ["municipality_joined", "dialogue_event_scheduled"]
    assert (
        found[1]["data"]["text_en"] == "Modellstadt scheduled a dialogue event on 10 December 2030."
    )
    assert found[1]["type"] == "reporting.activity.digest.v1"

    # The rebuild recomputes the projections from the topics and ends where live consumption did.
    client = mongo_client(stack.mongodb_uri)
    try:
        projections = MongoProjectionRepository(client["wok_reporting"])
        before = await projections.load()
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["reporting", "rebuild", "--data-dir", str(stack.data_dir)]
        )
        assert result.exit_code == 0, result.output
        assert "the rebuilt state equals the stored one" in result.output
        after = await projections.load()
    finally:
        await client.close()
    assert after == before
    assert any(row.ags == ags and row.status == "cancelled" for row in after.registrations)
    # Nothing announced twice: the digests of this municipality are still two.
    await asyncio.sleep(1)
    assert len(await digests()) == 2
