"""The registration service through its HTTP API and the test broker, on two stores:
in memory (fast) and on the real MongoDB wire protocol (nx-27017), the twin of every test
that runs with the `harness` fixture."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pymongo import AsyncMongoClient

from wok_contracts import decode_envelope
from wok_contracts.topics import REGISTRATION_EVENTS, dead_letter_topic
from wok_registration.adapters.repository import (
    InMemoryRegistrationRepository,
    MongoRegistrationRepository,
)
from wok_registration.app import build_app
from wok_registration.entrypoints.commands import COMMAND_GROUP
from wok_registration.handlers import RegistrationHandlers
from wok_registration.settings import RegistrationSettings
from wok_runtime.service import ServiceRuntime

ADMIN_KEY = "admin-secret"
FEDERAL_KEY = "federal-secret"
SERVICE_KEY = "service-secret"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
FEDERAL = {"Authorization": f"Bearer {FEDERAL_KEY}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_KEY}"}
KAISERSLAUTERN = "07312000"
STARTS = datetime(2030, 12, 10, 17, 0, tzinfo=UTC)  # 18:00 in Berlin, a Tuesday


MEMORY_ONLY = pytest.mark.parametrize("harness", ["memory"], indirect=True)
"""For tests of validation and access rules that a request fails before it reaches the
store: their store twin would only repeat the in-memory run."""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def event_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "title": "Dialog: Zusammenhalt in der Nachbarschaft",
        "starts_at": STARTS.isoformat(),
        "ends_at": (STARTS + timedelta(hours=2, minutes=30)).isoformat(),
        "format": "online",
        "online_link": "https://meet.example.org/dialog",
        "capacity": 2,
        "registration_deadline": (STARTS - timedelta(days=10)).isoformat(),
    }
    return body | overrides


def person(number: int, **overrides: Any) -> dict[str, Any]:
    return {
        "name": f"Person {number}",
        "email": f"person{number}@example.org",
        "sector": "resident",
        "consent": True,
    } | overrides


@dataclass
class Harness:
    client: httpx.AsyncClient
    runtime: ServiceRuntime
    handlers: RegistrationHandlers
    published: list[tuple[bytes | None, bytes]]
    backend: str
    dead_letters: list[Any] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    commands: Any = None
    """The municipal systems' command processor (its handlers can be called as a delivery
    whose processed mark was lost would call them)."""

    async def published_events(self) -> list[Any]:
        await self.runtime.relay.drain_once()
        return [decode_envelope(value) for _, value in self.published]

    async def types(self) -> list[str]:
        return [event.type.removeprefix("registration.") for event in await self.published_events()]

    def set_clock(self, now: Callable[[], datetime]) -> None:
        self.handlers.clock = now

    async def onboard(self, ags: str = KAISERSLAUTERN, **fields: Any) -> str:
        response = await self.client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": "Kaiserslautern", "kind": "city", "population": 100000}
            | fields,
            headers=ADMIN,
        )
        assert response.status_code == 201, response.text
        self.keys[ags] = str(response.json()["api_key"])
        return self.keys[ags]

    async def schedule(self, ags: str = KAISERSLAUTERN, **overrides: Any) -> str:
        response = await self.client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json=event_body(**overrides),
            headers=bearer(self.keys[ags]),
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def register(self, event_id: str, number: int, **overrides: Any) -> httpx.Response:
        return await self.client.post(
            f"/v1/dialogue-events/{event_id}/registrations", json=person(number, **overrides)
        )

    async def event(self, event_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/dialogue-events/{event_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def contact(self, registration_id: str) -> httpx.Response:
        return await self.client.get(
            f"/internal/v1/registrations/{registration_id}/contact", headers=SERVICE
        )

    async def link(self, registration_id: str, kind: str) -> str:
        response = await self.contact(registration_id)
        assert response.status_code == 200, response.text
        return str(response.json()[f"{kind}_url"])

    async def municipality_write(
        self, method: str, path: str, key: str | None, body: Any = None
    ) -> httpx.Response:
        headers = bearer(key) if key is not None else {}
        return await self.client.request(method, path, json=body, headers=headers)


def settings() -> RegistrationSettings:
    return RegistrationSettings(
        admin_key=ADMIN_KEY,
        federal_key=FEDERAL_KEY,
        service_key=SERVICE_KEY,
        public_base_url="https://anmeldung.example.org",
    )


@pytest.fixture(params=["memory", "mongodb"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    configured = settings()
    client: AsyncMongoClient[dict[str, Any]] | None = None
    if request.param == "memory":
        runtime = ServiceRuntime(name="registration", settings=configured)
        app = build_app(configured, runtime=runtime, repository=InMemoryRegistrationRepository())
    else:
        uri = request.getfixturevalue("mongodb_uri")
        client = AsyncMongoClient(uri, tz_aware=True)
        database = client[f"registration_{uuid.uuid4().hex[:12]}"]
        runtime = ServiceRuntime(name="registration", settings=configured, database=database)
        app = build_app(configured, runtime=runtime)
    handlers: RegistrationHandlers = app.state.handlers
    if isinstance(handlers.repository, MongoRegistrationRepository):
        await handlers.repository.ensure_indexes()
    published: list[tuple[bytes | None, bytes]] = []

    @runtime.broker.subscriber(REGISTRATION_EVENTS)
    async def capture(message: KafkaMessage) -> None:
        published.append((message.raw_message.key, message.raw_message.value))

    dead_letters: list[Any] = []

    @runtime.broker.subscriber(dead_letter_topic(COMMAND_GROUP))
    async def capture_dead_letter(message: KafkaMessage) -> None:
        dead_letters.append(message.raw_message)

    try:
        async with TestKafkaBroker(runtime.broker):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://registration"
            ) as http:
                yield Harness(
                    http,
                    runtime,
                    handlers,
                    published,
                    request.param,
                    dead_letters=dead_letters,
                    commands=app.state.commands,
                )
    finally:
        if client is not None:
            await client.close()
