"""Thin handlers: contract in, domain decisions, storage and sending through the adapters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from wok_contracts import (
    DialogueEventScheduled,
    Envelope,
    NotificationKind,
    ParticipantRegistered,
    new_envelope,
)
from wok_contracts.topics import NOTIFICATION_EVENTS
from wok_notification import domain
from wok_notification.adapters.contacts import ContactDirectory
from wok_notification.adapters.mail import MailNotSent, MailRejected, MailSender
from wok_notification.adapters.repository import NotificationRepository
from wok_notification.rendering import MailRenderer
from wok_runtime.consumer import TRANSIENT_ERRORS, TransientError
from wok_runtime.logging import current_correlation_id, get_logger
from wok_runtime.outbox import OutboundEvent

SOURCE = "/wok/notification"

log = get_logger(__name__)


class UnknownDialogueEvent(Exception):
    """A registration for an event we have not seen scheduled; retried, then dead-lettered."""


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
        events_stored: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.repository = repository
        self._contacts = contacts
        self._sender = sender
        self._renderer = renderer
        self._mail_from = mail_from
        self._public_base_url = public_base_url
        self._lease = lease
        self._events_stored = events_stored
        self._clock = clock

    async def remember_dialogue_event(self, envelope: Envelope[Any]) -> None:
        data: DialogueEventScheduled = envelope.data
        await self.repository.save_event(domain.EventDetails.scheduled(data))
        log.info(
            "dialogue event remembered",
            dialogue_event_id=data.dialogue_event_id,
            revision=data.revision,
        )

    async def send_confirmation(self, envelope: Envelope[Any]) -> None:
        data: ParticipantRegistered = envelope.data
        kind = NotificationKind.CONFIRMATION
        delivery_id = domain.delivery_id(kind, data.registration_id)
        fields = {"delivery_id": delivery_id, "dialogue_event_id": data.dialogue_event_id}

        existing = await self.repository.get_delivery(delivery_id)
        if existing is not None and existing.finished:
            log.info("delivery already finished; nothing to send", status=existing.status, **fields)
            return
        event = await self.repository.get_event(data.dialogue_event_id)
        if event is None:
            raise UnknownDialogueEvent(f"dialogue event {data.dialogue_event_id} is not known")
        contact = await self._contacts.fetch(data.registration_id)
        if contact is None:
            log.info("contact unknown or erased at registration; nothing to send", **fields)
            return
        await self.repository.save_contact(contact)

        now = self._clock()
        # Rendered before the claim, so a template error cannot leave a claim behind
        mail = domain.confirmation_mail(
            event=event,
            contact=contact,
            status=data.status,
            delivery_id=delivery_id,
            mail_from=self._mail_from,
            public_base_url=self._public_base_url,
        )
        message = self._renderer.render(mail, now=now)

        token = str(uuid.uuid4())
        delivery = await self.repository.claim_delivery(
            domain.new_delivery(
                kind,
                registration_id=data.registration_id,
                dialogue_event_id=data.dialogue_event_id,
                ags=data.ags,
                language=mail.language,
                now=now,
            ),
            token=token,
            now=now,
            lease=self._lease,
        )
        if delivery is None:
            current = await self.repository.get_delivery(delivery_id)
            if current is not None and current.finished:
                log.info("delivery finished meanwhile; nothing to send", **fields)
                return
            # Another worker holds it, or one crashed mid-send: wait for the lease to end
            raise TransientError(f"delivery {delivery_id} is being sent by another worker")

        try:
            await self._sender.send(message)
        except MailRejected as error:
            await self.repository.mark_failed(delivery, token=token, reason=str(error))
            log.warning("mail refused for good; delivery failed", reason=str(error), **fields)
            return
        except MailNotSent as error:
            await self.repository.release_delivery(delivery, token=token, now=self._clock())
            raise TransientError(str(error)) from error
        except Exception:
            await self.repository.release_delivery(delivery, token=token, now=self._clock())
            raise

        await self._record_sent(delivery, token=token, message_id=mail.message_id)
        log.info(
            "confirmation sent", status=data.status.value, attempts=delivery.attempts, **fields
        )

    async def _record_sent(self, delivery: domain.Delivery, *, token: str, message_id: str) -> None:
        """The mail is out: keep trying to record it, since a retry from scratch would send
        it a second time."""
        sent = delivery.sent(token=token, sent_at=self._clock(), message_id=message_id)
        assert sent.sent_at is not None
        outbound = OutboundEvent(
            topic=NOTIFICATION_EVENTS,
            envelope=new_envelope(
                sent.sent_event(),
                source=SOURCE,
                municipality=delivery.ags,
                subject=delivery.id,
                correlation_id=current_correlation_id(),
            ),
        )
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

    async def list_deliveries(self, *, limit: int) -> list[domain.Delivery]:
        return await self.repository.list_deliveries(limit=limit)
