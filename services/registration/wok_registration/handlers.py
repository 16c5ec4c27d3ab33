"""Thin handlers: command in, domain rules, one store write with the events it caused."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from wok_contracts import EventData, ParticipantPromoted, RegistrationStatus, new_envelope
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
# A whole-event change retries while registrations keep changing the document meanwhile.
PLAN_ATTEMPTS = 50
# Registrations take a dialogue event as read up to this long ago (one read less each); the
# conditional write still judges it (revision, capacity, state), and a refusal reads afresh.
EVENT_CACHE_SECONDS = 30.0
EVENT_CACHE_SIZE = 4096

# A registration writes its contact, then takes its place, then keeps the contact: one
# written this long ago and still unkept was interrupted.
CONTACT_GRACE = timedelta(minutes=2)
log = get_logger(__name__)


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


def _statuses_to_try(event: domain.DialogueEvent) -> tuple[RegistrationStatus, ...]:
    if event.places_left > 0:
        return (RegistrationStatus.CONFIRMED, RegistrationStatus.WAITLISTED)
    return (RegistrationStatus.WAITLISTED, RegistrationStatus.CONFIRMED)


def _outbound(data: EventData, *, ags: str, subject: str | None = None) -> OutboundEvent:
    if subject is None:
        subject = getattr(data, "registration_id", None) or getattr(data, "dialogue_event_id", None)
    envelope = new_envelope(
        data,
        source=SOURCE,
        municipality=ags,
        subject=subject or ags,
        correlation_id=current_correlation_id(),
    )
    return OutboundEvent(topic=REGISTRATION_EVENTS, envelope=envelope)


@dataclass
class Registration:
    registration_id: str
    dialogue_event_id: str
    status: RegistrationStatus
    created: bool


@dataclass(frozen=True)
class Links:
    cancel_url: str
    erasure_url: str


@dataclass(frozen=True)
class Access:
    event: domain.DialogueEvent
    online_link_released_at: datetime
    online_link: str | None


class EventCache:
    """Dialogue events as last read or written by this process, for a short while.

    A change this process makes to an event drops it (`drop`); a read or write begun before
    that drop must not put its older copy back, so each takes a `ticket` first and `put`
    refuses a copy whose ticket predates a drop of its event."""

    def __init__(
        self,
        *,
        seconds: float = EVENT_CACHE_SECONDS,
        size: int = EVENT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._entries: dict[str, tuple[float, domain.DialogueEvent]] = {}
        self._drops = 0
        self._dropped: dict[str, int] = {}  # event id: the drop count after its last drop
        self._forgotten = 0  # the latest drop no longer in `_dropped`

    def get(self, dialogue_event_id: str) -> domain.DialogueEvent | None:
        entry = self._entries.get(dialogue_event_id)
        if entry is None or entry[0] < self._clock():
            return None
        return entry[1]

    def ticket(self) -> int:
        """Take before reading or writing an event that will be `put`."""
        return self._drops

    def put(self, event: domain.DialogueEvent, *, ticket: int | None = None) -> None:
        if ticket is not None and ticket < max(self._dropped.get(event.id, 0), self._forgotten):
            return  # read or written before this process changed the event: stale
        self._entries.pop(event.id, None)
        if len(self._entries) >= self._size:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[event.id] = (self._clock() + self._seconds, event)

    def drop(self, dialogue_event_id: str) -> None:
        self._entries.pop(dialogue_event_id, None)
        self._drops += 1
        self._dropped.pop(dialogue_event_id, None)
        if len(self._dropped) >= self._size:
            self._forgotten = self._dropped.pop(next(iter(self._dropped)))
        self._dropped[dialogue_event_id] = self._drops


def _with_place_taken(
    event: domain.DialogueEvent, status: RegistrationStatus
) -> domain.DialogueEvent:
    """The event as this process now knows it: a confirmation took a place; a waitlisting
    means none was left. (Other processes' registrations are unknown here; a wrong guess
    only costs the conditional write that does not fit.)"""
    if status is RegistrationStatus.CONFIRMED:
        return replace(
            event,
            confirmed_count=min(event.confirmed_count + 1, event.bookable),
        )
    return replace(
        event,
        confirmed_count=max(event.confirmed_count, event.bookable),
        waitlisted_count=event.waitlisted_count + 1,
    )


def _promotions(plan: domain.Plan | None) -> list[ParticipantPromoted]:
    return [data for data in (plan.events if plan else []) if isinstance(data, ParticipantPromoted)]


class RegistrationHandlers:
    def __init__(
        self,
        *,
        repository: RegistrationRepository,
        events_stored: Callable[[], None] = lambda: None,
        places_stored: Callable[[], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        link_secret: bytes = b"",
        public_url: str = "http://127.0.0.1:8001",
        erasure_link_ttl: timedelta = timedelta(days=365),
        online_link_release: timedelta = timedelta(hours=24),
    ) -> None:
        self.repository = repository
        self._events_stored = events_stored
        # A place write's events may reach the relay another way (see app.py).
        self._places_stored = places_stored or events_stored
        self.clock = clock
        self._link_secret = link_secret
        self._public_url = public_url.rstrip("/")
        self._erasure_link_ttl = erasure_link_ttl
        self._online_link_release = online_link_release
        self._events = EventCache()

    def now(self) -> datetime:
        return self.clock()

    # -- municipalities and keys -------------------------------------------------------

    async def onboard_municipality(
        self,
        *,
        ags: str,
        name: str,
        kind: domain.MunicipalityKind,
        population: int | None,
        contact_office: str | None = None,
        contact_office_email: str | None = None,
        language: str = "de",
    ) -> tuple[domain.Municipality, str]:
        municipality, key, event = domain.onboard_municipality(
            ags=ags,
            name=name,
            kind=kind,
            population=population,
            contact_office=contact_office,
            contact_office_email=contact_office_email,
            language=language,
        )
        try:
            await self.repository.add_municipality(
                municipality, [_outbound(event, ags=ags), _outbound(key.event, ags=ags)]
            )
        except AlreadyExists as error:
            raise Conflict(f"municipality {ags} is already onboarded") from error
        self._events_stored()
        log.info("municipality onboarded", ags=ags)
        return municipality, key.api_key

    async def get_municipality(self, ags: str) -> domain.Municipality:
        municipality = await self.repository.get_municipality(ags)
        if municipality is None:
            raise NotFound(f"municipality {ags} is not onboarded")
        return municipality

    async def rotate_key(self, *, ags: str) -> str:
        key = domain.issue_key(ags)
        replaced = await self.repository.update_municipality(
            ags,
            set_fields={"key_hash": key.key_hash, "key_id": key.key_id},
            events=[_outbound(key.event, ags=ags)],
        )
        if not replaced:
            raise NotFound(f"municipality {ags} is not onboarded")
        self._events_stored()
        log.info("municipality key rotated", ags=ags)
        return key.api_key

    async def revoke_key(self, *, ags: str) -> str:
        municipality = await self.get_municipality(ags)
        try:
            event = domain.revoke_key(municipality)
        except domain.DomainError as error:
            raise Conflict(str(error)) from error
        revoked = await self.repository.update_municipality(
            ags,
            set_fields={"key_hash": domain.revoked_marker()},
            events=[_outbound(event, ags=ags)],
            expected_key_hash=municipality.key_hash,
        )
        if not revoked:
            raise Conflict("the key changed meanwhile; nothing was revoked")
        self._events_stored()
        log.info("municipality key revoked", ags=ags, key_id=event.key_id)
        return event.key_id

    async def update_profile(self, *, ags: str, changes: dict[str, Any]) -> domain.Municipality:
        municipality = await self.get_municipality(ags)
        updated, event = domain.update_profile(municipality, changes)
        await self.repository.update_municipality(
            ags, set_fields=changes, events=[_outbound(event, ags=ags)]
        )
        self._events_stored()
        log.info("municipality profile updated", ags=ags, fields=sorted(changes))
        return updated

    async def municipality_for_key(self, api_key: str) -> domain.Municipality | None:
        return await self.repository.municipality_for_key_hash(domain.hash_key(api_key))

    # -- dialogue events ---------------------------------------------------------------

    async def schedule_dialogue_event(
        self, *, ags: str, fields: dict[str, Any], dialogue_event_id: str | None = None
    ) -> domain.DialogueEvent:
        """Schedule; with a given id, a second call with it changes nothing (AlreadyExists)."""
        event, scheduled = domain.schedule_dialogue_event(
            ags=ags, now=self.now(), dialogue_event_id=dialogue_event_id, **fields
        )
        await self.repository.add_dialogue_event(event, [_outbound(scheduled, ags=ags)])
        self._events_stored()
        log.info("dialogue event scheduled", ags=ags, dialogue_event_id=event.id)
        return event

    async def get_dialogue_event(self, dialogue_event_id: str) -> domain.DialogueEvent:
        event = await self.repository.get_dialogue_event(dialogue_event_id)
        if event is None:
            raise NotFound(f"dialogue event {dialogue_event_id} does not exist")
        return event

    async def _apply_plan(
        self,
        dialogue_event_id: str,
        make_plan: Callable[
            [domain.DialogueEvent, dict[str, domain.RegistrationRecord]], domain.Plan | None
        ],
        *,
        ags: str | None = None,
        command_id: str | None = None,
    ) -> tuple[domain.DialogueEvent, domain.Plan | None]:
        """Read, plan, write if nothing changed meanwhile; otherwise again. A municipal
        system's command (`command_id`) is carried out once: recorded with its change, and
        nothing is done when it is found recorded (delivered again after a crash)."""
        for attempt in range(PLAN_ATTEMPTS):
            loaded = await self.repository.load_dialogue_event(dialogue_event_id)
            if loaded is None or (ags is not None and loaded[0].ags != ags):
                raise NotFound(f"dialogue event {dialogue_event_id} does not exist")
            event, records = loaded
            if command_id is not None and await self.repository.command_carried_out(
                event.id, command_id
            ):
                log.info("command already carried out", command_id=command_id)
                return event, None
            plan = make_plan(event, records)
            if plan is None:
                return event, None
            plan.command_id = command_id
            events = [_outbound(data, ags=event.ags) for data in plan.events]
            if await self.repository.apply_plan(event.id, plan, events, now=self.now()):
                self._events.drop(event.id)
                self._events_stored()
                return event, plan
            await asyncio.sleep(min(0.05, 0.001 * attempt))
        raise Conflict("the event changed too often meanwhile; please try again")

    async def change_dialogue_event(
        self,
        *,
        ags: str,
        dialogue_event_id: str,
        changes: dict[str, Any],
        command_id: str | None = None,
    ) -> domain.DialogueEvent:
        now = self.now()
        await self._apply_plan(
            dialogue_event_id,
            lambda event, records: domain.change_dialogue_event(event, records, changes, now=now)[
                1
            ],
            ags=ags,
            command_id=command_id,
        )
        log.info("dialogue event changed", ags=ags, dialogue_event_id=dialogue_event_id)
        return await self.get_dialogue_event(dialogue_event_id)

    async def reschedule_dialogue_event(
        self,
        *,
        ags: str,
        dialogue_event_id: str,
        starts_at: datetime,
        ends_at: datetime,
        registration_deadline: datetime | None,
        place: str | None,
        command_id: str | None = None,
    ) -> domain.DialogueEvent:
        now = self.now()
        await self._apply_plan(
            dialogue_event_id,
            lambda event, records: domain.reschedule_dialogue_event(
                event,
                starts_at=starts_at,
                ends_at=ends_at,
                registration_deadline=registration_deadline,
                place=place,
                now=now,
            )[1],
            ags=ags,
            command_id=command_id,
        )
        log.info("dialogue event rescheduled", ags=ags, dialogue_event_id=dialogue_event_id)
        return await self.get_dialogue_event(dialogue_event_id)

    async def cancel_dialogue_event(
        self, *, ags: str, dialogue_event_id: str, reason: str, command_id: str | None = None
    ) -> domain.DialogueEvent:
        now = self.now()
        _, plan = await self._apply_plan(
            dialogue_event_id,
            lambda event, records: domain.cancel_dialogue_event(
                event, records, reason=reason, now=now
            ),
            ags=ags,
            command_id=command_id,
        )
        log.info(
            "dialogue event cancelled",
            ags=ags,
            dialogue_event_id=dialogue_event_id,
            registrations_cancelled=len(plan.statuses) if plan else 0,
        )
        return await self.get_dialogue_event(dialogue_event_id)

    async def record_attendance(
        self, *, ags: str, dialogue_event_id: str, attended: int, command_id: str | None = None
    ) -> domain.DialogueEvent:
        now = self.now()
        await self._apply_plan(
            dialogue_event_id,
            lambda event, records: domain.record_attendance(event, attended=attended, now=now),
            ags=ags,
            command_id=command_id,
        )
        log.info("attendance recorded", ags=ags, dialogue_event_id=dialogue_event_id)
        return await self.get_dialogue_event(dialogue_event_id)

    async def access(self, dialogue_event_id: str) -> Access:
        event = await self.get_dialogue_event(dialogue_event_id)
        released_at = event.online_link_released_at(self._online_link_release)
        released = self.now() >= released_at and not event.cancelled
        return Access(
            event=event,
            online_link_released_at=released_at,
            online_link=event.online_link if released else None,
        )

    # -- participants ------------------------------------------------------------------

    async def _fresh_event(self, dialogue_event_id: str) -> domain.DialogueEvent:
        ticket = self._events.ticket()
        event = await self.get_dialogue_event(dialogue_event_id)
        self._events.put(event, ticket=ticket)
        return event

    async def _known_event(self, dialogue_event_id: str) -> domain.DialogueEvent:
        """The event as cached (up to EVENT_CACHE_SECONDS old), otherwise as read now."""
        event = self._events.get(dialogue_event_id)
        if event is None:
            event = await self._fresh_event(dialogue_event_id)
        return event

    async def _event_to_register_for(
        self, dialogue_event_id: str, *, now: datetime
    ) -> domain.DialogueEvent:
        """The event, open for registration: as cached if that says open (the conditional
        write judges it), otherwise as read now (a refusal never rests on an old read)."""
        event = self._events.get(dialogue_event_id)
        if event is not None:
            try:
                domain.check_registration_open(event, now=now)
            except domain.RegistrationClosed:
                event = None
            else:
                return event
        event = await self._fresh_event(dialogue_event_id)
        domain.check_registration_open(event, now=now)
        return event

    async def keep_contacts_of_taken_places(
        self, *, grace: timedelta = CONTACT_GRACE, now: datetime | None = None
    ) -> int:
        """Keep the contact of every registration whose place was taken but whose contact was
        not kept (a crash between the two writes); without this it would expire with the
        place still held. Contacts written within `grace` may belong to a registration on its
        way and are left to it. Answers how many were kept."""
        now = now or self.now()
        unkept = await self.repository.unkept_participants(
            expiring_before=now + UNCONFIRMED_PARTICIPANT_TTL - grace
        )
        held = []
        for registration_id, dialogue_event_id in unkept:
            if await self.repository.holds_registration(dialogue_event_id, registration_id):
                held.append(registration_id)
                log.info(
                    "contact kept after an interrupted registration",
                    dialogue_event_id=dialogue_event_id,
                    registration_id=registration_id,
                )
        await self.repository.keep_participants_now(held)
        return len(held)

    async def register_participant(self, request: domain.RegistrationRequest) -> Registration:
        now = self.now()
        event = await self._event_to_register_for(request.dialogue_event_id, now=now)
        fingerprint = domain.email_fingerprint(dialogue_event_id=event.id, email=request.email)
        # No look-up of the address first: the conditional writes below refuse a known one,
        # and only then is the existing registration read (one round trip less when new).
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
        record = {  # the time of arrival is the position (ns)
            "sector": request.sector,
            "language": request.language,
            "position": domain.new_position(),
            "age_band": request.age_band,
            "migration_background": request.migration_background,
        }
        try:
            taken = await self._take_place(
                event, request, fingerprint=fingerprint, record=record, now=now
            )
        except BaseException:
            await self.repository.remove_participant(request.registration_id)
            raise
        if isinstance(taken, Registration):
            # The same address registered before (or concurrently): that registration is the
            # answer. Its contact is kept again, in case a crash came between its two writes.
            await self.repository.remove_participant(request.registration_id)
            await self.repository.keep_participant(taken.registration_id)
            return taken
        # The seat is taken: from here on the contact stays, even if this call fails.
        await self.repository.keep_participant(request.registration_id)
        # Debug only: each registration is already in the request's log line (correlation
        # id) and in its ParticipantRegistered event; an info line cost ~5% of the CPU.
        if logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
            log.debug(
                "participant registered",
                dialogue_event_id=event.id,
                registration_id=request.registration_id,
                status=taken.value,
            )
        return Registration(request.registration_id, event.id, taken, created=True)

    async def _take_place(
        self,
        event: domain.DialogueEvent,
        request: domain.RegistrationRequest,
        *,
        fingerprint: str,
        record: dict[str, Any],
        now: datetime,
    ) -> RegistrationStatus | Registration:
        """The status this registration got, or the address's existing registration."""
        for attempt in range(PLAN_ATTEMPTS):
            # Confirmed while places are left, waitlisted when none are: exactly one of the
            # two conditional writes fits unless the event changed meanwhile. The one the
            # event as read calls for goes first, so it usually takes one write.
            for status in _statuses_to_try(event):
                ticket = self._events.ticket()
                taken = await self.repository.take_place(
                    event=event,
                    registration_id=request.registration_id,
                    fingerprint=fingerprint,
                    status=status,
                    record=record,
                    events=[
                        _outbound(domain.registered_event(event, request, status), ags=event.ags)
                    ],
                )
                if taken:
                    self._places_stored()
                    self._events.put(_with_place_taken(event, status), ticket=ticket)
                    return status
            existing = await self.repository.existing_registration(event.id, fingerprint)
            if existing is not None:
                return Registration(existing[0], event.id, existing[1], created=False)
            event = await self._fresh_event(event.id)
            domain.check_registration_open(event, now=now)
            await asyncio.sleep(min(0.05, 0.001 * attempt))
        raise Conflict("the registration could not be stored; please try again")

    async def contact(self, registration_id: str) -> tuple[domain.Participant, Links]:
        participant = await self.repository.get_participant(registration_id)
        if participant is None:
            raise NotFound(f"registration {registration_id} does not exist or was erased")
        event = await self._known_event(participant.dialogue_event_id)
        return participant, self._links(registration_id, event)

    async def contacts(
        self, registration_ids: Sequence[str]
    ) -> list[tuple[domain.Participant, Links]]:
        """The contacts of those of these registrations that exist (erased ones do not), each
        once: one read for all people, each dialogue event read at most once (or cached)."""
        participants = await self.repository.get_participants(list(dict.fromkeys(registration_ids)))
        event_ids = list(dict.fromkeys(p.dialogue_event_id for p in participants))
        found = await asyncio.gather(*(self._known_event_or_none(i) for i in event_ids))
        events = {event.id: event for event in found if event is not None}
        return [
            (participant, self._links(participant.registration_id, event))
            for participant in participants
            if (event := events.get(participant.dialogue_event_id)) is not None
        ]

    async def _known_event_or_none(self, dialogue_event_id: str) -> domain.DialogueEvent | None:
        try:
            return await self._known_event(dialogue_event_id)
        except NotFound:
            return None

    def _links(self, registration_id: str, event: domain.DialogueEvent) -> Links:
        """Signed links; they depend on the event's end only, which changes only by a
        rescheduling (and a cached event is at most EVENT_CACHE_SECONDS old, see README)."""
        return Links(
            cancel_url=self._link(domain.LinkAction.CANCEL, registration_id, event.ends_at),
            # valid for the whole TTL after the event, too
            erasure_url=self._link(
                domain.LinkAction.ERASURE,
                registration_id,
                max(self.now(), event.ends_at) + self._erasure_link_ttl,
            ),
        )

    def _link(self, action: domain.LinkAction, registration_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        signature = domain.link_signature(
            secret=self._link_secret,
            action=action,
            registration_id=registration_id,
            expires=expires,
        )
        return (
            f"{self._public_url}/v1/registrations/{registration_id}/{action.value}"
            f"?expires={expires}&signature={signature}"
        )

    def verify_link(
        self, *, action: domain.LinkAction, registration_id: str, expires: int, signature: str
    ) -> None:
        domain.verify_link(
            secret=self._link_secret,
            action=action,
            registration_id=registration_id,
            expires=expires,
            signature=signature,
            now=self.now(),
        )

    async def registration_view(
        self, registration_id: str
    ) -> tuple[domain.DialogueEvent, domain.RegistrationRecord] | None:
        """The event and the registration, for the link pages; None once erased."""
        participant = await self.repository.get_participant(registration_id)
        if participant is None:
            return None
        loaded = await self.repository.load_dialogue_event(participant.dialogue_event_id)
        if loaded is None or registration_id not in loaded[1]:
            return None
        return loaded[0], loaded[1][registration_id]

    async def cancel_registration(self, registration_id: str) -> bool:
        """Cancel; True if it was cancelled now, False if it was already."""
        participant = await self.repository.get_participant(registration_id)
        if participant is None:
            raise NotFound(f"registration {registration_id} does not exist or was erased")
        now = self.now()
        _, plan = await self._apply_plan(
            participant.dialogue_event_id,
            lambda event, records: domain.cancel_registration(
                event, records, registration_id, now=now
            ),
        )
        log.info(
            "registration cancelled",
            registration_id=registration_id,
            promoted=[data.registration_id for data in _promotions(plan)],
        )
        return plan is not None

    async def erase_participant(self, registration_id: str) -> None:
        """Remove the person's data here and announce it, so every service removes theirs.

        The announcement is stored first: if the process dies before the personal document
        is deleted, the link still works and finishes the job.
        """
        participant = await self.repository.get_participant(registration_id)
        if participant is None:
            return  # erased already (the signed link proves the registration existed)
        now = self.now()
        loaded = await self.repository.load_dialogue_event(participant.dialogue_event_id)
        if loaded is not None and registration_id in loaded[1]:
            await self._apply_plan(
                participant.dialogue_event_id,
                lambda event, records: domain.erase_registration(
                    event, records, registration_id, now=now
                ),
            )
        await self.repository.remove_participant(registration_id)
        log.info("participant erased", registration_id=registration_id)

    # -- taskforce ---------------------------------------------------------------------

    async def add_taskforce_member(
        self,
        *,
        ags: str,
        name: str,
        email: str | None,
        role: domain.TaskforceRole,
        sector: domain.TaskforceSector,
        language: str = "de",
    ) -> domain.TaskforceMember:
        await self.get_municipality(ags)
        member, event = domain.add_taskforce_member(
            ags=ags, name=name, email=email, role=role, sector=sector, language=language
        )
        await self.repository.add_taskforce_member(
            member, [_outbound(event, ags=ags, subject=member.member_id)]
        )
        self._events_stored()
        log.info("taskforce member added", ags=ags, member_id=member.member_id)
        return member

    async def remove_taskforce_member(self, *, ags: str, member_id: str) -> None:
        event = domain.remove_taskforce_member(ags=ags, member_id=member_id)
        removed = await self.repository.remove_taskforce_member(
            ags, member_id, [_outbound(event, ags=ags, subject=member_id)]
        )
        if not removed:
            raise NotFound(f"taskforce member {member_id} does not exist in {ags}")
        self._events_stored()
        log.info("taskforce member removed", ags=ags, member_id=member_id)

    async def taskforce_members(self, ags: str) -> list[domain.TaskforceMember]:
        await self.get_municipality(ags)
        return await self.repository.taskforce_members(ags)

    async def taskforce_invitees(
        self, dialogue_event_id: str
    ) -> tuple[domain.DialogueEvent, list[domain.TaskforceMember]]:
        """The event's municipality's taskforce members with an address who hold no active
        registration for it (found by the address fingerprint): whom notification reminds
        before the registration deadline. Nobody once the event is cancelled or the deadline
        has passed."""
        # One read of the event with its registrations (not two per member).
        loaded = await self.repository.load_dialogue_event(dialogue_event_id)
        if loaded is None:
            raise NotFound(f"dialogue event {dialogue_event_id} does not exist")
        event, records = loaded
        if event.cancelled or self.now() >= event.registration_deadline:
            return event, []
        registered = {
            record.fingerprint
            for record in records.values()
            if record.fingerprint and record.status in domain.ACTIVE
        }
        return event, [
            member
            for member in await self.repository.taskforce_members(event.ags)
            if member.email
            and domain.email_fingerprint(dialogue_event_id=dialogue_event_id, email=member.email)
            not in registered
        ]
