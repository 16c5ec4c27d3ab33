"""What notification asks registration for, with the service key, so no address rides Kafka:
the taskforce members to remind before an event's registration deadline, and the
municipality's contact office for staff mails."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from services.registration.tests.conftest import (
    ADMIN,
    SERVICE,
    STARTS,
    Harness,
    bearer,
)

TASKFORCE = "/v1/municipalities/07312000/taskforce"


async def add_member(harness: Harness, key: str, **fields: str) -> str:
    body = {"name": "Mitglied", "role": "member", "sector": "administration"} | fields
    response = await harness.client.post(TASKFORCE, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return str(response.json()["member_id"])


async def test_invitees_are_members_with_an_address_who_have_not_registered(
    harness: Harness,
) -> None:
    key = await harness.onboard()
    event_id = await harness.schedule()
    ayse = await add_member(
        harness, key, name="Ayşe Demir", email="ayse@example.org", language="tr"
    )
    await add_member(harness, key, name="Ohne Adresse")
    omar = await add_member(harness, key, name="Omar", email="Omar@Example.org", language="ar")
    await add_member(harness, key, name="Jana", email="jana@example.org", language="uk")
    # Omar registers (the address matches whatever its case); Jana leaves the taskforce
    registered = await harness.register(event_id, 1, email="omar@example.org")
    assert registered.status_code == 201
    listed = (await harness.client.get(TASKFORCE, headers=bearer(key))).json()
    jana = next(m["member_id"] for m in listed if m["name"] == "Jana")
    await harness.client.delete(f"{TASKFORCE}/{jana}", headers=bearer(key))

    url = f"/internal/v1/dialogue-events/{event_id}/taskforce-invitees"
    assert (await harness.client.get(url)).status_code == 401
    assert (await harness.client.get(url, headers=bearer(key))).status_code == 401
    answer = (await harness.client.get(url, headers=SERVICE)).json()
    assert answer["ags"] == "07312000"
    assert answer["invitees"] == [
        {"member_id": ayse, "name": "Ayşe Demir", "email": "ayse@example.org", "language": "tr"}
    ]
    assert omar not in str(answer)

    # Once Omar cancels, his address is free again: he is reminded like the others.
    cancel = urlsplit(await harness.link(registered.json()["registration_id"], "cancel"))
    assert (await harness.client.post(f"{cancel.path}?{cancel.query}")).status_code == 200
    again = (await harness.client.get(url, headers=SERVICE)).json()["invitees"]
    assert sorted(member["member_id"] for member in again) == sorted([ayse, omar])

    # After the deadline, or once the event is cancelled: nobody left to remind
    harness.set_clock(lambda: STARTS - timedelta(days=9))
    assert (await harness.client.get(url, headers=SERVICE)).json()["invitees"] == []


async def test_a_cancelled_event_has_no_invitees_and_an_unknown_one_is_404(
    harness: Harness,
) -> None:
    key = await harness.onboard()
    event_id = await harness.schedule()
    await add_member(harness, key, email="lead@example.org")
    url = f"/internal/v1/dialogue-events/{event_id}/taskforce-invitees"
    assert len((await harness.client.get(url, headers=SERVICE)).json()["invitees"]) == 1
    cancelled = await harness.client.post(
        f"/v1/municipalities/07312000/dialogue-events/{event_id}/cancel",
        json={"reason": "Raum fehlt"},
        headers=bearer(key),
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await harness.client.get(url, headers=SERVICE)).json()["invitees"] == []
    missing = "/internal/v1/dialogue-events/nope/taskforce-invitees"
    assert (await harness.client.get(missing, headers=SERVICE)).status_code == 404


async def test_the_contact_office_address_is_kept_for_notification_and_never_published(
    harness: Harness,
) -> None:
    await harness.onboard(
        contact_office="Integrationsbüro",
        contact_office_email="integration@kaiserslautern.example",
        language="en",
    )
    url = "/internal/v1/municipalities/07312000/contact-office"
    assert (await harness.client.get(url, headers=ADMIN)).status_code == 401
    answer = (await harness.client.get(url, headers=SERVICE)).json()
    assert answer == {
        "ags": "07312000",
        "name": "Kaiserslautern",
        "contact_office": "Integrationsbüro",
        "email": "integration@kaiserslautern.example",
        "language": "en",
    }
    public = (await harness.client.get("/v1/municipalities/07312000")).json()
    assert "integration@" not in str(public)

    changed = await harness.client.patch(
        "/v1/municipalities/07312000",
        json={"contact_office_email": "buero@kaiserslautern.example", "language": "de"},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    answer = (await harness.client.get(url, headers=SERVICE)).json()
    assert (answer["email"], answer["language"]) == ("buero@kaiserslautern.example", "de")
    raw = b"".join(value for _, value in harness.published)
    assert b"kaiserslautern.example" not in raw

    bad = await harness.client.patch(
        "/v1/municipalities/07312000", json={"contact_office_email": "no address"}, headers=ADMIN
    )
    assert bad.status_code == 422 and "contact_office_email" in bad.text


async def test_a_municipality_without_an_office_address_answers_404(harness: Harness) -> None:
    await harness.onboard()
    url = "/internal/v1/municipalities/07312000/contact-office"
    assert (await harness.client.get(url, headers=SERVICE)).status_code == 404
    assert (
        await harness.client.get(
            "/internal/v1/municipalities/07311000/contact-office", headers=SERVICE
        )
    ).status_code == 404
