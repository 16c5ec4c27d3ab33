"""The registration rules on the embedded stack: real HTTP, real MongoDB protocol (nx-27017),
real Kafka protocol (tansu), the services as separate processes. (200 parallel registrations
for 50 places run against nx-27017 in the registration service's tests, where they do not
also load notification and reporting of the shared stack.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually, latest_snapshot, program_registrations, read_topic
from wok_cli.devstack import EmbeddedStack

STARTS = datetime(2031, 3, 4, 17, 0, tzinfo=UTC)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _events_of(stack: EmbeddedStack, ags: str) -> list[dict[str, Any]]:
    topic = f"{stack.settings.topic_prefix}registration.events.v1"
    found = []
    for record in await read_topic(stack.kafka_bootstrap, topic):
        if record.key != ags.encode():
            continue
        try:
            found.append(json.loads(record.value))
        except ValueError:
            continue  # other tests publish poison on this topic
    return found


async def _reporting_quiet(stack: EmbeddedStack, *, registrations_at_least: int) -> None:
    """Wait until reporting has counted this test's work and stopped publishing, so the
    next test on the shared stack starts from settled aggregates."""
    topic = f"{stack.settings.topic_prefix}exchange.aggregates.v1"
    await eventually(
        lambda: program_registrations(stack.kafka_bootstrap, topic),
        lambda total: total >= registrations_at_least,
        what="reporting counting the registrations",
    )

    async def sequence() -> int:
        snapshot = await latest_snapshot(stack.kafka_bootstrap, topic, "program")
        return -1 if snapshot is None else int(snapshot["sequence"])

    previous = await sequence()
    for _ in range(60):
        await asyncio.sleep(1.5)
        current = await sequence()
        if current == previous:
            return
        previous = current
    raise AssertionError("reporting kept publishing program snapshots for 90 s")


async def _onboard(client: httpx.AsyncClient, stack: EmbeddedStack, ags: str) -> str:
    response = await client.post(
        "/v1/municipalities",
        json={"ags": ags, "name": "Modellstadt", "kind": "city"},
        headers=_bearer(stack.admin_key),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


async def test_parallel_registrations_fill_the_places_and_a_cancellation_promotes(
    stack: EmbeddedStack,
) -> None:
    ags = unique_ags()
    run = uuid.uuid4().hex[:8]
    aggregates = f"{stack.settings.topic_prefix}exchange.aggregates.v1"
    before = await program_registrations(stack.kafka_bootstrap, aggregates)
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(
        base_url=stack.url("registration"), timeout=60, limits=limits
    ) as client:
        key = await _onboard(client, stack, ags)
        scheduled = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog: Ankommen in der Stadt",
                "starts_at": STARTS.isoformat(),
                "ends_at": (STARTS + timedelta(hours=2)).isoformat(),
                "format": "in_person",
                "place": "Stadtbibliothek",
                "capacity": 17,
                "reserved_places": 2,
                "registration_deadline": (STARTS - timedelta(days=7)).isoformat(),
            },
            headers=_bearer(key),
        )
        assert scheduled.status_code == 201, scheduled.text
        event_id = scheduled.json()["id"]

        async def register(number: int) -> httpx.Response:
            return await client.post(
                f"/v1/dialogue-events/{event_id}/registrations",
                json={
                    "name": ("Şahin", "Nguyễn", "Müller-Lüdenscheidt", "سارة")[number % 4],
                    "email": f"p{number}-{run}@example.org",
                    "sector": "resident",
                    "consent": True,
                },
            )

        responses = await asyncio.gather(*(register(n) for n in range(60)))
        assert {r.status_code for r in responses} == {201}
        statuses = [r.json()["status"] for r in responses]
        assert (statuses.count("confirmed"), statuses.count("waitlisted")) == (15, 45)
        view = (await client.get(f"/v1/dialogue-events/{event_id}")).json()
        assert view["places_left"] == 0

        confirmed = next(r.json() for r in responses if r.json()["status"] == "confirmed")
        contact = await client.get(
            f"/internal/v1/registrations/{confirmed['registration_id']}/contact",
            headers=_bearer(stack.service_key),
        )
        cancel = urlsplit(contact.json()["cancel_url"])
        cancelled = await client.post(f"{cancel.path}?{cancel.query}")
        assert cancelled.json()["status"] == "cancelled"
        assert (await client.get(f"/v1/dialogue-events/{event_id}")).json()["places_left"] == 0

    def settled(events: list[dict[str, Any]]) -> bool:
        return any(e["type"].endswith("participant.promoted.v1") for e in events)

    events = await eventually(lambda: _events_of(stack, ags), settled, what="the promotion")
    registered = [e for e in events if e["type"].endswith("participant.registered.v1")]
    assert len(registered) == 60
    assert sum(e["data"]["status"] == "confirmed" for e in registered) == 15
    [promoted] = [e["data"] for e in events if e["type"].endswith("promoted.v1")]
    waitlisted = [r.json() for r in responses if r.json()["status"] == "waitlisted"]
    assert promoted["registration_id"] in {w["registration_id"] for w in waitlisted}
    raw = json.dumps(events, ensure_ascii=False)
    assert "Şahin" not in raw and "@example.org" not in raw
    await _reporting_quiet(stack, registrations_at_least=before + 59)


async def test_keys_scopes_and_a_cancelled_event_on_the_stack(stack: EmbeddedStack) -> None:
    ags, other = unique_ags(), unique_ags()
    aggregates = f"{stack.settings.topic_prefix}exchange.aggregates.v1"
    before = await program_registrations(stack.kafka_bootstrap, aggregates)
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        key = await _onboard(client, stack, ags)
        other_key = await _onboard(client, stack, other)
        body = {
            "title": "Dialog online",
            "starts_at": STARTS.isoformat(),
            "ends_at": (STARTS + timedelta(hours=2)).isoformat(),
            "format": "online",
            "online_link": "https://meet.example.org/e2e",
            "capacity": 1,
            "registration_deadline": (STARTS - timedelta(days=1)).isoformat(),
        }
        url = f"/v1/municipalities/{ags}/dialogue-events"
        assert (await client.post(url, json=body)).status_code == 401
        federal = await client.post(url, json=body, headers=_bearer(stack.federal_key))
        assert federal.status_code == 403
        assert (await client.post(url, json=body, headers=_bearer(other_key))).status_code == 403
        wrong_type = await client.post(
            url, content="title=x", headers=_bearer(key) | {"content-type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        event_id = (await client.post(url, json=body, headers=_bearer(key))).json()["id"]
        view = (await client.get(f"/v1/dialogue-events/{event_id}")).json()
        assert "meet.example.org" not in json.dumps(view)
        assert view["starts_at"] == "2031-03-04T18:00:00+01:00"

        for number in range(2):
            await client.post(
                f"/v1/dialogue-events/{event_id}/registrations",
                json={
                    "name": f"Person {number}",
                    "email": f"e2e-{uuid.uuid4().hex[:6]}@example.org",
                    "sector": "youth_parliament",
                    "consent": True,
                },
            )
        off = await client.post(
            f"{url}/{event_id}/cancel", json={"reason": "Technik"}, headers=_bearer(key)
        )
        assert off.json()["status"] == "cancelled"

        revoked = await client.delete(f"/v1/municipalities/{ags}/keys", headers=_bearer(key))
        assert revoked.status_code == 200
        assert (await client.post(url, json=body, headers=_bearer(key))).status_code == 401

    def settled(events: list[dict[str, Any]]) -> bool:
        return any(e["type"].endswith("key_revoked.v1") for e in events)

    events = await eventually(lambda: _events_of(stack, ags), settled, what="the revocation")
    reasons = [
        (e["data"]["previous_status"], e["data"]["reason"])
        for e in events
        if e["type"].endswith("participant.cancelled.v1")
    ]
    assert reasons == [("confirmed", "event_cancelled"), ("waitlisted", "event_cancelled")]
    assert [e["type"].split(".")[-2] for e in events][-4:] == [
        "cancelled",
        "cancelled",
        "cancelled",
        "key_revoked",
    ]
    await _reporting_quiet(stack, registrations_at_least=before)


async def test_a_municipal_system_schedules_over_kafka_and_learns_of_a_rejection(
    stack: EmbeddedStack, producer: Any
) -> None:
    from wok_contracts import EventFormat, ScheduleDialogueEvent, new_envelope
    from wok_contracts.events.registration import REGISTRATION_COMMANDS

    ags = unique_ags()
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        await _onboard(client, stack, ags)
    command = ScheduleDialogueEvent(
        ags=ags,
        title="Dialog aus dem Fachverfahren",
        starts_at=STARTS,
        ends_at=STARTS + timedelta(hours=2),
        format=EventFormat.IN_PERSON,
        place="Rathaus",
        capacity=30,
        registration_deadline=STARTS - timedelta(days=5),
    )
    topic = f"{stack.settings.topic_prefix}{REGISTRATION_COMMANDS}"
    good = new_envelope(command, source="/fachverfahren", municipality=ags)
    bad = new_envelope(
        command.model_copy(update={"ends_at": STARTS - timedelta(hours=1)}),
        source="/fachverfahren",
        municipality=ags,
    )
    for envelope in (good, bad):
        await producer.send_and_wait(topic, envelope.to_json_bytes(), key=ags.encode())

    def settled(events: list[dict[str, Any]]) -> bool:
        return {"scheduled", "rejected"} <= {e["type"].split(".")[-2] for e in events}

    events = await eventually(lambda: _events_of(stack, ags), settled, what="the commands")
    [rejected] = [e["data"] for e in events if e["type"].endswith("command.rejected.v1")]
    assert rejected["command_id"] == bad.id
    assert rejected["problems"] == [{"field": "data.ends_at", "reason": "must be after starts_at"}]
    [scheduled] = [e["data"] for e in events if e["type"].endswith("scheduled.v1")]
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        view = await client.get(f"/v1/dialogue-events/{scheduled['dialogue_event_id']}")
    assert view.json()["title"] == "Dialog aus dem Fachverfahren"
    dead = await read_topic(
        stack.kafka_bootstrap, f"{stack.settings.topic_prefix}dead-letter.registration-commands.v1"
    )
    assert bad.to_json_bytes() in [record.value for record in dead]
