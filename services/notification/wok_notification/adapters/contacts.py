"""Asking registration for what must not ride Kafka, with the shared service key: a
participant's contact details, an event's access details (the online link), the taskforce
members to remind before an event's registration deadline, and the municipality's contact
office (staff mails)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from wok_notification.domain import AccessInfo, Contact, OfficeContact
from wok_runtime.coalesce import Coalescer
from wok_runtime.consumer import TransientError
from wok_runtime.logging import get_logger

log = get_logger(__name__)

_Body = TypeVar("_Body", bound=BaseModel)
LOOKUP_CONNECTIONS = 8
CONTACTS_PATH = "/internal/v1/registrations/contacts"
# registration's limit for one request
MAX_CONTACTS_PER_POST = 500


class ContactLookupFailed(Exception):
    """Registration answered in a way that retrying will not change (a bug on one side)."""


class ContactDirectory(Protocol):
    async def fetch(self, registration_id: str) -> Contact | None:
        """The contact, or None if registration does not know it (unknown or erased).

        Raises TransientError while registration cannot answer.
        """
        ...


class _ContactResponse(BaseModel):
    registration_id: str
    dialogue_event_id: str
    name: str
    email: str
    language: str = "de"
    cancel_url: str | None = None
    erasure_url: str | None = None


class _RegistrationLookup:
    """A GET of one of registration's internal routes with the shared service key, its body
    read into `model`: None for 404, TransientError while registration cannot answer,
    ContactLookupFailed for an answer that retrying will not change."""

    def __init__(
        self,
        *,
        base_url: str,
        service_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._service_key = service_key
        self._timeout_s = timeout_s
        self._transport = transport
        # One client, its connections kept alive across lookups, per event loop; no more
        # lookups at once than connections (httpx's pool spends time quadratic in the
        # requests waiting in it)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None

    def _client_now(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            self._client = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self._timeout_s,
                transport=self._transport,
                headers={"Authorization": f"Bearer {self._service_key}"},
                limits=httpx.Limits(
                    max_connections=LOOKUP_CONNECTIONS, max_keepalive_connections=LOOKUP_CONNECTIONS
                ),
            )
            self._slots = asyncio.Semaphore(LOOKUP_CONNECTIONS)
            self._loop = loop
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _lookup(self, path: str, model: type[_Body], *, what: str) -> _Body | None:
        client = self._client_now()
        assert self._slots is not None
        async with self._slots:
            response = await _get(client, path)
        if response is None:
            return None
        try:
            return model.model_validate_json(response.content)
        except ValidationError as error:
            raise ContactLookupFailed(
                f"unexpected {what} response: {error.error_count()} invalid fields"
            ) from error


class _ContactsResponse(BaseModel):
    contacts: list[dict[str, Any]]


class _ValidContactsResponse(BaseModel):
    contacts: list[_ContactResponse]


def _all_well_formed(content: bytes) -> list[_ContactResponse] | None:
    """The contacts of a batch answer read in one go (at half the CPU), when every one is
    well-formed (as good as always); None sends the answer the entry-by-entry way."""
    try:
        return _ValidContactsResponse.model_validate_json(content).contacts
    except ValidationError:
        return None


def _contact(body: _ContactResponse) -> Contact:
    return Contact(
        registration_id=body.registration_id,
        dialogue_event_id=body.dialogue_event_id,
        name=body.name,
        email=body.email,
        language=body.language,
        cancel_url=body.cancel_url,
        erasure_url=body.erasure_url,
    )


class HttpContactDirectory(_RegistrationLookup):
    """Contacts from registration with the shared service key, many in one request.

    The lookups of the handlers working side by side are collected while a request is
    under way (or for one turn of the event loop) and asked for together with
    `POST /internal/v1/registrations/contacts` (at most `MAX_CONTACTS_PER_POST` ids, at
    most `posts_in_flight` requests at once): each caller gets its own contact, None when
    registration does not know it (unknown or erased), and every caller of a request that
    failed gets its error (TransientError while registration cannot answer). A registration
    without that route (404/405: an older version) is asked one id at a time
    (`GET /internal/v1/registrations/{id}/contact`)."""

    def __init__(
        self,
        *,
        base_url: str,
        service_key: str,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        posts_in_flight: int = 1,
    ) -> None:
        super().__init__(
            base_url=base_url, service_key=service_key, timeout_s=timeout_s, transport=transport
        )
        self.lookups: Coalescer[str, Contact | None] = Coalescer(
            self._fetch_many, max_batch=MAX_CONTACTS_PER_POST, max_in_flight=posts_in_flight
        )

    async def fetch(self, registration_id: str) -> Contact | None:
        return await self.lookups.submit(registration_id)

    async def _fetch_many(self, registration_ids: list[str]) -> list[Contact | Exception | None]:
        wanted = list(dict.fromkeys(registration_ids))
        client = self._client_now()
        assert self._slots is not None
        async with self._slots:
            response = await _send(client, "POST", CONTACTS_PATH, json={"registration_ids": wanted})
        if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.METHOD_NOT_ALLOWED):
            return await self._one_by_one(registration_ids)
        valid = _all_well_formed(response.content)
        if valid is not None:
            by_id = {contact.registration_id: contact for contact in map(_contact, valid)}
            return [by_id.get(i) for i in registration_ids]
        try:
            entries = _ContactsResponse.model_validate_json(response.content).contacts
        except ValidationError as error:
            raise ContactLookupFailed(
                f"unexpected contacts response: {error.error_count()} invalid fields"
            ) from error
        found: dict[str, Contact] = {}
        malformed = 0
        for entry in entries:
            try:
                contact = _contact(_ContactResponse.model_validate(entry))
            except ValidationError:
                malformed += 1
                continue
            found[contact.registration_id] = contact
        if malformed:
            # Whose entry it was is not known: those not found are asked one by one, so a
            # malformed contact fails only its own lookup, never the others' of the request
            log.warning("malformed contacts in a batch lookup", malformed=malformed)
            missing = [i for i in registration_ids if i not in found]
            alone = dict(zip(missing, await self._one_by_one(missing), strict=True))
            return [found[i] if i in found else alone[i] for i in registration_ids]
        return [found.get(i) for i in registration_ids]

    async def _one_by_one(self, registration_ids: list[str]) -> list[Contact | Exception | None]:
        """Each id with the single lookup, each with its own answer or error."""
        wanted = list(dict.fromkeys(registration_ids))
        answers = await asyncio.gather(
            *(self._fetch_one(i) for i in wanted), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException) and not isinstance(answer, Exception):
                raise answer  # cancelled: not an answer
        by_id: dict[str, Any] = dict(zip(wanted, answers, strict=True))
        return [by_id[i] for i in registration_ids]

    async def _fetch_one(self, registration_id: str) -> Contact | None:
        path = f"/internal/v1/registrations/{quote(registration_id, safe='')}/contact"
        body = await self._lookup(path, _ContactResponse, what="contact")
        return None if body is None else _contact(body)


async def _get(client: httpx.AsyncClient, path: str) -> httpx.Response | None:
    """The OK response, None for 404; TransientError while registration cannot answer."""
    response = await _send(client, "GET", path)
    if response.status_code == httpx.codes.METHOD_NOT_ALLOWED:
        raise ContactLookupFailed(f"registration answered {response.status_code}")
    return None if response.status_code == httpx.codes.NOT_FOUND else response


async def _send(
    client: httpx.AsyncClient, method: str, path: str, *, json: Any = None
) -> httpx.Response:
    """The response if OK, 404 or 405; TransientError while registration cannot answer,
    ContactLookupFailed for any other answer."""
    try:
        response = await client.request(method, path, json=json)
    except httpx.TransportError as error:
        raise TransientError(f"registration unreachable: {type(error).__name__}") from error
    if response.status_code in (httpx.codes.NOT_FOUND, httpx.codes.METHOD_NOT_ALLOWED):
        return response
    if response.status_code >= 500 or response.status_code == httpx.codes.TOO_MANY_REQUESTS:
        raise TransientError(f"registration answered {response.status_code}")
    if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        # A wrong or missing WOK_SERVICE_KEY: every message would fail alike, so wait
        # for an operator to fix the setting rather than dead-letter them all.
        log.error("registration refused our service key; check WOK_SERVICE_KEY")
        raise TransientError(f"registration answered {response.status_code}")
    if response.status_code != httpx.codes.OK:
        raise ContactLookupFailed(f"registration answered {response.status_code}")
    return response


class AccessDirectory(Protocol):
    async def fetch(self, dialogue_event_id: str) -> AccessInfo | None:
        """Place and online link of an event, or None if registration does not know it."""
        ...


class _AccessResponse(BaseModel):
    place: str | None = None
    online_link: str | None = None


class HttpAccessDirectory(_RegistrationLookup):
    """`GET /internal/v1/dialogue-events/{id}/access` with the shared service key."""

    async def fetch(self, dialogue_event_id: str) -> AccessInfo | None:
        path = f"/internal/v1/dialogue-events/{quote(dialogue_event_id, safe='')}/access"
        body = await self._lookup(path, _AccessResponse, what="access")
        if body is None:
            return None
        return AccessInfo(place=body.place, online_link=body.online_link)


@dataclass
class FakeAccessDirectory:
    """Access details by dialogue event id (tests)."""

    access: dict[str, AccessInfo] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    async def fetch(self, dialogue_event_id: str) -> AccessInfo | None:
        self.lookups.append(dialogue_event_id)
        return self.access.get(dialogue_event_id)


@dataclass
class FakeContactDirectory:
    """Contacts by registration id; `unavailable` makes the next lookups fail transiently."""

    contacts: dict[str, Contact] = field(default_factory=dict)
    unavailable: int = 0
    lookups: list[str] = field(default_factory=list)

    def add(self, contact: Contact) -> None:
        self.contacts[contact.registration_id] = contact

    async def fetch(self, registration_id: str) -> Contact | None:
        self.lookups.append(registration_id)
        if self.unavailable > 0:
            self.unavailable -= 1
            raise TransientError("registration unreachable: ConnectError")
        return self.contacts.get(registration_id)


class TaskforceDirectory(Protocol):
    async def fetch(self, dialogue_event_id: str) -> list[Contact]:
        """The taskforce members to remind of the event's registration deadline (those with
        an address and no registration; none once it is cancelled or the deadline passed),
        as contacts whose `registration_id` is the member id. Empty for an unknown event."""
        ...


class _Invitee(BaseModel):
    member_id: str
    name: str
    email: str
    language: str = "de"


class _InviteesResponse(BaseModel):
    dialogue_event_id: str
    invitees: list[_Invitee]


class HttpTaskforceDirectory(_RegistrationLookup):
    """`GET /internal/v1/dialogue-events/{id}/taskforce-invitees` with the service key."""

    async def fetch(self, dialogue_event_id: str) -> list[Contact]:
        path = (
            f"/internal/v1/dialogue-events/{quote(dialogue_event_id, safe='')}/taskforce-invitees"
        )
        body = await self._lookup(path, _InviteesResponse, what="invitees")
        if body is None:
            return []
        return [
            Contact(
                registration_id=invitee.member_id,
                dialogue_event_id=body.dialogue_event_id,
                name=invitee.name,
                email=invitee.email,
                language=invitee.language,
            )
            for invitee in body.invitees
        ]


class OfficeDirectory(Protocol):
    async def fetch(self, ags: str) -> OfficeContact | None:
        """The contact office, or None when the municipality has no office address."""
        ...


class _OfficeResponse(BaseModel):
    ags: str
    name: str
    contact_office: str | None = None
    email: str
    language: str = "de"


class HttpOfficeDirectory(_RegistrationLookup):
    """`GET /internal/v1/municipalities/{ags}/contact-office` with the service key."""

    async def fetch(self, ags: str) -> OfficeContact | None:
        path = f"/internal/v1/municipalities/{quote(ags, safe='')}/contact-office"
        body = await self._lookup(path, _OfficeResponse, what="contact office")
        if body is None:
            return None
        return OfficeContact(
            ags=body.ags,
            municipality_name=body.name,
            office_name=body.contact_office,
            email=body.email,
            language=body.language,
        )


@dataclass
class FakeTaskforceDirectory:
    """Invitees by dialogue event id (tests)."""

    invitees: dict[str, list[Contact]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    async def fetch(self, dialogue_event_id: str) -> list[Contact]:
        self.lookups.append(dialogue_event_id)
        return list(self.invitees.get(dialogue_event_id, []))


@dataclass
class FakeOfficeDirectory:
    """Contact offices by AGS (tests)."""

    offices: dict[str, OfficeContact] = field(default_factory=dict)

    async def fetch(self, ags: str) -> OfficeContact | None:
        return self.offices.get(ags)
