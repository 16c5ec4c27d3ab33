"""Peer exchange across the real stack: municipalities onboard at registration, answer the
self-check and plan a measure at assessment; the exchange service learns of their keys,
scores and measures and of reporting's activity digests over Kafka, and each municipality
reads its peers and its feed over HTTP with its own key and finds them on exchange.peers.v1."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually, read_topic
from wok_cli.demo import AssessmentPlayed, Played
from wok_cli.demo_exchange import play_exchange
from wok_cli.devstack import EmbeddedStack

DIVERSITY = 2  # Interkulturelle Öffnung und Antirassismus
ENGAGEMENT = 5


async def onboard(stack: EmbeddedStack, ags: str, name: str) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        response = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": name, "kind": "town"},
            headers={"Authorization": f"Bearer {stack.admin_key}"},
        )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


async def self_check(
    client: httpx.AsyncClient, ags: str, key: dict[str, str], answers_by_field: dict[int, str]
) -> dict[str, Any]:
    """Answers every question, "partly" unless the field is given; returns the result."""
    started = await eventually(
        lambda: client.post(f"/v1/municipalities/{ags}/self-checks", headers=key),
        lambda r: r.status_code != 401,
        what="assessment learning the key",
    )
    assert started.status_code == 201, started.text
    draft = started.json()["id"]
    catalogue = (await client.get("/v1/catalogue")).json()
    answers = {
        question["id"]: answers_by_field.get(field["number"], "partly")
        for field in catalogue["fields"]
        for question in field["questions"]
    }
    patched = await client.patch(
        f"/v1/self-checks/{draft}/answers", json={"answers": answers}, headers=key
    )
    assert patched.status_code == 200, patched.text
    submitted = await client.post(f"/v1/self-checks/{draft}/submit", headers=key)
    assert submitted.status_code == 200, submitted.text
    return submitted.json()


async def test_a_deficit_meets_a_peers_strength_over_http_and_on_the_topic(
    stack: EmbeddedStack,
) -> None:
    lacking, strong, other = unique_ags(), unique_ags(), unique_ags()
    keys = {
        lacking: await onboard(stack, lacking, "Lernstadt"),
        strong: await onboard(stack, strong, "Vorbildstadt"),
        other: await onboard(stack, other, "Drittstadt"),
    }
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as assessment:
        planned = await eventually(
            lambda: assessment.post(
                f"/v1/municipalities/{strong}/measures",
                json={
                    "field": DIVERSITY,
                    "title": "Antirassismus-Schulungen für alle Ämter",
                    "owner_role": "Integrationsbüro",
                },
                headers=keys[strong],
            ),
            lambda r: r.status_code != 401,
            what="assessment learning the key",
        )
        assert planned.status_code == 201, planned.text
        results = {
            lacking: await self_check(
                assessment, lacking, keys[lacking], {DIVERSITY: "not_in_place"}
            ),
            strong: await self_check(assessment, strong, keys[strong], {DIVERSITY: "fully"}),
            other: await self_check(assessment, other, keys[other], {ENGAGEMENT: "not_in_place"}),
        }
    assert DIVERSITY in results[lacking]["deficits"]
    assert DIVERSITY in results[strong]["strengths"]
    assert DIVERSITY not in results[other]["deficits"] + results[other]["strengths"]

    async with httpx.AsyncClient(base_url=stack.url("exchange"), timeout=10) as exchange:

        async def peers(ags: str) -> dict[str, Any]:
            response = await exchange.get(f"/v1/municipalities/{ags}/peers", headers=keys[ags])
            return response.json() if response.status_code == 200 else {"status": response.text}

        def pair(view: dict[str, Any], peer: str) -> dict[str, Any] | None:
            for suggestion in view.get("suggestions", []):
                if suggestion["peer"] == peer and suggestion["field"]["number"] == DIVERSITY:
                    return suggestion
            return None

        learner = await eventually(
            lambda: peers(lacking),
            lambda v: pair(v, strong) is not None,
            what="the suggestion for the municipality with the deficit",
        )
        suggestion = pair(learner, strong)
        assert suggestion is not None
        assert suggestion["role"] == "learns" and suggestion["reason"] == "strength"
        assert suggestion["peer_name"] == "Vorbildstadt"
        assert [m["title"] for m in suggestion["measures"]] == [
            "Antirassismus-Schulungen für alle Ämter"
        ]
        sharer = await peers(strong)
        assert pair(sharer, lacking) is not None and pair(sharer, lacking)["role"] == "shares"
        assert pair(await peers(other), lacking) is None
        assert all(s["peer"] not in (lacking, strong) for s in (await peers(other))["suggestions"])

        feed = await eventually(
            lambda: exchange.get(f"/v1/municipalities/{lacking}/feed", headers=keys[lacking]),
            lambda r: (
                r.status_code == 200
                and {"measure_planned", "activity"}
                <= {i["kind"] for i in r.json()["items"] if i["peer"] == strong}
            ),
            what="the peer's measure and its joining in the feed",
        )
        assert all(DIVERSITY in item["fields"] for item in feed.json()["items"])
        refused = await exchange.get(f"/v1/municipalities/{lacking}/feed", headers=keys[strong])
        assert refused.status_code == 403

    topic = f"{stack.settings.topic_prefix}exchange.peers.v1"
    suggestion_id = f"{DIVERSITY}:{lacking}:{strong}"

    async def told() -> dict[bytes, list[dict[str, Any]]]:
        found: dict[bytes, list[dict[str, Any]]] = {}
        for record in await read_topic(stack.kafka_bootstrap, topic):
            event = json.loads(record.value)
            if event["data"].get("suggestion_id") == suggestion_id:
                found.setdefault(record.key, []).append(event)
        return found

    announced = await eventually(
        told, lambda found: len(found) == 2, what="PeerSuggested told to both"
    )
    assert set(announced) == {lacking.encode(), strong.encode()}
    for key, events in announced.items():
        [event] = events  # once each
        assert event["type"] == "exchange.peer.suggested.v1"
        assert event["data"]["recipient"] == event["municipality"] == key.decode()

    # The demo's part judges the same municipalities as `wok demo` does every model one.
    played = [
        Played(
            ags=ags,
            name=ags,
            onboarded=True,
            assessment=AssessmentPlayed(
                self_check_id=ags,
                catalogue_version="",
                answers={},
                result=result,
            ),
        )
        for ags, result in results.items()
    ]
    outcome = await play_exchange(
        exchange_url=stack.url("exchange"),
        keys={ags: header["Authorization"].removeprefix("Bearer ") for ags, header in keys.items()},
        played=played,
        timeout_s=60,
        assessment_url=stack.url("assessment"),
        kafka_bootstrap=stack.kafka_bootstrap,
        topic_prefix=stack.settings.topic_prefix,
    )
    assert [(c.name, c.outcome) for c in outcome.checks] == [
        ("peer suggestions", "passed"),
        ("peer activity feeds", "passed"),
        ("measures that helped", "passed"),
        ("peer suggestions as events", "passed"),
    ], outcome.checks
    assert outcome.expected == {(DIVERSITY, lacking, strong)}
    assert "(1 listed" in outcome.checks[2].detail  # the strong side's measure
    assert outcome.seen[lacking].learning() >= 1 and outcome.seen[strong].sharing() >= 1
