"""Who may write what: the whole matrix of callers over every write route (and the one
read that carries personal data), keys revoked and rotated, the profile."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.registration.tests.conftest import (
    ADMIN,
    ADMIN_KEY,
    FEDERAL_KEY,
    MEMORY_ONLY,
    STARTS,
    Harness,
    bearer,
    event_body,
)

_numbers = itertools.count(1)


def fresh_ags() -> str:
    return f"07{next(_numbers):06d}"


@dataclass
class World:
    own: str
    keys: dict[str, str | None]
    event_id: str
    member_id: str


async def prepare(harness: Harness) -> World:
    """A municipality with an event and a taskforce member, a neighbour, and a revoked key."""
    own, other = fresh_ags(), fresh_ags()
    revoked = await harness.onboard(own)
    response = await harness.client.delete(f"/v1/municipalities/{own}/keys", headers=ADMIN)
    assert response.status_code == 200, response.text
    rotated = await harness.client.post(f"/v1/municipalities/{own}/keys", headers=ADMIN)
    harness.keys[own] = rotated.json()["api_key"]
    await harness.onboard(other)
    event_id = await harness.schedule(own)
    member = await harness.client.post(
        f"/v1/municipalities/{own}/taskforce",
        json={"name": "Ayşe Yılmaz", "role": "lead", "sector": "administration"},
        headers=bearer(harness.keys[own]),
    )
    assert member.status_code == 201, member.text
    return World(
        own=own,
        keys={
            "admin": ADMIN_KEY,
            "own": harness.keys[own],
            "other": harness.keys[other],
            "federal": FEDERAL_KEY,
            "revoked": revoked,
            "none": None,
        },
        event_id=event_id,
        member_id=member.json()["member_id"],
    )


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: Callable[[World], str]
    body: Callable[[World], Any]
    allowed: tuple[str, ...]
    before: Callable[[Harness], None] = lambda harness: None


def _after_the_start(harness: Harness) -> None:
    harness.set_clock(lambda: STARTS + timedelta(hours=3))


def _event(world: World, suffix: str = "") -> str:
    return f"/v1/municipalities/{world.own}/dialogue-events/{world.event_id}{suffix}"


ROUTES = [
    Route(
        "onboard",
        "POST",
        lambda w: "/v1/municipalities",
        lambda w: {"ags": fresh_ags(), "name": "Neustadt", "kind": "town"},
        ("admin",),
    ),
    Route(
        "update profile",
        "PATCH",
        lambda w: f"/v1/municipalities/{w.own}",
        lambda w: {"contact_office": "Büro für Integration"},
        ("admin", "own"),
    ),
    Route(
        "rotate key",
        "POST",
        lambda w: f"/v1/municipalities/{w.own}/keys",
        lambda w: None,
        ("admin",),
    ),
    Route(
        "revoke key",
        "DELETE",
        lambda w: f"/v1/municipalities/{w.own}/keys",
        lambda w: None,
        ("admin", "own"),
    ),
    Route(
        "schedule event",
        "POST",
        lambda w: f"/v1/municipalities/{w.own}/dialogue-events",
        lambda w: event_body(),
        ("own",),
    ),
    Route("change event", "PATCH", _event, lambda w: {"title": "Neuer Titel"}, ("own",)),
    Route(
        "reschedule event",
        "POST",
        lambda w: _event(w, "/reschedule"),
        lambda w: {
            "starts_at": (STARTS + timedelta(days=7)).isoformat(),
            "ends_at": (STARTS + timedelta(days=7, hours=2)).isoformat(),
        },
        ("own",),
    ),
    Route(
        "cancel event",
        "POST",
        lambda w: _event(w, "/cancel"),
        lambda w: {"reason": "Raum nicht verfügbar"},
        ("own",),
    ),
    Route(
        "record attendance",
        "POST",
        lambda w: _event(w, "/attendance"),
        lambda w: {"attended": 12},
        ("own",),
        before=_after_the_start,
    ),
    Route(
        "add taskforce member",
        "POST",
        lambda w: f"/v1/municipalities/{w.own}/taskforce",
        lambda w: {"name": "Jonas Becker", "role": "member", "sector": "youth_parliament"},
        ("own",),
    ),
    Route(
        "remove taskforce member",
        "DELETE",
        lambda w: f"/v1/municipalities/{w.own}/taskforce/{w.member_id}",
        lambda w: None,
        ("own",),
    ),
    Route(
        "list taskforce (names)",
        "GET",
        lambda w: f"/v1/municipalities/{w.own}/taskforce",
        lambda w: None,
        ("admin", "own"),
    ),
]
CALLERS = ("admin", "own", "other", "federal", "revoked", "none")
REFUSED = {"none": 401, "revoked": 401, "federal": 403, "other": 403, "admin": 403, "own": 403}


@MEMORY_ONLY
@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.name)
async def test_every_caller_gets_what_its_key_allows_and_a_refusal_changes_nothing(
    harness: Harness, route: Route
) -> None:
    world = await prepare(harness)
    route.before(harness)
    before = await harness.types()
    for caller in (c for c in CALLERS if c not in route.allowed):
        response = await harness.municipality_write(
            route.method, route.path(world), world.keys[caller], route.body(world)
        )
        assert response.status_code == REFUSED[caller], (caller, response.text)
        assert response.json()["detail"]
    assert await harness.types() == before, "a refused request publishes nothing"
    if route.method != "GET":
        assert (await harness.event(world.event_id))["revision"] == 0

    for caller in route.allowed:
        harness.set_clock(lambda: datetime.now(UTC))
        world = await prepare(harness)
        route.before(harness)
        response = await harness.municipality_write(
            route.method, route.path(world), world.keys[caller], route.body(world)
        )
        assert response.status_code in (200, 201, 204), (caller, response.text)


async def test_a_revoked_key_is_refused_and_announced_without_the_key(harness: Harness) -> None:
    key = await harness.onboard()
    revoked = await harness.client.delete("/v1/municipalities/07312000/keys", headers=bearer(key))
    assert revoked.status_code == 200
    key_id = revoked.json()["key_id"]

    refused = await harness.client.post(
        "/v1/municipalities/07312000/dialogue-events", json=event_body(), headers=bearer(key)
    )
    assert refused.status_code == 401
    assert refused.json()["detail"] == "unknown or revoked key"
    again = await harness.client.delete("/v1/municipalities/07312000/keys", headers=ADMIN)
    assert again.status_code == 409

    events = await harness.published_events()
    [announcement] = [e for e in events if e.type.endswith("key_revoked.v1")]
    assert announcement.data.key_id == key_id
    issued = [e for e in events if e.type.endswith("key_issued.v1")]
    assert issued[0].data.key_id == key_id
    assert all(key.encode() not in value for _, value in harness.published)

    new_key = (await harness.client.post("/v1/municipalities/07312000/keys", headers=ADMIN)).json()[
        "api_key"
    ]
    works = await harness.client.post(
        "/v1/municipalities/07312000/dialogue-events", json=event_body(), headers=bearer(new_key)
    )
    assert works.status_code == 201
    latest = [e for e in await harness.published_events() if e.type.endswith("key_issued.v1")]
    assert latest[-1].data.key_hash == hashlib.sha256(new_key.encode()).hexdigest()


async def test_the_profile_is_updated_and_published_whole(harness: Harness) -> None:
    key = await harness.onboard(contact_office="Integrationsbüro")
    response = await harness.client.patch(
        "/v1/municipalities/07312000",
        json={"population": 99_845, "contact_office": "Büro für Integration und Vielfalt"},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "ags": "07312000",
        "name": "Kaiserslautern",
        "kind": "city",
        "land": "07",
        "population": 99_845,
        "contact_office": "Büro für Integration und Vielfalt",
    }
    assert (await harness.client.get("/v1/municipalities/07312000")).json() == response.json()
    events = await harness.published_events()
    assert events[0].data.contact_office == "Integrationsbüro"
    [updated] = [e for e in events if e.type.endswith("profile_updated.v1")]
    assert updated.data.population == 99_845
    assert updated.data.name == "Kaiserslautern"
    assert updated.data.contact_office == "Büro für Integration und Vielfalt"

    cleared = await harness.client.patch(
        "/v1/municipalities/07312000", json={"contact_office": None}, headers=ADMIN
    )
    assert cleared.json()["contact_office"] is None


@MEMORY_ONLY
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "body"),
        ({}, "body"),
        ({"land": "08"}, "land"),
        ({"kind": "village"}, "kind"),
        ({"population": -1}, "population"),
    ],
)
async def test_an_invalid_profile_update_names_the_problem_and_changes_nothing(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    key = await harness.onboard()
    before = await harness.types()
    response = await harness.client.patch(
        "/v1/municipalities/07312000", json=body, headers=bearer(key)
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field
    assert await harness.types() == before
    assert (await harness.client.get("/v1/municipalities/07312000")).json()["name"] == (
        "Kaiserslautern"
    )
