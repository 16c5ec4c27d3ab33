"""Residents register in any script, cancel and erase through signed links; a cancellation
promotes the waitlist; bad input gets a specific 4xx and changes nothing; seats hold under
200 parallel registrations (on the real MongoDB protocol in the `mongodb` twin)."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from services.registration.tests.conftest import MEMORY_ONLY, SERVICE, STARTS, Harness


def local(url: str) -> str:
    """The path and query of a public link (the harness serves it under another host)."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@MEMORY_ONLY
@pytest.mark.parametrize(
    "name", ["Şahin Yıldız", "Nguyễn Thị Minh Khai", "Müller-Lüdenscheidt", "سارة العلي", "Zoë"]
)
async def test_names_in_any_script_are_kept_exactly_and_never_published(
    harness: Harness, name: str
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    response = await harness.register(event_id, 1, name=f"  {name} ", email="ş@example.org")
    assert response.status_code == 201, response.text
    contact = (await harness.contact(response.json()["registration_id"])).json()
    assert contact["name"] == name
    await harness.published_events()
    raw = b"".join(value for _, value in harness.published)
    assert name.encode() not in raw
    assert json.dumps(name).encode() not in raw


async def test_a_decomposed_name_is_stored_composed(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    response = await harness.register(event_id, 1, name="Nguye\u0302\u0303n")
    contact = (await harness.contact(response.json()["registration_id"])).json()
    assert contact["name"] == "Nguyễn"


@MEMORY_ONLY
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "Eve\r\nBcc: all@example.org"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"email": "not-an-address"}, "email"),
        ({"consent": False}, "consent"),
        ({"consent": None}, "consent"),
        ({"sector": "press"}, "sector"),
        ({"language": "deu"}, "language"),
        ({"age_band": "forty"}, "age_band"),
        ({"migration_background": "maybe"}, "migration_background"),
        ({"nickname": "x"}, "nickname"),
    ],
)
async def test_an_invalid_registration_names_the_field_and_stores_nothing(
    harness: Harness, overrides: dict[str, Any], field: str
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    before = await harness.types()
    response = await harness.register(event_id, 1, **overrides)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][-1] == field
    assert await harness.types() == before
    assert (await harness.event(event_id))["places_left"] == 2


@MEMORY_ONLY
async def test_a_missing_field_is_named(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    response = await harness.client.post(
        f"/v1/dialogue-events/{event_id}/registrations",
        json={"name": "Ana", "sector": "resident", "consent": True},
    )
    assert response.status_code == 422
    assert [e["loc"][-1] for e in response.json()["detail"]] == ["email"]


@MEMORY_ONLY
async def test_oversized_and_non_json_bodies_are_refused_before_anything_happens(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    url = f"/v1/dialogue-events/{event_id}/registrations"
    before = await harness.types()
    huge = await harness.client.post(url, json={"name": "x" * 70_000, "email": "a@example.org"})
    assert huge.status_code == 413
    assert "exceeds" in huge.json()["detail"]

    async def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1000

    chunked = await harness.client.post(
        url, content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    text = await harness.client.post(
        url, content="name=Ana", headers={"content-type": "text/plain"}
    )
    assert text.status_code == 415
    assert "application/json" in text.json()["detail"]
    form = await harness.client.post(url, data={"name": "Ana"})
    assert form.status_code == 415
    broken = await harness.client.post(
        url, content=b'{"name": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422
    assert await harness.types() == before


async def test_optional_self_description_is_published_for_counting_only(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    await harness.register(event_id, 1, age_band="18_29", migration_background="yes")
    await harness.register(event_id, 2)
    published = await harness.published_events()
    registered = [e.data for e in published if "registered" in e.type]
    registered = [data for data in registered if hasattr(data, "registration_id")]
    assert [d.age_band for d in registered] == ["18_29", None]
    # Migration background is never published per registration, only ever aggregated.
    assert not any(hasattr(d, "migration_background") for d in registered)
    assert all(b"migration_background" not in e.to_json_bytes() for e in published)


async def test_the_contact_carries_signed_links_to_cancel_and_erase(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    contact = (await harness.contact(registration_id)).json()
    cancel, erasure = urlsplit(contact["cancel_url"]), urlsplit(contact["erasure_url"])
    assert contact["cancel_url"].startswith(
        f"https://anmeldung.example.org/v1/registrations/{registration_id}/cancel?"
    )
    assert erasure.path == f"/v1/registrations/{registration_id}/erasure"
    cancel_expires = int(parse_qs(cancel.query)["expires"][0])
    assert cancel_expires == int((STARTS + timedelta(hours=2, minutes=30)).timestamp())
    assert parse_qs(cancel.query)["signature"] != parse_qs(erasure.query)["signature"]


async def test_a_cancellation_promotes_the_first_on_the_waitlist(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    ids = [(await harness.register(event_id, n)).json()["registration_id"] for n in range(4)]
    link = local(await harness.link(ids[0], "cancel"))

    page = await harness.client.get(link)
    assert page.status_code == 200
    assert "Dienstag, 10. Dezember 2030, 18:00–20:30 Uhr" in page.text
    assert 'method="post"' in page.text
    assert "participant.cancelled" not in str(await harness.types()), "a GET changes nothing"

    response = await harness.client.post(link)
    assert response.json() == {"registration_id": ids[0], "status": "cancelled"}
    again = await harness.client.post(link)
    assert again.json()["status"] == "already_cancelled"

    events = await harness.published_events()
    cancelled = [e.data for e in events if e.type.endswith("participant.cancelled.v1")]
    assert [(c.registration_id, c.previous_status.value, c.reason.value) for c in cancelled] == [
        (ids[0], "confirmed", "by_participant")
    ]
    promoted = [e.data.registration_id for e in events if e.type.endswith("promoted.v1")]
    assert promoted == [ids[2]], "the first on the waitlist, not the second"
    view = await harness.event(event_id)
    assert view["places_left"] == 0

    # a waitlisted person cancelling frees no place and promotes nobody
    await harness.client.post(local(await harness.link(ids[3], "cancel")))
    promoted = [e for e in await harness.published_events() if e.type.endswith("promoted.v1")]
    assert len(promoted) == 1
    # the address may register again after cancelling, and queues anew
    back = await harness.register(event_id, 0)
    assert back.status_code == 201
    assert back.json()["registration_id"] != ids[0]
    assert back.json()["status"] == "waitlisted"


async def test_a_cancellation_without_a_waitlist_frees_the_place(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    await harness.client.post(local(await harness.link(registration_id, "cancel")))
    assert (await harness.event(event_id))["places_left"] == 2


@MEMORY_ONLY
async def test_a_cancellation_form_in_a_browser_gets_a_page(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    response = await harness.client.post(
        local(await harness.link(registration_id, "cancel")),
        data={},
        headers={"accept": "text/html"},
    )
    assert response.status_code == 200
    assert "Ihre Anmeldung ist storniert" in response.text


@MEMORY_ONLY
async def test_tampered_and_expired_links_are_refused_and_change_nothing(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    first = (await harness.register(event_id, 1)).json()["registration_id"]
    second = (await harness.register(event_id, 2)).json()["registration_id"]
    link = local(await harness.link(first, "cancel"))
    before = await harness.types()

    other_person = link.replace(first, second)
    assert (await harness.client.post(other_person)).status_code == 403
    erasure_with_cancel_signature = link.replace("/cancel?", "/erasure?")
    assert (await harness.client.post(erasure_with_cancel_signature)).status_code == 403
    longer = link.replace("expires=", "expires=1")
    assert (await harness.client.post(longer)).status_code == 403
    assert (await harness.client.post(link.split("&")[0])).status_code == 422
    page = await harness.client.get(other_person)
    assert page.status_code == 403 and "nicht gültig" in page.text

    harness.set_clock(lambda: STARTS + timedelta(days=1))
    expired = await harness.client.post(link)
    assert expired.status_code == 410
    assert await harness.types() == before
    assert (await harness.contact(first)).status_code == 200


@MEMORY_ONLY
async def test_cancelling_after_the_start_is_refused(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    link = local(await harness.link(registration_id, "cancel"))
    harness.set_clock(lambda: STARTS + timedelta(minutes=5))
    response = await harness.client.post(link)
    assert response.status_code == 409
    assert "started" in response.json()["detail"]


async def test_erasure_removes_the_person_here_promotes_and_is_announced(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=1)
    ids = [
        (await harness.register(event_id, n, age_band="30_49")).json()["registration_id"]
        for n in range(2)
    ]
    link = local(await harness.link(ids[0], "erasure"))
    page = await harness.client.get(link)
    assert page.status_code == 200 and "Daten löschen" in page.text

    response = await harness.client.post(link)
    assert response.json() == {"registration_id": ids[0], "status": "erased"}
    assert (await harness.contact(ids[0])).status_code == 404
    assert (await harness.client.post(link)).json()["status"] == "erased", "idempotent"

    events = await harness.published_events()
    tail = [e.type.removeprefix("registration.") for e in events][-3:]
    assert tail == [
        "participant.cancelled.v1",
        "participant.promoted.v1",
        "participant.erased.v1",
    ]
    assert events[-1].data.registration_id == ids[0]
    assert events[-2].data.registration_id == ids[1]

    loaded = await harness.handlers.repository.load_dialogue_event(event_id)
    assert loaded is not None
    record = loaded[1][ids[0]]
    assert record.erased and record.fingerprint is None
    again = await harness.register(event_id, 0)
    assert again.status_code == 201, "the address is forgotten: it can register anew"
    assert again.json()["registration_id"] != ids[0]


async def test_erasure_after_the_event_keeps_the_count_but_not_the_person(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    link = local(await harness.link(registration_id, "erasure"))
    harness.set_clock(lambda: STARTS + timedelta(days=30))
    assert (await harness.client.post(link)).json()["status"] == "erased"
    assert (await harness.contact(registration_id)).status_code == 404
    types = await harness.types()
    assert types[-1] == "participant.erased.v1"
    assert "participant.cancelled.v1" not in types
    assert (await harness.event(event_id))["places_left"] == 1


async def test_the_same_address_twice_at_once_is_one_registration(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=5)
    responses = await asyncio.gather(*(harness.register(event_id, 1) for _ in range(10)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["registration_id"] for r in responses}) == 1
    assert (await harness.event(event_id))["places_left"] == 4
    registered = [t for t in await harness.types() if t == "participant.registered.v1"]
    assert len(registered) == 1


async def stored_people(harness: Harness) -> int:
    participants = harness.handlers.repository.participants  # type: ignore[attr-defined]
    return (
        len(participants)
        if isinstance(participants, dict)
        else await participants.count_documents({})
    )


async def test_an_address_registered_before_gets_its_registration_back_and_nothing_new(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    first = (await harness.register(event_id, 1)).json()
    await harness.register(event_id, 2)
    waitlisted = (await harness.register(event_id, 3)).json()
    assert (first["status"], waitlisted["status"]) == ("confirmed", "waitlisted")

    again = (await harness.register(event_id, 1, name="Person Eins")).json()
    waitlisted_again = (await harness.register(event_id, 3)).json()

    assert again == first
    assert waitlisted_again == waitlisted
    assert await stored_people(harness) == 3, "the repeat's contact is not kept"
    view = await harness.event(event_id)
    assert view["places_left"] == 0
    registered = [t for t in await harness.types() if t == "participant.registered.v1"]
    assert len(registered) == 3


async def test_200_parallel_registrations_for_50_places(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=50)
    responses = await asyncio.gather(*(harness.register(event_id, n) for n in range(200)))
    statuses = [r.json()["status"] for r in responses]
    assert (statuses.count("confirmed"), statuses.count("waitlisted")) == (50, 150)
    view = await harness.event(event_id)
    assert view["places_left"] == 0
    loaded = await harness.handlers.repository.load_dialogue_event(event_id)
    assert loaded is not None
    event, records = loaded
    assert (event.confirmed_count, event.waitlisted_count) == (50, 150)
    assert len(records) == 200
    published = [e.data for e in await harness.published_events() if "participant" in e.type]
    assert sum(1 for d in published if d.status.value == "confirmed") == 50


async def test_contact_needs_the_service_key(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 7)).json()["registration_id"]
    url = f"/internal/v1/registrations/{registration_id}/contact"
    assert (await harness.client.get(url)).status_code == 401
    assert (await harness.client.get(url, headers={"Authorization": "Bearer x"})).status_code == 401
    assert (await harness.client.get(url, headers=SERVICE)).json()["email"] == (
        "person7@example.org"
    )
