"""The HTTP contact client against registration's answers: httpx's mock transport (no
server), and its twin against the real registration app (in memory, over ASGI)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from wok_notification.adapters.contacts import (
    CONTACTS_PATH,
    ContactLookupFailed,
    HttpContactDirectory,
)
from wok_notification.domain import Contact
from wok_registration.adapters.repository import InMemoryRegistrationRepository
from wok_registration.app import build_app as build_registration
from wok_registration.settings import RegistrationSettings
from wok_runtime.consumer import TransientError
from wok_runtime.service import ServiceRuntime


def directory(handler: httpx.MockTransport, **options: Any) -> HttpContactDirectory:
    return HttpContactDirectory(
        base_url="http://registration.test/",
        service_key="service-secret",
        transport=handler,
        **options,
    )


def contact_body(registration_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "registration_id": registration_id,
        "dialogue_event_id": "event-1",
        "name": "Jörg Müller",
        "email": f"{registration_id}@example.org",
        "language": "de",
    } | fields


class FakeRegistration:
    """Answers the batch route from `known`; records each request's ids."""

    def __init__(self, known: set[str], *, status: int = 200) -> None:
        self.known = known
        self.status = status
        self.requests: list[httpx.Request] = []
        self.asked: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(self.status)
        ids = json.loads(request.content)["registration_ids"]
        self.asked.append(ids)
        found = [contact_body(i) for i in dict.fromkeys(ids) if i in self.known]
        return httpx.Response(200, json={"contacts": list(reversed(found))})


async def test_lookups_made_side_by_side_go_out_as_one_request_with_the_service_key() -> None:
    registration = FakeRegistration({f"r-{n}" for n in range(0, 40, 2)})
    contacts = directory(httpx.MockTransport(registration))

    found = await asyncio.gather(*(contacts.fetch(f"r-{n}") for n in range(40)))

    assert len(registration.requests) == 1
    request = registration.requests[0]
    assert (request.method, request.url.path) == ("POST", CONTACTS_PATH)
    assert request.headers["Authorization"] == "Bearer service-secret"
    assert sorted(registration.asked[0]) == sorted(f"r-{n}" for n in range(40))
    # each caller its own contact (in whatever order registration answered), None if unknown
    for n, contact in enumerate(found):
        if n % 2:
            assert contact is None
        else:
            assert contact == Contact(
                registration_id=f"r-{n}",
                dialogue_event_id="event-1",
                name="Jörg Müller",
                email=f"r-{n}@example.org",
                language="de",
            )


async def test_a_request_holds_at_most_500_ids_and_a_repeated_id_is_asked_once() -> None:
    registration = FakeRegistration({f"r-{n}" for n in range(1200)})
    contacts = directory(httpx.MockTransport(registration), posts_in_flight=1)

    found = await asyncio.gather(
        contacts.fetch("r-7"), *(contacts.fetch(f"r-{n}") for n in range(1200))
    )

    # 500 lookups per request: the first holds r-7 twice, asked for once
    assert [len(ids) for ids in registration.asked] == [499, 500, 201]
    assert sum(ids.count("r-7") for ids in registration.asked) == 1
    assert [contact.registration_id for contact in found if contact] == [
        "r-7",
        *(f"r-{n}" for n in range(1200)),
    ]


async def test_lookups_asked_while_a_request_is_under_way_go_together_in_the_next() -> None:
    release = asyncio.Event()
    asked: list[list[str]] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        ids = json.loads(request.content)["registration_ids"]
        asked.append(ids)
        if len(asked) == 1:
            await release.wait()
        return httpx.Response(200, json={"contacts": [contact_body(i) for i in ids]})

    contacts = directory(httpx.MockTransport(slow), posts_in_flight=1)
    first = asyncio.create_task(contacts.fetch("r-first"))
    await asyncio.sleep(0.01)
    later = [asyncio.create_task(contacts.fetch(f"r-{n}")) for n in range(5)]
    await asyncio.sleep(0.01)
    assert asked == [["r-first"]], "the later ones wait for the request under way"
    release.set()
    assert (await first) is not None
    assert all(await asyncio.gather(*later))
    assert asked[1:] == [[f"r-{n}" for n in range(5)]]


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401])
async def test_registration_away_or_refusing_our_key_is_transient_for_every_waiter(
    status: int,
) -> None:
    registration = FakeRegistration(set(), status=status)
    contacts = directory(httpx.MockTransport(registration))

    results = await asyncio.gather(
        *(contacts.fetch(f"r-{n}") for n in range(5)), return_exceptions=True
    )

    assert len(registration.requests) == 1
    assert all(isinstance(result, TransientError) for result in results), results


async def test_registration_unreachable_is_transient_for_every_waiter() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    contacts = directory(httpx.MockTransport(refuse))
    results = await asyncio.gather(
        *(contacts.fetch(f"r-{n}") for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, TransientError) for result in results), results
    # the next lookups are asked again (a failed request is not remembered)
    with pytest.raises(TransientError):
        await contacts.fetch("r-1")


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"contacts": [{"name": "x"}]}),
        httpx.Response(200, json={"registration_id": "r-1"}),
        httpx.Response(422, json={"detail": "registration_ids"}),
    ],
)
async def test_a_malformed_answer_is_not_retried_forever(answer: httpx.Response) -> None:
    contacts = directory(httpx.MockTransport(lambda _: answer))
    results = await asyncio.gather(
        *(contacts.fetch(f"r-{n}") for n in range(2)), return_exceptions=True
    )
    assert all(isinstance(result, ContactLookupFailed) for result in results), results


async def test_a_malformed_contact_fails_only_its_own_lookup() -> None:
    asked: list[tuple[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append((request.method, request.url.path))
        broken = {"registration_id": "r-2", "name": "no address"}
        if request.method == "POST":
            return httpx.Response(
                200, json={"contacts": [contact_body("r-1"), broken, contact_body("r-3")]}
            )
        return httpx.Response(200, json=broken)

    contacts = directory(httpx.MockTransport(answer))
    one, two, three, four = await asyncio.gather(
        *(contacts.fetch(f"r-{n}") for n in range(1, 5)), return_exceptions=True
    )

    assert isinstance(one, Contact) and one.registration_id == "r-1"
    assert isinstance(three, Contact) and three.registration_id == "r-3"
    assert isinstance(two, ContactLookupFailed)
    assert isinstance(four, ContactLookupFailed), "whose the malformed one was is not known"
    # those not in the answer were asked again one by one
    assert sorted(asked) == [
        ("GET", "/internal/v1/registrations/r-2/contact"),
        ("GET", "/internal/v1/registrations/r-4/contact"),
        ("POST", CONTACTS_PATH),
    ]


async def test_a_registration_without_the_batch_route_is_asked_one_id_at_a_time() -> None:
    paths: list[tuple[str, str]] = []

    def old_registration(request: httpx.Request) -> httpx.Response:
        paths.append((request.method, request.url.raw_path.decode()))
        if request.method == "POST":
            return httpx.Response(405)
        if request.url.raw_path.decode().endswith("r-1/contact"):
            return httpx.Response(200, json=contact_body("r-1"))
        return httpx.Response(404, json={"detail": "gone"})

    contacts = directory(httpx.MockTransport(old_registration))
    one, erased, escaped = await asyncio.gather(
        contacts.fetch("r-1"), contacts.fetch("r-2"), contacts.fetch("../../v1/municipalities")
    )

    assert one is not None and one.email == "r-1@example.org"
    assert erased is None and escaped is None
    assert sorted(paths) == [
        ("GET", "/internal/v1/registrations/..%2F..%2Fv1%2Fmunicipalities/contact"),
        ("GET", "/internal/v1/registrations/r-1/contact"),
        ("GET", "/internal/v1/registrations/r-2/contact"),
        ("POST", CONTACTS_PATH),
    ]


async def test_a_caller_that_stops_waiting_leaves_the_others_their_answers() -> None:
    release = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        await release.wait()
        ids = json.loads(request.content)["registration_ids"]
        return httpx.Response(200, json={"contacts": [contact_body(i) for i in ids]})

    contacts = directory(httpx.MockTransport(slow))
    impatient = asyncio.create_task(contacts.fetch("r-1"))
    patient = asyncio.create_task(contacts.fetch("r-2"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    release.set()
    found = await patient
    assert found is not None and found.registration_id == "r-2"
    assert impatient.cancelled()


# ------------------------------------------------------------ the real registration


SERVICE_KEY = "service-secret"


async def test_twin_against_the_real_registration_app() -> None:
    settings = RegistrationSettings(
        admin_key="admin-secret",
        federal_key="federal-secret",
        service_key=SERVICE_KEY,
        public_base_url="https://anmeldung.example.org",
    )
    runtime = ServiceRuntime(name="registration", settings=settings)
    app = build_registration(settings, runtime=runtime, repository=InMemoryRegistrationRepository())
    async with TestKafkaBroker(runtime.broker):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://registration") as http:
            admin = {"Authorization": "Bearer admin-secret"}
            created = await http.post(
                "/v1/municipalities",
                json={"ags": "07312000", "name": "Kaiserslautern", "kind": "city"}
                | {"population": 100000},
                headers=admin,
            )
            assert created.status_code == 201, created.text
            key = {"Authorization": f"Bearer {created.json()['api_key']}"}
            event = await http.post(
                "/v1/municipalities/07312000/dialogue-events",
                json={
                    "title": "Dialog: Zusammenhalt in der Nachbarschaft",
                    "starts_at": "2030-12-10T17:00:00+00:00",
                    "ends_at": "2030-12-10T19:30:00+00:00",
                    "format": "online",
                    "online_link": "https://meet.example.org/dialog",
                    "capacity": 2,
                    "registration_deadline": "2030-11-30T17:00:00+00:00",
                },
                headers=key,
            )
            assert event.status_code == 201, event.text
            ids = []
            for number in range(3):
                response = await http.post(
                    f"/v1/dialogue-events/{event.json()['id']}/registrations",
                    json={
                        "name": f"Person {number}",
                        "email": f"person{number}@example.org",
                        "sector": "resident",
                        "language": "tr" if number == 1 else "de",
                        "consent": True,
                    },
                )
                assert response.status_code == 201, response.text
                ids.append(response.json()["registration_id"])
            service = {"Authorization": f"Bearer {SERVICE_KEY}"}
            singles = [
                (await http.get(f"/internal/v1/registrations/{i}/contact", headers=service)).json()
                for i in ids
            ]
            erasure = singles[2]["erasure_url"].removeprefix("https://anmeldung.example.org")
            assert (await http.post(erasure)).status_code == 200

        contacts = HttpContactDirectory(
            base_url="http://registration", service_key=SERVICE_KEY, transport=transport
        )
        asked: list[str] = []
        real_send = transport.handle_async_request

        async def counted(request: httpx.Request) -> httpx.Response:
            asked.append(f"{request.method} {request.url.path}")
            return await real_send(request)

        transport.handle_async_request = counted  # type: ignore[method-assign]
        found = await asyncio.gather(*(contacts.fetch(i) for i in [*ids, "unknown"]))
        await contacts.close()

    assert asked == [f"POST {CONTACTS_PATH}"]
    for single, contact in zip(singles[:2], found[:2], strict=True):
        assert contact == Contact(**single)
    assert found[1] is not None and found[1].language == "tr"
    assert found[2] is None, "erased"
    assert found[3] is None, "unknown"
