"""Reporting follows a municipality's self-check, workshop and measures across the real stack:
assessment's events become the self-check funnel, field scores with ranks, the workshop gap,
measures by status, activity digests, and the federal API's field scope."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import accounts_for, eventually, latest_snapshot, read_topic
from tests.e2e.test_assessment import onboard
from wok_cli.demo import AssessmentPlayed, Endpoints, Played
from wok_cli.demo_reporting import reporting_checks
from wok_cli.devstack import EmbeddedStack


async def test_a_self_check_workshop_and_measure_reach_the_aggregates_and_the_exchange(
    stack: EmbeddedStack,
) -> None:
    ags = unique_ags()
    key = await onboard(stack, ags)
    name = f"Modellkommune {ags}"
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as client:
        started = await eventually(
            lambda: client.post(f"/v1/municipalities/{ags}/self-checks", headers=key),
            lambda r: r.status_code != 401,
            what="assessment learning the key",
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
        submitted = await client.post(f"/v1/self-checks/{draft}/submit", headers=key)
        assert submitted.status_code == 200, submitted.text
        result = submitted.json()
        score = result["fields"][0]["score"]  # field 1: 66.7
        for rating in (50, 60, 70, 80, 90):  # five workshop participants rate field 1
            recorded = await client.post(
                f"/v1/municipalities/{ags}/perspectives",
                json={
                    "workshop": "2026-11 Auftakt",
                    "stakeholder_group": "civil_society",
                    "ratings": {"1": rating},
                },
                headers=key,
            )
            assert recorded.status_code == 201, recorded.text
        measure = await client.post(
            f"/v1/municipalities/{ags}/measures",
            json={"field": 6, "title": "Begegnungsorte", "owner_role": "Integrationsbüro"},
            headers=key,
        )
        assert measure.status_code == 201, measure.text
        running = await client.patch(
            f"/v1/municipalities/{ags}/measures/{measure.json()['id']}",
            json={"status": "running"},
            headers=key,
        )
        assert running.status_code == 200, running.text

    prefix = stack.settings.topic_prefix
    aggregates = f"{prefix}exchange.aggregates.v1"
    expected = {
        "self_checks_started": 1,
        "self_checks_submitted": 1,
        "self_checks_scored": 1,
        "measures": 1,
        "measures_running": 1,
        "measures_field_6": 1,
        "perspectives": 5,  # people: exact, or withheld as a complement
        "perspectives_field_1": 5,
    }
    own = await eventually(
        lambda: latest_snapshot(stack.kafka_bootstrap, aggregates, f"municipality:{ags}"),
        lambda s: accounts_for(s, expected),
        timeout_s=60,
        what="the municipality's self-check, workshop and measure in its snapshot",
    )
    statistics = own["statistics"]
    assert statistics["field_1_score"] == score
    assert statistics["field_1_rank"] >= 1 and statistics["field_1_quartile"] in (1, 2, 3, 4)
    assert statistics["field_5_score"] is None  # not answered: no score, no rank
    if statistics["field_1_perspective_mean"] is None:
        assert "field_1_perspective_mean" in own["suppressed"]
    else:
        assert statistics["field_1_perspective_mean"] == 70.0
        assert statistics["field_1_gap"] == round(70.0 - score, 1)

    field = await eventually(
        lambda: latest_snapshot(stack.kafka_bootstrap, aggregates, "field:1"),
        lambda s: s is not None and s["statistics"].get(f"score:{ags}") == score,
        timeout_s=30,
        what="the municipality in field 1's distribution",
    )
    assert field["statistics"]["score_min"] <= score <= field["statistics"]["score_max"]
    assert field["statistics"][f"rank:{ags}"] == statistics["field_1_rank"]

    async def digests() -> list[str]:
        records = await read_topic(stack.kafka_bootstrap, f"{prefix}exchange.activity.v1")
        return [json.loads(r.value)["data"]["text_en"] for r in records if r.key == ags.encode()]

    texts = await eventually(
        digests,
        lambda found: f"{name} started a measure in Zusammenhalt und Begegnung." in found,
        timeout_s=30,
        what="the activity digests",
    )
    assert f"{name} completed its self-check." in texts
    assert f"{name} planned a measure in Zusammenhalt und Begegnung." in texts
    assert not any("Begegnungsorte" in text or "participant" in text for text in texts)

    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as reporting:
        auth = {"Authorization": f"Bearer {stack.federal_key}"}
        api_field: Any = (await reporting.get("/v1/aggregates/fields/1", headers=auth)).json()
        page = await reporting.get("/dashboard")
    assert api_field["statistics"][f"score:{ags}"] == score
    assert page.status_code == 200 and "field-scores" in page.text

    # The demo's reporting checks judge the same on the real stack.
    played = Played(ags=ags, name=name, onboarded=True)
    played.assessment = AssessmentPlayed(
        self_check_id=draft,
        catalogue_version=result["catalogue_version"],
        answers={},
        result=result,
    )
    endpoints = Endpoints(
        registration_url=stack.url("registration"),
        admin_key=stack.admin_key,
        kafka_bootstrap=stack.kafka_bootstrap,
        assessment_url=stack.url("assessment"),
        topic_prefix=prefix,
    )
    checks = await reporting_checks(endpoints, [played], timeout_s=20)
    assert [(c.name, c.outcome) for c in checks if c.outcome != "passed"] == []
