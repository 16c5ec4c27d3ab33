"""The federal API: aggregates and exports only with the federal office's key."""

import csv
import io
import re
from pathlib import Path

import pytest
from faststream.kafka import TestKafkaBroker
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr

from wok_contracts import Sector
from wok_reporting.adapters.repository import (
    InMemoryProjectionRepository,
    InMemorySnapshotRepository,
)
from wok_reporting.app import build_app
from wok_reporting.domain import PROGRAM


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


# --- Land scope and exports ---------------------------------------------------------------

DICTIONARY = Path(__file__).resolve().parents[3] / "docs" / "data-dictionary.md"


def documented_columns() -> set[str]:
    """Every column the dictionary's tables name in their first cell, with `<subject>`
    (field_1 … field_7, overall) and `<n>` (1 … 7) spelt out."""
    names: set[str] = set()
    for first_cell in re.findall(r"^\| (`[^|]+) \|", DICTIONARY.read_text(), flags=re.MULTILINE):
        for name in re.findall(r"`([a-z_<>0-9]+)`", first_cell):
            for subject in [*(f"field_{n}" for n in range(1, 8)), "overall"]:
                for n in range(1, 8):
                    names.add(name.replace("<subject>", subject).replace("<n>", str(n)))
    return names


async def played(service, events) -> None:
    """Kaiserslautern 12 registrations (3 business), Mainz 7, Bochum 6, on the test broker."""
    async with TestKafkaBroker(service.runtime.broker) as broker:
        for ags, count in ((events.KAISERSLAUTERN, 12), (events.MAINZ, 7), ("05911000", 6)):
            dialogue = events.dialogue_event_scheduled(ags)
            payloads = [events.municipality_registered(ags), dialogue] + [
                events.participant_registered(
                    dialogue_event_id=dialogue.dialogue_event_id,
                    ags=ags,
                    sector=Sector.BUSINESS
                    if n < 3 and ags == events.KAISERSLAUTERN
                    else Sector.RESIDENT,
                )
                for n in range(count)
            ]
            for data in payloads:
                await broker.publish(
                    events.envelope(data).to_json_bytes(),
                    topic="registration.events.v1",
                    key=ags.encode(),
                )
        await service.publisher.publish_changes()


async def test_the_federal_office_reads_a_land_and_all_scopes(service, events) -> None:
    await played(service, events)
    auth = {"Authorization": f"Bearer {service.federal_key}"}

    async with client_for(service.app) as client:
        land = await client.get("/v1/aggregates/lands/07", headers=auth)
        unknown = await client.get("/v1/aggregates/lands/09", headers=auth)
        invalid = await client.get("/v1/aggregates/lands/17", headers=auth)
        every = await client.get("/v1/aggregates", headers=auth)

    assert land.status_code == 200
    assert land.json()["scope"] == "land"
    assert land.json()["metrics"]["registrations_total"] == 19
    assert land.json()["metrics"]["municipalities"] == 2
    assert unknown.status_code == 404
    assert invalid.status_code == 422
    assert [(s["scope"], s["scope_key"]) for s in every.json()] == [
        ("program", "program"),
        ("land", "05"),
        ("land", "07"),
        ("municipality", "05911000"),
        ("municipality", "07312000"),
        ("municipality", "07315000"),
    ]


async def test_exports_keep_withheld_cells_withheld_and_document_every_column(
    service, events
) -> None:
    await played(service, events)
    auth = {"Authorization": f"Bearer {service.federal_key}"}

    async with client_for(service.app) as client:
        as_csv = await client.get("/v1/aggregates/export.csv", headers=auth)
        as_json = await client.get("/v1/aggregates/export.json", headers=auth)
        one = await client.get(
            "/v1/aggregates/export.json", params={"scope": "municipality:07312000"}, headers=auth
        )
        daily = await client.get("/v1/aggregates/daily-registrations.csv", headers=auth)
        bad_scope = await client.get(
            "/v1/aggregates/export.csv", params={"scope": "land:99"}, headers=auth
        )
        refused = await client.get("/v1/aggregates/export.csv")

    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["x-data-dictionary-version"] == "1.1"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert set(rows[0]) <= documented_columns()
    assert set(csv.DictReader(io.StringIO(daily.text)).fieldnames or ()) <= documented_columns()
    kaiserslautern = next(r for r in rows if r["scope_key"] == "07312000")
    assert kaiserslautern["registrations_total"] == "12"
    assert kaiserslautern["registrations_sector_business"] == "."  # 3 people: withheld
    assert kaiserslautern["registrations_sector_resident"] == "."  # else 12 - 9 = 3
    assert kaiserslautern["land_name"] == "Rheinland-Pfalz"
    program = next(r for r in rows if r["scope"] == "program")
    assert program["registrations_total"] == "25"
    body = as_json.json()
    assert body["data_dictionary_version"] == "1.1"
    json_kl = next(r for r in body["rows"] if r["scope_key"] == "07312000")
    assert json_kl["metrics"]["registrations_sector_business"] is None
    assert "registrations_sector_business" in json_kl["withheld"]
    assert [r["scope_key"] for r in one.json()["rows"]] == ["07312000"]
    assert bad_scope.status_code == 422
    assert refused.status_code == 401
    days = list(csv.DictReader(io.StringIO(daily.text)))
    assert {(d["scope"], d["registrations"]) for d in days if d["scope"] == "program"} == {
        ("program", "25")
    }
