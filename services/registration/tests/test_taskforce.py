"""A municipality keeps its taskforce here; the topic learns roles and sectors, never names."""

from __future__ import annotations

from services.registration.tests.conftest import ADMIN, Harness, bearer

URL = "/v1/municipalities/07312000/taskforce"


async def test_members_are_listed_here_and_published_without_personal_data(
    harness: Harness,
) -> None:
    key = await harness.onboard()
    lead = await harness.client.post(
        URL,
        json={
            "name": "Fatma Şahin",
            "email": "f.sahin@kaiserslautern.example",
            "role": "lead",
            "sector": "administration",
        },
        headers=bearer(key),
    )
    member = await harness.client.post(
        URL,
        json={"name": "Nguyễn Văn An", "role": "member", "sector": "migrant_advisory_council"},
        headers=bearer(key),
    )
    assert lead.status_code == member.status_code == 201
    listed = (await harness.client.get(URL, headers=ADMIN)).json()
    assert [(m["name"], m["role"], m["sector"]) for m in listed] == [
        ("Fatma Şahin", "lead", "administration"),
        ("Nguyễn Văn An", "member", "migrant_advisory_council"),
    ]

    removed = await harness.client.delete(f"{URL}/{lead.json()['member_id']}", headers=bearer(key))
    assert removed.status_code == 204
    gone = await harness.client.delete(f"{URL}/{lead.json()['member_id']}", headers=bearer(key))
    assert gone.status_code == 404
    listed = (await harness.client.get(URL, headers=bearer(key))).json()
    assert [m["name"] for m in listed] == ["Nguyễn Văn An"]

    events = [e for e in await harness.published_events() if ".taskforce." in e.type]
    assert [(e.type, e.data.member_id) for e in events] == [
        ("registration.taskforce.member_added.v1", lead.json()["member_id"]),
        ("registration.taskforce.member_added.v1", member.json()["member_id"]),
        ("registration.taskforce.member_removed.v1", lead.json()["member_id"]),
    ]
    assert events[0].data.role.value == "lead"
    assert events[1].data.sector.value == "migrant_advisory_council"
    raw = b"".join(value for _, value in harness.published)
    for personal in ("Fatma", "Şahin", "sahin@", "Nguyễn"):
        assert personal.encode() not in raw


async def test_a_removed_member_leaves_no_name_behind(harness: Harness) -> None:
    key = await harness.onboard()
    added = await harness.client.post(
        URL,
        json={
            "name": "Lea Roth",
            "email": "lea@example.org",
            "role": "member",
            "sector": "organisations",
        },
        headers=bearer(key),
    )
    member_id = added.json()["member_id"]
    await harness.client.delete(f"{URL}/{member_id}", headers=bearer(key))
    await harness.published_events()
    repository = harness.handlers.repository
    stored = (
        repository.taskforce[member_id]
        if harness.backend == "memory"
        else await repository.taskforce.find_one({"_id": member_id})  # type: ignore[attr-defined]
    )
    assert "Lea" not in str(stored) and "lea@" not in str(stored)


async def test_an_invalid_member_is_refused_naming_the_field(harness: Harness) -> None:
    key = await harness.onboard()
    for body, field in (
        ({"name": "X", "role": "chair", "sector": "administration"}, "role"),
        ({"name": "X", "role": "lead", "sector": "resident"}, "sector"),
        ({"role": "lead", "sector": "administration"}, "name"),
        ({"name": "X", "email": "nope", "role": "lead", "sector": "administration"}, "email"),
    ):
        response = await harness.client.post(URL, json=body, headers=bearer(key))
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"][-1] == field
    assert (await harness.client.get(URL, headers=bearer(key))).json() == []
