"""The shared municipal key directory (wok_runtime.municipal_keys), in memory and on nx-27017.

Every scenario runs against both implementations: the in-memory one the fast service tests
use, and the MongoDB one on the real wire server, so both keep the same rules.
No future import: a route is defined inside a test.
"""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from wok_contracts import MunicipalityKeyIssued, MunicipalityKeyRevoked, new_envelope
from wok_runtime.mongo import mongo_client
from wok_runtime.municipal_keys import (
    InMemoryKeyDirectory,
    KeyDirectory,
    MongoKeyDirectory,
    event_time_us,
    hash_key,
    key_event_handlers,
    municipality_key_dependency,
)

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "nx-27017"])
async def directory(request: pytest.FixtureRequest) -> AsyncIterator[KeyDirectory]:
    if request.param == "memory":
        yield InMemoryKeyDirectory()
        return
    client = mongo_client(request.getfixturevalue("mongodb_uri"))
    mongo = MongoKeyDirectory(client[f"wok_keys_test_{uuid.uuid4().hex[:12]}"])
    await mongo.ensure_indexes()
    try:
        yield mongo
    finally:
        await client.close()


def issued(key: str, *, key_id: str, at: datetime, ags: str = KAISERSLAUTERN) -> Any:
    envelope = new_envelope(
        MunicipalityKeyIssued(ags=ags, key_id=key_id, key_hash=hash_key(key)),
        source="/wok/registration",
        municipality=ags,
    )
    return envelope.model_copy(update={"time": at})


def revoked(*, key_id: str, at: datetime, ags: str = KAISERSLAUTERN) -> Any:
    envelope = new_envelope(
        MunicipalityKeyRevoked(ags=ags, key_id=key_id),
        source="/wok/registration",
        municipality=ags,
    )
    return envelope.model_copy(update={"time": at})


async def apply(directory: KeyDirectory, *envelopes: Any) -> None:
    handlers = key_event_handlers(directory)
    for envelope in envelopes:
        await handlers[type(envelope.data)](envelope)


async def test_a_rotated_key_replaces_the_onboarding_key(directory: KeyDirectory) -> None:
    await apply(
        directory,
        issued("first-key", key_id="k1", at=T0),
        issued("second-key", key_id="k2", at=T0 + timedelta(days=30)),
    )
    assert await directory.ags_for_hash(hash_key("second-key")) == KAISERSLAUTERN
    assert await directory.ags_for_hash(hash_key("first-key")) is None
    current = await directory.current(KAISERSLAUTERN)
    assert current is not None and current.key_id == "k2"


async def test_an_older_issue_arriving_late_does_not_bring_the_old_key_back(
    directory: KeyDirectory,
) -> None:
    onboarding = issued("first-key", key_id="k1", at=T0)
    rotation = issued("second-key", key_id="k2", at=T0 + timedelta(seconds=1))
    await apply(directory, rotation, onboarding, onboarding)
    assert await directory.ags_for_hash(hash_key("second-key")) == KAISERSLAUTERN
    assert await directory.ags_for_hash(hash_key("first-key")) is None


async def test_the_same_issue_twice_changes_nothing(directory: KeyDirectory) -> None:
    onboarding = issued("first-key", key_id="k1", at=T0)
    await apply(directory, onboarding, onboarding)
    current = await directory.current(KAISERSLAUTERN)
    assert current is not None
    assert (current.key_id, current.key_hash) == ("k1", hash_key("first-key"))
    assert current.issued_us == event_time_us(onboarding)


async def test_a_revoked_key_stops_working_and_stays_revoked(directory: KeyDirectory) -> None:
    onboarding = issued("first-key", key_id="k1", at=T0)
    rotation = issued("second-key", key_id="k2", at=T0 + timedelta(days=1))
    revocation = revoked(key_id="k2", at=T0 + timedelta(days=2))
    await apply(directory, onboarding, rotation, revocation, rotation, onboarding)
    assert await directory.ags_for_hash(hash_key("second-key")) is None
    assert await directory.ags_for_hash(hash_key("first-key")) is None
    assert await directory.current(KAISERSLAUTERN) is None

    await apply(directory, issued("third-key", key_id="k3", at=T0 + timedelta(days=3)))
    assert await directory.ags_for_hash(hash_key("third-key")) == KAISERSLAUTERN


async def test_a_revocation_before_its_issue_wins(directory: KeyDirectory) -> None:
    await apply(
        directory,
        revoked(key_id="k1", at=T0 + timedelta(minutes=5)),
        issued("first-key", key_id="k1", at=T0),
    )
    assert await directory.ags_for_hash(hash_key("first-key")) is None


async def test_revoking_a_replaced_key_keeps_the_current_one(directory: KeyDirectory) -> None:
    await apply(
        directory,
        issued("first-key", key_id="k1", at=T0),
        issued("second-key", key_id="k2", at=T0 + timedelta(days=1)),
        revoked(key_id="k1", at=T0 + timedelta(days=2)),
    )
    assert await directory.ags_for_hash(hash_key("second-key")) == KAISERSLAUTERN


async def test_each_municipality_has_its_own_key(directory: KeyDirectory) -> None:
    await apply(
        directory,
        issued("kl-key", key_id="k1", at=T0),
        issued("mz-key", key_id="k2", at=T0, ags=MAINZ),
        revoked(key_id="k1", at=T0 + timedelta(days=1)),
    )
    assert await directory.ags_for_hash(hash_key("mz-key")) == MAINZ
    assert await directory.ags_for_hash(hash_key("kl-key")) is None


async def test_the_dependency_admits_only_the_municipality_s_own_current_key() -> None:
    directory = InMemoryKeyDirectory()
    await apply(
        directory,
        issued("kl-key", key_id="k1", at=T0),
        issued("mz-key", key_id="k2", at=T0, ags=MAINZ),
    )
    app = FastAPI()
    own = municipality_key_dependency(directory)

    @app.get("/v1/municipalities/{ags}/things")
    async def things(ags: Annotated[str, Depends(own)]) -> dict[str, str]:
        return {"ags": ags}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

        async def call(key: str | None, ags: str = KAISERSLAUTERN) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return await client.get(f"/v1/municipalities/{ags}/things", headers=headers)

        assert (await call("kl-key")).json() == {"ags": KAISERSLAUTERN}
        missing = await call(None)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert (await call("guessed")).status_code == 401
        other = await call("mz-key")
        assert other.status_code == 403
        assert MAINZ in other.json()["detail"]
        assert (await call("kl-key", ags="99000000")).status_code == 422

        await apply(directory, revoked(key_id="k1", at=T0 + timedelta(hours=1)))
        assert (await call("kl-key")).status_code == 401
