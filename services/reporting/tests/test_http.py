"""The federal API's access rule: aggregates only with the federal office's key."""

import pytest
from faststream.kafka import TestKafkaBroker
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from wok_reporting.adapters.repository import (
    InMemoryProjectionRepository,
    InMemorySnapshotRepository,
)
from wok_reporting.app import build_app
from wok_reporting.domain import PROGRAM
from wok_runtime.consumer import InMemoryProcessedStore


def client_for(app) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://reporting")


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-key", "Bearer ", "Basic ZmVkZXJhbDpmZWRlcmFsLXRlc3Qta2V5", "federal-test"],
    ids=["missing", "wrong", "empty", "basic-scheme", "no-scheme"],
)
async def test_aggregates_are_refused_without_the_federal_key(service, authorization) -> None:
    headers = {"Authorization": authorization} if authorization else {}

    async with client_for(service.app) as client:
        program = await client.get("/v1/aggregates/program", headers=headers)
        municipality = await client.get("/v1/aggregates/municipalities/07312000", headers=headers)

    assert program.status_code == 401
    assert program.headers["www-authenticate"] == "Bearer"
    assert municipality.status_code == 401


async def test_the_federal_key_reads_the_program_snapshot(service) -> None:
    async with TestKafkaBroker(service.runtime.broker):
        await service.publisher.publish_changes(force=(PROGRAM,))

    async with client_for(service.app) as client:
        response = await client.get(
            "/v1/aggregates/program", headers={"Authorization": f"Bearer {service.federal_key}"}
        )

    assert response.status_code == 200
    body = response.json()
    assert body["scope"] == "program"
    assert body["sequence"] == 1
    assert body["suppressed"] == []


async def test_without_a_configured_key_nobody_reads_aggregates(settings) -> None:
    settings = settings.model_copy(update={"federal_key": SecretStr("")})
    app = build_app(
        settings,
        projections=InMemoryProjectionRepository(),
        snapshots=InMemorySnapshotRepository(),
        processed=InMemoryProcessedStore(),
    )

    async with client_for(app) as client:
        response = await client.get("/v1/aggregates/program", headers={"Authorization": "Bearer "})

    assert response.status_code == 401


async def test_unknown_and_invalid_municipalities_are_told_apart(service) -> None:
    auth = {"Authorization": f"Bearer {service.federal_key}"}

    async with client_for(service.app) as client:
        unknown = await client.get("/v1/aggregates/municipalities/07312000", headers=auth)
        invalid = await client.get("/v1/aggregates/municipalities/73120", headers=auth)
        invalid_long = await client.get("/v1/aggregates/municipalities/0731200", headers=auth)

    assert unknown.status_code == 404
    assert invalid.status_code == 422
    assert "Land code 73" in invalid.text
    assert invalid_long.status_code == 422


async def test_before_the_first_snapshot_the_program_is_not_yet_available(service) -> None:
    async with client_for(service.app) as client:
        response = await client.get(
            "/v1/aggregates/program", headers={"Authorization": f"Bearer {service.federal_key}"}
        )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"


async def test_health_needs_no_key(service) -> None:
    async with client_for(service.app) as client:
        response = await client.get("/healthz")

    assert response.json() == {"status": "ok", "service": "reporting"}
