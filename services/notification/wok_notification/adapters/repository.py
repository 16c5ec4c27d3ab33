"""Storage of event details, contacts and deliveries; the outbox lives in the delivery document.

Every write is keyed by an entity id, so a handler that runs twice writes the same thing:
event details by dialogue event id (an older revision never overwrites a newer one),
contacts by registration id, deliveries by their deterministic id.

A delivery changes by compare-and-swap: the domain decides the transition on the document
as read, and the whole document is replaced only if its version is still the one read.
Marking it sent adds the NotificationSent event to its outbox in that same write. Whole
documents rather than `$set`, because nx-27017 (DESIGN.md section 8, measured with 0.8.1)
stores a datetime written by `$set` as a string, and its `replace_one(upsert=True)`
inserts nothing: so new documents are inserted, existing ones replaced.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from wok_contracts import EventFormat, NotificationKind
from wok_notification.domain import (
    Contact,
    Delivery,
    DeliveryStateError,
    DeliveryStatus,
    EventDetails,
)
from wok_runtime.outbox import (
    OUTBOX_FIELD,
    PENDING_FIELD,
    InMemoryOutboxSource,
    OutboundEvent,
    with_outbox,
)

VERSION_FIELD = "version"
# Each conflict means another writer moved the delivery on, so a few retries always suffice
MAX_CONFLICTS = 10


class NotificationRepository(Protocol):
    async def save_event(self, event: EventDetails) -> None:
        """Keep the newest revision of a dialogue event's details."""
        ...

    async def get_event(self, dialogue_event_id: str) -> EventDetails | None: ...

    async def save_contact(self, contact: Contact) -> None: ...

    async def get_contact(self, registration_id: str) -> Contact | None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def claim_delivery(
        self, delivery: Delivery, *, token: str, now: datetime, lease: timedelta
    ) -> Delivery | None:
        """Create the delivery if new, and claim it if it is pending and unclaimed.

        Returns the claimed delivery, or None when it is finished or someone else holds it.
        """
        ...

    async def release_delivery(self, delivery: Delivery, *, token: str, now: datetime) -> None: ...

    async def mark_sent(
        self,
        delivery: Delivery,
        *,
        token: str,
        sent_at: datetime,
        message_id: str,
        events: list[OutboundEvent],
    ) -> bool:
        """Mark the claimed delivery sent and add its events in the same write."""
        ...

    async def mark_failed(self, delivery: Delivery, *, token: str, reason: str) -> bool: ...

    async def list_deliveries(self, *, limit: int) -> list[Delivery]:
        """Newest first."""
        ...


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _aware_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _aware(value)


def _event_document(event: EventDetails) -> dict[str, Any]:
    document = asdict(event)
    document["_id"] = document.pop("dialogue_event_id")
    document["format"] = event.format.value
    return document


def _event(document: dict[str, Any]) -> EventDetails:
    return EventDetails(
        dialogue_event_id=document["_id"],
        ags=document["ags"],
        title=document["title"],
        description=document.get("description", ""),
        starts_at=_aware(document["starts_at"]),
        ends_at=_aware(document["ends_at"]),
        format=EventFormat(document["format"]),
        place=document.get("place"),
        revision=document.get("revision", 0),
    )


def _contact_document(contact: Contact, *, stored_at: datetime) -> dict[str, Any]:
    document = asdict(contact)
    document["_id"] = document.pop("registration_id")
    document["stored_at"] = stored_at
    return document


def _contact(document: dict[str, Any]) -> Contact:
    return Contact(
        registration_id=document["_id"],
        dialogue_event_id=document["dialogue_event_id"],
        name=document["name"],
        email=document["email"],
        language=document["language"],
    )


def _delivery_document(delivery: Delivery) -> dict[str, Any]:
    document = asdict(delivery)
    document["_id"] = document.pop("id")
    document["kind"] = delivery.kind.value
    document["status"] = delivery.status.value
    return document


def _delivery(document: dict[str, Any]) -> Delivery:
    return Delivery(
        id=document["_id"],
        kind=NotificationKind(document["kind"]),
        registration_id=document["registration_id"],
        dialogue_event_id=document["dialogue_event_id"],
        ags=document["ags"],
        language=document["language"],
        created_at=_aware(document["created_at"]),
        status=DeliveryStatus(document["status"]),
        attempts=document.get("attempts", 0),
        claim_token=document.get("claim_token"),
        claimed_until=_aware_or_none(document.get("claimed_until")),
        sent_at=_aware_or_none(document.get("sent_at")),
        message_id=document.get("message_id"),
        failure_reason=document.get("failure_reason"),
    )


class _DeliveryTransitions:
    """The delivery state machine applied to stored documents, shared by both repositories."""

    async def _insert_delivery(self, document: dict[str, Any]) -> bool:
        """Insert a new delivery document; False if one with its `_id` exists."""
        raise NotImplementedError

    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def _replace_delivery(self, document: dict[str, Any], *, version: int) -> bool:
        """Replace the document if it still has `version`; False if it moved on."""
        raise NotImplementedError

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        document = await self._load_delivery(delivery_id)
        return _delivery(document) if document else None

    async def claim_delivery(
        self, delivery: Delivery, *, token: str, now: datetime, lease: timedelta
    ) -> Delivery | None:
        claimed = delivery.claimed(token=token, now=now, lease=lease)
        document = with_outbox(_delivery_document(claimed), [])
        if await self._insert_delivery({**document, VERSION_FIELD: 0}):
            return claimed
        return await self._transition(
            delivery.id, lambda stored: stored.claimed(token=token, now=now, lease=lease)
        )

    async def release_delivery(self, delivery: Delivery, *, token: str, now: datetime) -> None:
        await self._transition(delivery.id, lambda stored: stored.released(token=token, now=now))

    async def mark_sent(
        self,
        delivery: Delivery,
        *,
        token: str,
        sent_at: datetime,
        message_id: str,
        events: list[OutboundEvent],
    ) -> bool:
        sent = await self._transition(
            delivery.id,
            lambda stored: stored.sent(token=token, sent_at=sent_at, message_id=message_id),
            events=events,
        )
        return sent is not None

    async def mark_failed(self, delivery: Delivery, *, token: str, reason: str) -> bool:
        failed = await self._transition(
            delivery.id, lambda stored: stored.failed(token=token, reason=reason)
        )
        return failed is not None

    async def _transition(
        self,
        delivery_id: str,
        change: Callable[[Delivery], Delivery],
        *,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None:
        """Apply `change` to the stored delivery; None if there is none or it refuses."""
        for _ in range(MAX_CONFLICTS):
            document = await self._load_delivery(delivery_id)
            if document is None:
                return None
            try:
                changed = change(_delivery(document))
            except DeliveryStateError:
                return None
            version = document.get(VERSION_FIELD, 0)
            replacement = _delivery_document(changed)
            replacement[VERSION_FIELD] = version + 1
            # events still waiting for the relay stay; the new ones join them
            added = with_outbox({}, list(events))[OUTBOX_FIELD]
            replacement[OUTBOX_FIELD] = {**document.get(OUTBOX_FIELD, {}), **added}
            replacement[PENDING_FIELD] = document.get(PENDING_FIELD, 0) + len(added)
            if await self._replace_delivery(replacement, version=version):
                return changed
        raise RuntimeError(f"delivery {delivery_id} kept changing while being written")


class MongoNotificationRepository(_DeliveryTransitions):
    def __init__(self, database: Any) -> None:
        self.events = database["dialogue_events"]
        self.contacts = database["contacts"]
        self.deliveries = database["deliveries"]

    async def ensure_indexes(self) -> None:
        await self.deliveries.create_index([("created_at", DESCENDING)])

    async def save_event(self, event: EventDetails) -> None:
        document = _event_document(event)
        try:
            await self.events.insert_one(document)
        except DuplicateKeyError:
            # an older revision matches nothing and changes nothing
            await self.events.replace_one(
                {"_id": event.dialogue_event_id, "revision": {"$lte": event.revision}}, document
            )

    async def get_event(self, dialogue_event_id: str) -> EventDetails | None:
        document = await self.events.find_one({"_id": dialogue_event_id})
        return _event(document) if document else None

    async def save_contact(self, contact: Contact) -> None:
        document = _contact_document(contact, stored_at=datetime.now(UTC))
        try:
            await self.contacts.insert_one(document)
        except DuplicateKeyError:
            await self.contacts.replace_one({"_id": contact.registration_id}, document)

    async def get_contact(self, registration_id: str) -> Contact | None:
        document = await self.contacts.find_one({"_id": registration_id})
        return _contact(document) if document else None

    async def _insert_delivery(self, document: dict[str, Any]) -> bool:
        try:
            await self.deliveries.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = await self.deliveries.find_one({"_id": delivery_id})
        return document

    async def _replace_delivery(self, document: dict[str, Any], *, version: int) -> bool:
        result = await self.deliveries.replace_one(
            {"_id": document["_id"], VERSION_FIELD: version}, document
        )
        return bool(result.matched_count)

    async def list_deliveries(self, *, limit: int) -> list[Delivery]:
        cursor = self.deliveries.find({}).sort("created_at", DESCENDING).limit(limit)
        return [_delivery(document) async for document in cursor]


class InMemoryNotificationRepository(_DeliveryTransitions):
    """The same behaviour in dicts of MongoDB-shaped documents, for fast tests.

    Each store operation runs without awaiting in between, so on one event loop it is as
    atomic as the conditional writes of the MongoDB implementation.
    """

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [InMemoryOutboxSource(self.deliveries)]

    async def save_event(self, event: EventDetails) -> None:
        stored = self.events.get(event.dialogue_event_id)
        if stored is None or stored.get("revision", 0) <= event.revision:
            self.events[event.dialogue_event_id] = _event_document(event)

    async def get_event(self, dialogue_event_id: str) -> EventDetails | None:
        document = self.events.get(dialogue_event_id)
        return _event(document) if document else None

    async def save_contact(self, contact: Contact) -> None:
        self.contacts[contact.registration_id] = _contact_document(
            contact, stored_at=datetime.now(UTC)
        )

    async def get_contact(self, registration_id: str) -> Contact | None:
        document = self.contacts.get(registration_id)
        return _contact(document) if document else None

    async def _insert_delivery(self, document: dict[str, Any]) -> bool:
        if document["_id"] in self.deliveries:
            return False
        self.deliveries[document["_id"]] = copy.deepcopy(document)
        return True

    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        document = self.deliveries.get(delivery_id)
        return copy.deepcopy(document) if document else None

    async def _replace_delivery(self, document: dict[str, Any], *, version: int) -> bool:
        stored = self.deliveries.get(document["_id"])
        if stored is None or stored.get(VERSION_FIELD, 0) != version:
            return False
        self.deliveries[document["_id"]] = copy.deepcopy(document)
        return True

    async def list_deliveries(self, *, limit: int) -> list[Delivery]:
        newest = sorted(self.deliveries.values(), key=lambda d: d["created_at"], reverse=True)
        return [_delivery(document) for document in newest[:limit]]
