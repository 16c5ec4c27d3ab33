"""The real-SMTP twin of the recording sender: aiosmtplib to an in-process aiosmtpd server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from wok_contracts import EventFormat, RegistrationStatus
from wok_notification import domain
from wok_notification.adapters.mail import MailNotSent, MailRejected, SmtpConfig, SmtpMailSender
from wok_notification.rendering import MailRenderer

REFUSED_ADDRESS = "nobody@refused.example"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Sink:
    """Keeps what arrives; refuses one address for good, as a real server would."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address == REFUSED_ADDRESS:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


def confirmation(email: str) -> EmailMessage:
    starts = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
    mail = domain.confirmation_mail(
        event=domain.EventDetails(
            dialogue_event_id="event-1",
            ags="07312000",
            title="Dialog: Zusammenhalt",
            description="",
            starts_at=starts,
            ends_at=starts.replace(hour=19, minute=30),
            format=EventFormat.ONLINE,
            place=None,
            revision=0,
        ),
        contact=domain.Contact(
            registration_id="r-1",
            dialogue_event_id="event-1",
            name="Jörg Müller",
            email=email,
            language="de",
        ),
        status=RegistrationStatus.CONFIRMED,
        delivery_id="confirmation:r-1",
        mail_from="Weltoffene Kommune <noreply@weltoffene-kommune.example>",
        public_base_url="http://127.0.0.1:8001",
    )
    return MailRenderer().render(mail, now=datetime.now(UTC))


async def test_a_confirmation_arrives_through_real_smtp_intact(
    smtp_server: tuple[Sink, int],
) -> None:
    sink, port = smtp_server
    sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5))

    await sender.send(confirmation("joerg@example.org"))

    (envelope,) = sink.envelopes
    assert envelope.mail_from == "noreply@weltoffene-kommune.example"
    assert envelope.rcpt_tos == ["joerg@example.org"]
    assert envelope.original_content is not None
    received = message_from_bytes(envelope.original_content, policy=policy.default)
    assert received["Message-ID"] == "<confirmation.r-1@weltoffene-kommune.example>"
    assert received["Subject"] == "Anmeldebestätigung: Dialog: Zusammenhalt"
    body = received.get_body(("plain",))
    assert body is not None
    assert "Donnerstag, 10. Dezember 2026, 18:00–20:30 Uhr" in body.get_content()
    (invitation,) = list(received.iter_attachments())
    assert invitation.get_content_type() == "text/calendar"


async def test_a_refused_recipient_is_a_final_rejection(smtp_server: tuple[Sink, int]) -> None:
    sink, port = smtp_server
    sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5))

    with pytest.raises(MailRejected) as rejected:
        await sender.send(confirmation(REFUSED_ADDRESS))

    assert sink.envelopes == []
    assert REFUSED_ADDRESS not in str(rejected.value)


async def test_no_mail_server_listening_is_worth_retrying() -> None:
    sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=free_port(), timeout_s=5))
    with pytest.raises(MailNotSent):
        await sender.send(confirmation("joerg@example.org"))


class PeerSink(Sink):
    """Also notes the connection (client port) each message came over."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: list[Any] = []
        self.active = 0
        self.most_at_once = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.peers.append(session.peer)
        self.active += 1
        self.most_at_once = max(self.most_at_once, self.active)
        await asyncio.sleep(0.02)
        self.active -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_messages_reuse_open_connections_up_to_the_limit() -> None:
    sink = PeerSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5), connections=3)
    try:
        await asyncio.gather(*(sender.send(confirmation(f"p{n}@example.org")) for n in range(12)))
        await sender.send(confirmation("late@example.org"))
    finally:
        await sender.close()
        controller.stop()

    assert sorted(rcpt for e in sink.envelopes for rcpt in e.rcpt_tos) == sorted(
        [f"p{n}@example.org" for n in range(12)] + ["late@example.org"]
    )
    assert len(set(sink.peers)) == 3, "three connections, each used for several messages"
    assert sink.most_at_once == 3


async def test_a_connection_the_server_dropped_is_replaced_and_nothing_is_sent_twice() -> None:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=port, timeout_s=5), connections=1)
    outcomes: list[str] = []
    try:
        await sender.send(confirmation("first@example.org"))
        controller.stop()  # the server goes away, and with it the open connection
        controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        for n in range(3):
            try:
                await sender.send(confirmation(f"again-{n}@example.org"))
                outcomes.append("sent")
            except MailNotSent:
                outcomes.append("retry")  # the caller retries such a message later
    finally:
        await sender.close()
        controller.stop()

    # at most the first try found the old connection dead; the next went over a new one
    assert outcomes in (["sent", "sent", "sent"], ["retry", "sent", "sent"])
    delivered = [rcpt for e in sink.envelopes for rcpt in e.rcpt_tos]
    expected = ["first@example.org"] + [
        f"again-{n}@example.org" for n, outcome in enumerate(outcomes) if outcome == "sent"
    ]
    assert delivered == expected
