"""A municipality changes, reschedules and cancels its dialogue events; everyone registered
learns of it through events; the public view shows Berlin time and never the online link."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.registration.tests.conftest import (
    MEMORY_ONLY,
    SERVICE,
    STARTS,
    Harness,
    bearer,
    event_body,
)

KL = "/v1/municipalities/07312000/dialogue-events"


async def change(harness: Harness, event_id: str, body: dict[str, Any]) -> Any:
    return await harness.client.patch(
        f"{KL}/{event_id}", json=body, headers=bearer(harness.keys["07312000"])
    )


async def post(harness: Harness, event_id: str, action: str, body: dict[str, Any]) -> Any:
    return await harness.client.post(
        f"{KL}/{event_id}/{action}", json=body, headers=bearer(harness.keys["07312000"])
    )


async def test_the_public_view_is_in_berlin_time_with_reserved_places_and_no_link(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(
        capacity=5,
        reserved_places=3,
        languages=["de", "tr", "ar"],
        target_sectors=["youth_parliament", "resident"],
    )
    view = await harness.event(event_id)
    assert view["starts_at"] == "2030-12-10T18:00:00+01:00"
    assert view["ends_at"] == "2030-12-10T20:30:00+01:00"
    assert view["when"] == "Dienstag, 10. Dezember 2030, 18:00–20:30 Uhr"
    assert view["timezone"] == "Europe/Berlin"
    assert (view["capacity"], view["reserved_places"], view["places_left"]) == (5, 3, 2)
    assert view["languages"] == ["de", "tr", "ar"]
    assert view["target_sectors"] == ["youth_parliament", "resident"]
    assert "meet.example.org" not in str(view)

    statuses = [(await harness.register(event_id, n)).json()["status"] for n in range(3)]
    assert statuses == ["confirmed", "confirmed", "waitlisted"], "reserved places stay free"
    [scheduled] = [e for e in await harness.published_events() if "scheduled" in e.type]
    assert scheduled.data.reserved_places == 3
    assert [s.value for s in scheduled.data.target_sectors] == ["youth_parliament", "resident"]


async def test_a_change_is_published_and_more_places_promote_the_waitlist_in_order(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    registrations = [(await harness.register(event_id, n)).json() for n in range(5)]
    assert [r["status"] for r in registrations] == ["confirmed"] * 2 + ["waitlisted"] * 3

    response = await change(
        harness, event_id, {"capacity": 4, "title": "Dialog: Nachbarschaft", "languages": ["de"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["revision"] == 1
    assert response.json()["places_left"] == 0
    events = await harness.published_events()
    changed = [e for e in events if e.type.endswith("changed.v1")]
    assert [(e.data.title, e.data.capacity, e.data.revision) for e in changed] == [
        ("Dialog: Nachbarschaft", 4, 1)
    ]
    promoted = [e.data.registration_id for e in events if e.type.endswith("promoted.v1")]
    assert promoted == [registrations[2]["registration_id"], registrations[3]["registration_id"]]


async def test_fewer_places_than_confirmed_people_is_refused_and_changes_nothing(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=3)
    for n in range(3):
        await harness.register(event_id, n)
    before = await harness.types()
    for body in ({"capacity": 2}, {"reserved_places": 1}):
        response = await change(harness, event_id, body)
        assert response.status_code == 409
        assert "3 people are confirmed" in response.json()["detail"]
    for body, field in (
        ({"reserved_places": 3}, "reserved_places"),
        ({"starts_at": STARTS.isoformat()}, "starts_at"),
        ({"title": None}, "body"),
        ({"format": "in_person", "place": None}, "place"),
    ):
        response = await change(harness, event_id, body)
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"][-1] == field
    assert await harness.types() == before
    assert (await harness.event(event_id))["revision"] == 0


async def test_rescheduling_announces_new_times_and_keeps_the_registrations(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    for n in range(3):
        await harness.register(event_id, n)
    later = STARTS + timedelta(days=7)
    response = await post(
        harness,
        event_id,
        "reschedule",
        {
            "starts_at": later.isoformat(),
            "ends_at": (later + timedelta(hours=2)).isoformat(),
            "registration_deadline": (later - timedelta(days=3)).isoformat(),
        },
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["when"] == "Dienstag, 17. Dezember 2030, 18:00–20:00 Uhr"
    assert view["revision"] == 1 and view["places_left"] == 0
    [rescheduled] = [e for e in await harness.published_events() if "rescheduled" in e.type]
    assert rescheduled.data.previous_starts_at == STARTS
    assert rescheduled.data.starts_at == later
    assert rescheduled.data.revision == 1

    wrong = await post(
        harness,
        event_id,
        "reschedule",
        {"starts_at": later.isoformat(), "ends_at": (later - timedelta(hours=1)).isoformat()},
    )
    assert wrong.status_code == 422
    assert wrong.json()["detail"][0]["loc"] == ["body", "ends_at"]
    naive = await post(
        harness,
        event_id,
        "reschedule",
        {"starts_at": "2031-01-10T18:00:00", "ends_at": "2031-01-10T20:00:00"},
    )
    assert naive.status_code == 422
    assert naive.json()["detail"][0]["loc"][-1] == "starts_at"
    assert (await harness.event(event_id))["revision"] == 1


async def test_cancelling_an_event_cancels_every_registration_and_closes_it(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(capacity=2)
    ids = [(await harness.register(event_id, n)).json()["registration_id"] for n in range(3)]
    response = await post(harness, event_id, "cancel", {"reason": "Der Saal ist gesperrt."})
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["registration_open"] is False

    events = await harness.published_events()
    [cancelled] = [e for e in events if e.type.endswith("dialogue_event.cancelled.v1")]
    assert (cancelled.data.reason, cancelled.data.revision) == ("Der Saal ist gesperrt.", 1)
    participants = [e.data for e in events if e.type.endswith("participant.cancelled.v1")]
    assert [(p.registration_id, p.previous_status.value, p.reason.value) for p in participants] == [
        (ids[0], "confirmed", "event_cancelled"),
        (ids[1], "confirmed", "event_cancelled"),
        (ids[2], "waitlisted", "event_cancelled"),
    ]
    late = await harness.register(event_id, 9)
    assert late.status_code == 409
    assert "cancelled" in late.json()["detail"]
    assert (await post(harness, event_id, "cancel", {})).status_code == 409
    assert (await change(harness, event_id, {"title": "Doch"})).status_code == 409


async def test_attendance_is_a_count_recorded_once_the_event_has_started(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    early = await post(harness, event_id, "attendance", {"attended": 3})
    assert early.status_code == 409
    harness.set_clock(lambda: STARTS + timedelta(hours=3))
    assert (await post(harness, event_id, "attendance", {"attended": -1})).status_code == 422
    recorded = await post(harness, event_id, "attendance", {"attended": 31})
    assert recorded.status_code == 200
    assert recorded.json()["attended"] == 31
    [attendance] = [e for e in await harness.published_events() if "attendance" in e.type]
    assert attendance.data.attended == 31


async def test_the_online_link_is_released_to_the_notification_service_before_the_start(
    harness: Harness,
) -> None:
    await harness.onboard()
    event_id = await harness.schedule(format="hybrid", place="Rathaus, Ratssaal")
    url = f"/internal/v1/dialogue-events/{event_id}/access"
    assert (await harness.client.get(url)).status_code == 401
    assert (await harness.client.get(url, headers=bearer("wrong"))).status_code == 401

    harness.set_clock(lambda: STARTS - timedelta(days=3))
    early = (await harness.client.get(url, headers=SERVICE)).json()
    assert early["online_link"] is None
    assert early["place"] == "Rathaus, Ratssaal"
    assert early["online_link_released_at"] == (STARTS - timedelta(hours=24)).isoformat().replace(
        "+00:00", "Z"
    )
    harness.set_clock(lambda: STARTS - timedelta(hours=2))
    released = (await harness.client.get(url, headers=SERVICE)).json()
    assert released["online_link"] == "https://meet.example.org/dialog"
    assert "meet.example.org" not in str(await harness.event(event_id))
    missing = await harness.client.get("/internal/v1/dialogue-events/nope/access", headers=SERVICE)
    assert missing.status_code == 404


@MEMORY_ONLY
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"starts_at": "2030-12-10T18:00:00"}, "starts_at"),
        ({"starts_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()}, "starts_at"),
        ({"capacity": 0}, "capacity"),
        ({"reserved_places": 2}, "reserved_places"),
        ({"format": "in_person"}, "place"),
        ({"format": "online", "online_link": None}, "online_link"),
        ({"registration_deadline": "2031-01-01T00:00:00+01:00"}, "registration_deadline"),
        ({"languages": ["deutsch"]}, 0),
        ({"target_sectors": ["press"]}, 0),
        ({"title": ""}, "title"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_an_invalid_event_names_the_field_and_is_not_scheduled(
    harness: Harness, overrides: dict[str, Any], field: str | int
) -> None:
    key = await harness.onboard()
    before = await harness.types()
    response = await harness.client.post(KL, json=event_body(**overrides), headers=bearer(key))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][-1] == field
    assert await harness.types() == before


async def test_unknown_events_are_404_everywhere(harness: Harness) -> None:
    key = await harness.onboard()
    await harness.onboard("05911000")
    other_event = await harness.schedule("05911000")
    assert (await harness.client.get("/v1/dialogue-events/nope")).status_code == 404
    assert (await harness.register("nope", 1)).status_code == 404
    for event_id in ("nope", other_event):
        response = await harness.client.patch(
            f"{KL}/{event_id}", json={"title": "X"}, headers=bearer(key)
        )
        assert response.status_code == 404, "another municipality's event is not found here"
