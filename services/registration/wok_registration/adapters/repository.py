"""Storage of municipalities, dialogue events, participants and taskforce members, with the
outbox in each write.

A dialogue event's document holds the event, its registrations (a map keyed by id, no
personal data), the address fingerprints of its active registrations and the pending events;
every change to it is one conditional update built from a domain `Plan`, so a registration,
its seat, a promotion and their events exist together or not at all. The embedded server
reads and rewrites the whole document on each write, so a registration's entry is kept small
(its fingerprint is only in the fingerprint map, its arrival time is its `position`).

The person's name and address live in a separate document written first with an expiry,
which is lifted once the seat write succeeded; a crash in between leaves nothing personal
behind for long. The first write is group-committed (`Coalescer`): the ones that arrive
within `CONTACT_LINGER_S` of each other, or while a write is on its way, go together in the
next one, one round trip for many, and each caller still returns only once its own document
is written. The expiry is lifted without
waiting, for all registrations of the last `KEEP_DELAY_S` in one write; a crash before that
write leaves those contacts to the recovery (`RegistrationHandlers.keep_contacts_of_taken_places`).

With an `OutboxWriter` (app.py), a place write hands its events straight to the outbox relay
and removes those of its document the relay has already published: no read of the dialogue
event's document for the relay, and (mostly) no write of its own.

nx-27017 (the embedded MongoDB) dictates some shapes: maps instead of arrays, times as ISO
strings (a datetime `$set` on an existing document loses its zone), no booleans in `$set`
(a top-level `False` is stored as 0), string ids. Both implementations below run the same
filter and update documents, the in-memory one through a small evaluator.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import sys
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from wok_contracts import (
    EventFormat,
    MunicipalityKind,
    RegistrationStatus,
    Sector,
    TaskforceRole,
    TaskforceSector,
)
from wok_registration.domain import (
    DialogueEvent,
    EventState,
    Municipality,
    Participant,
    Plan,
    RecordStatus,
    RegistrationRecord,
    TaskforceMember,
    new_position,
)
from wok_runtime.coalesce import Coalescer
from wok_runtime.logging import get_logger
from wok_runtime.outbox import (
    InMemoryOutboxSource,
    OutboundEvent,
    OutboxWriter,
    outbox_update,
    with_outbox,
    with_removal,
)

log = get_logger(__name__)

UNCONFIRMED_PARTICIPANT_TTL = timedelta(hours=1)
KEEP_DELAY_S = 0.5
"""Contacts kept within this long are kept in one write (MongoDB repository): at 200
registrations/s one update_many per 100 contacts (0.05 s: one per 10). A longer delay only
leaves more contacts to the recovery after a crash (their expiry is an hour away; the
recovery keeps them within about three minutes). A bulk write of the new contacts with the
keeps would still be two commands (pymongo sends one per kind of operation)."""
CONTACT_LINGER_S = 0.008
"""A new contact waits this long for others to go into the same insert (MongoDB
repository): the first opens the window, all arriving meanwhile leave together. At 100-200
registrations/s requests seldom overlap on their own, so without it nearly every
registration paid an insert of its own (a round trip costing registration and nx-27017
about 0.25 ms of CPU each); the 201 comes this much later."""
SELF_DESCRIPTION = ("age_band", "migration_background")


class AlreadyExists(Exception):
    pass


class RegistrationRepository(Protocol):
    async def add_municipality(
        self, municipality: Municipality, events: list[OutboundEvent]
    ) -> None: ...

    async def get_municipality(self, ags: str) -> Municipality | None: ...

    async def municipality_for_key_hash(self, key_hash: str) -> Municipality | None: ...

    async def update_municipality(
        self,
        ags: str,
        *,
        set_fields: dict[str, Any],
        events: list[OutboundEvent],
        expected_key_hash: str | None = None,
    ) -> bool: ...

    async def add_dialogue_event(
        self, event: DialogueEvent, events: list[OutboundEvent]
    ) -> None: ...

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None: ...

    async def load_dialogue_event(
        self, dialogue_event_id: str
    ) -> tuple[DialogueEvent, dict[str, RegistrationRecord]] | None: ...

    async def apply_plan(
        self, dialogue_event_id: str, plan: Plan, events: list[OutboundEvent], *, now: datetime
    ) -> bool:
        """Apply the plan if its guard still holds; False if it does not (re-read, re-plan)."""
        ...

    async def command_carried_out(self, dialogue_event_id: str, command_id: str) -> bool:
        """Whether a plan carrying out this command was applied to the dialogue event."""
        ...

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None: ...

    async def take_place(
        self,
        *,
        event: DialogueEvent,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        """Record the registration with `status` if that is the status it gets now: confirmed
        while places are left, waitlisted when none are; False otherwise, for a duplicate
        address, or if the event changed (revision, capacity, state) since `event` was read."""
        ...

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None: ...

    async def keep_participant(self, registration_id: str) -> None:
        """Lift the contact's expiry (the MongoDB one: shortly after, in one write with the
        others of that moment; a crash before it leaves the contact to the recovery)."""
        ...

    async def keep_participants_now(self, registration_ids: Sequence[str]) -> None:
        """Lift these contacts' expiry in one write, awaited (the recovery)."""
        ...

    async def unkept_participants(self, *, expiring_before: datetime) -> list[tuple[str, str]]:
        """(registration id, dialogue event id) of the contacts still set to expire before
        `expiring_before`: written, but not (yet) kept."""
        ...

    async def holds_registration(self, dialogue_event_id: str, registration_id: str) -> bool:
        """Whether the dialogue event holds the registration (its place was taken)."""
        ...

    async def remove_participant(self, registration_id: str) -> None: ...

    async def get_participant(self, registration_id: str) -> Participant | None: ...

    async def get_participants(self, registration_ids: Sequence[str]) -> list[Participant]:
        """Those of these registrations' contacts that exist (one read; in no set order)."""
        ...

    async def add_taskforce_member(
        self, member: TaskforceMember, events: list[OutboundEvent]
    ) -> None: ...

    async def remove_taskforce_member(
        self, ags: str, member_id: str, events: list[OutboundEvent]
    ) -> bool: ...

    async def taskforce_members(self, ags: str) -> list[TaskforceMember]: ...


# -- documents -------------------------------------------------------------------------


def _stored(value: Any) -> Any:
    """A value as it is written: times as ISO strings, enums as values, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_stored(item) for item in value]
    if isinstance(value, bool):
        raise TypeError("booleans are not stored (nx-27017 turns a $set False into 0)")
    return value


def _time(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _municipality_document(municipality: Municipality) -> dict[str, Any]:
    document = asdict(municipality)
    document["_id"] = document.pop("ags")
    document["kind"] = municipality.kind.value
    return document


def _municipality(document: dict[str, Any]) -> Municipality:
    return Municipality(
        ags=document["_id"],
        name=document["name"],
        kind=MunicipalityKind(document["kind"]),
        land=document["land"],
        population=document.get("population"),
        key_hash=document["key_hash"],
        contact_office=document.get("contact_office"),
        key_id=document.get("key_id", ""),
        contact_office_email=document.get("contact_office_email"),
        language=document.get("language", "de"),
    )


EVENT_FIELDS = (
    "ags",
    "title",
    "description",
    "starts_at",
    "ends_at",
    "format",
    "place",
    "online_link",
    "capacity",
    "registration_deadline",
    "languages",
    "revision",
    "confirmed_count",
    "waitlisted_count",
    "reserved_places",
    "target_sectors",
    "state",
    "attended",
    "changes",
)


def _event_document(event: DialogueEvent) -> dict[str, Any]:
    document = {name: _stored(getattr(event, name)) for name in EVENT_FIELDS}
    document["_id"] = event.id
    document["registrations"] = {}
    document["fingerprints"] = {}
    return document


# Older documents lack these; they are filled in at start-up.
EVENT_DEFAULTS: dict[str, Any] = {
    "state": EventState.SCHEDULED.value,
    "revision": 0,
    "reserved_places": 0,
    "changes": 0,
    "target_sectors": [],
}


def _dialogue_event(document: dict[str, Any]) -> DialogueEvent:
    return DialogueEvent(
        id=document["_id"],
        ags=document["ags"],
        title=document["title"],
        description=document.get("description", ""),
        starts_at=_time(document["starts_at"]),
        ends_at=_time(document["ends_at"]),
        format=EventFormat(document["format"]),
        place=document.get("place"),
        online_link=document.get("online_link"),
        capacity=document["capacity"],
        registration_deadline=_time(document["registration_deadline"]),
        languages=tuple(document.get("languages", ["de"])),
        revision=document.get("revision", 0),
        confirmed_count=document.get("confirmed_count", 0),
        waitlisted_count=document.get("waitlisted_count", 0),
        reserved_places=document.get("reserved_places", 0),
        target_sectors=tuple(Sector(s) for s in document.get("target_sectors", [])),
        state=EventState(document.get("state", EventState.SCHEDULED.value)),
        attended=document.get("attended"),
        changes=document.get("changes", 0),
    )


def _records(document: dict[str, Any]) -> dict[str, RegistrationRecord]:
    """The registrations; each active one with the address fingerprint that maps to it (a
    cancelled one's address is free again, so it has none)."""
    fingerprints = {
        registration_id: fingerprint
        for fingerprint, registration_id in (document.get("fingerprints") or {}).items()
    }
    return {
        registration_id: RegistrationRecord(
            registration_id=registration_id,
            status=RecordStatus(record["status"]),
            sector=Sector(record["sector"]),
            language=record.get("language", "de"),
            position=record.get("position", 0),
            fingerprint=fingerprints.get(registration_id),
            erased="erased_at" in record,
        )
        for registration_id, record in (document.get("registrations") or {}).items()
    }


def _participant_document(participant: Participant, expires_at: datetime) -> dict[str, Any]:
    # Field by field: dataclasses.asdict deep-copies, a few % of a registration's CPU.
    return {
        "_id": participant.registration_id,
        "dialogue_event_id": participant.dialogue_event_id,
        "name": participant.name,
        "email": participant.email,
        "language": participant.language,
        "consent_at": participant.consent_at,
        "expires_at": expires_at,
    }


def _participant(document: dict[str, Any]) -> Participant:
    return Participant(
        registration_id=document["_id"],
        dialogue_event_id=document["dialogue_event_id"],
        name=document["name"],
        email=document["email"],
        language=document["language"],
        consent_at=_time(document["consent_at"]),
    )


def _member_document(member: TaskforceMember, position: int) -> dict[str, Any]:
    return {
        "_id": member.member_id,
        "ags": member.ags,
        "name": member.name,
        "email": member.email,
        "role": member.role.value,
        "sector": member.sector.value,
        "language": member.language,
        "state": "active",
        "position": position,
    }


def _member(document: dict[str, Any]) -> TaskforceMember:
    return TaskforceMember(
        member_id=document["_id"],
        ags=document["ags"],
        name=document["name"],
        email=document.get("email"),
        role=TaskforceRole(document["role"]),
        sector=TaskforceSector(document["sector"]),
        language=document.get("language", "de"),
    )


# -- filters and updates (shared by both implementations) ------------------------------


def place_filter(
    *, event: DialogueEvent, fingerprint: str, status: RegistrationStatus
) -> dict[str, Any]:
    seats = "$lt" if status is RegistrationStatus.CONFIRMED else "$gte"
    return {
        "_id": event.id,
        "state": EventState.SCHEDULED.value,
        # Any change to the event (deadline, capacity, cancellation) bumps its revision, so
        # an event read a while ago (the handlers cache it briefly) still decides correctly.
        "revision": event.revision,
        "capacity": event.capacity,
        "reserved_places": event.reserved_places,
        "confirmed_count": {seats: event.bookable},
        f"fingerprints.{fingerprint}": {"$exists": False},
    }


def place_update(
    *,
    registration_id: str,
    fingerprint: str,
    status: RegistrationStatus,
    record: dict[str, Any],
    events: list[OutboundEvent],
) -> dict[str, Any]:
    stored_record = {name: _stored(value) for name, value in record.items() if value is not None}
    update = outbox_update(
        events,
        set_fields={
            f"registrations.{registration_id}": {**stored_record, "status": status.value},
            f"fingerprints.{fingerprint}": registration_id,
        },
    )
    counter = "confirmed_count" if status is RegistrationStatus.CONFIRMED else "waitlisted_count"
    update["$inc"][counter] = 1
    update["$inc"]["changes"] = 1
    return update


def plan_filter(dialogue_event_id: str, plan: Plan) -> dict[str, Any]:
    condition: dict[str, Any] = {"_id": dialogue_event_id}
    if plan.expected_changes is not None:
        condition["changes"] = plan.expected_changes
    if plan.require_scheduled:
        condition["state"] = EventState.SCHEDULED.value
    if plan.expect_waitlist_empty:
        condition["waitlisted_count"] = 0
    for registration_id, status in plan.expected_statuses.items():
        condition[f"registrations.{registration_id}.status"] = status.value
    if plan.command_id is not None:
        condition[_command_path(plan.command_id)] = {"$exists": False}
    return condition


def _command_path(command_id: str) -> str:
    """Where a carried-out command is recorded on its dialogue event: keyed by a digest of
    its id (a sender's id may hold dots or dollar signs, which a field name must not)."""
    return f"commands.{uuid.uuid5(uuid.NAMESPACE_URL, command_id).hex}"


def plan_update(plan: Plan, events: list[OutboundEvent], *, now: datetime) -> dict[str, Any]:
    set_fields = {name: _stored(value) for name, value in plan.event_fields.items()}
    for registration_id, status in plan.statuses.items():
        set_fields[f"registrations.{registration_id}.status"] = status.value
    for registration_id, reason in plan.cancelled_reasons.items():
        set_fields[f"registrations.{registration_id}.cancelled_reason"] = reason.value
    if plan.command_id is not None:
        set_fields[_command_path(plan.command_id)] = _stored(now)
    unset = {f"fingerprints.{fingerprint}": "" for fingerprint in plan.unset_fingerprints}
    for registration_id in plan.erase:
        set_fields[f"registrations.{registration_id}.erased_at"] = _stored(now)
        # (older entries hold the fingerprint, too)
        for name in ("fingerprint", *SELF_DESCRIPTION):
            unset[f"registrations.{registration_id}.{name}"] = ""
    update = outbox_update(events, set_fields=set_fields)
    update["$inc"]["changes"] = 1
    if plan.confirmed_delta:
        update["$inc"]["confirmed_count"] = plan.confirmed_delta
    if plan.waitlisted_delta:
        update["$inc"]["waitlisted_count"] = plan.waitlisted_delta
    if unset:
        update["$unset"] = unset
    return update


def _municipality_filter(ags: str, expected_key_hash: str | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"_id": ags}
    if expected_key_hash is not None:
        condition["key_hash"] = expected_key_hash
    return condition


def _municipality_update(set_fields: dict[str, Any], events: list[OutboundEvent]) -> dict[str, Any]:
    return outbox_update(
        events, set_fields={name: _stored(value) for name, value in set_fields.items()}
    )


def _member_removal(events: list[OutboundEvent]) -> dict[str, Any]:
    update = outbox_update(events, set_fields={"state": "removed"})
    update["$unset"] = {"name": "", "email": ""}
    return update


# -- MongoDB ---------------------------------------------------------------------------


class MongoRegistrationRepository:
    def __init__(self, database: Any) -> None:
        self.municipalities = database["municipalities"]
        self.dialogue_events = database["dialogue_events"]
        self.participants = database["participants"]
        self.taskforce = database["taskforce_members"]
        # every contact waiting goes into the next insert, however many
        self._new_participants: Coalescer[dict[str, Any], None] = Coalescer(
            self._insert_participants, max_batch=sys.maxsize
        )
        self._contact_window: asyncio.Future[None] | None = None
        self._to_keep: set[str] = set()
        self._keeper: asyncio.Task[None] | None = None
        self.outbox: OutboxWriter | None = None
        """When set, a place write hands its events to the outbox relay (published without
        a read of the document) and removes those of the document the relay has published."""

    async def ensure_indexes(self) -> None:
        await self.municipalities.create_index("key_hash", unique=True)
        await self.participants.create_index("expires_at", expireAfterSeconds=0)
        await self.taskforce.create_index("ags")
        for name, value in EVENT_DEFAULTS.items():
            await self.dialogue_events.update_many(
                {name: {"$exists": False}}, {"$set": {name: value}}
            )

    # municipalities

    async def add_municipality(
        self, municipality: Municipality, events: list[OutboundEvent]
    ) -> None:
        try:
            await self.municipalities.insert_one(
                with_outbox(_municipality_document(municipality), events)
            )
        except DuplicateKeyError as error:
            raise AlreadyExists(municipality.ags) from error

    async def get_municipality(self, ags: str) -> Municipality | None:
        document = await self.municipalities.find_one({"_id": ags}, {"outbox": 0})
        return _municipality(document) if document else None

    async def municipality_for_key_hash(self, key_hash: str) -> Municipality | None:
        document = await self.municipalities.find_one({"key_hash": key_hash}, {"outbox": 0})
        return _municipality(document) if document else None

    async def update_municipality(
        self,
        ags: str,
        *,
        set_fields: dict[str, Any],
        events: list[OutboundEvent],
        expected_key_hash: str | None = None,
    ) -> bool:
        result = await self.municipalities.update_one(
            _municipality_filter(ags, expected_key_hash),
            _municipality_update(set_fields, events),
        )
        return bool(result.matched_count)

    # dialogue events

    async def add_dialogue_event(self, event: DialogueEvent, events: list[OutboundEvent]) -> None:
        try:
            await self.dialogue_events.insert_one(with_outbox(_event_document(event), events))
        except DuplicateKeyError as error:
            raise AlreadyExists(event.id) from error

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None:
        document = await self.dialogue_events.find_one(
            {"_id": dialogue_event_id}, {"registrations": 0, "fingerprints": 0, "outbox": 0}
        )
        return _dialogue_event(document) if document else None

    async def load_dialogue_event(
        self, dialogue_event_id: str
    ) -> tuple[DialogueEvent, dict[str, RegistrationRecord]] | None:
        document = await self.dialogue_events.find_one({"_id": dialogue_event_id}, {"outbox": 0})
        return (_dialogue_event(document), _records(document)) if document else None

    async def apply_plan(
        self, dialogue_event_id: str, plan: Plan, events: list[OutboundEvent], *, now: datetime
    ) -> bool:
        result = await self.dialogue_events.update_one(
            plan_filter(dialogue_event_id, plan), plan_update(plan, events, now=now)
        )
        return bool(result.matched_count)

    async def command_carried_out(self, dialogue_event_id: str, command_id: str) -> bool:
        path = _command_path(command_id)
        found = await self.dialogue_events.find_one({"_id": dialogue_event_id}, {path: 1})
        return _projected(found, path) is not None

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None:
        found = await self.dialogue_events.find_one(
            {"_id": dialogue_event_id}, {f"fingerprints.{fingerprint}": 1}
        )
        registration_id = _projected(found, f"fingerprints.{fingerprint}")
        if not registration_id:
            return None
        found = await self.dialogue_events.find_one(
            {"_id": dialogue_event_id}, {f"registrations.{registration_id}.status": 1}
        )
        status = _projected(found, f"registrations.{registration_id}.status")
        if status is None or status == RecordStatus.CANCELLED.value:
            return None
        return registration_id, RegistrationStatus(status)

    async def take_place(
        self,
        *,
        event: DialogueEvent,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        # update_one rather than find_one_and_update: nx-27017 answers the latter by reading
        # the whole document once more and deep-copying it for the projection.
        condition = place_filter(event=event, fingerprint=fingerprint, status=status)
        update = place_update(
            registration_id=registration_id,
            fingerprint=fingerprint,
            status=status,
            record=record,
            events=events,
        )
        if self.outbox is None:
            result = await self.dialogue_events.update_one(condition, update)
            return bool(result.matched_count)
        published = self.outbox.take_published(event.id)
        matched = False
        try:
            if published:
                try:
                    result = await self.dialogue_events.update_one(
                        *with_removal(condition, update, [m.event_id for m in published])
                    )
                except BaseException:
                    self.outbox.kept(published)
                    raise
                matched = bool(result.matched_count)
                if matched:
                    self.outbox.removed(published)
                else:  # the place, or the removal (another relay's), did not fit: without it
                    self.outbox.kept(published)
            if not matched:
                result = await self.dialogue_events.update_one(condition, update)
                matched = bool(result.matched_count)
        except BaseException:
            self.outbox.uncertain()  # the write may have happened: the relay reads
            raise
        if matched:
            self.outbox.written(event.id, update)
        return matched

    # participants

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None:
        document = _participant_document(participant, expires_at)
        await self._join_contact_window()
        await self._new_participants.submit(document)

    async def _join_contact_window(self) -> None:
        """Wait until the current window of new contacts closes (the first to arrive opens
        one for CONTACT_LINGER_S): all of its contacts are submitted in the same turn of the
        event loop, and so go into one insert."""
        window = self._contact_window
        loop = asyncio.get_running_loop()
        if window is None or window.done() or window.get_loop() is not loop:
            window = self._contact_window = loop.create_future()
            loop.call_later(CONTACT_LINGER_S, _close, window)
        await asyncio.shield(window)  # a caller giving up does not close it for the others

    async def keep_participant(self, registration_id: str) -> None:
        """Not awaited: the contacts kept within KEEP_DELAY_S go in one update_many."""
        self._to_keep.add(registration_id)
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep_soon(), name="keep-contacts")

    async def _keep_soon(self) -> None:
        failures = 0
        while self._to_keep:
            await asyncio.sleep(KEEP_DELAY_S * (2 ** min(failures, 6)))
            batch, self._to_keep = self._to_keep, set()
            try:
                await self._keep_participants(sorted(batch))
                failures = 0
            except Exception as error:  # tried again; a crash leaves them to the recovery
                self._to_keep |= batch
                failures += 1
                log.warning("keeping contacts failed; retrying", error=repr(error))

    async def keep_participants_now(self, registration_ids: Sequence[str]) -> None:
        if registration_ids:
            await self._keep_participants(list(registration_ids))

    async def flush_kept(self) -> None:
        """Wait until the contacts kept so far are written."""
        while self._keeper is not None and not self._keeper.done():
            await asyncio.shield(self._keeper)

    async def unkept_participants(self, *, expiring_before: datetime) -> list[tuple[str, str]]:
        cursor = self.participants.find(
            {"expires_at": {"$lt": expiring_before}}, {"dialogue_event_id": 1}
        )
        return [(str(d["_id"]), str(d["dialogue_event_id"])) async for d in cursor]

    async def holds_registration(self, dialogue_event_id: str, registration_id: str) -> bool:
        path = f"registrations.{registration_id}.status"
        found = await self.dialogue_events.find_one({"_id": dialogue_event_id}, {path: 1})
        return _projected(found, path) is not None

    async def _insert_participants(
        self, documents: list[dict[str, Any]]
    ) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = [None] * len(documents)
        try:
            await self.participants.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            for failure in error.details.get("writeErrors", []):
                kind = DuplicateKeyError if failure.get("code") == 11000 else OperationFailure
                outcomes[failure["index"]] = kind(failure.get("errmsg", "write failed"))
        return outcomes

    async def _keep_participants(self, registration_ids: list[str]) -> None:
        await self.participants.update_many(
            {"_id": {"$in": registration_ids}}, {"$unset": {"expires_at": ""}}
        )

    async def remove_participant(self, registration_id: str) -> None:
        await self.participants.delete_one({"_id": registration_id})

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = await self.participants.find_one({"_id": registration_id})
        return _participant(document) if document else None

    async def get_participants(self, registration_ids: Sequence[str]) -> list[Participant]:
        cursor = self.participants.find({"_id": {"$in": list(registration_ids)}})
        return [_participant(document) async for document in cursor]

    # taskforce

    async def add_taskforce_member(
        self, member: TaskforceMember, events: list[OutboundEvent]
    ) -> None:
        await self.taskforce.insert_one(
            with_outbox(_member_document(member, new_position()), events)
        )

    async def remove_taskforce_member(
        self, ags: str, member_id: str, events: list[OutboundEvent]
    ) -> bool:
        result = await self.taskforce.update_one(
            {"_id": member_id, "ags": ags, "state": "active"}, _member_removal(events)
        )
        return bool(result.matched_count)

    async def taskforce_members(self, ags: str) -> list[TaskforceMember]:
        cursor = self.taskforce.find({"ags": ags, "state": "active"}, {"outbox": 0}).sort(
            "position", 1
        )
        return [_member(document) async for document in cursor]


def _close(window: asyncio.Future[None]) -> None:
    if not window.done():
        window.set_result(None)


def _projected(document: dict[str, Any] | None, path: str) -> Any:
    """A projected nested value; nx-27017 answers a dotted projection with a flat "a.b" key,
    MongoDB with nested documents."""
    if document is None:
        return None
    if path in document:
        return document[path]
    value = _get_path(document, path)
    return None if value is _MISSING else value


def _existing(
    document: dict[str, Any] | None, fingerprint: str
) -> tuple[str, RegistrationStatus] | None:
    registration_id = ((document or {}).get("fingerprints") or {}).get(fingerprint)
    if not registration_id:
        return None
    record = (document or {}).get("registrations", {}).get(registration_id)
    if record is None or record["status"] == RecordStatus.CANCELLED.value:
        return None
    return registration_id, RegistrationStatus(record["status"])


# -- in memory (fast tests) ------------------------------------------------------------


class InMemoryRegistrationRepository:
    """The same behaviour on dicts of MongoDB-shaped documents, through the same filters
    and updates (a small evaluator of the operators used here)."""

    def __init__(self) -> None:
        self.municipalities: dict[str, dict[str, Any]] = {}
        self.dialogue_events: dict[str, dict[str, Any]] = {}
        self.participants: dict[str, dict[str, Any]] = {}
        self.taskforce: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [
            InMemoryOutboxSource(self.municipalities),
            InMemoryOutboxSource(self.dialogue_events),
            InMemoryOutboxSource(self.taskforce),
        ]

    async def add_municipality(
        self, municipality: Municipality, events: list[OutboundEvent]
    ) -> None:
        if municipality.ags in self.municipalities:
            raise AlreadyExists(municipality.ags)
        self.municipalities[municipality.ags] = with_outbox(
            _municipality_document(municipality), events
        )

    async def get_municipality(self, ags: str) -> Municipality | None:
        document = self.municipalities.get(ags)
        return _municipality(document) if document else None

    async def municipality_for_key_hash(self, key_hash: str) -> Municipality | None:
        for document in self.municipalities.values():
            if document["key_hash"] == key_hash:
                return _municipality(document)
        return None

    async def update_municipality(
        self,
        ags: str,
        *,
        set_fields: dict[str, Any],
        events: list[OutboundEvent],
        expected_key_hash: str | None = None,
    ) -> bool:
        return _update_one(
            self.municipalities,
            _municipality_filter(ags, expected_key_hash),
            _municipality_update(set_fields, events),
        )

    async def add_dialogue_event(self, event: DialogueEvent, events: list[OutboundEvent]) -> None:
        if event.id in self.dialogue_events:
            raise AlreadyExists(event.id)
        self.dialogue_events[event.id] = with_outbox(_event_document(event), events)

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None:
        document = self.dialogue_events.get(dialogue_event_id)
        return _dialogue_event(document) if document else None

    async def load_dialogue_event(
        self, dialogue_event_id: str
    ) -> tuple[DialogueEvent, dict[str, RegistrationRecord]] | None:
        document = self.dialogue_events.get(dialogue_event_id)
        return (_dialogue_event(document), _records(document)) if document else None

    async def apply_plan(
        self, dialogue_event_id: str, plan: Plan, events: list[OutboundEvent], *, now: datetime
    ) -> bool:
        return _update_one(
            self.dialogue_events,
            plan_filter(dialogue_event_id, plan),
            plan_update(plan, events, now=now),
        )

    async def command_carried_out(self, dialogue_event_id: str, command_id: str) -> bool:
        document = self.dialogue_events.get(dialogue_event_id)
        return _projected(document, _command_path(command_id)) is not None

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None:
        return _existing(self.dialogue_events.get(dialogue_event_id), fingerprint)

    async def take_place(
        self,
        *,
        event: DialogueEvent,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        return _update_one(
            self.dialogue_events,
            place_filter(event=event, fingerprint=fingerprint, status=status),
            place_update(
                registration_id=registration_id,
                fingerprint=fingerprint,
                status=status,
                record=record,
                events=events,
            ),
        )

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None:
        self.participants[participant.registration_id] = _participant_document(
            participant, expires_at
        )

    async def keep_participant(self, registration_id: str) -> None:
        self.participants[registration_id].pop("expires_at", None)

    async def keep_participants_now(self, registration_ids: Sequence[str]) -> None:
        for registration_id in registration_ids:
            if registration_id in self.participants:
                await self.keep_participant(registration_id)

    async def unkept_participants(self, *, expiring_before: datetime) -> list[tuple[str, str]]:
        return [
            (registration_id, document["dialogue_event_id"])
            for registration_id, document in self.participants.items()
            if "expires_at" in document and document["expires_at"] < expiring_before
        ]

    async def holds_registration(self, dialogue_event_id: str, registration_id: str) -> bool:
        document = self.dialogue_events.get(dialogue_event_id)
        return document is not None and registration_id in (document.get("registrations") or {})

    async def remove_participant(self, registration_id: str) -> None:
        self.participants.pop(registration_id, None)

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = self.participants.get(registration_id)
        return _participant(document) if document else None

    async def get_participants(self, registration_ids: Sequence[str]) -> list[Participant]:
        found = (self.participants.get(each) for each in set(registration_ids))
        return [_participant(document) for document in found if document]

    async def add_taskforce_member(
        self, member: TaskforceMember, events: list[OutboundEvent]
    ) -> None:
        self.taskforce[member.member_id] = with_outbox(
            _member_document(member, new_position()), events
        )

    async def remove_taskforce_member(
        self, ags: str, member_id: str, events: list[OutboundEvent]
    ) -> bool:
        return _update_one(
            self.taskforce,
            {"_id": member_id, "ags": ags, "state": "active"},
            _member_removal(events),
        )

    async def taskforce_members(self, ags: str) -> list[TaskforceMember]:
        found = [d for d in self.taskforce.values() if d["ags"] == ags and d["state"] == "active"]
        return [_member(d) for d in sorted(found, key=lambda d: d["position"])]


_MISSING = object()


def _get_path(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _matches(document: dict[str, Any], condition: dict[str, Any]) -> bool:
    for path, expected in condition.items():
        value = _get_path(document, path)
        if isinstance(expected, dict) and expected and next(iter(expected)).startswith("$"):
            for operator, operand in expected.items():
                if operator == "$exists":
                    if (value is not _MISSING) != operand:
                        return False
                elif operator == "$lt":
                    if value is _MISSING or not value < operand:
                        return False
                elif operator == "$gte":
                    if value is _MISSING or not value >= operand:
                        return False
                else:
                    raise ValueError(f"the in-memory store does not know {operator}")
        elif value is _MISSING or value != expected:
            return False
    return True


def _update_one(
    documents: dict[str, dict[str, Any]], condition: dict[str, Any], update: dict[str, Any]
) -> bool:
    document = documents.get(condition["_id"])
    if document is None or not _matches(document, condition):
        return False
    _apply(document, update)
    return True


def _apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    """Play a `$set`/`$unset`/`$inc` update onto an in-memory document as MongoDB would."""
    for path, value in update.get("$set", {}).items():
        *parents, leaf = path.split(".")
        _parent(document, parents)[leaf] = copy.deepcopy(value)
    for path in update.get("$unset", {}):
        *parents, leaf = path.split(".")
        _parent(document, parents).pop(leaf, None)
    for path, amount in update.get("$inc", {}).items():
        *parents, leaf = path.split(".")
        parent = _parent(document, parents)
        parent[leaf] = parent.get(leaf, 0) + amount


def _parent(document: dict[str, Any], parents: list[str]) -> dict[str, Any]:
    for part in parents:
        document = document.setdefault(part, {})
    return document
