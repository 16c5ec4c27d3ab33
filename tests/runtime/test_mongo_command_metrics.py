"""Every service counts its MongoDB commands by command and collection on /metrics
(`wok_mongo_commands_total`, `wok_mongo_command_failures_total`), against nx-27017."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter
from prometheus_client.parser import text_string_to_metric_families
from pymongo.errors import DuplicateKeyError, OperationFailure

from wok_runtime.service import ServiceRuntime
from wok_runtime.settings import WokSettings


def samples(exposition: str, name: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["command"], sample.labels["collection"]): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name
    }


async def test_finds_inserts_and_failures_are_counted_by_command_and_collection(
    mongodb_uri: str,
) -> None:
    runtime = ServiceRuntime(name="metricsprobe", settings=WokSettings(mongodb_uri=mongodb_uri))
    things = runtime.database["things"]
    await things.delete_many({})
    router = APIRouter()

    @router.post("/v1/things/{thing_id}")
    async def add(thing_id: str) -> dict[str, bool]:
        try:
            await things.insert_one({"_id": thing_id, "contact": "anna@example.org"})
        except DuplicateKeyError:
            return {"added": False}
        return {"added": True}

    @router.get("/v1/things/{thing_id}")
    async def read(thing_id: str) -> dict[str, bool]:
        return {"found": await things.find_one({"_id": thing_id}) is not None}

    app = runtime.http_app(title="probe", routers=[router])
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://probe"
        ) as client:
            before = (await client.get("/metrics")).text
            assert (await client.post("/v1/things/t-1")).json() == {"added": True}
            assert (await client.post("/v1/things/t-2")).json() == {"added": True}
            assert (await client.post("/v1/things/t-1")).json() == {"added": False}
            assert (await client.get("/v1/things/t-2")).json() == {"found": True}
            exposition = (await client.get("/metrics")).text
    finally:
        await runtime.database.client.close()

    assert samples(before, "wok_mongo_commands_total").get(("insert", "things"), 0) == 0
    commands = samples(exposition, "wok_mongo_commands_total")
    assert commands[("insert", "things")] == 3
    assert commands[("find", "things")] == 1
    assert commands[("delete", "things")] == 1
    waited = samples(exposition, "wok_mongo_command_seconds_total")
    assert 0 < waited[("find", "things")] < 5
    assert 0 < waited[("insert", "things")] < 5
    # a duplicate key is an error inside a successful answer (writeErrors), not a failed
    # command; a failed command is one the server refused or the connection lost
    assert samples(exposition, "wok_mongo_command_failures_total").get(("insert", "things"), 0) == 0
    # names only: nothing of the documents or queries
    assert "anna@example.org" not in exposition
    assert "t-1" not in exposition


async def test_a_refused_command_is_counted_as_failed(mongodb_uri: str) -> None:
    runtime = ServiceRuntime(name="metricsprobe", settings=WokSettings(mongodb_uri=mongodb_uri))
    try:
        with pytest.raises(OperationFailure):
            await runtime.database["things"].aggregate([{"$noSuchStage": {}}])
    finally:
        await runtime.database.client.close()
    registry = runtime.metrics.registry
    labels = {"command": "aggregate", "collection": "things"}
    assert registry.get_sample_value("wok_mongo_commands_total", labels) == 1
    assert registry.get_sample_value("wok_mongo_command_failures_total", labels) == 1
