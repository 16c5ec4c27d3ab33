from __future__ import annotations

import httpx
from faststream.kafka import TestKafkaBroker

from wok_assessment.adapters.repository import InMemoryMunicipalityDirectory
from wok_assessment.app import build_app
from wok_assessment.settings import AssessmentSettings
from wok_contracts import MunicipalityRegistered, new_envelope
from wok_contracts.topics import REGISTRATION_EVENTS
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.service import ServiceRuntime


async def test_a_registered_municipality_becomes_known_and_the_seven_fields_are_served() -> None:
    settings = AssessmentSettings()
    runtime = ServiceRuntime(name="assessment", settings=settings)
    directory = InMemoryMunicipalityDirectory()
    app = build_app(
        settings, runtime=runtime, directory=directory, processed=InMemoryProcessedStore()
    )
    envelope = new_envelope(
        MunicipalityRegistered(ags="07312000", name="Kaiserslautern", kind="city", land="07"),
        source="/test",
        municipality="07312000",
    )
    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(envelope.to_json_bytes(), REGISTRATION_EVENTS, key=b"07312000")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://assessment") as client:
        known = await client.get("/v1/municipalities/07312000")
        unknown = await client.get("/v1/municipalities/05911000")
        fields = await client.get("/v1/fields")
    assert known.json() == {"ags": "07312000", "name": "Kaiserslautern", "land": "07"}
    assert unknown.status_code == 404
    assert [f["number"] for f in fields.json()] == [1, 2, 3, 4, 5, 6, 7]
    assert fields.json()[5]["name_de"] == "Zusammenhalt und Begegnung"
