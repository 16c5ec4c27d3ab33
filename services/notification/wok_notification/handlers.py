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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from wok_contracts import (
    AssessmentScored,
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
from wok_notification.adapters.contacts import (
    AccessDirectory,
    ContactDirectory,
    OfficeDirectory,
    TaskforceDirectory,
)
from wok_notification.adapters.mail import MailNotSent, MailRejected, MailSender
from wok_notification.adapters.repository import (
    Digest,
    DigestStatus,
    NotificationRepository,
    Participant,
    ScheduledMessage,
    ScheduleStatus,
)
from wok_notification.domain import ParticipantStatus
from wok_notification.rendering import MailRenderer
from wok_runtime.consumer import TRANSIENT_ERRORS, WAIT_ERRORS, TransientError
from wok_runtime.logging import current_correlation_id, get_logger
from wok_runtime.outbox import OutboundEvent
from wok_runtime.report_links import sign_report_link

SOURCE = "/wok/notification"
# How often a held message may find its digest just going out before it waits for a retry
MAX_DIGEST_HOPS = 5
# Their content (scores, the invitees of the moment) is not kept for a redrive
NOT_REDRIVABLE = (NotificationKind.SELF_CHECK_SCORED, NotificationKind.TASKFORCE_REMINDER)

log = get_logger(__name__)
# What a digest waits out before it is tried again: the mail server's refusal of the moment too.
DIGEST_WAIT_ERRORS: tuple[type[BaseException], ...] = (MailNotSent, *WAIT_ERRORS)


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
        taskforce: TaskforceDirectory | None = None,
        offices: OfficeDirectory | None = None,
        assessment_url: str = "http://127.0.0.1:8002",
        report_link_key: str = "",
        report_link_valid: timedelta = timedelta(days=30),
        digest_window: timedelta = timedelta(0),
        taskforce_reminder_before: timedelta = timedelta(hours=48),
        schedule_times: domain.ScheduleTimes | None = None,
        give_up: domain.GiveUpPolicy | None = None,
        events_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._contacts = contacts
        self._access = access
        self._taskforce = taskforce
        self._offices = offices
        self._assessment_url = assessment_url
        self._report_link_key = report_link_key
        self._report_link_valid = report_link_valid
        self._window = digest_window
        self._taskforce_before = taskforce_reminder_before
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
        event = domain.EventDetails.scheduled(data)
        await self.repository.save_event(event)
        stored = await self._event(data.dialogue_event_id)
        if stored.revision == event.revision:
            await self._schedule_taskforce_reminder(event, now=self._clock())
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
        await self._schedule_taskforce_reminder(event, now=now)
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
        # No look at the delivery first: the event is new almost always (repeats are mostly
        # caught by the processed ids), and the claim refuses a finished delivery anyway.
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
            look_first=False,
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
        if participant is not None and participant.contact is not None:
            # the hashed address of the one-message-per-hour limit goes too
            await self.repository.forget_recipient(domain.recipient_key(participant.contact.email))
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
        messages = [
            ScheduledMessage.of(
                kind,
                registration_id=registration_id,
                dialogue_event_id=event.dialogue_event_id,
                ags=event.ags,
                due_at=due,
            )
            for kind, due in (
                (NotificationKind.ACCESS, domain.access_due(event, times=self._times, now=now)),
                (NotificationKind.REMINDER, domain.reminder_due(event, times=self._times, now=now)),
            )
            if due is not None
        ]
        if not rearm:
            await self.repository.schedule_new(messages)  # one write
            return
        for message in messages:
            await self.repository.schedule(message, rearm=True)

    async def _schedule_taskforce_reminder(
        self, event: domain.EventDetails, *, now: datetime
    ) -> None:
        """One reminder per event, before its registration deadline; whom it reaches is
        asked of registration when it falls due (so members who registered meanwhile, or
        left the taskforce, are not reminded)."""
        if event.cancelled or event.registration_deadline is None:
            return
        due = event.registration_deadline - self._taskforce_before
        if due <= now:
            return
        kind = NotificationKind.TASKFORCE_REMINDER
        await self.repository.schedule(
            ScheduledMessage(
                id=f"{kind.value}:{event.dialogue_event_id}",
                kind=kind,
                registration_id="",
                dialogue_event_id=event.dialogue_event_id,
                ags=event.ags,
                due_at=domain.iso_utc(due),
            ),
            rearm=True,
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
        if message.kind is NotificationKind.TASKFORCE_REMINDER:
            return await self._dispatch_taskforce(message, now=now)
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

        async def send() -> str:
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
            return ScheduleStatus.DONE

        return await self._attempt(message, what="scheduled mail", send=send)

    async def _attempt(
        self, message: ScheduledMessage, *, what: str, send: Callable[[], Awaitable[str]]
    ) -> str:
        """A scheduled message's outcome: what `send` says, or retried later while the mail
        server or registration is away, failed after the retry limit."""
        try:
            return await send()
        except NotificationUndeliverable:
            return ScheduleStatus.FAILED
        except WAIT_ERRORS as error:
            log.warning(f"{what} must wait", id=message.id, error=repr(error))
            return ScheduleStatus.SCHEDULED
        except Exception as error:
            log.error(f"{what} failed", id=message.id, error=repr(error))
            return ScheduleStatus.FAILED if message.attempts >= 5 else ScheduleStatus.SCHEDULED

    async def _dispatch_taskforce(self, message: ScheduledMessage, *, now: datetime) -> str:
        event = await self.repository.get_event(message.dialogue_event_id)
        deadline = event.registration_deadline if event else None
        if event is None or event.cancelled or (deadline is not None and deadline <= now):
            return ScheduleStatus.CANCELLED

        async def send() -> str:
            invitees = (
                await self._taskforce.fetch(event.dialogue_event_id) if self._taskforce else []
            )
            await self._each(
                invitees,
                lambda member: self.deliver(
                    NotificationKind.TASKFORCE_REMINDER,
                    registration_id=member.registration_id,
                    event=event,
                    contact=member,
                    subject=event.dialogue_event_id,
                    fetch_contact=False,
                ),
            )
            log.info(
                "taskforce reminded",
                dialogue_event_id=event.dialogue_event_id,
                members=len(invitees),
            )
            return ScheduleStatus.DONE

        return await self._attempt(message, what="taskforce reminder", send=send)

    async def scheduler_round(self) -> None:
        """Send the due scheduled messages and digests (restart-safe: the state is in the
        database); the service runs it every `WOK_SCHEDULER_INTERVAL_S`."""
        await self.dispatch_due()
        await self.flush_due_digests()

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
        subject: str | None = None,
        look_first: bool = True,
    ) -> Outcome:
        """Send one mail at most once, or hold it for the person's digest; raises
        TransientError while it must wait. `look_first=False` skips reading the delivery
        before rendering (for mails that are new almost always; the claim still refuses a
        finished one)."""
        delivery_id = domain.delivery_id(kind, registration_id, revision=revision, subject=subject)
        fields = {"delivery_id": delivery_id, "dialogue_event_id": event.dialogue_event_id}
        existing = await self.repository.get_delivery(delivery_id) if look_first else None
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
        new = domain.new_delivery(
            kind,
            registration_id=registration_id,
            dialogue_event_id=event.dialogue_event_id,
            ags=event.ags,
            language=language,
            now=now,
            revision=revision,
            subject=subject,
        )
        if domain.throttled(kind, window=self._window):
            recipient = domain.recipient_key(contact.email)
            slot = await self.repository.take_slot(
                recipient, holder=delivery_id, now=now, until=now + self._window
            )
            if not slot:
                item = domain.DigestItem(
                    delivery_id=delivery_id,
                    kind=kind,
                    registration_id=registration_id,
                    dialogue_event_id=event.dialogue_event_id,
                    held_at=domain.iso_utc(now),
                    revision=revision,
                    waitlisted=waitlisted,
                )
                outcome = await self._hold(new, recipient=recipient, item=item, fields=fields)
                if outcome is not None:
                    return outcome
        return await self._send_once(new, message, message_id=mail.message_id, fields=fields)

    async def _send_once(
        self,
        new: domain.Delivery,
        message: Any,
        *,
        message_id: str,
        fields: dict[str, Any],
    ) -> Outcome:
        """Claim the delivery, send, record the outcome with its event in one write."""
        delivery_id = new.id
        kind = new.kind
        token = str(uuid.uuid4())
        now = self._clock()
        delivery = await self.repository.claim_delivery(
            new, token=token, now=now, lease=self._lease
        )
        if delivery is None:
            current = await self.repository.get_delivery(delivery_id)
            if current is not None and current.status is domain.DeliveryStatus.UNDELIVERABLE:
                raise NotificationUndeliverable(f"delivery {delivery_id} was given up")
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
        await self._record_sent(delivery, token=token, message_id=message_id)
        log.info("mail sent", kind=kind.value, attempts=delivery.attempts, **fields)
        return Outcome(delivery_id, domain.DeliveryStatus.SENT.value)

    # ------------------------------------------------------------ digests

    async def _hold(
        self,
        new: domain.Delivery,
        *,
        recipient: str,
        item: domain.DigestItem,
        fields: dict[str, Any],
    ) -> Outcome | None:
        """Put the message into the digest of the person's current window. The digest entry
        comes first: a crash before the delivery is marked held leaves an entry the digest
        sends (and marks) anyway, never a held delivery no digest knows. None when the
        delivery turns out to be sendable now (tried before, during an outage)."""
        for _ in range(MAX_DIGEST_HOPS):
            window = await self.repository.window_of(recipient)
            if window is None:
                raise TransientError("the person's window is gone (erased meanwhile)")
            due_at, ref = window
            digest_id = domain.digest_id(ref, due_at=due_at)
            added = await self.repository.add_digest_item(
                digest_id, recipient=recipient, due_at=due_at, ags=new.ags, item=item
            )
            if not added:
                # that digest is going out right now; the next window's takes the message
                await asyncio.sleep(0.05)
                continue
            held = await self.repository.hold_delivery(new, digest_id=digest_id)
            if held is None:
                current = await self.repository.get_delivery(new.id)
                if current is not None and current.status is domain.DeliveryStatus.PENDING:
                    return None
                return Outcome(new.id, current.status.value if current else "held")
            log.info("message held for the digest", digest_id=digest_id, **fields)
            return Outcome(new.id, domain.DeliveryStatus.HELD.value)
        raise TransientError(f"the digest for delivery {new.id} kept going out")

    async def flush_due_digests(self) -> int:
        """Send every digest whose window has ended; returns how many were handled."""
        handled = 0
        while True:
            now = self._clock()
            token = str(uuid.uuid4())
            digest = await self.repository.claim_due_digest(now=now, lease=self._lease, token=token)
            if digest is None:
                return handled
            handled += 1
            try:
                await self._flush(digest, token=token, now=now)
            except DIGEST_WAIT_ERRORS as error:
                backoff = timedelta(seconds=min(300.0, 5.0 * 2**digest.attempts))
                log.warning("digest must wait", digest_id=digest.id, error=repr(error))
                await self.repository.retry_digest(digest.id, token=token, due_at=now + backoff)

    async def _flush(self, digest: Digest, *, token: str, now: datetime) -> None:
        # The digest is the person's one message of the coming window
        await self.repository.reserve_slot(
            digest.recipient, holder=digest.id, until=now + self._window
        )
        items = list(digest.items)
        chosen: list[tuple[domain.Delivery, domain.DigestItem, Any]] = []
        language: str | None = None
        for item in items:
            entry = await self._digest_entry(item, items, now=now)
            if isinstance(entry, str):
                await self._withdraw(item, digest_id=digest.id, reason=entry, now=now)
                continue
            event, contact, access = entry
            language = language or self._renderer.language_for(contact.language)
            held = await self._held_for(digest.id, item, event=event, language=language, now=now)
            if held is None:
                continue  # sent some other way already
            mail = domain.compose_mail(
                item.kind,
                event=event,
                contact=contact,
                language=language,
                delivery_id=item.delivery_id,
                mail_from=self._mail_from,
                public_base_url=self._public_base_url,
                waitlisted=item.waitlisted,
                access=access,
            )
            chosen.append((held, item, mail))
        if not chosen:
            # nothing went out: the window is not the digest's to keep
            await self.repository.reserve_slot(digest.recipient, holder=digest.id, until=now)
            await self.repository.finish_digest(digest.id, token=token, status=DigestStatus.EMPTY)
            log.info("digest had nothing left to send", digest_id=digest.id)
            return
        message_id = domain.message_id(digest.id, domain=domain.mail_domain(self._mail_from))
        mails = [mail for _, _, mail in chosen]
        message = self._renderer.render_digest(mails, message_id=message_id, now=now)
        try:
            await self._sender.send(message)
        except MailRejected as error:
            reason = str(error)
            for held, _, _ in chosen:
                failed = held.failed_in_digest(digest_id=digest.id, reason=reason, now=now)
                await self.repository.finish_held(
                    held.id,
                    lambda stored: stored.failed_in_digest(
                        digest_id=digest.id, reason=reason, now=now
                    ),
                    events=[self._outbound(failed.failed_event(), held)],
                )
            await self.repository.finish_digest(digest.id, token=token, status=DigestStatus.FAILED)
            self._events_stored()
            log.warning("digest refused for good", digest_id=digest.id, reason=str(error))
            return
        sent_at = self._clock()
        for held, _, _ in chosen:
            sent = held.sent_in_digest(digest_id=digest.id, sent_at=sent_at, message_id=message_id)
            await self.repository.finish_held(
                held.id,
                lambda stored: stored.sent_in_digest(
                    digest_id=digest.id, sent_at=sent_at, message_id=message_id
                ),
                events=[self._outbound(sent.sent_event(), held)],
            )
        await self.repository.finish_digest(
            digest.id, token=token, status=DigestStatus.SENT, message_id=message_id
        )
        self._events_stored()
        log.info("digest sent", digest_id=digest.id, messages=len(chosen))

    async def _digest_entry(
        self, item: domain.DigestItem, items: list[domain.DigestItem], *, now: datetime
    ) -> str | tuple[domain.EventDetails, domain.Contact, domain.AccessInfo | None]:
        """What the item's mail needs now, or why it is moot."""
        event = await self.repository.get_event(item.dialogue_event_id)
        if event is None:
            return "the dialogue event is not known"
        if domain.superseded(item, items):
            return "a newer message on the same event replaced it"
        kind = item.kind
        if kind is NotificationKind.TASKFORCE_REMINDER:
            members = (
                await self._taskforce.fetch(event.dialogue_event_id) if self._taskforce else []
            )
            member = next((m for m in members if m.registration_id == item.registration_id), None)
            if member is None:
                return "registered meanwhile, left the taskforce, or the deadline passed"
            return event, member, None
        participant = await self.repository.get_participant(item.registration_id)
        if participant is None or participant.contact is None:
            return "the person's data was erased"
        status = participant.status
        if kind in (NotificationKind.REMINDER, NotificationKind.ACCESS):
            if status is not ParticipantStatus.CONFIRMED or event.cancelled or event.ends_at <= now:
                return "no longer registered, or the event is cancelled or over"
        if kind is NotificationKind.RESCHEDULED and status not in (
            ParticipantStatus.CONFIRMED,
            ParticipantStatus.WAITLISTED,
        ):
            return "no longer registered"
        access = None
        if kind is NotificationKind.ACCESS:
            access = await self._access.fetch(event.dialogue_event_id) if self._access else None
            if access is None or not domain.http_url(access.online_link):
                return "no online link released"
        return event, participant.contact, access

    async def _held_for(
        self,
        digest_id: str,
        item: domain.DigestItem,
        *,
        event: domain.EventDetails,
        language: str,
        now: datetime,
    ) -> domain.Delivery | None:
        """The item's delivery, held for this digest (created if a crash left none)."""
        new = replace(
            domain.new_delivery(
                item.kind,
                registration_id=item.registration_id,
                dialogue_event_id=item.dialogue_event_id,
                ags=event.ags,
                language=language,
                now=now,
                revision=item.revision,
            ),
            id=item.delivery_id,
        )
        return await self.repository.hold_delivery(new, digest_id=digest_id)

    async def _withdraw(
        self, item: domain.DigestItem, *, digest_id: str, reason: str, now: datetime
    ) -> None:
        event = await self.repository.get_event(item.dialogue_event_id)
        if event is not None:
            await self._held_for(digest_id, item, event=event, language="", now=now)
        await self.repository.finish_held(
            item.delivery_id,
            lambda stored: stored.withdrawn(digest_id=digest_id, reason=reason, now=now),
        )
        log.info("held message withdrawn", delivery_id=item.delivery_id, reason=reason)

    # ------------------------------------------------------------ staff

    async def send_scored_report(self, envelope: Envelope[Any]) -> None:
        """Self-check scored: the contact office gets the link to the field report."""
        data: AssessmentScored = envelope.data
        kind = NotificationKind.SELF_CHECK_SCORED
        recipient = domain.office_recipient_id(data.ags)
        delivery_id = domain.delivery_id(kind, recipient, subject=data.self_check_id)
        fields = {"delivery_id": delivery_id, "self_check_id": data.self_check_id}
        existing = await self.repository.get_delivery(delivery_id)
        if existing is not None and existing.finished:
            if existing.status is domain.DeliveryStatus.UNDELIVERABLE:
                raise NotificationUndeliverable(f"delivery {delivery_id} was given up")
            return
        office = await self._offices.fetch(data.ags) if self._offices else None
        if office is None:
            log.info("no contact office address; no staff mail", ags=data.ags, **fields)
            return
        language = self._renderer.language_for(office.language)
        now = self._clock()
        link = None
        if self._report_link_key and self._report_link_valid > timedelta(0):
            link = sign_report_link(
                service_key=self._report_link_key,
                ags=data.ags,
                now=now.timestamp(),
                valid_for_s=int(self._report_link_valid.total_seconds()),
            ).query()
        mail = domain.compose_staff_mail(
            office=office,
            language=language,
            delivery_id=delivery_id,
            mail_from=self._mail_from,
            assessment_url=self._assessment_url,
            overall=data.overall,
            overall_level=data.overall_level.value,
            strengths=list(data.strengths),
            deficits=list(data.deficits),
            report_link=link,
        )
        message = self._renderer.render_staff(mail, now=now)
        new = domain.new_delivery(
            kind,
            registration_id=recipient,
            dialogue_event_id=data.self_check_id,
            ags=data.ags,
            language=language,
            now=now,
            subject=data.self_check_id,
        )
        await self._send_once(new, message, message_id=mail.message_id, fields=fields)

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

    async def _event(self, dialogue_event_id: str, *, cached: bool = True) -> domain.EventDetails:
        """The event as stored. The consumer's handlers may take the copy kept in memory
        (current while this member holds the event's partition); others read it."""
        event = await self.repository.get_event(dialogue_event_id, cached=cached)
        if event is None:
            raise UnknownDialogueEvent(f"dialogue event {dialogue_event_id} is not known")
        return event

    async def _to_each(
        self, participants: list[Participant], send: Callable[[Participant], Any]
    ) -> None:
        await self._each(participants, send)

    async def _each(self, recipients: list[Any], send: Callable[[Any], Any]) -> None:
        """One recipient's undeliverable mail must not keep the others from theirs."""
        given_up: list[str] = []
        for recipient in recipients:
            try:
                await send(recipient)
            except NotificationUndeliverable as error:
                given_up.append(str(error))
        if given_up:
            raise NotificationUndeliverable("; ".join(given_up)[:1500])

    async def redrive(self, delivery_id: str) -> domain.Delivery:
        """An operator's second chance for a mail given up during an outage: sent once."""
        delivery = await self.repository.get_delivery(delivery_id)
        if delivery is None:
            raise DeliveryNotFound(delivery_id)
        if delivery.kind in (
            NotificationKind.SELF_CHECK_SCORED,
            NotificationKind.TASKFORCE_REMINDER,
        ):
            raise domain.DeliveryStateError(
                f"a {delivery.kind.value} mail cannot be redriven: its content is not kept"
            )
        if await self.repository.rearm_delivery(delivery_id) is None:
            raise domain.DeliveryStateError(f"delivery {delivery_id} is {delivery.status.value}")
        event = await self._event(delivery.dialogue_event_id, cached=False)
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
