"""Asking registration for a participant's contact details (personal data never rides Kafka)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from wok_notification.domain import Contact
from wok_runtime.consumer import TransientError
from wok_runtime.logging import get_logger

log = get_logger(__name__)


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


class HttpContactDirectory:
    """`GET /internal/v1/registrations/{id}/contact` with the shared service key."""

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

    async def fetch(self, registration_id: str) -> Contact | None:
        path = f"/internal/v1/registrations/{quote(registration_id, safe='')}/contact"
        try:
            async with httpx.AsyncClient(
                base_url=self._base_url, timeout=self._timeout_s, transport=self._transport
            ) as client:
                response = await client.get(
                    path, headers={"Authorization": f"Bearer {self._service_key}"}
                )
        except httpx.TransportError as error:
            raise TransientError(f"registration unreachable: {type(error).__name__}") from error
        if response.status_code == httpx.codes.NOT_FOUND:
            return None
        if response.status_code >= 500 or response.status_code == httpx.codes.TOO_MANY_REQUESTS:
            raise TransientError(f"registration answered {response.status_code}")
        if response.status_code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            # A wrong or missing WOK_SERVICE_KEY: every message would fail alike, so wait
            # for an operator to fix the setting rather than dead-letter them all.
            log.error("registration refused our service key; check WOK_SERVICE_KEY")
            raise TransientError(f"registration answered {response.status_code}")
        if response.status_code != httpx.codes.OK:
            raise ContactLookupFailed(f"registration answered {response.status_code}")
        try:
            body = _ContactResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise ContactLookupFailed(
                f"unexpected contact response: {error.error_count()} invalid fields"
            ) from error
        return Contact(
            registration_id=body.registration_id,
            dialogue_event_id=body.dialogue_event_id,
            name=body.name,
            email=body.email,
            language=body.language,
        )


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
