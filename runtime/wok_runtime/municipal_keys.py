"""Municipal API keys, verified locally from registration's key events (no call per request).

Registration publishes `MunicipalityKeyIssued` (the SHA-256 of the key, never the key) on
onboarding and rotation and `MunicipalityKeyRevoked` on revocation. A service that acts for
municipalities keeps a key directory fed by these events and checks every presented key
against it:

- one current key per AGS; a newer issue replaces it, a revocation removes it;
- order-safe: "newer" is the envelope time of the issuing event, so a KeyIssued redelivered
  or replayed after a later one never brings the old key back; the newest issue time is
  kept even after a revocation, and revoked key ids are remembered, so neither an older nor
  the revoked key returns when events arrive late or twice;
- idempotent: the same event applied again changes nothing.

Usage in a service (see wok_assessment.app):

    keys = MongoKeyDirectory(runtime.database)
    runtime.on_startup(keys.ensure_indexes)
    runtime.consume(group=..., topics=[REGISTRATION_EVENTS],
                    handlers={**key_event_handlers(keys), ...})
    OwnMunicipality = Annotated[str, Depends(municipality_key_dependency(keys))]

No `from __future__ import annotations`: FastAPI reads the dependency's annotations at runtime.
"""

import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends, HTTPException, Path, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pymongo.errors import DuplicateKeyError

from wok_contracts import Ags, Envelope, EventData
from wok_contracts.events import MunicipalityKeyIssued, MunicipalityKeyRevoked

KEYS_COLLECTION = "municipal_keys"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest registration publishes (keys have 256 random bits: no salt)."""
    return hashlib.sha256(key.encode()).hexdigest()


def event_time_us(envelope: Envelope[Any]) -> int:
    """The envelope time in whole microseconds since the epoch (exact, no float rounding)."""
    moment = envelope.time if envelope.time.tzinfo else envelope.time.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class MunicipalKey:
    ags: str
    key_id: str
    key_hash: str
    issued_us: int


class KeyDirectory(Protocol):
    async def issue(self, *, ags: str, key_id: str, key_hash: str, issued_us: int) -> bool:
        """Make this the AGS's key unless a newer one was issued or this one was revoked."""
        ...

    async def revoke(self, *, ags: str, key_id: str, revoked_us: int) -> None:
        """Forget this key for good (it stays revoked if its issue arrives later)."""
        ...

    async def current(self, ags: str) -> MunicipalKey | None: ...

    async def ags_for_hash(self, key_hash: str) -> str | None: ...


@dataclass
class _KeyRecord:
    issued_us: int = -1
    key_id: str | None = None
    key_hash: str | None = None
    revoked: dict[str, int] = field(default_factory=dict)


def _supersedes(
    *, issued_us: int, key_id: str, record_issued_us: int, record_key_id: str | None
) -> bool:
    # The same issue again (equal time and id) is applied again harmlessly; a different key
    # at exactly the same microsecond does not displace the one already there.
    return issued_us > record_issued_us or (
        issued_us == record_issued_us and key_id == record_key_id
    )


class InMemoryKeyDirectory:
    """The same rules over a dict (unit tests); MongoKeyDirectory is its twin on MongoDB."""

    def __init__(self) -> None:
        self.records: dict[str, _KeyRecord] = {}

    async def issue(self, *, ags: str, key_id: str, key_hash: str, issued_us: int) -> bool:
        record = self.records.setdefault(ags, _KeyRecord())
        if key_id in record.revoked or not _supersedes(
            issued_us=issued_us,
            key_id=key_id,
            record_issued_us=record.issued_us,
            record_key_id=record.key_id,
        ):
            return False
        record.issued_us, record.key_id, record.key_hash = issued_us, key_id, key_hash
        return True

    async def revoke(self, *, ags: str, key_id: str, revoked_us: int) -> None:
        record = self.records.setdefault(ags, _KeyRecord())
        record.revoked[key_id] = revoked_us
        if record.key_id == key_id:
            record.key_id = record.key_hash = None

    async def current(self, ags: str) -> MunicipalKey | None:
        record = self.records.get(ags)
        if record is None or record.key_id is None or record.key_hash is None:
            return None
        return MunicipalKey(ags, record.key_id, record.key_hash, record.issued_us)

    async def ags_for_hash(self, key_hash: str) -> str | None:
        for ags, record in self.records.items():
            if record.key_hash == key_hash:
                return ags
        return None


class MongoKeyDirectory:
    """One document per AGS: `{_id: ags, issued_us, key_id, key_hash, revoked: {key_id: us}}`.

    Only shapes nx-27017 handles (DESIGN.md section 8): insert, conditional `update_one` with
    `$set`/`$unset` on top-level and map keys, and a find by an indexed field.
    """

    def __init__(self, database: Any, *, collection: str = KEYS_COLLECTION) -> None:
        self._collection = database[collection]

    async def ensure_indexes(self) -> None:
        await self._collection.create_index("key_hash")

    async def issue(self, *, ags: str, key_id: str, key_hash: str, issued_us: int) -> bool:
        try:
            await self._collection.insert_one(
                {
                    "_id": ags,
                    "issued_us": issued_us,
                    "key_id": key_id,
                    "key_hash": key_hash,
                    "revoked": {},
                }
            )
            return True
        except DuplicateKeyError:
            pass
        result = await self._collection.update_one(
            {
                "_id": ags,
                f"revoked.{key_id}": {"$exists": False},
                "$or": [
                    {"issued_us": {"$lt": issued_us}},
                    {"issued_us": issued_us, "key_id": key_id},
                ],
            },
            {"$set": {"issued_us": issued_us, "key_id": key_id, "key_hash": key_hash}},
        )
        return bool(result.matched_count)

    async def revoke(self, *, ags: str, key_id: str, revoked_us: int) -> None:
        try:
            await self._collection.insert_one(
                {"_id": ags, "issued_us": -1, "revoked": {key_id: revoked_us}}
            )
            return
        except DuplicateKeyError:
            pass
        await self._collection.update_one({"_id": ags}, {"$set": {f"revoked.{key_id}": revoked_us}})
        await self._collection.update_one(
            {"_id": ags, "key_id": key_id}, {"$unset": {"key_id": "", "key_hash": ""}}
        )

    async def current(self, ags: str) -> MunicipalKey | None:
        document = await self._collection.find_one({"_id": ags})
        if document is None or not document.get("key_hash"):
            return None
        return MunicipalKey(ags, document["key_id"], document["key_hash"], document["issued_us"])

    async def ags_for_hash(self, key_hash: str) -> str | None:
        document = await self._collection.find_one({"key_hash": key_hash})
        return None if document is None else str(document["_id"])


EventHandler = Callable[[Envelope[Any]], Awaitable[None]]


def key_event_handlers(directory: KeyDirectory) -> dict[type[EventData], EventHandler]:
    """Handlers for `runtime.consume(handlers={**key_event_handlers(keys), ...})`."""

    async def record_key_issued(envelope: Envelope[Any]) -> None:
        data: MunicipalityKeyIssued = envelope.data
        await directory.issue(
            ags=data.ags,
            key_id=data.key_id,
            key_hash=data.key_hash,
            issued_us=event_time_us(envelope),
        )

    async def record_key_revoked(envelope: Envelope[Any]) -> None:
        data: MunicipalityKeyRevoked = envelope.data
        await directory.revoke(ags=data.ags, key_id=data.key_id, revoked_us=event_time_us(envelope))

    handlers: Mapping[type[EventData], EventHandler] = {
        MunicipalityKeyIssued: record_key_issued,
        MunicipalityKeyRevoked: record_key_revoked,
    }
    return dict(handlers)


_bearer = HTTPBearer(auto_error=False, description="The municipality's API key")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def key_holder_dependency(directory: KeyDirectory) -> Callable[..., Awaitable[str]]:
    """A dependency answering the AGS whose key was presented (401 if none, unknown or revoked).

    For paths without `{ags}` (e.g. a self-check by id): compare the answer with the owner of
    the resource and refuse with 403 (see `forbid_other_municipality`).
    """

    async def municipality_of_key(credentials: BearerCredentials) -> str:
        if credentials is None:
            raise _unauthorized("the municipality's key is required")
        ags = await directory.ags_for_hash(hash_key(credentials.credentials))
        if ags is None:
            raise _unauthorized("unknown or revoked key")
        return ags

    return municipality_of_key


def forbid_other_municipality(*, key_ags: str, ags: str) -> None:
    if key_ags != ags:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this key may act only for {key_ags}"
        )


def municipality_key_dependency(directory: KeyDirectory) -> Callable[..., Awaitable[str]]:
    """A dependency for paths with `{ags}`: the AGS if the key is that municipality's own.

    401 without a key or with an unknown or revoked one, 403 with another municipality's.
    """
    key_holder = key_holder_dependency(directory)

    async def own_municipality(
        ags: Annotated[Ags, Path(description="AGS of the municipality, e.g. 07312000")],
        key_ags: Annotated[str, Depends(key_holder)],
    ) -> str:
        forbid_other_municipality(key_ags=key_ags, ags=ags)
        return ags

    return own_municipality
