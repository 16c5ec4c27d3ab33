"""The embedded stack's mail catcher: every message it receives becomes one `.eml` file.

Run it as a process (`python -m wok_cli.smtp_sink --host 127.0.0.1 --port 1025 --dir DIR`)
or in-process with `SmtpSink`. Each file holds the raw bytes as received, named by the
time of arrival plus a random suffix, and appears whole (written under a hidden temporary
name, then renamed), so a reader polling `*.eml` never sees half a message.

A mail is written on the event loop's thread, before the sink answers 250: writing a few
kilobytes into the page cache takes microseconds, less than handing the write to a thread
and back. It is not forced to disk (no fsync): a killed sink loses nothing it answered 250
for, only a crash of the machine itself could, and this is a development and test sink.
(The hand-over, the fsync and a log line per mail were about 0.5 of the 1.3 ms of CPU the
sink spent per mail.)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from wok_cli.files import write_atomically

log = logging.getLogger("wok_cli.smtp_sink")

SINK_HOSTNAME = "wok-smtp-sink"  # a fixed name: aiosmtpd would otherwise ask DNS for the FQDN


def eml_file_name(received_at: datetime) -> str:
    """Sortable by arrival, unique even for messages in the same microsecond."""
    stamp = received_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(4)}.eml"


class EmlFolderHandler:
    """aiosmtpd handler: accepts every recipient and stores each message as a `.eml` file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = eml_file_name(datetime.now(UTC))
        write_atomically(self.directory, name, content, durable=False)
        self.received += 1
        # The file name and size only: addresses are personal data and stay out of logs.
        # At DEBUG: a line per mail cost more than writing the mail (the count is logged
        # when the sink stops).
        log.debug("message stored file=%s bytes=%d", name, len(content))
        return "250 Message accepted for delivery"


def _accept_any_login(*_: Any) -> AuthResult:
    """A client configured with production credentials still delivers to the sink."""
    return AuthResult(success=True)


class SmtpSink:
    """An SMTP server on `host:port` that writes what it receives into `directory`."""

    def __init__(self, *, directory: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self.handler = EmlFolderHandler(directory)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(
                self.handler,
                hostname=SINK_HOSTNAME,
                enable_SMTPUTF8=True,
                authenticator=_accept_any_login,
                auth_require_tls=False,
                loop=loop,
            ),
            host=self.host,
            port=self.port,
        )
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        log.info("smtp sink listening host=%s port=%d dir=%s", self.host, self.port, self.directory)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


async def serve(*, host: str, port: int, directory: Path) -> None:
    """Run until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    sink = SmtpSink(directory=directory, host=host, port=port)
    await sink.start()
    try:
        await stopping.wait()
    finally:
        await sink.stop()
        log.info("smtp sink stopped received=%d", sink.handler.received)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SMTP sink writing each message as a .eml file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, required=True, help="folder for the .eml files")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # aiosmtpd logs senders and recipients at INFO: e-mail addresses must not reach a log.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    asyncio.run(serve(host=arguments.host, port=arguments.port, directory=arguments.dir.resolve()))


if __name__ == "__main__":
    main()
