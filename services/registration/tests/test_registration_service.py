"""The walking skeleton's paths: onboarding, scheduling, seats, keys, contact."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.registration.tests.conftest import (
    ADMIN,
    MEMORY_ONLY,
    SERVICE,
    Harness,
    event_body,
    person,
)
from wok_registration.domain import Participant
from wok_registration.handlers import RegistrationHandlers


async def onboard(client: httpx.AsyncClient, ags: str = "07312000") -> str:
    response = await client.post(
        "/v1/municipalities",
        json={"ags": ags, "name": "Kaiserslautern", "kind": "city", "population": 100000},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])


async def schedule(client: httpx.AsyncClient, key: str, **overrides: Any) -> str:
    response = await client.post(
        "/v1/municipalities/07312000/dialogue-events",
        json=event_body(**overrides),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_the_thin_path_publishes_events_without_personal_data(harness: Harness) -> None:
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key)
    response = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(1)
    )
    assert response.status_code == 201
    assert response.json()["status"] == "confirmed"

    events = await harness.published_events()
    assert [e.type for e in events] == [
        "registration.municipality.registered.v1",
        "registration.municipality.key_issued.v1",
        "registration.dialogue_event.scheduled.v1",
        "registration.participant.registered.v1",
    ]
    assert all(key == b"07312000" for key, _ in harness.published)
    raw = b"".join(value for _, value in harness.published)
    assert b"person1@example.org" not in raw and b"Person 1" not in raw
    assert await harness.runtime.relay.drain_once() == 0, "each event is published once"


async def test_full_event_waitlists_and_a_second_registration_returns_the_first(
    harness: Harness,
) -> None:
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key, capacity=2)
    statuses = []
    for number in range(3):
        response = await harness.client.post(
            f"/v1/dialogue-events/{event_id}/registrations", json=person(number)
        )
        statuses.append(response.json()["status"])
        if number == 0:
            first_registration = response.json()["registration_id"]
    assert statuses == ["confirmed", "confirmed", "waitlisted"]

    again = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations",
        json=person(0) | {"email": "PERSON0@example.org"},
    )
    assert again.status_code == 201
    assert again.json()["registration_id"] == first_registration
    # and the interface documents it so: one answer, not a status telling who is registered
    interface = (await harness.client.get("/openapi.json")).json()
    route = interface["paths"]["/v1/dialogue-events/{dialogue_event_id}/registrations"]
    assert "201" in route["post"]["responses"] and "200" not in route["post"]["responses"]
    view = (await harness.client.get(f"/v1/dialogue-events/{event_id}")).json()
    assert view["places_left"] == 0
    assert "online_link" not in view


async def test_concurrent_registrations_never_overbook(harness: Harness) -> None:
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key, capacity=5)
    responses = await asyncio.gather(
        *(
            harness.client.post(f"/v1/dialogue-events/{event_id}/registrations", json=person(n))
            for n in range(20)
        )
    )
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("confirmed") == 5
    assert statuses.count("waitlisted") == 15


async def test_registration_after_the_deadline_is_refused_with_the_deadline(
    harness: Harness,
) -> None:
    key = await onboard(harness.client)
    past = datetime.now(UTC) - timedelta(days=1)
    event_id = await schedule(
        harness.client,
        key,
        starts_at=(past + timedelta(days=3)).isoformat(),
        ends_at=(past + timedelta(days=3, hours=2)).isoformat(),
        registration_deadline=past.isoformat(),
    )
    response = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(1)
    )
    assert response.status_code == 409
    assert "closed" in response.json()["detail"]


@MEMORY_ONLY
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ags": "17000000", "name": "X", "kind": "city"}, "ags"),
        ({"ags": "0731200", "name": "X", "kind": "city"}, "ags"),
        ({"ags": "07312000", "name": "X", "kind": "village"}, "kind"),
        ({"ags": "07312000", "kind": "city"}, "name"),
    ],
)
async def test_invalid_onboarding_names_the_field(
    harness: Harness, body: dict[str, Any], field: str
) -> None:
    response = await harness.client.post("/v1/municipalities", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == [field]


@MEMORY_ONLY
async def test_registration_without_consent_or_with_a_bad_address_names_the_field(
    harness: Harness,
) -> None:
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key)
    url = f"/v1/dialogue-events/{event_id}/registrations"
    no_consent = await harness.client.post(url, json=person(1) | {"consent": False})
    bad_email = await harness.client.post(url, json=person(1) | {"email": "not-an-address"})
    assert no_consent.status_code == bad_email.status_code == 422
    assert no_consent.json()["detail"][0]["loc"][-1] == "consent"
    assert bad_email.json()["detail"][0]["loc"][-1] == "email"


async def test_keys_and_scopes(harness: Harness) -> None:
    key = await onboard(harness.client)
    other_key = await onboard(harness.client, ags="05911000")
    url = "/v1/municipalities/07312000/dialogue-events"

    assert (await harness.client.post(url, json=event_body())).status_code == 401
    wrong_municipality = await harness.client.post(
        url, json=event_body(), headers={"Authorization": f"Bearer {other_key}"}
    )
    assert wrong_municipality.status_code == 403
    as_admin_without_key = await harness.client.post(
        "/v1/municipalities",
        json={"ags": "09162000", "name": "München", "kind": "city"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert as_admin_without_key.status_code == 403, "a municipality's key is not the admin key"
    duplicate = await harness.client.post(
        "/v1/municipalities",
        json={"ags": "07312000", "name": "Kaiserslautern", "kind": "city"},
        headers=ADMIN,
    )
    assert duplicate.status_code == 409

    rotated = await harness.client.post("/v1/municipalities/07312000/keys", headers=ADMIN)
    new_key = rotated.json()["api_key"]
    old = await harness.client.post(
        url, json=event_body(), headers={"Authorization": f"Bearer {key}"}
    )
    new = await harness.client.post(
        url, json=event_body(), headers={"Authorization": f"Bearer {new_key}"}
    )
    assert (old.status_code, new.status_code) == (401, 201)
    stored = await harness.handlers.repository.get_municipality("07312000")
    assert new_key not in str(stored), "keys are stored hashed"
    issued = [e for e in await harness.published_events() if e.type.endswith("key_issued.v1")]
    # In order per municipality (the key); municipalities are relayed side by side.
    kaiserslautern = [e for e in issued if e.data.ags == "07312000"]
    assert sorted(e.data.ags for e in issued) == ["05911000", "07312000", "07312000"]
    assert kaiserslautern[-1].data.key_hash == hashlib.sha256(new_key.encode()).hexdigest()
    assert all(new_key.encode() not in value for _, value in harness.published)


async def test_contact_is_served_only_with_the_service_key(harness: Harness) -> None:
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key)
    registration = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(7)
    )
    url = f"/internal/v1/registrations/{registration.json()['registration_id']}/contact"
    assert (await harness.client.get(url)).status_code == 401
    contact = await harness.client.get(url, headers=SERVICE)
    assert contact.json()["email"] == "person7@example.org"
    assert (
        await harness.client.get("/internal/v1/registrations/nope/contact", headers=SERVICE)
    ).status_code == 404


@MEMORY_ONLY
async def test_invalid_schedule_is_explained(harness: Harness) -> None:
    key = await onboard(harness.client)
    response = await harness.client.post(
        "/v1/municipalities/07312000/dialogue-events",
        json=event_body(format="in_person", online_link=None),
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "place"]


async def test_registrations_follow_changes_another_process_made_to_the_event(
    harness: Harness,
) -> None:
    """This process keeps the event it last read for a while; another process (sharing the
    store) changing capacity, deadline or state is still respected by the next registration."""
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key, capacity=2)
    first = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(1)
    )
    assert first.json()["status"] == "confirmed"
    other = RegistrationHandlers(repository=harness.handlers.repository)

    await other.change_dialogue_event(
        ags="07312000", dialogue_event_id=event_id, changes={"capacity": 1}
    )
    second = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(2)
    )
    assert second.json()["status"] == "waitlisted"  # not the second place read before
    assert (await harness.event(event_id))["places_left"] == 0

    await other.change_dialogue_event(
        ags="07312000",
        dialogue_event_id=event_id,
        changes={"registration_deadline": datetime.now(UTC) - timedelta(minutes=1)},
    )
    late = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(3)
    )
    assert late.status_code == 409 and "closed" in late.json()["detail"]

    # A refusal never rests on an old read: reopened elsewhere, registration works again.
    await other.change_dialogue_event(
        ags="07312000",
        dialogue_event_id=event_id,
        changes={"registration_deadline": datetime.now(UTC) + timedelta(days=1)},
    )
    reopened = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(3)
    )
    assert reopened.status_code == 201 and reopened.json()["status"] == "waitlisted"

    await other.cancel_dialogue_event(ags="07312000", dialogue_event_id=event_id, reason="Sturm")
    after_cancel = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations", json=person(4)
    )
    assert after_cancel.status_code == 409 and "cancelled" in after_cancel.json()["detail"]
    registered = [t for t in await harness.types() if t == "participant.registered.v1"]
    assert len(registered) == 3  # persons 1, 2 and 3; nobody after the cancellation


async def test_many_concurrent_registrations_each_keep_their_contact(harness: Harness) -> None:
    """Contacts are written in groups under load; every registered person's contact is kept
    (its expiry lifted) and reachable, and a repeated address answers with the first one."""
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key, capacity=10)
    responses = await asyncio.gather(
        *(
            harness.client.post(
                f"/v1/dialogue-events/{event_id}/registrations", json=person(n % 30)
            )
            for n in range(40)
        )
    )
    assert all(response.status_code in (200, 201) for response in responses)
    by_address: dict[int, set[str]] = {}
    for n, response in enumerate(responses):
        by_address.setdefault(n % 30, set()).add(response.json()["registration_id"])
    assert all(len(ids) == 1 for ids in by_address.values())  # one registration per address
    registration_ids = {next(iter(ids)) for ids in by_address.values()}
    statuses = [response.json()["status"] for response in responses[:30]]
    assert statuses.count("confirmed") == 10
    for registration_id in registration_ids:
        contact = await harness.client.get(
            f"/internal/v1/registrations/{registration_id}/contact", headers=SERVICE
        )
        assert contact.status_code == 200, contact.text
    participants = harness.handlers.repository.participants  # type: ignore[attr-defined]
    if harness.backend == "memory":
        stored = list(participants.values())
    else:
        await harness.handlers.repository.flush_kept()  # type: ignore[attr-defined]
        stored = await participants.find({}).to_list()
    assert {document["_id"] for document in stored} == registration_ids  # no leftovers
    assert not [document for document in stored if "expires_at" in document]


async def test_a_contact_left_unkept_by_a_crash_after_taking_the_place_is_kept_later(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between taking the place and keeping the contact would let the contact expire
    with the place held; the recovery keeps it, and leaves contacts without a place alone."""
    key = await onboard(harness.client)
    event_id = await schedule(harness.client, key, capacity=5)
    repository = harness.handlers.repository

    async def crash(registration_id: str) -> None:
        raise ConnectionError("the service died here")

    monkeypatch.setattr(repository, "keep_participant", crash)
    with pytest.raises(ConnectionError):
        await harness.client.post(f"/v1/dialogue-events/{event_id}/registrations", json=person(1))
    monkeypatch.undo()
    far = datetime.now(UTC) + timedelta(days=1)
    [(interrupted, _)] = await repository.unkept_participants(expiring_before=far)
    # a contact whose registration never got to take a place (still on its way, or failed)
    await repository.add_participant(
        Participant(
            registration_id="on-its-way",
            dialogue_event_id=event_id,
            name="Person 2",
            email="person2@example.org",
            language="de",
            consent_at=datetime.now(UTC),
        ),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )

    # within the grace both may still be on their way: nothing is touched
    assert await harness.handlers.keep_contacts_of_taken_places() == 0
    later = datetime.now(UTC) + timedelta(minutes=5)  # both written well before
    assert await harness.handlers.keep_contacts_of_taken_places(now=later) == 1
    assert await repository.unkept_participants(expiring_before=far) == [("on-its-way", event_id)]
    contact = await harness.client.get(
        f"/internal/v1/registrations/{interrupted}/contact", headers=SERVICE
    )
    assert contact.status_code == 200 and contact.json()["email"] == "person1@example.org"
    assert await harness.handlers.keep_contacts_of_taken_places(now=later) == 0
