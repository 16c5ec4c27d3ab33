"""Notification looks up many contacts in one request (`POST /internal/v1/registrations/contacts`,
service key): the same answer per registration as the single lookup, unknown and erased ones
absent, one read of the people and at most one of each dialogue event."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from services.registration.tests.conftest import (
    ADMIN,
    FEDERAL,
    MEMORY_ONLY,
    SERVICE,
    STARTS,
    Harness,
    bearer,
)
from wok_registration import domain
from wok_registration.handlers import EventCache

URL = "/internal/v1/registrations/contacts"


def local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def lookup(harness: Harness, ids: list[str], **headers: Any) -> httpx.Response:
    return await harness.client.post(
        URL, json={"registration_ids": ids}, headers=headers or SERVICE
    )


async def test_many_contacts_answer_as_the_single_lookup_without_unknown_or_erased(
    harness: Harness,
) -> None:
    await harness.onboard()
    first = await harness.schedule(capacity=2)
    second = await harness.schedule(ends_at=(STARTS + timedelta(hours=4)).isoformat())
    ids = [(await harness.register(first, n)).json()["registration_id"] for n in range(3)]
    ids.append((await harness.register(second, 1)).json()["registration_id"])
    erased = ids[0]
    singles = {i: (await harness.contact(i)).json() for i in ids}
    assert (await harness.client.post(local(singles[erased]["erasure_url"]))).status_code == 200

    response = await lookup(harness, [*ids, "unknown", ids[1], ids[3]])
    assert response.status_code == 200, response.text
    contacts = response.json()["contacts"]
    assert len(contacts) == 3, "the erased and the unknown are absent, a repeat answered once"
    assert {c["registration_id"]: c for c in contacts} == {i: singles[i] for i in ids[1:]}
    # The second event ends later: its links expire later.
    by_id = {c["registration_id"]: c for c in contacts}
    ends = {i: int(parse_qs(urlsplit(by_id[i]["cancel_url"]).query)["expires"][0]) for i in ids[1:]}
    assert ends[ids[1]] == int((STARTS + timedelta(hours=2, minutes=30)).timestamp())
    assert ends[ids[3]] == int((STARTS + timedelta(hours=4)).timestamp())

    # The links work: the batch's cancel link cancels.
    cancelled = await harness.client.post(local(by_id[ids[1]]["cancel_url"]))
    assert cancelled.json() == {"registration_id": ids[1], "status": "cancelled"}
    assert (await lookup(harness, ["unknown"])).json() == {"contacts": []}


async def test_a_lookup_reads_the_people_once_and_each_event_at_most_once(
    harness: Harness,
) -> None:
    await harness.onboard()
    events = [await harness.schedule(capacity=5) for _ in range(2)]
    ids = [
        (await harness.register(event_id, n)).json()["registration_id"]
        for event_id in events
        for n in range(3)
    ]
    repository = harness.handlers.repository
    calls: dict[str, int] = {"people": 0, "event": 0}
    get_participants, get_event = repository.get_participants, repository.get_dialogue_event

    async def counted_people(registration_ids: Any) -> Any:
        calls["people"] += 1
        return await get_participants(registration_ids)

    async def counted_event(dialogue_event_id: str) -> Any:
        calls["event"] += 1
        return await get_event(dialogue_event_id)

    repository.get_participants = counted_people  # type: ignore[method-assign]
    repository.get_dialogue_event = counted_event  # type: ignore[method-assign]
    harness.handlers._events = EventCache()  # nothing cached: every event is read
    assert len((await lookup(harness, ids)).json()["contacts"]) == 6
    assert calls == {"people": 1, "event": 2}
    assert len((await lookup(harness, ids)).json()["contacts"]) == 6
    assert calls == {"people": 2, "event": 2}, "the events are taken from the cache"


async def test_links_follow_a_rescheduling_at_once(harness: Harness) -> None:
    """A cached event is dropped when this process changes it, so the links of a lookup right
    after a rescheduling expire at the new end."""
    key = await harness.onboard()
    event_id = await harness.schedule(capacity=5)
    registration_id = (await harness.register(event_id, 1)).json()["registration_id"]
    assert (await lookup(harness, [registration_id])).status_code == 200  # cached now
    later = STARTS + timedelta(days=7)
    moved = await harness.client.post(
        f"/v1/municipalities/07312000/dialogue-events/{event_id}/reschedule",
        json={
            "starts_at": later.isoformat(),
            "ends_at": (later + timedelta(hours=3)).isoformat(),
            "registration_deadline": (later - timedelta(days=3)).isoformat(),
        },
        headers=bearer(key),
    )
    assert moved.status_code == 200, moved.text
    for contact in [
        (await harness.contact(registration_id)).json(),
        (await lookup(harness, [registration_id])).json()["contacts"][0],
    ]:
        expires = parse_qs(urlsplit(contact["cancel_url"]).query)["expires"][0]
        assert int(expires) == int((later + timedelta(hours=3)).timestamp())


def test_a_copy_read_before_a_change_is_not_cached_after_it() -> None:
    cache = EventCache()
    event = domain.DialogueEvent(
        id="e1",
        ags="07312000",
        title="Dialog",
        description="",
        starts_at=STARTS,
        ends_at=STARTS + timedelta(hours=2),
        format=domain.EventFormat.ONLINE,
        place=None,
        online_link="https://meet.example.org/x",
        capacity=10,
        registration_deadline=STARTS - timedelta(days=1),
        languages=("de",),
    )
    ticket = cache.ticket()  # a read begins
    cache.drop("e1")  # meanwhile this process changes the event
    cache.put(event, ticket=ticket)  # the read ends with the old copy
    assert cache.get("e1") is None
    cache.put(event, ticket=cache.ticket())
    assert cache.get("e1") is event
    cache.drop("other")
    assert cache.get("e1") is event, "a change to another event keeps this one"


@MEMORY_ONLY
async def test_contacts_need_the_service_key_as_the_single_lookup(harness: Harness) -> None:
    await harness.onboard()
    event_id = await harness.schedule()
    registration_id = (await harness.register(event_id, 7)).json()["registration_id"]
    single = f"/internal/v1/registrations/{registration_id}/contact"
    body = {"registration_ids": [registration_id]}
    for headers in ({}, ADMIN, FEDERAL, bearer(harness.keys["07312000"]), bearer("x")):
        batch = await harness.client.post(URL, json=body, headers=headers)
        assert batch.status_code == (await harness.client.get(single, headers=headers)).status_code
        assert batch.status_code == 401 and "person7" not in batch.text
    answer = (await harness.client.post(URL, json=body, headers=SERVICE)).json()
    assert [c["email"] for c in answer["contacts"]] == ["person7@example.org"]


@MEMORY_ONLY
async def test_a_lookup_of_none_or_more_than_500_is_refused_naming_the_field(
    harness: Harness,
) -> None:
    for ids in ([], [f"r{n}" for n in range(501)]):
        response = await lookup(harness, ids)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "registration_ids"]
    missing = await harness.client.post(URL, json={}, headers=SERVICE)
    assert missing.status_code == 422 and "registration_ids" in missing.text
    assert (await lookup(harness, [f"r{n}" for n in range(500)])).json() == {"contacts": []}
