"""The real-SMTP twin of the recording sender: aiosmtplib to an in-process aiosmtpd server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from aiosmtplib.email import extract_recipients, flatten_message

from wok_contracts import EventFormat, RegistrationStatus
from wok_notification import domain, headers, rendering
from wok_notification.adapters import mail
from wok_notification.adapters.mail import (
    MailNotSent,
    MailRejected,
    SmtpConfig,
    SmtpMailSender,
    wire_bytes,
)
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


def confirmation(email: str, *, name: str = "Jörg Müller") -> EmailMessage:
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
            name=name,
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


def messages_of_every_shape() -> list[EmailMessage]:
    """A confirmation (ASCII and non-ASCII names), a staff mail and a digest, in German and
    in Arabic (right to left, every header encoded)."""
    renderer = MailRenderer()
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    found = [
        confirmation("joerg@example.org"),
        confirmation("ayse@example.org"),
        confirmation("person-12@example.org", name="Demo Person 12"),  # To set as a string
    ]
    for language in ("de", "ar"):
        office = domain.OfficeContact(
            "07312000", "Kaiserslautern", "Integrationsbüro", "o@k.example", language
        )
        found.append(
            renderer.render_staff(
                domain.compose_staff_mail(
                    office=office,
                    language=language,
                    delivery_id="self_check_scored:office:07312000:sc1",
                    mail_from="Weltoffene Kommune <noreply@weltoffene-kommune.example>",
                    assessment_url="https://assessment.example",
                    overall=55.0,
                    overall_level="developing",
                    strengths=[6],
                    deficits=[1],
                ),
                now=now,
            )
        )
        starts = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)
        event = domain.EventDetails(
            dialogue_event_id="event-1",
            ags="07312000",
            title="Dialog: Zusammenhalt in der Nachbarschaft – Ümläute",
            description="",
            starts_at=starts,
            ends_at=starts.replace(hour=19, minute=30),
            format=EventFormat.HYBRID,
            place="Rathaus, Großer Saal",
            revision=0,
        )
        member = domain.Contact(
            "m1", "event-1", "Ayşe Yılmaz-Schmidt (Kreis Offenbach)", "m@k.example", language
        )
        mails = [
            domain.compose_mail(
                kind,
                event=event,
                contact=member,
                language=language,
                delivery_id=f"{kind.value}:m1",
                mail_from="Weltoffene Kommune <noreply@weltoffene-kommune.example>",
                public_base_url="https://anmeldung.example",
            )
            for kind in (domain.NotificationKind.RESCHEDULED, domain.NotificationKind.CANCELLED)
        ]
        found.append(renderer.render_digest(mails, message_id="<d@example.org>", now=now))
    return found


@pytest.mark.parametrize("cte_type", ["8bit", "7bit"])
def test_a_message_goes_out_byte_for_byte_as_aiosmtplib_writes_it(cte_type: str) -> None:
    for message in messages_of_every_shape():
        expected = flatten_message(message, utf8=False, cte_type=cte_type)
        # written directly (the generator is only the fallback for other shapes)
        direct: list[bytes] = []
        assert mail._write_plain(message, mail._POLICIES[(False, cte_type)], direct)
        assert b"".join(direct) == expected
        assert wire_bytes(message, utf8=False, cte_type=cte_type) == expected
        # and the message is left as it was (read again, it still gives the same bytes)
        assert wire_bytes(message, utf8=False, cte_type=cte_type) == expected


def test_no_header_naming_a_person_stays_in_the_header_caches() -> None:
    """The caches that spare re-parsing headers keep nothing of a recipient after the mail
    (it would outlive an erasure in the process's memory)."""
    for message in messages_of_every_shape():
        wire_bytes(message, utf8=False, cte_type="7bit")
        wire_bytes(message, utf8=True, cte_type="8bit")
    assert [key for key in mail._PARSED if key[0].lower() == "to"] == []
    assert [key for key in mail._FOLDED if key[1].lower() == "to"] == []
    assert "@example.org" not in repr(list(mail._PARSED.values()) + list(mail._FOLDED.values()))


@pytest.mark.parametrize("cte_type", ["8bit", "7bit"])
def test_a_message_of_another_shape_is_written_by_the_generator_alike(cte_type: str) -> None:
    plain = EmailMessage()
    plain["From"] = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
    plain["To"] = "Jörg Müller <joerg@example.org>"
    plain["Bcc"] = "hidden@example.org"
    plain["Subject"] = "Grüße"
    plain.set_content("Grüße aus Kaiserslautern\nZeile zwei\n", cte="8bit")
    mixed = EmailMessage()
    mixed["From"] = "noreply@weltoffene-kommune.example"
    mixed["To"] = "joerg@example.org"
    mixed.set_content("Hallo")
    mixed.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream")
    mixed.preamble = "This is a multi-part message."
    mixed.set_boundary("=====fixed-for-the-test=====")  # else the generator draws one
    for message in (plain, mixed):
        expected = flatten_message(message, utf8=False, cte_type=cte_type)
        assert wire_bytes(message, utf8=False, cte_type=cte_type) == expected
        assert b"hidden@example.org" not in expected


def test_the_renderers_multipart_headers_are_read_without_the_header_parser() -> None:
    """A fresh boundary in every mail: its Content-Type is read by a pattern, not parsed,
    and the pattern finds exactly what the parser finds."""
    seen = 0
    for message in messages_of_every_shape():
        for part in message.walk():
            if not part.is_multipart():
                continue
            raw = dict(part.raw_items())["Content-Type"]
            read = mail._own_multipart(raw)
            assert read is not None
            assert read.params["boundary"] == part.get_boundary()
            assert read.maintype == part.get_content_maintype() == "multipart"
            seen += 1
    assert seen >= 2
    assert mail._own_multipart('multipart/mixed; boundary="other"') is None
    assert (
        mail._own_multipart('multipart/mixed; boundary="=-wok-0123456789abcdef01234567"; x=y')
        is None
    )


PLAIN_RECIPIENTS = [
    ("Demo Person 12", "demo.12@example.org"),
    ("Mary-Ann O_Neil", "mary+wok@mail.example.org"),
    ("A", "a@b.example"),
    ("Bench Person Number Seven Hundred", "bench-person@registrations.example.org"),  # 78
]
OTHER_RECIPIENTS = [
    ("Jörg Müller", "joerg@example.org"),
    ("Dr. Jane Doe", "jane@example.org"),
    ("Doe, Jane", "jane@example.org"),
    ("Demo-Person 1 (Landkreis Göttingen)", "demo@example.org"),
    ("Two  Spaces", "x@example.org"),
    ("", "nobody@example.org"),
    ("Quoted", '"odd..local"@example.org'),
    ("Bench Person Number Seven Hundreds", "bench-person@registrations.example.org"),  # 79
]


@pytest.mark.parametrize(("name", "address"), PLAIN_RECIPIENTS + OTHER_RECIPIENTS)
def test_a_recipient_set_as_plain_text_goes_out_as_the_parsed_header_would(
    name: str, address: str
) -> None:
    """The To header is only set as a string where that writes the same bytes and gives the
    same envelope recipient as the header object; anything else keeps the object."""
    plain = headers.simple_to(name, address)
    assert (plain is not None) == ((name, address) in PLAIN_RECIPIENTS)
    if plain is None:
        return
    as_object, as_text = (EmailMessage(policy=rendering._PREPARED) for _ in range(2))
    as_object["To"] = Address(display_name=name, addr_spec=address)
    as_text["To"] = plain
    for message in (as_object, as_text):
        message["From"] = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
        message.set_content("Hallo")
    for cte_type in ("7bit", "8bit"):
        assert wire_bytes(as_text, utf8=False, cte_type=cte_type) == wire_bytes(
            as_object, utf8=False, cte_type=cte_type
        )
    assert mail._recipients(as_text) == extract_recipients(as_object) == [address]
    assert as_text["To"].addresses[0] == Address(display_name=name, addr_spec=address)


@pytest.mark.parametrize("length", [1, 20, 40, 52, 53, 64, 65, 66, 100, 200, 260])
def test_a_message_id_is_written_as_the_stdlib_writes_it(length: int) -> None:
    ids = [
        domain.message_id(f"confirmation:{'r' * length}", domain="weltoffene-kommune.example"),
        domain.message_id(f"reminder:{'x-' * length}:7", domain="k.example"),
        domain.message_id(f"digest:{'a.b' * length}", domain="mail.weltoffene-kommune.example"),
        domain.message_id(f"odd::{'z' * length}", domain="k.example"),  # ".." is no dot-atom
        f"<{'q' * length}>",
    ]
    for value in ids:
        for smtp_policy in mail._POLICIES.values():
            assert mail._folded(smtp_policy, "Message-ID", value) == smtp_policy.fold_binary(
                "Message-ID", value
            )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1.0",
        "auto-generated",
        "x" * 70,  # "Subject: " + 70 = 79: refolded by the stdlib
        "x" * 69,
        "y" * 68,
        "Tab\there",
        "Form\x0cfeed",  # a line boundary for str.splitlines
        "Group\x1dseparator",
        "trailing space ",
        "=?utf-8?q?encoded?= words",
        '"quoted" <angle@brackets.example>',
        "line\n continued",
    ],
)
def test_a_short_header_is_written_as_the_stdlib_writes_it(value: str) -> None:
    for smtp_policy in mail._POLICIES.values():
        for name in ("Subject", "Content-Language", "X-Long-Header-Name"):
            assert mail._folded(smtp_policy, name, value) == smtp_policy.fold_binary(name, value)


class TranscriptServer:
    """A mail server that answers like aiosmtpd, advertises the given extensions and keeps
    every byte the client sends (to compare what two clients say, word for word)."""

    def __init__(self, extensions: tuple[str, ...]) -> None:
        self.extensions = extensions
        self.received = bytearray()
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TranscriptServer:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 transcript ESMTP\r\n")
        while line := await reader.readline():
            self.received += line
            verb = line[:4].upper()
            if verb == b"EHLO":
                lines = ["transcript", *self.extensions, "HELP"]
                writer.write(
                    "".join(
                        f"250{'-' if n < len(lines) - 1 else ' '}{text}\r\n"
                        for n, text in enumerate(lines)
                    ).encode()
                )
            elif verb == b"DATA":
                writer.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                content = await reader.readuntil(b"\r\n.\r\n")
                self.received += content
                writer.write(b"250 OK: queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 Bye\r\n")
                await writer.drain()
                break
            elif verb == b"RCPT" and REFUSED_ADDRESS.encode() in line:
                writer.write(b"550 5.1.1 mailbox unavailable\r\n")
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()


def a_message_with_dots_and_bare_line_ends() -> EmailMessage:
    """Not the renderer's shape: text lines starting with a dot (stuffed on the wire) and
    line ends the generator writes as they are."""
    message = EmailMessage()
    message["From"] = "Weltoffene Kommune <noreply@weltoffene-kommune.example>"
    message["To"] = "Jörg Müller <joerg@example.org>"
    message["Subject"] = "Punkte"
    message.set_content(".erste Zeile\n..zweite\nmitte\n.\nende", cte="8bit")
    return message


@pytest.mark.parametrize(
    "extensions", [("SIZE 33554432", "8BITMIME", "SMTPUTF8"), ("8BITMIME",), ()]
)
async def test_a_mail_goes_out_word_for_word_as_aiosmtplib_sends_it(
    extensions: tuple[str, ...],
) -> None:
    """The commands, their order and the message bytes (line ends, dot-stuffing, SIZE) are
    exactly those of `aiosmtplib.SMTP.send_message`."""
    for message in [*messages_of_every_shape(), a_message_with_dots_and_bare_line_ends()]:
        transcripts = []
        for send in ("aiosmtplib", "ours"):
            async with TranscriptServer(extensions) as server:
                smtp = aiosmtplib.SMTP(
                    hostname="127.0.0.1", port=server.port, local_hostname="client.example"
                )
                await smtp.connect()
                if send == "aiosmtplib":
                    await smtp.send_message(message)
                else:
                    await mail._send_message(smtp, message)
                await smtp.quit()
                transcripts.append(bytes(server.received))
        assert transcripts[1] == transcripts[0]
        assert b"MAIL FROM:<noreply@weltoffene-kommune.example>" in transcripts[0]
    assert b"\r\n..erste Zeile" in transcripts[0] or b"\r\n...zweite" in transcripts[0]


async def test_a_refused_recipient_sends_no_message_and_the_refusal_is_final() -> None:
    async with TranscriptServer(("8BITMIME",)) as server:
        sender = SmtpMailSender(SmtpConfig(host="127.0.0.1", port=server.port, timeout_s=5))
        with pytest.raises(MailRejected):
            await sender.send(confirmation(REFUSED_ADDRESS))
        await sender.send(confirmation("joerg@example.org"))
        await sender.close()
    assert server.received.count(b"DATA\r\n") == 1
    assert b"RCPT TO:<joerg@example.org>" in server.received
