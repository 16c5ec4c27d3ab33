"""Thin handlers: command in, domain rules, one store write with the events it caused."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from wok_contracts import EventData, RegistrationStatus, new_envelope
from wok_contracts.topics import REGISTRATION_EVENTS
from wok_registration import domain
from wok_registration.adapters.repository import (
    UNCONFIRMED_PARTICIPANT_TTL,
    AlreadyExists,
    RegistrationRepository,
)
from wok_runtime.logging import current_correlation_id, get_logger
from wok_runtime.outbox import OutboundEvent

SOURCE = "/wok/registration"

log = get_logger(__name__)


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def _outbound(data: EventData, *, ags: str, subject: str) -> OutboundEvent:
    envelope = new_envelope(
        data,
        source=SOURCE,
        municipality=ags,
        subject=subject,
        correlation_id=current_correlation_id(),
    )
    return OutboundEvent(topic=REGISTRATION_EVENTS, envelope=envelope)


@dataclass
class Registration:
    registration_id: str
    dialogue_event_id: str
    status: RegistrationStatus
    created: bool


class RegistrationHandlers:
    def __init__(
        self,
        *,
        repository: RegistrationRepository,
        events_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._events_stored = events_stored
        self._clock = clock

    async def onboard_municipality(
        self, *, ags: str, name: str, kind: domain.MunicipalityKind, population: int | None
    ) -> tuple[domain.Municipality, str]:
        municipality, key, event = domain.onboard_municipality(
            ags=ags, name=name, kind=kind, population=population
        )
        try:
            await self.repository.add_municipality(
                municipality,
                [
                    _outbound(event, ags=ags, subject=ags),
                    _outbound(key.event, ags=ags, subject=ags),
                ],
            )
        except AlreadyExists as error:
            raise Conflict(f"municipality {ags} is already onboarded") from error
        self._events_stored()
        log.info("municipality onboarded", ags=ags)
        return municipality, key.api_key

    async def rotate_key(self, *, ags: str) -> str:
        key = domain.issue_key(ags)
        replaced = await self.repository.replace_key_hash(
            ags, key.key_hash, [_outbound(key.event, ags=ags, subject=ags)]
        )
        if not replaced:
            raise NotFound(f"municipality {ags} is not onboarded")
        self._events_stored()
        log.info("municipality key rotated", ags=ags)
        return key.api_key

    async def municipality_for_key(self, api_key: str) -> domain.Municipality | None:
        return await self.repository.municipality_for_key_hash(domain.hash_key(api_key))

    async def schedule_dialogue_event(
        self, *, ags: str, fields: dict[str, object]
    ) -> domain.DialogueEvent:
        event, scheduled = domain.schedule_dialogue_event(ags=ags, **fields)  # type: ignore[arg-type]
        await self.repository.add_dialogue_event(
            event, [_outbound(scheduled, ags=ags, subject=event.id)]
        )
        self._events_stored()
        log.info("dialogue event scheduled", ags=ags, dialogue_event_id=event.id)
        return event

    async def get_dialogue_event(self, dialogue_event_id: str) -> domain.DialogueEvent:
        event = await self.repository.get_dialogue_event(dialogue_event_id)
        if event is None:
            raise NotFound(f"dialogue event {dialogue_event_id} does not exist")
        return event

    async def register_participant(self, request: domain.RegistrationRequest) -> Registration:
        event = await self.get_dialogue_event(request.dialogue_event_id)
        now = self._clock()
        domain.check_registration_open(event, now=now)
        fingerprint = domain.email_fingerprint(dialogue_event_id=event.id, email=request.email)
        existing = await self.repository.existing_registration(event.id, fingerprint)
        if existing is not None:
            return Registration(existing[0], event.id, existing[1], created=False)

        await self.repository.add_participant(
            domain.Participant(
                registration_id=request.registration_id,
                dialogue_event_id=event.id,
                name=request.name,
                email=request.email,
                language=request.language,
                consent_at=now,
            ),
            expires_at=now + UNCONFIRMED_PARTICIPANT_TTL,
        )
        statuses = [domain.seat_status(event)]
        if statuses[0] is RegistrationStatus.CONFIRMED:
            statuses.append(RegistrationStatus.WAITLISTED)  # the last place may go meanwhile
        for status in statuses:
            taken = await self.repository.take_place(
                dialogue_event_id=event.id,
                registration_id=request.registration_id,
                fingerprint=fingerprint,
                status=status,
                capacity=event.capacity,
                record={
                    "sector": request.sector.value,
                    "language": request.language,
                    "registered_at": now,
                },
                events=[
                    _outbound(
                        domain.registered_event(event, request, status),
                        ags=event.ags,
                        subject=request.registration_id,
                    )
                ],
            )
            if taken:
                await self.repository.keep_participant(request.registration_id)
                self._events_stored()
                log.info(
                    "participant registered",
                    dialogue_event_id=event.id,
                    registration_id=request.registration_id,
                    status=status.value,
                )
                return Registration(request.registration_id, event.id, status, created=True)
        # Someone registered the same address concurrently: answer with their registration.
        await self.repository.remove_participant(request.registration_id)
        existing = await self.repository.existing_registration(event.id, fingerprint)
        if existing is None:
            raise Conflict("the registration could not be stored; please try again")
        return Registration(existing[0], event.id, existing[1], created=False)

    async def contact(self, registration_id: str) -> domain.Participant:
        participant = await self.repository.get_participant(registration_id)
        if participant is None:
            raise NotFound(f"registration {registration_id} does not exist or was erased")
        return participant
