"""Storage of event details, participants (with notification's copy of their contact),
scheduled messages and deliveries; the outbox lives in the delivery document.

Every write is keyed by an entity id, so a handler that runs twice writes the same thing:
event details by dialogue event id (an older revision never overwrites a newer one),
participants by registration id, scheduled messages by `<kind>:<registration_id>`,
deliveries by their deterministic id.

A delivery changes by compare-and-swap: the domain decides the transition on the document
as read, and the whole document is replaced only if its version is still the one read.
Marking it sent (or failed) adds its event to its outbox in that same write. Whole
documents rather than `$set`, because nx-27017 (DESIGN.md section 8, measured with 0.8.1)
stores a datetime written by `$set` as a string, and its `replace_one(upsert=True)`
inserts nothing: so new documents are inserted, existing ones replaced. Participants and
scheduled messages hold only strings and numbers, so `$set` is safe there; due times are
fixed-width UTC ISO strings, which compare in the order of time.
"""

from __future__ import annotations

import copy
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import DESCENDING, ReplaceOne, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, WriteError

from wok_contracts import EventFormat, NotificationKind
from wok_notification.domain import (
    Contact,
    Delivery,
    DeliveryStateError,
    DeliveryStatus,
    DigestItem,
    EventDetails,
    ParticipantStatus,
    iso_utc,
)
from wok_runtime.coalesce import Coalescer
from wok_runtime.mongo import DUPLICATE_KEY
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
# Delivery documents kept in memory after writing them (see _DeliveryTransitions)
MAX_KNOWN = 10_000
# How long a dialogue event read from the database is used without reading it again
EVENT_CACHE_S = 60.0
# Most writes of one kind sent to the database in one round trip (see `_Writes`)
MAX_WRITE_BATCH = 500
# A random mark of each replacement of a delivery document, to tell after a bulk replace in
# which some matched nothing which of them were written
WRITE_FIELD = "write"
CONTACT_FIELDS = ("dialogue_event_id", "name", "email", "language", "cancel_url", "erasure_url")


@dataclass(frozen=True)
class Participant:
    registration_id: str
    dialogue_event_id: str
    status: ParticipantStatus
    contact: Contact | None


class ScheduleStatus:
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class ScheduledMessage:
    """A reminder or access mail waiting for its time; survives restarts."""

    id: str
    kind: NotificationKind
    registration_id: str
    dialogue_event_id: str
    ags: str
    due_at: str
    status: str = ScheduleStatus.SCHEDULED
    attempts: int = 0
    token: str | None = None

    @classmethod
    def of(
        cls,
        kind: NotificationKind,
        *,
        registration_id: str,
        dialogue_event_id: str,
        ags: str,
        due_at: datetime,
    ) -> ScheduledMessage:
        return cls(
            id=f"{kind.value}:{registration_id}",
            kind=kind,
            registration_id=registration_id,
            dialogue_event_id=dialogue_event_id,
            ags=ags,
            due_at=iso_utc(due_at),
        )


class DigestStatus:
    OPEN = "open"
    SENDING = "sending"
    SENT = "sent"
    # every held message became moot before it went out
    EMPTY = "empty"
    FAILED = "failed"


@dataclass(frozen=True)
class Digest:
    """The messages held for one person in one window, sent together at its end."""

    id: str
    recipient: str
    due_at: str
    status: str
    items: tuple[DigestItem, ...]
    attempts: int = 0
    token: str | None = None
    message_id: str | None = None


def new_ref() -> str:
    return uuid.uuid4().hex[:20]


def _item_key(delivery_id: str) -> str:
    return delivery_id.replace(".", "_").replace("$", "_")


def _item_document(item: DigestItem) -> dict[str, Any]:
    document = asdict(item)
    document["kind"] = item.kind.value
    # nx-27017 turns a $set boolean into 0/1: store the number and read it back as a flag
    document["waitlisted"] = int(item.waitlisted)
    return document


def _digest(document: dict[str, Any]) -> Digest:
    items = [
        DigestItem(
            delivery_id=value["delivery_id"],
            kind=NotificationKind(value["kind"]),
            registration_id=value["registration_id"],
            dialogue_event_id=value["dialogue_event_id"],
            held_at=value["held_at"],
            revision=value.get("revision"),
            waitlisted=bool(value.get("waitlisted", 0)),
        )
        for value in (document.get("items") or {}).values()
    ]
    return Digest(
        id=document["_id"],
        recipient=document["recipient"],
        due_at=document["due_at"],
        status=document["status"],
        items=tuple(sorted(items, key=lambda item: (item.held_at, item.delivery_id))),
        attempts=document.get("attempts", 0),
        token=document.get("token"),
        message_id=document.get("message_id"),
    )


def _digest_document(
    digest_id: str, *, recipient: str, due_at: str, ags: str, item: DigestItem
) -> dict[str, Any]:
    return {
        "_id": digest_id,
        "recipient": recipient,
        "ags": ags,
        "due_at": due_at,
        "status": DigestStatus.OPEN,
        "attempts": 0,
        "token": None,
        "items": {_item_key(item.delivery_id): _item_document(item)},
    }


class NotificationRepository(Protocol):
    async def save_event(self, event: EventDetails) -> None:
        """Keep the newest revision of a dialogue event's details."""
        ...

    async def get_event(
        self, dialogue_event_id: str, *, cached: bool = False
    ) -> EventDetails | None:
        """The stored details; `cached` allows a copy kept in memory (see `forget_cached`)."""
        ...

    async def save_contact(self, contact: Contact, *, status: ParticipantStatus) -> None:
        """Keep the contact; the status only if the participant is new (later events set it)."""
        ...

    async def get_contact(self, registration_id: str) -> Contact | None: ...

    async def set_participant_status(
        self, registration_id: str, *, dialogue_event_id: str, status: ParticipantStatus
    ) -> None: ...

    async def get_participant(self, registration_id: str) -> Participant | None: ...

    async def participants(
        self, dialogue_event_id: str, *, statuses: Sequence[ParticipantStatus]
    ) -> list[Participant]: ...

    async def erase_participant(self, registration_id: str) -> None:
        """Remove the contact copy and scrub the delivery log of what hints at the person."""
        ...

    async def schedule(self, message: ScheduledMessage, *, rearm: bool) -> None:
        """Add a scheduled message; `rearm` also resets an existing one to the new due time."""
        ...

    async def schedule_new(self, messages: Sequence[ScheduledMessage]) -> None:
        """Add scheduled messages that do not exist yet (existing ones stay as they are)."""
        ...

    def forget_cached(self) -> None:
        """Drop what is kept in memory of stored dialogue events (another consumer may have
        changed them: called when partitions are reassigned)."""
        ...

    async def claim_due(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> ScheduledMessage | None: ...

    async def finish_scheduled(self, message_id: str, *, token: str, status: str) -> None: ...

    async def retry_scheduled(self, message_id: str, *, token: str, due_at: datetime) -> None: ...

    async def cancel_scheduled(
        self, *, registration_id: str | None = None, dialogue_event_id: str | None = None
    ) -> int: ...

    async def get_scheduled(self, message_id: str) -> ScheduledMessage | None: ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def claim_delivery(
        self, delivery: Delivery, *, token: str, now: datetime, lease: timedelta
    ) -> Delivery | None:
        """Create the delivery if new, and claim it if it is pending and unclaimed.

        Returns the claimed delivery, or None when it is finished or someone else holds it.
        """
        ...

    async def release_delivery(self, delivery: Delivery, *, token: str, now: datetime) -> None: ...

    async def mark_unavailable(self, delivery: Delivery, *, token: str, now: datetime) -> None: ...

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

    async def mark_failed(
        self,
        delivery: Delivery,
        *,
        token: str,
        reason: str,
        now: datetime | None = None,
        events: Sequence[OutboundEvent] = (),
    ) -> bool: ...

    async def mark_given_up(
        self,
        delivery: Delivery,
        *,
        token: str,
        reason: str,
        now: datetime,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None: ...

    async def rearm_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self, *, limit: int, status: str | None = None, kind: str | None = None
    ) -> list[Delivery]:
        """Newest first."""
        ...

    # one message per person per window

    async def hold_delivery(self, delivery: Delivery, *, digest_id: str) -> Delivery | None:
        """Create the delivery held for the digest, or move a held one to it; None when it
        is finished or being sent."""
        ...

    async def finish_held(
        self,
        delivery_id: str,
        change: Callable[[Delivery], Delivery],
        *,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None:
        """Apply a held delivery's transition (sent in its digest, withdrawn, failed)."""
        ...

    async def take_slot(
        self, recipient: str, *, holder: str, now: datetime, until: datetime
    ) -> bool:
        """True if the person may get a message now (their window is over, or this holder
        already has it); the window then runs until `until`."""
        ...

    async def reserve_slot(self, recipient: str, *, holder: str, until: datetime) -> None:
        """Move the person's window (a digest going out); nothing if they were erased."""
        ...

    async def window_of(self, recipient: str) -> tuple[str, str] | None:
        """When the person's window ends, and its random reference (what digest ids, logs
        and topics carry instead of anything derived from the address)."""
        ...

    async def forget_recipient(self, recipient: str) -> None:
        """Erasure: the window and the address hash in digests go."""
        ...

    async def add_digest_item(
        self, digest_id: str, *, recipient: str, due_at: str, ags: str, item: DigestItem
    ) -> bool:
        """Put the item into the open digest (created if new); False once it is going out."""
        ...

    async def claim_due_digest(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> Digest | None: ...

    async def retry_digest(self, digest_id: str, *, token: str, due_at: datetime) -> None: ...

    async def finish_digest(
        self, digest_id: str, *, token: str, status: str, message_id: str | None = None
    ) -> None: ...

    async def get_digest(self, digest_id: str) -> Digest | None: ...


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
        cancelled=document.get("cancelled", False),
        cancel_reason=document.get("cancel_reason", ""),
        previous_starts_at=_aware_or_none(document.get("previous_starts_at")),
        registration_deadline=_aware_or_none(document.get("registration_deadline")),
    )


def _contact_fields(contact: Contact) -> dict[str, Any]:
    document = _fields(contact)
    document.pop("registration_id")
    return document


def _participant(document: dict[str, Any]) -> Participant:
    contact = None
    if document.get("email"):
        contact = Contact(
            registration_id=document["_id"],
            dialogue_event_id=document["dialogue_event_id"],
            name=document["name"],
            email=document["email"],
            language=document.get("language", "de"),
            cancel_url=document.get("cancel_url"),
            erasure_url=document.get("erasure_url"),
        )
    return Participant(
        registration_id=document["_id"],
        dialogue_event_id=document["dialogue_event_id"],
        status=ParticipantStatus(document.get("status", ParticipantStatus.CONFIRMED)),
        contact=contact,
    )


def _scheduled_document(message: ScheduledMessage) -> dict[str, Any]:
    document = _fields(message)
    document["_id"] = document.pop("id")
    document["kind"] = message.kind.value
    return document


def _scheduled(document: dict[str, Any]) -> ScheduledMessage:
    return ScheduledMessage(
        id=document["_id"],
        kind=NotificationKind(document["kind"]),
        registration_id=document["registration_id"],
        dialogue_event_id=document["dialogue_event_id"],
        ags=document["ags"],
        due_at=document["due_at"],
        status=document["status"],
        attempts=document.get("attempts", 0),
        token=document.get("token"),
    )


def _fields(value: Any) -> dict[str, Any]:
    """A flat dataclass's fields as a dict (what `asdict` gives for one whose fields are all
    plain values, without its deep copies: every delivery and reminder is written this way)."""
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        names = _FIELD_NAMES[type(value)] = tuple(f.name for f in dataclass_fields(value))
    return {name: getattr(value, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _delivery_document(delivery: Delivery) -> dict[str, Any]:
    document = _fields(delivery)
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
        revision=document.get("revision"),
        unavailable_attempts=document.get("unavailable_attempts", 0),
        first_unavailable_at=_aware_or_none(document.get("first_unavailable_at")),
        failed_at=_aware_or_none(document.get("failed_at")),
        erased=document.get("erased", False),
        digest_id=document.get("digest_id"),
    )


class _DeliveryTransitions(ABC):
    """The delivery state machine applied to stored documents, shared by both repositories.

    A delivery document this process has just written is kept in memory, so the next
    transition of it (sent, after the claim) replaces it without reading it first: the write
    is conditional on its version, so if anybody changed it meanwhile the write matches
    nothing and the transition reads the stored document as usual. Only documents without
    pending outbox events are kept: the relay removes published events without changing the
    version, so a kept copy with events could bring them back."""

    _known: dict[str, dict[str, Any]]

    def _remember(self, document: dict[str, Any]) -> None:
        known = self.__dict__.setdefault("_known", {})
        if document.get(PENDING_FIELD, 0) or document.get(OUTBOX_FIELD):
            known.pop(document["_id"], None)
            return
        if len(known) >= MAX_KNOWN:
            known.clear()
        known[document["_id"]] = document

    def _recall(self, delivery_id: str) -> dict[str, Any] | None:
        return self.__dict__.get("_known", {}).pop(delivery_id, None)

    @abstractmethod
    async def _insert_delivery(self, document: dict[str, Any]) -> bool:
        """Insert a new delivery document; False if one with its `_id` exists."""

    @abstractmethod
    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        """The stored delivery document, or None."""

    @abstractmethod
    async def _replace_delivery(self, document: dict[str, Any], *, version: int) -> bool:
        """Replace the document if it still has `version`; False if it moved on."""

    @abstractmethod
    async def _delivery_ids_of(self, registration_id: str) -> list[str]:
        """The ids of every delivery to one registration."""

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        document = await self._load_delivery(delivery_id)
        return _delivery(document) if document else None

    async def claim_delivery(
        self, delivery: Delivery, *, token: str, now: datetime, lease: timedelta
    ) -> Delivery | None:
        claimed = delivery.claimed(token=token, now=now, lease=lease)
        document = {**with_outbox(_delivery_document(claimed), []), VERSION_FIELD: 0}
        if await self._insert_delivery(document):
            self._remember(document)
            return claimed
        return await self._transition(
            delivery.id, lambda stored: stored.claimed(token=token, now=now, lease=lease)
        )

    async def release_delivery(self, delivery: Delivery, *, token: str, now: datetime) -> None:
        await self._transition(delivery.id, lambda stored: stored.released(token=token, now=now))

    async def mark_unavailable(self, delivery: Delivery, *, token: str, now: datetime) -> None:
        await self._transition(delivery.id, lambda stored: stored.unavailable(token=token, now=now))

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

    async def mark_failed(
        self,
        delivery: Delivery,
        *,
        token: str,
        reason: str,
        now: datetime | None = None,
        events: Sequence[OutboundEvent] = (),
    ) -> bool:
        failed = await self._transition(
            delivery.id,
            lambda stored: stored.failed(token=token, reason=reason, now=now),
            events=events,
        )
        return failed is not None

    async def mark_given_up(
        self,
        delivery: Delivery,
        *,
        token: str,
        reason: str,
        now: datetime,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None:
        return await self._transition(
            delivery.id,
            lambda stored: stored.given_up(token=token, now=now, reason=reason),
            events=events,
        )

    async def rearm_delivery(self, delivery_id: str) -> Delivery | None:
        return await self._transition(delivery_id, lambda stored: stored.rearmed())

    async def hold_delivery(self, delivery: Delivery, *, digest_id: str) -> Delivery | None:
        held = delivery.held_in(digest_id)
        document = with_outbox(_delivery_document(held), [])
        if await self._insert_delivery({**document, VERSION_FIELD: 0}):
            return held
        return await self._transition(delivery.id, lambda stored: stored.held_in(digest_id))

    async def finish_held(
        self,
        delivery_id: str,
        change: Callable[[Delivery], Delivery],
        *,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None:
        return await self._transition(delivery_id, change, events=events)

    async def _scrub_deliveries(self, registration_id: str) -> None:
        for delivery_id in await self._delivery_ids_of(registration_id):
            await self._transition(delivery_id, lambda stored: stored.erasure_scrubbed())

    async def _transition(
        self,
        delivery_id: str,
        change: Callable[[Delivery], Delivery],
        *,
        events: Sequence[OutboundEvent] = (),
    ) -> Delivery | None:
        """Apply `change` to the stored delivery; None if there is none or it refuses."""
        known = self._recall(delivery_id)
        for _ in range(MAX_CONFLICTS):
            document = known or await self._load_delivery(delivery_id)
            known = None
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
                self._remember(replacement)
                return changed
        raise RuntimeError(f"delivery {delivery_id} kept changing while being written")


ACTIVE_SCHEDULE = [ScheduleStatus.SCHEDULED, ScheduleStatus.CLAIMED]


async def _claim_due(
    collection: Any,
    *,
    waiting: str,
    claimed: str,
    now: datetime,
    lease: timedelta,
    token: str,
) -> dict[str, Any] | None:
    """Take one document that is due (or whose holder died: its lease ran out) for `token`
    with one conditional write, so two workers never hold the same one."""
    claim = {"$set": {"status": claimed, "token": token, "claimed_until": iso_utc(now + lease)}}
    for query in (
        {"status": waiting, "due_at": {"$lte": iso_utc(now)}},
        {"status": claimed, "claimed_until": {"$lte": iso_utc(now)}},
    ):
        document: dict[str, Any] | None = await collection.find_one_and_update(
            query, claim, return_document=ReturnDocument.AFTER
        )
        if document is not None:
            return document
    return None


def _write_error(failure: dict[str, Any]) -> WriteError:
    return WriteError(str(failure.get("errmsg", "write failed")), failure.get("code"), failure)


async def _insert_each(collection: Any, documents: list[dict[str, Any]]) -> list[Any]:
    """Insert documents with one `insert_many` (unordered: each on its own): per document
    True, False if one with its `_id` exists, or the error of that document."""
    answers: list[Any] = [True] * len(documents)
    try:
        await collection.insert_many(documents, ordered=False)
    except BulkWriteError as error:
        for failure in error.details.get("writeErrors", []):
            code = failure.get("code")
            answers[failure["index"]] = False if code == DUPLICATE_KEY else _write_error(failure)
    return answers


async def _replace_each(
    collection: Any, replacements: list[tuple[dict[str, Any], int]]
) -> list[Any]:
    """Replace documents still at their version with one unordered `bulk_write`: per
    document True if written, False if it had moved on (or is gone), or its error. The
    result counts only the whole, so when some matched nothing the marks written tell."""
    answers: list[Any] = [None] * len(replacements)
    try:
        result = await collection.bulk_write(
            [
                ReplaceOne({"_id": document["_id"], VERSION_FIELD: version}, document)
                for document, version in replacements
            ],
            ordered=False,
        )
        matched = int(result.matched_count)
    except BulkWriteError as error:
        for failure in error.details.get("writeErrors", []):
            answers[failure["index"]] = _write_error(failure)
        matched = -1
    if matched == len(replacements):
        return [True] * len(replacements)
    ids = [document["_id"] for document, _ in replacements]
    cursor = collection.find({"_id": {"$in": ids}}, {WRITE_FIELD: 1})
    marks = {stored["_id"]: stored.get(WRITE_FIELD) async for stored in cursor}
    return [
        answer if answer is not None else marks.get(document["_id"]) == document[WRITE_FIELD]
        for answer, (document, _) in zip(answers, replacements, strict=True)
    ]


class _Writes:
    """The writes each confirmation makes (its contact copy, its reminders, the claim and the
    sent mark of its delivery), collected across the handlers working side by side and sent
    as one round trip per kind (`Coalescer`): the single MongoDB-wire server pays about a
    millisecond per round trip. Each handler still waits for its own write to be stored
    before it goes on, and each document is written (or refused) on its own, exactly as
    with a write of its own."""

    def __init__(self, *, contacts: Any, scheduled: Any, deliveries: Any) -> None:
        def inserts(collection: Any) -> Coalescer[dict[str, Any], Any]:
            return Coalescer(
                lambda documents: _insert_each(collection, documents), max_batch=MAX_WRITE_BATCH
            )

        self.contacts = inserts(contacts)
        self.scheduled = inserts(scheduled)
        self.deliveries = inserts(deliveries)
        self.replacements: Coalescer[tuple[dict[str, Any], int], Any] = Coalescer(
            lambda pairs: _replace_each(deliveries, pairs), max_batch=MAX_WRITE_BATCH
        )


async def _written(coalescer: Coalescer[Any, Any], item: Any) -> bool:
    answer = await coalescer.submit(item)
    return bool(answer)


class MongoNotificationRepository(_DeliveryTransitions):
    def __init__(self, database: Any) -> None:
        self.events = database["dialogue_events"]
        self.contacts = database["contacts"]
        self.deliveries = database["deliveries"]
        self.scheduled = database["scheduled_messages"]
        self.recipients = database["recipients"]
        self.digests = database["digests"]
        self.writes = _Writes(
            contacts=self.contacts, scheduled=self.scheduled, deliveries=self.deliveries
        )
        # Dialogue events as last read or written here. Their messages share a partition,
        # and this process writes every change it consumes, so the copy is current while
        # the partitions stay assigned; `forget_cached` on reassignment, and at most
        # EVENT_CACHE_S old in any case.
        self._events: dict[str, tuple[float, EventDetails]] = {}

    def forget_cached(self) -> None:
        self._events.clear()

    async def ensure_indexes(self) -> None:
        await self.deliveries.create_index([("created_at", DESCENDING)])
        await self.deliveries.create_index("registration_id")
        await self.contacts.create_index("dialogue_event_id")
        await self.scheduled.create_index([("status", 1), ("due_at", 1)])
        await self.digests.create_index([("status", 1), ("due_at", 1)])
        await self.digests.create_index("recipient")

    async def take_slot(
        self, recipient: str, *, holder: str, now: datetime, until: datetime
    ) -> bool:
        try:
            await self.recipients.insert_one(
                {"_id": recipient, "free_at": iso_utc(until), "holder": holder, "ref": new_ref()}
            )
            return True
        except DuplicateKeyError:
            pass
        if await self.recipients.find_one({"_id": recipient, "holder": holder}) is not None:
            return True
        taken = await self.recipients.find_one_and_update(
            {"_id": recipient, "free_at": {"$lte": iso_utc(now)}},
            {"$set": {"free_at": iso_utc(until), "holder": holder}},
            return_document=ReturnDocument.AFTER,
        )
        return taken is not None

    async def reserve_slot(self, recipient: str, *, holder: str, until: datetime) -> None:
        await self.recipients.update_one(
            {"_id": recipient}, {"$set": {"free_at": iso_utc(until), "holder": holder}}
        )

    async def window_of(self, recipient: str) -> tuple[str, str] | None:
        document = await self.recipients.find_one({"_id": recipient})
        return None if document is None else (str(document["free_at"]), str(document["ref"]))

    async def forget_recipient(self, recipient: str) -> None:
        await self.recipients.delete_one({"_id": recipient})
        await self.digests.update_many({"recipient": recipient}, {"$set": {"recipient": ""}})

    async def add_digest_item(
        self, digest_id: str, *, recipient: str, due_at: str, ags: str, item: DigestItem
    ) -> bool:
        try:
            await self.digests.insert_one(
                _digest_document(digest_id, recipient=recipient, due_at=due_at, ags=ags, item=item)
            )
            return True
        except DuplicateKeyError:
            pass
        result = await self.digests.update_one(
            {"_id": digest_id, "status": DigestStatus.OPEN},
            {"$set": {f"items.{_item_key(item.delivery_id)}": _item_document(item)}},
        )
        return bool(result.matched_count)

    async def claim_due_digest(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> Digest | None:
        document = await _claim_due(
            self.digests,
            waiting=DigestStatus.OPEN,
            claimed=DigestStatus.SENDING,
            now=now,
            lease=lease,
            token=token,
        )
        return _digest(document) if document is not None else None

    async def retry_digest(self, digest_id: str, *, token: str, due_at: datetime) -> None:
        await self.digests.update_one(
            {"_id": digest_id, "token": token, "status": DigestStatus.SENDING},
            {
                "$set": {"status": DigestStatus.OPEN, "token": None, "due_at": iso_utc(due_at)},
                "$inc": {"attempts": 1},
            },
        )

    async def finish_digest(
        self, digest_id: str, *, token: str, status: str, message_id: str | None = None
    ) -> None:
        await self.digests.update_one(
            {"_id": digest_id, "token": token, "status": DigestStatus.SENDING},
            {"$set": {"status": status, "token": None, "message_id": message_id}},
        )

    async def get_digest(self, digest_id: str) -> Digest | None:
        document = await self.digests.find_one({"_id": digest_id})
        return _digest(document) if document else None

    async def save_event(self, event: EventDetails) -> None:
        document = _event_document(event)
        self._events.pop(event.dialogue_event_id, None)
        try:
            await self.events.insert_one(document)
        except DuplicateKeyError:
            # an older revision matches nothing and changes nothing
            await self.events.replace_one(
                {"_id": event.dialogue_event_id, "revision": {"$lte": event.revision}}, document
            )

    async def get_event(
        self, dialogue_event_id: str, *, cached: bool = False
    ) -> EventDetails | None:
        kept = self._events.get(dialogue_event_id) if cached else None
        if kept is not None and time.monotonic() - kept[0] < EVENT_CACHE_S:
            return kept[1]
        read_at = time.monotonic()
        document = await self.events.find_one({"_id": dialogue_event_id})
        if document is None:
            return None
        event = _event(document)
        if len(self._events) >= MAX_KNOWN:
            self._events.clear()
        self._events[dialogue_event_id] = (read_at, event)
        return event

    async def save_contact(self, contact: Contact, *, status: ParticipantStatus) -> None:
        fields = _contact_fields(contact)
        document = {
            "_id": contact.registration_id,
            **fields,
            "status": status.value,
            "stored_at": datetime.now(UTC),
        }
        if not await _written(self.writes.contacts, document):
            await self.contacts.update_one({"_id": contact.registration_id}, {"$set": fields})

    async def get_contact(self, registration_id: str) -> Contact | None:
        participant = await self.get_participant(registration_id)
        return participant.contact if participant else None

    async def set_participant_status(
        self, registration_id: str, *, dialogue_event_id: str, status: ParticipantStatus
    ) -> None:
        await self.contacts.update_one(
            {"_id": registration_id},
            {"$set": {"dialogue_event_id": dialogue_event_id, "status": status.value}},
            upsert=True,
        )

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = await self.contacts.find_one({"_id": registration_id})
        return _participant(document) if document else None

    async def participants(
        self, dialogue_event_id: str, *, statuses: Sequence[ParticipantStatus]
    ) -> list[Participant]:
        cursor = self.contacts.find(
            {
                "dialogue_event_id": dialogue_event_id,
                "status": {"$in": [status.value for status in statuses]},
            }
        )
        return [_participant(document) async for document in cursor]

    async def erase_participant(self, registration_id: str) -> None:
        await self.contacts.delete_one({"_id": registration_id})
        await self.scheduled.delete_many({"registration_id": registration_id})
        await self._scrub_deliveries(registration_id)

    async def _delivery_ids_of(self, registration_id: str) -> list[str]:
        cursor = self.deliveries.find({"registration_id": registration_id}, {"_id": 1})
        return [document["_id"] async for document in cursor]

    async def schedule_new(self, messages: Sequence[ScheduledMessage]) -> None:
        # one write with those of the other handlers; one scheduled before (the event came
        # again) stays as it is
        await self.writes.scheduled.submit_all([_scheduled_document(m) for m in messages])

    async def schedule(self, message: ScheduledMessage, *, rearm: bool) -> None:
        document = _scheduled_document(message)
        try:
            await self.scheduled.insert_one(document)
        except DuplicateKeyError:
            if rearm:
                fields = {key: value for key, value in document.items() if key != "_id"}
                await self.scheduled.update_one({"_id": message.id}, {"$set": fields})

    async def claim_due(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> ScheduledMessage | None:
        document = await _claim_due(
            self.scheduled,
            waiting=ScheduleStatus.SCHEDULED,
            claimed=ScheduleStatus.CLAIMED,
            now=now,
            lease=lease,
            token=token,
        )
        return _scheduled(document) if document is not None else None

    async def finish_scheduled(self, message_id: str, *, token: str, status: str) -> None:
        await self.scheduled.update_one(
            {"_id": message_id, "token": token, "status": ScheduleStatus.CLAIMED},
            {"$set": {"status": status, "token": None}},
        )

    async def retry_scheduled(self, message_id: str, *, token: str, due_at: datetime) -> None:
        await self.scheduled.update_one(
            {"_id": message_id, "token": token, "status": ScheduleStatus.CLAIMED},
            {
                "$set": {
                    "status": ScheduleStatus.SCHEDULED,
                    "token": None,
                    "due_at": iso_utc(due_at),
                },
                "$inc": {"attempts": 1},
            },
        )

    async def cancel_scheduled(
        self, *, registration_id: str | None = None, dialogue_event_id: str | None = None
    ) -> int:
        query: dict[str, Any] = {"status": {"$in": ACTIVE_SCHEDULE}}
        if registration_id is not None:
            query["registration_id"] = registration_id
        if dialogue_event_id is not None:
            query["dialogue_event_id"] = dialogue_event_id
        result = await self.scheduled.update_many(
            query, {"$set": {"status": ScheduleStatus.CANCELLED, "token": None}}
        )
        return int(result.modified_count)

    async def get_scheduled(self, message_id: str) -> ScheduledMessage | None:
        document = await self.scheduled.find_one({"_id": message_id})
        return _scheduled(document) if document else None

    async def _insert_delivery(self, document: dict[str, Any]) -> bool:
        return await _written(self.writes.deliveries, document)

    async def _load_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        document: dict[str, Any] | None = await self.deliveries.find_one({"_id": delivery_id})
        return document

    async def _replace_delivery(self, document: dict[str, Any], *, version: int) -> bool:
        document[WRITE_FIELD] = uuid.uuid4().hex
        return await _written(self.writes.replacements, (document, version))

    async def list_deliveries(
        self, *, limit: int, status: str | None = None, kind: str | None = None
    ) -> list[Delivery]:
        query: dict[str, Any] = {}
        if status is not None:
            query["status"] = status
        if kind is not None:
            query["kind"] = kind
        cursor = self.deliveries.find(query).sort("created_at", DESCENDING).limit(limit)
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
        self.scheduled: dict[str, dict[str, Any]] = {}
        self.recipients: dict[str, dict[str, Any]] = {}
        self.digests: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [InMemoryOutboxSource(self.deliveries)]

    async def take_slot(
        self, recipient: str, *, holder: str, now: datetime, until: datetime
    ) -> bool:
        stored = self.recipients.get(recipient)
        if stored is not None and stored["holder"] != holder and stored["free_at"] > iso_utc(now):
            return False
        if stored is None:
            self.recipients[recipient] = {
                "_id": recipient,
                "free_at": iso_utc(until),
                "holder": holder,
                "ref": new_ref(),
            }
        elif stored["holder"] != holder:
            stored.update(free_at=iso_utc(until), holder=holder)
        return True

    async def reserve_slot(self, recipient: str, *, holder: str, until: datetime) -> None:
        if (stored := self.recipients.get(recipient)) is not None:
            stored.update(free_at=iso_utc(until), holder=holder)

    async def window_of(self, recipient: str) -> tuple[str, str] | None:
        stored = self.recipients.get(recipient)
        return None if stored is None else (str(stored["free_at"]), str(stored["ref"]))

    async def forget_recipient(self, recipient: str) -> None:
        self.recipients.pop(recipient, None)
        for document in self.digests.values():
            if document["recipient"] == recipient:
                document["recipient"] = ""

    async def add_digest_item(
        self, digest_id: str, *, recipient: str, due_at: str, ags: str, item: DigestItem
    ) -> bool:
        stored = self.digests.get(digest_id)
        if stored is None:
            self.digests[digest_id] = _digest_document(
                digest_id, recipient=recipient, due_at=due_at, ags=ags, item=item
            )
            return True
        if stored["status"] != DigestStatus.OPEN:
            return False
        stored["items"][_item_key(item.delivery_id)] = _item_document(item)
        return True

    async def claim_due_digest(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> Digest | None:
        for document in self.digests.values():
            due = document["status"] == DigestStatus.OPEN and document["due_at"] <= iso_utc(now)
            expired = document["status"] == DigestStatus.SENDING and document.get(
                "claimed_until", ""
            ) <= iso_utc(now)
            if due or expired:
                document.update(
                    status=DigestStatus.SENDING, token=token, claimed_until=iso_utc(now + lease)
                )
                return _digest(copy.deepcopy(document))
        return None

    def _sending(self, digest_id: str, token: str) -> dict[str, Any] | None:
        document = self.digests.get(digest_id)
        if document and document["status"] == DigestStatus.SENDING and document["token"] == token:
            return document
        return None

    async def retry_digest(self, digest_id: str, *, token: str, due_at: datetime) -> None:
        if (document := self._sending(digest_id, token)) is not None:
            document.update(
                status=DigestStatus.OPEN,
                token=None,
                due_at=iso_utc(due_at),
                attempts=document.get("attempts", 0) + 1,
            )

    async def finish_digest(
        self, digest_id: str, *, token: str, status: str, message_id: str | None = None
    ) -> None:
        if (document := self._sending(digest_id, token)) is not None:
            document.update(status=status, token=None, message_id=message_id)

    async def get_digest(self, digest_id: str) -> Digest | None:
        document = self.digests.get(digest_id)
        return _digest(copy.deepcopy(document)) if document else None

    async def save_event(self, event: EventDetails) -> None:
        stored = self.events.get(event.dialogue_event_id)
        if stored is None or stored.get("revision", 0) <= event.revision:
            self.events[event.dialogue_event_id] = _event_document(event)

    async def get_event(
        self, dialogue_event_id: str, *, cached: bool = False
    ) -> EventDetails | None:
        document = self.events.get(dialogue_event_id)
        return _event(document) if document else None

    async def save_contact(self, contact: Contact, *, status: ParticipantStatus) -> None:
        fields = _contact_fields(contact)
        stored = self.contacts.get(contact.registration_id)
        if stored is None:
            self.contacts[contact.registration_id] = {
                "_id": contact.registration_id,
                **fields,
                "status": status.value,
                "stored_at": datetime.now(UTC),
            }
        else:
            stored.update(fields)

    async def get_contact(self, registration_id: str) -> Contact | None:
        participant = await self.get_participant(registration_id)
        return participant.contact if participant else None

    async def set_participant_status(
        self, registration_id: str, *, dialogue_event_id: str, status: ParticipantStatus
    ) -> None:
        stored = self.contacts.setdefault(registration_id, {"_id": registration_id})
        stored.update({"dialogue_event_id": dialogue_event_id, "status": status.value})

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = self.contacts.get(registration_id)
        return _participant(document) if document else None

    async def participants(
        self, dialogue_event_id: str, *, statuses: Sequence[ParticipantStatus]
    ) -> list[Participant]:
        wanted = {status.value for status in statuses}
        return [
            _participant(document)
            for document in self.contacts.values()
            if document["dialogue_event_id"] == dialogue_event_id
            and document.get("status") in wanted
        ]

    async def erase_participant(self, registration_id: str) -> None:
        self.contacts.pop(registration_id, None)
        for key in [
            k for k, d in self.scheduled.items() if d["registration_id"] == registration_id
        ]:
            del self.scheduled[key]
        await self._scrub_deliveries(registration_id)

    async def _delivery_ids_of(self, registration_id: str) -> list[str]:
        return [k for k, d in self.deliveries.items() if d["registration_id"] == registration_id]

    async def schedule(self, message: ScheduledMessage, *, rearm: bool) -> None:
        if message.id not in self.scheduled or rearm:
            self.scheduled[message.id] = _scheduled_document(message)

    async def schedule_new(self, messages: Sequence[ScheduledMessage]) -> None:
        for message in messages:
            await self.schedule(message, rearm=False)

    def forget_cached(self) -> None:
        return None

    async def claim_due(
        self, *, now: datetime, lease: timedelta, token: str
    ) -> ScheduledMessage | None:
        for document in self.scheduled.values():
            due = document["status"] == ScheduleStatus.SCHEDULED and document["due_at"] <= iso_utc(
                now
            )
            expired = document["status"] == ScheduleStatus.CLAIMED and document.get(
                "claimed_until", ""
            ) <= iso_utc(now)
            if due or expired:
                document.update(
                    status=ScheduleStatus.CLAIMED, token=token, claimed_until=iso_utc(now + lease)
                )
                return _scheduled(document)
        return None

    def _claimed(self, message_id: str, token: str) -> dict[str, Any] | None:
        document = self.scheduled.get(message_id)
        if document and document["status"] == ScheduleStatus.CLAIMED and document["token"] == token:
            return document
        return None

    async def finish_scheduled(self, message_id: str, *, token: str, status: str) -> None:
        if (document := self._claimed(message_id, token)) is not None:
            document.update(status=status, token=None)

    async def retry_scheduled(self, message_id: str, *, token: str, due_at: datetime) -> None:
        if (document := self._claimed(message_id, token)) is not None:
            document.update(
                status=ScheduleStatus.SCHEDULED,
                token=None,
                due_at=iso_utc(due_at),
                attempts=document.get("attempts", 0) + 1,
            )

    async def cancel_scheduled(
        self, *, registration_id: str | None = None, dialogue_event_id: str | None = None
    ) -> int:
        cancelled = 0
        for document in self.scheduled.values():
            if document["status"] not in ACTIVE_SCHEDULE:
                continue
            if registration_id is not None and document["registration_id"] != registration_id:
                continue
            if dialogue_event_id is not None and document["dialogue_event_id"] != dialogue_event_id:
                continue
            document.update(status=ScheduleStatus.CANCELLED, token=None)
            cancelled += 1
        return cancelled

    async def get_scheduled(self, message_id: str) -> ScheduledMessage | None:
        document = self.scheduled.get(message_id)
        return _scheduled(document) if document else None

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

    async def list_deliveries(
        self, *, limit: int, status: str | None = None, kind: str | None = None
    ) -> list[Delivery]:
        chosen = [
            d
            for d in self.deliveries.values()
            if (status is None or d["status"] == status) and (kind is None or d["kind"] == kind)
        ]
        newest = sorted(chosen, key=lambda d: d["created_at"], reverse=True)
        return [_delivery(document) for document in newest[:limit]]
