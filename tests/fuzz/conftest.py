"""A stack of its own for the fuzzer, and a small world on it that the fuzzer's requests reach.

The services run as processes on the embedded stack (real HTTP, the MongoDB protocol of
nx-27017, the Kafka protocol of tansu), so a fuzzed request takes the path a user's takes,
through storage and the events it causes. The world gives the fuzzer real keys and ids:
municipality A (its key for its own routes), municipality B (whose key the fuzzer may rotate
and revoke), a dialogue event with a registration and its signed links, a second event the
fuzzer may cancel, a self-check, a measure, a taskforce member and a sent delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings

T = TypeVar("T")

AGS_A = "07312000"  # Kaiserslautern
AGS_B = "05911000"  # Bochum
STARTS = datetime(2031, 3, 4, 17, 0, tzinfo=UTC)
WAIT_S = 90.0
# A read with the municipality's own key, per service that learns keys from events.
KEY_PROBES = {"exchange": "/v1/municipalities/{ags}/peers"}


@dataclass(frozen=True)
class Link:
    """A signed link from registration's e-mails: the path and its query."""

    path: str
    query: dict[str, str]


@dataclass
class FuzzWorld:
    """Keys and ids on the fuzz stack (see the module docstring)."""

    stack: EmbeddedStack
    keys: dict[str, str]
    """Key by role: admin, federal, service, municipality (A's own), other (B's own)."""
    ids: dict[str, str]
    """Known values by path-parameter name (`ags`, `dialogue_event_id`, ...)."""
    cancel_link: Link
    erasure_link: Link
    spare_event_id: str
    """A dialogue event of A the fuzzer may cancel."""


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    data_dir = tmp_path_factory.mktemp("wok-fuzz")
    settings = StackSettings.with_free_ports(
        data_dir=Path(data_dir), topic_prefix="fuzz.", stack_stop_grace_s=5.0
    )
    with EmbeddedStack(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def fuzz_world(fuzz_stack: EmbeddedStack) -> FuzzWorld:
    return await build_world(fuzz_stack)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def eventually(probe: Callable[[], Awaitable[T | None]], *, what: str) -> T:
    deadline = time.monotonic() + WAIT_S
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S} s")
        await asyncio.sleep(0.3)


def _link(url: str) -> Link:
    parts = urlsplit(url)
    return Link(path=parts.path, query={k: v[0] for k, v in parse_qs(parts.query).items()})


def _event_body(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "starts_at": STARTS.isoformat(),
        "ends_at": (STARTS + timedelta(hours=2)).isoformat(),
        "format": "hybrid",
        "place": "Stadtbibliothek",
        "online_link": "https://meet.example.org/fuzz",
        "capacity": 20,
        "registration_deadline": (STARTS - timedelta(days=7)).isoformat(),
    }


def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), f"{response.request.url}: {response.text}"
    body: dict[str, Any] = response.json()
    return body


async def build_world(stack: EmbeddedStack) -> FuzzWorld:
    admin, service = bearer(stack.admin_key), bearer(stack.service_key)
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        keys = {
            "admin": stack.admin_key,
            "federal": stack.federal_key,
            "service": stack.service_key,
        }
        for role, (ags, name) in {
            "municipality": (AGS_A, "Kaiserslautern"),
            "other": (AGS_B, "Bochum"),
        }.items():
            onboarded = await client.post(
                "/v1/municipalities", json={"ags": ags, "name": name, "kind": "city"}, headers=admin
            )
            keys[role] = str(_created(onboarded)["api_key"])
        own = bearer(keys["municipality"])
        url = f"/v1/municipalities/{AGS_A}/dialogue-events"
        event = _created(await client.post(url, json=_event_body("Dialog: Fuzz"), headers=own))
        spare = _created(await client.post(url, json=_event_body("Dialog: Ersatz"), headers=own))
        registered = _created(
            await client.post(
                f"/v1/dialogue-events/{event['id']}/registrations",
                json={
                    "name": "Fuzz Teilnehmerin",
                    "email": "fuzz-participant@example.org",
                    "sector": "resident",
                    "language": "de",
                    "consent": True,
                },
            )
        )
        registration_id = str(registered["registration_id"])
        contact = _created(
            await client.get(
                f"/internal/v1/registrations/{registration_id}/contact", headers=service
            )
        )
        member = _created(
            await client.post(
                f"/v1/municipalities/{AGS_A}/taskforce",
                json={"name": "Fuzz Mitglied", "role": "member", "sector": "administration"},
                headers=own,
            )
        )

    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=30) as client:
        # Assessment learns A's key from registration's key events.
        async def self_check() -> dict[str, Any] | None:
            response = await client.post(f"/v1/municipalities/{AGS_A}/self-checks", headers=own)
            return response.json() if response.status_code in (200, 201) else None

        started = await eventually(self_check, what="assessment learning the municipality's key")
        measure = _created(
            await client.post(
                f"/v1/municipalities/{AGS_A}/measures",
                json={"field": 3, "title": "Fuzz-Maßnahme", "owner_role": "Integrationsbüro"},
                headers=own,
            )
        )

    # Other services learn A's key from registration's key events too.
    for name, path in KEY_PROBES.items():
        if name in stack.service_urls:
            async with httpx.AsyncClient(base_url=stack.url(name), timeout=30) as client:

                async def knows_key(path: str = path) -> bool | None:
                    response = await client.get(path.format(ags=AGS_A), headers=own)
                    return True if response.status_code != 401 else None

                await eventually(knows_key, what=f"{name} learning the municipality's key")

    async with httpx.AsyncClient(base_url=stack.url("notification"), timeout=30) as client:

        async def delivery() -> str | None:
            response = await client.get("/v1/deliveries", headers=service)
            found = [d for d in response.json() if d["status"] == "sent"]
            return str(found[0]["id"]) if found else None

        delivery_id = await eventually(delivery, what="the confirmation mail being sent")

    return FuzzWorld(
        stack=stack,
        keys=keys,
        ids={
            "ags": AGS_A,
            "dialogue_event_id": str(event["id"]),
            "registration_id": registration_id,
            "member_id": str(member["member_id"]),
            "self_check_id": str(started["id"]),
            "measure_id": str(measure["id"]),
            "delivery_id": delivery_id,
            "land": AGS_A[:2],
        },
        cancel_link=_link(contact["cancel_url"]),
        erasure_link=_link(contact["erasure_url"]),
        spare_event_id=str(spare["id"]),
    )
