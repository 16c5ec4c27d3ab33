"""A municipality's self-check across the real stack: registration's key events authenticate
it at assessment, and the scored result reaches assessment.events.v1 keyed by its AGS."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually, read_topic
from wok_cli.devstack import EmbeddedStack


async def onboard(stack: EmbeddedStack, ags: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        response = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": f"Modellkommune {ags}", "kind": "town"},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
        )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


async def test_a_self_check_is_authenticated_by_key_events_scored_and_published(
    stack: EmbeddedStack,
) -> None:
    ags, other_ags = unique_ags(), unique_ags()
    key, other_key = await onboard(stack, ags), await onboard(stack, other_ags)
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as client:

        async def start() -> httpx.Response:
            return await client.post(f"/v1/municipalities/{ags}/self-checks", headers=key)

        started = await eventually(
            start, lambda r: r.status_code != 401, what="assessment learning the key"
        )
        assert started.status_code == 201, started.text
        draft = started.json()["id"]
        catalogue = (await client.get("/v1/catalogue")).json()
        answers = {
            q["id"]: "partly" for field in catalogue["fields"][:4] for q in field["questions"]
        }
        patched = await client.patch(
            f"/v1/self-checks/{draft}/answers", json={"answers": answers}, headers=key
        )
        assert patched.status_code == 200, patched.text
        await eventually(
            lambda: client.get(f"/v1/self-checks/{draft}", headers=other_key),
            lambda r: r.status_code == 403,
            what="another municipality's key refused",
        )
        submitted = await client.post(f"/v1/self-checks/{draft}/submit", headers=key)
        assert submitted.status_code == 200, submitted.text
        result = submitted.json()
        assert [f["score"] for f in result["fields"]] == [66.7] * 4 + [None] * 3
        assert result["overall"] == 66.7 and result["overall_level"] == "advanced"
        report = await client.get(f"/v1/municipalities/{ags}/report", headers=key)
        assert report.status_code == 200 and "<svg" in report.text

    topic = f"{stack.settings.topic_prefix}assessment.events.v1"

    async def scored() -> list[dict[str, Any]]:
        records = await read_topic(stack.kafka_bootstrap, topic)
        return [
            json.loads(r.value)
            for r in records
            if r.key == ags.encode()
            and json.loads(r.value)["type"] == "assessment.self_check.scored.v1"
        ]

    [event] = await eventually(scored, lambda found: len(found) == 1, what="AssessmentScored")
    assert event["municipality"] == ags and event["data"]["self_check_id"] == draft
    assert [f["level"] for f in event["data"]["fields"]][:5] == ["advanced"] * 4 + [
        "insufficient_data"
    ]


async def test_a_rotated_key_replaces_the_old_one_at_assessment(stack: EmbeddedStack) -> None:
    ags = unique_ags()
    old_key = await onboard(stack, ags)
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as client:

        async def benchmark(headers: dict[str, str]) -> httpx.Response:
            return await client.get(f"/v1/municipalities/{ags}/benchmark", headers=headers)

        await eventually(
            lambda: benchmark(old_key), lambda r: r.status_code == 200, what="the first key"
        )
        async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as reg:
            rotated = await reg.post(
                f"/v1/municipalities/{ags}/keys",
                headers={"Authorization": f"Bearer {stack.admin_key}"},
            )
        assert rotated.status_code == 201, rotated.text
        new_key = {"Authorization": f"Bearer {rotated.json()['api_key']}"}
        await eventually(
            lambda: benchmark(new_key), lambda r: r.status_code == 200, what="the rotated key"
        )
        assert (await benchmark(old_key)).status_code == 401
