"""The SMTP sink: what a service sends arrives as one complete, parseable `.eml` file."""

import asyncio
import stat
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from wok_cli.files import write_atomically
from wok_cli.smtp_sink import SmtpSink, eml_file_name


def read_mails(folder: Path) -> list[EmailMessage]:
    """The caught mails, oldest first; anything not named `.eml` fails the test."""
    paths = sorted(folder.iterdir())
    assert all(path.suffix == ".eml" for path in paths), paths
    return [message_from_bytes(path.read_bytes(), policy=policy.default) for path in paths]


def confirmation_mail() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Weltoffene Kommune <no-reply@wok.example>"
    message["To"] = "teilnehmerin@example.org"
    message["Subject"] = "Anmeldung bestätigt: Dialogveranstaltung in Kaiserslautern"
    message.set_content("Guten Tag,\n\nIhre Anmeldung ist bestätigt.\n")
    message.add_alternative("<p>Ihre Anmeldung ist <b>bestätigt</b>.</p>", subtype="html")
    return message


async def test_a_sent_mail_lands_as_one_parseable_eml_file(tmp_path: Path) -> None:
    async with SmtpSink(directory=tmp_path, port=0) as sink:
        await aiosmtplib.send(confirmation_mail(), hostname="127.0.0.1", port=sink.port)

    (received,) = read_mails(tmp_path)
    assert received["Subject"] == "Anmeldung bestätigt: Dialogveranstaltung in Kaiserslautern"
    assert received["To"] == "teilnehmerin@example.org"
    html = received.get_body(preferencelist=("html",))
    assert html is not None and "<b>bestätigt</b>" in html.get_content()


async def test_several_mails_get_several_files_in_arrival_order(tmp_path: Path) -> None:
    async with SmtpSink(directory=tmp_path, port=0) as sink:
        for number in range(3):
            message = confirmation_mail()
            message.replace_header("Subject", f"Erinnerung {number}")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port)

    subjects = [mail["Subject"] for mail in read_mails(tmp_path)]
    assert subjects == ["Erinnerung 0", "Erinnerung 1", "Erinnerung 2"]


async def test_a_client_with_credentials_still_delivers(tmp_path: Path) -> None:
    async with SmtpSink(directory=tmp_path, port=0) as sink:
        await aiosmtplib.send(
            confirmation_mail(),
            hostname="127.0.0.1",
            port=sink.port,
            username="notification",
            password="as-in-production",
            start_tls=False,
        )
    assert len(read_mails(tmp_path)) == 1


def test_file_names_sort_by_arrival_and_never_collide() -> None:
    first = datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
    names = [eml_file_name(first) for _ in range(100)]
    assert len(set(names)) == 100
    assert eml_file_name(first) < eml_file_name(first + timedelta(microseconds=1))


def test_a_written_file_appears_whole_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    content = b"Subject: x\r\n\r\n" + b"a" * 1_000_000
    written = write_atomically(tmp_path, "mail.eml", content)
    assert written.read_bytes() == content
    assert [path.name for path in tmp_path.iterdir()] == ["mail.eml"]


def test_a_stored_mail_is_whole_private_and_leaves_no_temporary_behind(tmp_path: Path) -> None:
    content = b"Subject: x\r\n\r\n" + b"a" * 300_000
    write_atomically(tmp_path, "20261210T180000000000Z-0a1b2c3d.eml", content, durable=False)
    (stored,) = tmp_path.iterdir()
    assert stored.name == "20261210T180000000000Z-0a1b2c3d.eml"
    assert stored.read_bytes() == content
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600


async def test_mails_over_kept_open_connections_side_by_side_each_land_once(tmp_path: Path) -> None:
    """As notification sends: several connections, each reused for many mails."""
    async with SmtpSink(directory=tmp_path, port=0) as sink:
        connections = [aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port) for _ in range(8)]
        for connection in connections:
            await connection.connect()

        async def send_all(connection: aiosmtplib.SMTP, first: int) -> None:
            for number in range(first, first + 25):
                message = confirmation_mail()
                message.replace_header("Subject", f"Erinnerung {number}")
                await connection.send_message(message)
            await connection.quit()

        await asyncio.gather(
            *(send_all(connection, 25 * index) for index, connection in enumerate(connections))
        )
        assert sink.handler.received == 200

    subjects = sorted(int(mail["Subject"].split()[-1]) for mail in read_mails(tmp_path))
    assert subjects == list(range(200))
