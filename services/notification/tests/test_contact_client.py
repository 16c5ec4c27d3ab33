"""The HTTP contact client against registration's answers (httpx's mock transport, no server)."""

from __future__ import annotations

import httpx
import pytest

from wok_notification.adapters.contacts import ContactLookupFailed, HttpContactDirectory
from wok_notification.domain import Contact
from wok_runtime.consumer import TransientError


def directory(handler: httpx.MockTransport) -> HttpContactDirectory:
    return HttpContactDirectory(
        base_url="http://registration.test/", service_key="service-secret", transport=handler
    )


async def test_a_known_registration_gives_its_contact_with_the_service_key() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "registration_id": "r-1",
                "dialogue_event_id": "event-1",
                "name": "Jörg Müller",
                "email": "joerg@example.org",
                "language": "de",
            },
        )

    contact = await directory(httpx.MockTransport(answer)).fetch("r-1")

    assert contact == Contact(
        registration_id="r-1",
        dialogue_event_id="event-1",
        name="Jörg Müller",
        email="joerg@example.org",
        language="de",
    )
    assert seen[0].url.path == "/internal/v1/registrations/r-1/contact"
    assert seen[0].headers["Authorization"] == "Bearer service-secret"


async def test_an_erased_registration_is_none() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(404, json={"detail": "gone"}))
    assert await directory(transport).fetch("r-1") is None


@pytest.mark.parametrize("status", [500, 502, 503, 429, 401])
async def test_registration_away_or_refusing_our_key_is_transient(status: int) -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(status))
    with pytest.raises(TransientError):
        await directory(transport).fetch("r-1")


async def test_registration_unreachable_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(TransientError):
        await directory(httpx.MockTransport(refuse)).fetch("r-1")


async def test_a_malformed_answer_is_not_retried_forever() -> None:
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json={"name": "x"}))
    with pytest.raises(ContactLookupFailed):
        await directory(transport).fetch("r-1")


async def test_the_registration_id_cannot_leave_the_contact_path() -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(404)

    await directory(httpx.MockTransport(answer)).fetch("../../v1/municipalities")
    assert paths == ["/internal/v1/registrations/..%2F..%2Fv1%2Fmunicipalities/contact"]
