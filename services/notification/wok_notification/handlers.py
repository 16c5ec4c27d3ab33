"""Thin handlers: contract in, domain decisions, storage and sending through the adapters.

Every mail goes through `deliver`, which claims the delivery under its deterministic id,
sends, and records the outcome with its event in one write. A mail server outage is
waited out (TransientError: the runtime retries with backoff) until the give-up policy
says enough: then the delivery becomes `undeliverable` with NotificationFailed in its
outbox, and `NotificationUndeliverable` is raised, which the runtime does not treat as an
outage: after its few quick retries (each finds the delivery undeliverable and raises at
once) the triggering event goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from wok_contracts import (
    DialogueEventScheduled,
    Envelope,
    EventData,
    NotificationKind,
    ParticipantRegistered,
    RegistrationStatus,
    new_envelope,
)
from wok_contracts.events.registration import (
    CancellationReason,
    DialogueEventCancelled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
)
from wok_contracts.topics import NOTIFICATION_EVENTS
from wok_notification import domain
from wok_notification.adapters.contacts import AccessDirectory, ContactDirectory
from wok_notification.adapters.mail import MailNotSent, MailRejected, MailSender
from wok_notification.adapters.repository import (
    NotificationRepository,
    Participant,
    ScheduledMessage,
    ScheduleStatus,
)
from wok_notification.domain import ParticipantStatus
from wok_notification.rendering import MailRenderer
from wok_runtime.consumer import TRANSIENT_ERRORS, TransientError
from wok_runtime.logging import current_correlation_id, get_logger
from wok_runtime.outbox import OutboundEvent

SOURCE = "/wok/notification"

log = get_logger(__name__)


class UnknownDialogueEvent(Exception):
    """A registration for an event we have not seen scheduled; retried, then dead-lettered."""


class NotificationUndeliverable(Exception):
    """The mail server stayed away past the limit; the mail was given up (NotificationFailed)."""


class DeliveryNotFound(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    delivery_id: str
    status: str


class NotificationHandlers:
    def __init__(
        self,
        *,
        repository: NotificationRepository,
        contacts: ContactDirectory,
        sender: MailSender,
        renderer: MailRenderer,
        mail_from: str,
        public_base_url: str,
        lease: timedelta,
        access: AccessDirectory | None = None,
        schedule_times: domain.ScheduleTimes | None = None,
        give_up: domain.GiveUpPolicy | None = None,
        events_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._contacts = contacts
        self._access = access
        self._sender = sender
        self._renderer = renderer
        self._mail_from = mail_from
        self._public_base_url = public_base_url
        self._lease = lease
        day = timedelta(hours=24)
        self._times = schedule_times or domain.ScheduleTimes(access_before=day, reminder_before=day)
        self._give_up = give_up or domain.GiveUpPolicy(min_attempts=8, after=timedelta(minutes=15))
        self._events_stored = events_stored
        self._clock = clock
        # When the mail server began failing, across deliveries (reset by a sent mail): a
        # long outage need not be sat out again in full by every waiting mail.
        self._failing_since: datetime | None = None

    # ------------------------------------------------------------ dialogue events

    async def remember_dialogue_event(self, envelope: Envelope[Any]) -> None:
        data: DialogueEventScheduled | DialogueEventChanged = envelope.data
        await self.repository.save_event(domain.EventDetails.scheduled(data))
        log.info(
            "dialogue event remembered",
            dialogue_event_id=data.dialogue_event_id,
            revision=data.revision,
        )

    async def announce_reschedule(self, envelope: Envelope[Any]) -> None:
        data: DialogueEventRescheduled = envelope.data
        stored = await self._event(data.dialogue_event_id)
        if data.revision < stored.revision:
            log.info("older reschedule; a newer revision is told", revision=data.revision)
            return
        event = stored.rescheduled(data)
        await self.repository.save_event(event)
        now = self._clock()
        recipients = await self.repository.participants(
            event.dialogue_event_id,
            statuses=(ParticipantStatus.CONFIRMED, ParticipantStatus.WAITLISTED),
        )
        for participant in recipients:
            if participant.status is ParticipantStatus.CONFIRMED:
                await self._schedule_for(participant.registration_id, event, now=now, rearm=True)
        await self._to_each(
            recipients,
            lambda participant: self.deliver(
                NotificationKind.RESCHEDULED,
                registration_id=participant.registration_id,
                event=event,
                contact=participant.contact,
                revision=event.revision,
            ),
        )

    async def announce_cancellation(self, envelope: Envelope[Any]) -> None:
        data: DialogueEventCancelled = envelope.data
        event = (await self._event(data.dialogue_event_id)).cancelled_at(
            revision=data.revision, reason=data.reason
        )
        await self.repository.save_event(event)
        await self.repository.cancel_scheduled(dialogue_event_id=event.dialogue_event_id)
        recipients = await self.repository.participants(
            event.dialogue_event_id, statuses=domain.INFORMED_STATUSES
        )
        await self._to_each(
            recipients,
            lambda participant: self.deliver(
                NotificationKind.CANCELLED,
                registration_id=participant.registration_id,
                event=event,
                contact=participant.contact,
            ),
        )

    # ------------------------------------------------------------ participants

    async def send_confirmation(self, envelope: Envelope[Any]) -> None:
        data: ParticipantRegistered = envelope.data
        delivery_id = domain.delivery_id(NotificationKind.CONFIRMATION, data.registration_id)
        existing = await self.repository.get_delivery(delivery_id)
        if existing is not None and existing.status is not domain.DeliveryStatus.PENDING:
            if existing.status is domain.DeliveryStatus.UNDELIVERABLE:
                raise NotificationUndeliverable(f"delivery {delivery_id} was given up")
            log.info("delivery already finished; nothing to send", delivery_id=delivery_id)
            return
        event = await self._event(data.dialogue_event_id)
        contact = await self._contacts.fetch(data.registration_id)
        if contact is None:
            log.info(
                "contact unknown or erased at registration; nothing to send",
                delivery_id=delivery_id,
            )
            return
        status = ParticipantStatus(data.status.value)
        await self.repository.save_contact(contact, status=status)
        if status is ParticipantStatus.CONFIRMED:
            await self._schedule_for(data.registration_id, event, now=self._clock(), rearm=False)
        await self.deliver(
            NotificationKind.CONFIRMATION,
            registration_id=data.registration_id,
            event=event,
            contact=contact,
            waitlisted=data.status is RegistrationStatus.WAITLISTED,
            preferred_language=data.language,
        )

    async def send_promotion(self, envelope: Envelope[Any]) -> None:
        data: ParticipantPromoted = envelope.data
        event = await self._event(data.dialogue_event_id)
        await self.repository.set_participant_status(
            data.registration_id,
            dialogue_event_id=data.dialogue_event_id,
            status=ParticipantStatus.CONFIRMED,
        )
        await self._schedule_for(data.registration_id, event, now=self._clock(), rearm=False)
        await self.deliver(
            NotificationKind.PROMOTION, registration_id=data.registration_id, event=event
        )

    async def forget_cancelled(self, envelope: Envelope[Any]) -> None:
        """No mail of its own: the person cancelled (registration confirms that on its page),
        or the event was (its cancellation mail tells everyone); reminders stop."""
        data: ParticipantCancelled = envelope.data
        status = (
            ParticipantStatus.EVENT_CANCELLED
            if data.reason is CancellationReason.EVENT_CANCELLED
            else ParticipantStatus.CANCELLED
        )
        await self.repository.set_participant_status(
            data.registration_id, dialogue_event_id=data.dialogue_event_id, status=status
        )
        cancelled = await self.repository.cancel_scheduled(registration_id=data.registration_id)
        log.info("participant cancelled", reason=data.reason.value, scheduled_cancelled=cancelled)

    async def confirm_erasure(self, envelope: Envelope[Any]) -> None:
        """Tell the person, with our own copy of their contact (registration has erased its
        own), then remove that copy and scrub the delivery log."""
        data: ParticipantErased = envelope.data
        await self.repository.cancel_scheduled(registration_id=data.registration_id)
        participant = await self.repository.get_participant(data.registration_id)
        event = await self.repository.get_event(data.dialogue_event_id)
        try:
            if participant is not None and participant.contact is not None and event is not None:
                await self.deliver(
                    NotificationKind.ERASURE,
                    registration_id=data.registration_id,
                    event=event,
                    contact=participant.contact,
                    fetch_contact=False,
                )
        except NotificationUndeliverable:
            # Privacy comes first: the data goes even when the confirmation could not
            await self.repository.erase_participant(data.registration_id)
            raise
        await self.repository.erase_participant(data.registration_id)
        log.info("participant erased", registration_id=data.registration_id)

    # ------------------------------------------------------------ scheduled messages

    async def _schedule_for(
        self, registration_id: str, event: domain.EventDetails, *, now: datetime, rearm: bool
    ) -> None:
        if event.cancelled:
            return
        for kind, due in (
            (NotificationKind.ACCESS, domain.access_due(event, times=self._times, now=now)),
            (NotificationKind.REMINDER, domain.reminder_due(event, times=self._times, now=now)),
        ):
            if due is None:
                continue
            await self.repository.schedule(
                ScheduledMessage.of(
                    kind,
                    registration_id=registration_id,
                    dialogue_event_id=event.dialogue_event_id,
                    ags=event.ags,
                    due_at=due,
                ),
                rearm=rearm,
            )

    async def dispatch_due(self) -> int:
        """Send every scheduled message whose time has come; returns how many were handled."""
        handled = 0
        while True:
            now = self._clock()
            token = str(uuid.uuid4())
            message = await self.repository.claim_due(now=now, lease=self._lease, token=token)
            if message is None:
                return handled
            handled += 1
            status = await self._dispatch(message, now=now)
            if status == ScheduleStatus.SCHEDULED:
                backoff = timedelta(seconds=min(300.0, 5.0 * 2**message.attempts))
                await self.repository.retry_scheduled(message.id, token=token, due_at=now + backoff)
            else:
                await self.repository.finish_scheduled(message.id, token=token, status=status)

    async def _dispatch(self, message: ScheduledMessage, *, now: datetime) -> str:
        participant = await self.repository.get_participant(message.registration_id)
        event = await self.repository.get_event(message.dialogue_event_id)
        if (
            participant is None
            or participant.status is not ParticipantStatus.CONFIRMED
            or event is None
            or event.cancelled
            or event.ends_at <= now
        ):
            return ScheduleStatus.CANCELLED
        try:
            access = None
            if message.kind is NotificationKind.ACCESS:
                access = await self._access.fetch(event.dialogue_event_id) if self._access else None
                if access is None or not domain.http_url(access.online_link):
                    log.warning(
                        "no online link released for the event; access mail skipped",
                        dialogue_event_id=event.dialogue_event_id,
                    )
                    return ScheduleStatus.CANCELLED
            await self.deliver(
                message.kind,
                registration_id=message.registration_id,
                event=event,
                contact=participant.contact,
                access=access,
            )
        except NotificationUndeliverable:
            return ScheduleStatus.FAILED
        except (TransientError, *TRANSIENT_ERRORS) as error:
            log.warning("scheduled mail must wait", id=message.id, error=repr(error))
            return ScheduleStatus.SCHEDULED
        except Exception as error:
            log.error("scheduled mail failed", id=message.id, error=repr(error))
            return ScheduleStatus.FAILED if message.attempts >= 5 else ScheduleStatus.SCHEDULED
        return ScheduleStatus.DONE

    async def run_scheduler(self, *, interval_s: float) -> None:
        """Until cancelled: look for due messages every `interval_s` (restart-safe: the state
        is in the database)."""
        while True:
            try:
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("scheduler round failed; retrying", error=repr(error))
            await asyncio.sleep(interval_s)

    # ------------------------------------------------------------ one mail

    async def deliver(
        self,
        kind: NotificationKind,
        *,
        registration_id: str,
        event: domain.EventDetails,
        contact: domain.Contact | None = None,
        revision: int | None = None,
        waitlisted: bool = False,
        access: domain.AccessInfo | None = None,
        preferred_language: str | None = None,
        fetch_contact: bool = True,
    ) -> Outcome:
        """Send one mail at most once; raises TransientError while it must wait."""
        delivery_id = domain.delivery_id(kind, registration_id, revision=revision)
        fields = {"delivery_id": delivery_id, "dialogue_event_id": event.dialogue_event_id}
        existing = await self.repository.get_delivery(delivery_id)
        if existing is not None and existing.finished:
            if existing.status is domain.DeliveryStatus.UNDELIVERABLE:
                raise NotificationUndeliverable(f"delivery {delivery_id} was given up")
            return Outcome(delivery_id, existing.status.value)
        if contact is None:
            contact = await self.repository.get_contact(registration_id)
        if contact is None and fetch_contact:
            contact = await self._contacts.fetch(registration_id)
            if contact is not None:
                await self.repository.save_contact(contact, status=ParticipantStatus.CONFIRMED)
        if contact is None:
            log.info("no contact for the registration; nothing to send", **fields)
            return Outcome(delivery_id, "no_contact")

        now = self._clock()
        language = self._renderer.language_for(contact.language or preferred_language)
        # Rendered before the claim, so a template error cannot leave a claim behind
        mail = domain.compose_mail(
            kind,
            event=event,
            contact=contact,
            language=language,
            delivery_id=delivery_id,
            mail_from=self._mail_from,
            public_base_url=self._public_base_url,
            waitlisted=waitlisted,
            access=access,
        )
        message = self._renderer.render(mail, now=now)

        token = str(uuid.uuid4())
        delivery = await self.repository.claim_delivery(
            domain.new_delivery(
                kind,
                registration_id=registration_id,
                dialogue_event_id=event.dialogue_event_id,
                ags=event.ags,
                language=language,
                now=now,
                revision=revision,
            ),
            token=token,
            now=now,
            lease=self._lease,
        )
        if delivery is None:
            current = await self.repository.get_delivery(delivery_id)
            if current is not None and current.finished:
                log.info("delivery finished meanwhile; nothing to send", **fields)
                return Outcome(delivery_id, current.status.value)
            # Another worker holds it, or one crashed mid-send: wait for the lease to end
            raise TransientError(f"delivery {delivery_id} is being sent by another worker")

        try:
            await self._sender.send(message)
        except MailRejected as error:
            failed = delivery.failed(token=token, reason=str(error), now=self._clock())
            await self.repository.mark_failed(
                delivery,
                token=token,
                reason=str(error),
                now=failed.failed_at,
                events=[self._outbound(failed.failed_event(), delivery)],
            )
            self._events_stored()
            log.warning("mail refused for good; delivery failed", reason=str(error), **fields)
            return Outcome(delivery_id, domain.DeliveryStatus.FAILED.value)
        except MailNotSent as error:
            await self._mail_server_away(delivery, token=token, error=error, fields=fields)
            raise TransientError(str(error)) from error
        except Exception:
            await self.repository.release_delivery(delivery, token=token, now=self._clock())
            raise

        self._failing_since = None
        await self._record_sent(delivery, token=token, message_id=mail.message_id)
        log.info("mail sent", kind=kind.value, attempts=delivery.attempts, **fields)
        return Outcome(delivery_id, domain.DeliveryStatus.SENT.value)

    async def _mail_server_away(
        self, delivery: domain.Delivery, *, token: str, error: Exception, fields: dict[str, Any]
    ) -> None:
        now = self._clock()
        self._failing_since = self._failing_since or now
        since = min(delivery.first_unavailable_at or now, self._failing_since)
        attempts = delivery.unavailable_attempts + 1
        if not self._give_up.exhausted(attempts=attempts, failing_since=since, now=now):
            await self.repository.mark_unavailable(delivery, token=token, now=now)
            return
        seconds = int((now - since).total_seconds())
        reason = f"{error} for {seconds} s, {attempts} attempts; given up"
        given_up = delivery.given_up(token=token, now=now, reason=reason)
        await self.repository.mark_given_up(
            delivery,
            token=token,
            reason=reason,
            now=now,
            events=[self._outbound(given_up.failed_event(), delivery)],
        )
        self._events_stored()
        log.error("mail server away past the limit; mail given up", attempts=attempts, **fields)
        raise NotificationUndeliverable(f"delivery {delivery.id}: {reason}") from error

    def _outbound(self, data: EventData, delivery: domain.Delivery) -> OutboundEvent:
        return OutboundEvent(
            topic=NOTIFICATION_EVENTS,
            envelope=new_envelope(
                data,
                source=SOURCE,
                municipality=delivery.ags,
                subject=delivery.id,
                correlation_id=current_correlation_id(),
            ),
        )

    async def _record_sent(self, delivery: domain.Delivery, *, token: str, message_id: str) -> None:
        """The mail is out: keep trying to record it, since a retry from scratch would send
        it a second time."""
        sent = delivery.sent(token=token, sent_at=self._clock(), message_id=message_id)
        assert sent.sent_at is not None
        outbound = self._outbound(sent.sent_event(), delivery)
        attempt = 0
        while True:
            attempt += 1
            try:
                stored = await self.repository.mark_sent(
                    delivery,
                    token=token,
                    sent_at=sent.sent_at,
                    message_id=message_id,
                    events=[outbound],
                )
                break
            except TRANSIENT_ERRORS as error:
                log.warning(
                    "could not record a sent mail; will retry",
                    delivery_id=delivery.id,
                    attempt=attempt,
                    error=repr(error),
                )
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(attempt, 5)))
        if stored:
            self._events_stored()
        else:
            # Our lease ran out while the server was still accepting the mail, and another
            # worker took the delivery over; the lease is meant to outlast the SMTP timeout.
            log.warning("delivery was taken over while sending", delivery_id=delivery.id)

    # ------------------------------------------------------------ helpers and operators

    async def _event(self, dialogue_event_id: str) -> domain.EventDetails:
        event = await self.repository.get_event(dialogue_event_id)
        if event is None:
            raise UnknownDialogueEvent(f"dialogue event {dialogue_event_id} is not known")
        return event

    async def _to_each(
        self, participants: list[Participant], send: Callable[[Participant], Any]
    ) -> None:
        """One participant's undeliverable mail must not keep the others from theirs."""
        given_up: list[str] = []
        for participant in participants:
            try:
                await send(participant)
            except NotificationUndeliverable as error:
                given_up.append(str(error))
        if given_up:
            raise NotificationUndeliverable("; ".join(given_up)[:1500])

    async def redrive(self, delivery_id: str) -> domain.Delivery:
        """An operator's second chance for a mail given up during an outage: sent once."""
        delivery = await self.repository.get_delivery(delivery_id)
        if delivery is None:
            raise DeliveryNotFound(delivery_id)
        if await self.repository.rearm_delivery(delivery_id) is None:
            raise domain.DeliveryStateError(f"delivery {delivery_id} is {delivery.status.value}")
        event = await self._event(delivery.dialogue_event_id)
        participant = await self.repository.get_participant(delivery.registration_id)
        try:
            await self.deliver(
                delivery.kind,
                registration_id=delivery.registration_id,
                event=event,
                contact=participant.contact if participant else None,
                revision=delivery.revision,
                waitlisted=participant is not None
                and participant.status is ParticipantStatus.WAITLISTED,
                access=(
                    await self._access.fetch(event.dialogue_event_id)
                    if self._access and delivery.kind is NotificationKind.ACCESS
                    else None
                ),
            )
        except (TransientError, NotificationUndeliverable):
            pass
        current = await self.repository.get_delivery(delivery_id)
        assert current is not None
        return current

    async def list_deliveries(
        self, *, limit: int, status: str | None = None, kind: str | None = None
    ) -> list[domain.Delivery]:
        return await self.repository.list_deliveries(limit=limit, status=status, kind=kind)
