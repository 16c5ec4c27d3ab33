"""Storage of municipalities, dialogue events and participants, with the outbox in each write.

Seats are taken with one conditional update of the dialogue-event document, which also
records the registration (without personal data) and its pending event: a registration,
its seat and its event exist together or not at all. The person's name and address live
in a separate document written first with an expiry, which is lifted once the seat write
succeeded; a crash in between leaves nothing personal behind for long.
"""

from __future__ import annotations

import copy
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from wok_contracts import EventFormat, MunicipalityKind, RegistrationStatus
from wok_registration.domain import DialogueEvent, Municipality, Participant
from wok_runtime.outbox import InMemoryOutboxSource, OutboundEvent, outbox_update, with_outbox

UNCONFIRMED_PARTICIPANT_TTL = timedelta(hours=1)


class AlreadyExists(Exception):
    pass


class RegistrationRepository(Protocol):
    async def add_municipality(
        self, municipality: Municipality, events: list[OutboundEvent]
    ) -> None: ...

    async def get_municipality(self, ags: str) -> Municipality | None: ...

    async def municipality_for_key_hash(self, key_hash: str) -> Municipality | None: ...

    async def replace_key_hash(
        self, ags: str, key_hash: str, events: list[OutboundEvent]
    ) -> bool: ...

    async def add_dialogue_event(
        self, event: DialogueEvent, events: list[OutboundEvent]
    ) -> None: ...

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None: ...

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None: ...

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None: ...

    async def keep_participant(self, registration_id: str) -> None: ...

    async def remove_participant(self, registration_id: str) -> None: ...

    async def get_participant(self, registration_id: str) -> Participant | None: ...

    async def take_place(
        self,
        *,
        dialogue_event_id: str,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        capacity: int,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        """Record the registration with `status`; False if no place (confirmed) or a duplicate."""
        ...


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
    )


def _event_document(event: DialogueEvent) -> dict[str, Any]:
    document = asdict(event)
    document["_id"] = document.pop("id")
    document["format"] = event.format.value
    document["languages"] = list(event.languages)
    document["registrations"] = {}
    document["fingerprints"] = {}
    return document


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _dialogue_event(document: dict[str, Any]) -> DialogueEvent:
    return DialogueEvent(
        id=document["_id"],
        ags=document["ags"],
        title=document["title"],
        description=document.get("description", ""),
        starts_at=_aware(document["starts_at"]),
        ends_at=_aware(document["ends_at"]),
        format=EventFormat(document["format"]),
        place=document.get("place"),
        online_link=document.get("online_link"),
        capacity=document["capacity"],
        registration_deadline=_aware(document["registration_deadline"]),
        languages=tuple(document.get("languages", ["de"])),
        revision=document.get("revision", 0),
        confirmed_count=document.get("confirmed_count", 0),
        waitlisted_count=document.get("waitlisted_count", 0),
    )


def _participant_document(participant: Participant, expires_at: datetime) -> dict[str, Any]:
    document = asdict(participant)
    document["_id"] = document.pop("registration_id")
    document["expires_at"] = expires_at
    return document


def _participant(document: dict[str, Any]) -> Participant:
    return Participant(
        registration_id=document["_id"],
        dialogue_event_id=document["dialogue_event_id"],
        name=document["name"],
        email=document["email"],
        language=document["language"],
        consent_at=_aware(document["consent_at"]),
    )


def _place_filter(
    *, dialogue_event_id: str, fingerprint: str, status: RegistrationStatus, capacity: int
) -> dict[str, Any]:
    condition: dict[str, Any] = {
        "_id": dialogue_event_id,
        f"fingerprints.{fingerprint}": {"$exists": False},
    }
    if status is RegistrationStatus.CONFIRMED:
        condition["confirmed_count"] = {"$lt": capacity}
    return condition


def _place_update(
    *,
    registration_id: str,
    fingerprint: str,
    status: RegistrationStatus,
    record: dict[str, Any],
    events: list[OutboundEvent],
) -> dict[str, Any]:
    update = outbox_update(
        events,
        set_fields={
            f"registrations.{registration_id}": {**record, "status": status.value},
            f"fingerprints.{fingerprint}": registration_id,
        },
    )
    counter = "confirmed_count" if status is RegistrationStatus.CONFIRMED else "waitlisted_count"
    update["$inc"][counter] = 1
    return update


class MongoRegistrationRepository:
    def __init__(self, database: Any) -> None:
        self.municipalities = database["municipalities"]
        self.dialogue_events = database["dialogue_events"]
        self.participants = database["participants"]

    async def ensure_indexes(self) -> None:
        await self.municipalities.create_index("key_hash", unique=True)
        await self.participants.create_index("expires_at", expireAfterSeconds=0)

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
        document = await self.municipalities.find_one({"_id": ags})
        return _municipality(document) if document else None

    async def municipality_for_key_hash(self, key_hash: str) -> Municipality | None:
        document = await self.municipalities.find_one({"key_hash": key_hash})
        return _municipality(document) if document else None

    async def replace_key_hash(self, ags: str, key_hash: str, events: list[OutboundEvent]) -> bool:
        result = await self.municipalities.update_one(
            {"_id": ags}, outbox_update(events, set_fields={"key_hash": key_hash})
        )
        return bool(result.matched_count)

    async def add_dialogue_event(self, event: DialogueEvent, events: list[OutboundEvent]) -> None:
        await self.dialogue_events.insert_one(with_outbox(_event_document(event), events))

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None:
        document = await self.dialogue_events.find_one(
            {"_id": dialogue_event_id}, {"registrations": 0, "fingerprints": 0, "outbox": 0}
        )
        return _dialogue_event(document) if document else None

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None:
        document = await self.dialogue_events.find_one(
            {"_id": dialogue_event_id},
            {f"fingerprints.{fingerprint}": 1, "registrations": 1},
        )
        registration_id = ((document or {}).get("fingerprints") or {}).get(fingerprint)
        if not registration_id:
            return None
        record = (document or {}).get("registrations", {}).get(registration_id)
        if record is None:
            return None
        return registration_id, RegistrationStatus(record["status"])

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None:
        await self.participants.insert_one(_participant_document(participant, expires_at))

    async def keep_participant(self, registration_id: str) -> None:
        await self.participants.update_one({"_id": registration_id}, {"$unset": {"expires_at": ""}})

    async def remove_participant(self, registration_id: str) -> None:
        await self.participants.delete_one({"_id": registration_id})

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = await self.participants.find_one({"_id": registration_id})
        return _participant(document) if document else None

    async def take_place(
        self,
        *,
        dialogue_event_id: str,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        capacity: int,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        document = await self.dialogue_events.find_one_and_update(
            _place_filter(
                dialogue_event_id=dialogue_event_id,
                fingerprint=fingerprint,
                status=status,
                capacity=capacity,
            ),
            _place_update(
                registration_id=registration_id,
                fingerprint=fingerprint,
                status=status,
                record=record,
                events=events,
            ),
            projection={"_id": 1},
            return_document=ReturnDocument.AFTER,
        )
        return document is not None


class InMemoryRegistrationRepository:
    """The same behaviour in dicts of MongoDB-shaped documents, for fast tests."""

    def __init__(self) -> None:
        self.municipalities: dict[str, dict[str, Any]] = {}
        self.dialogue_events: dict[str, dict[str, Any]] = {}
        self.participants: dict[str, dict[str, Any]] = {}

    def outbox_sources(self) -> list[InMemoryOutboxSource]:
        return [
            InMemoryOutboxSource(self.municipalities),
            InMemoryOutboxSource(self.dialogue_events),
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

    async def replace_key_hash(self, ags: str, key_hash: str, events: list[OutboundEvent]) -> bool:
        if ags not in self.municipalities:
            return False
        _apply(self.municipalities[ags], outbox_update(events, set_fields={"key_hash": key_hash}))
        return True

    async def add_dialogue_event(self, event: DialogueEvent, events: list[OutboundEvent]) -> None:
        self.dialogue_events[event.id] = with_outbox(_event_document(event), events)

    async def get_dialogue_event(self, dialogue_event_id: str) -> DialogueEvent | None:
        document = self.dialogue_events.get(dialogue_event_id)
        return _dialogue_event(document) if document else None

    async def existing_registration(
        self, dialogue_event_id: str, fingerprint: str
    ) -> tuple[str, RegistrationStatus] | None:
        document = self.dialogue_events.get(dialogue_event_id) or {}
        registration_id = document.get("fingerprints", {}).get(fingerprint)
        if not registration_id:
            return None
        return registration_id, RegistrationStatus(
            document["registrations"][registration_id]["status"]
        )

    async def add_participant(self, participant: Participant, *, expires_at: datetime) -> None:
        self.participants[participant.registration_id] = _participant_document(
            participant, expires_at
        )

    async def keep_participant(self, registration_id: str) -> None:
        self.participants[registration_id].pop("expires_at", None)

    async def remove_participant(self, registration_id: str) -> None:
        self.participants.pop(registration_id, None)

    async def get_participant(self, registration_id: str) -> Participant | None:
        document = self.participants.get(registration_id)
        return _participant(document) if document else None

    async def take_place(
        self,
        *,
        dialogue_event_id: str,
        registration_id: str,
        fingerprint: str,
        status: RegistrationStatus,
        capacity: int,
        record: dict[str, Any],
        events: list[OutboundEvent],
    ) -> bool:
        document = self.dialogue_events.get(dialogue_event_id)
        if document is None or fingerprint in document["fingerprints"]:
            return False
        if status is RegistrationStatus.CONFIRMED and document["confirmed_count"] >= capacity:
            return False
        update = _place_update(
            registration_id=registration_id,
            fingerprint=fingerprint,
            status=status,
            record=record,
            events=events,
        )
        _apply(document, update)
        return True


def _apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    """Play a `$set`/`$inc` update onto an in-memory document as MongoDB would."""
    for path, value in update.get("$set", {}).items():
        _set_path(document, path, copy.deepcopy(value))
    for path, amount in update.get("$inc", {}).items():
        document[path] = document.get(path, 0) + amount


def _set_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        document = document.setdefault(part, {})
    document[leaf] = value
