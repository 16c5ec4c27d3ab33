"""Sending e-mail: a Protocol, the SMTP implementation (aiosmtplib) and a recording fake."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib


class MailNotSent(Exception):
    """The mail server could not be reached or asked us to try later; retrying may help."""


class MailRejected(Exception):
    """The mail server refused this message for good (a 5xx answer); retrying will not help."""


class MailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server, or raise MailNotSent or MailRejected."""
        ...


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    starttls: bool = False
    use_tls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 30.0


class SmtpMailSender:
    """Sends over up to `connections` SMTP connections, each kept open and reused for the
    next message (a new connection costs a handshake, EHLO and, with TLS, key exchange).

    A connection that failed is closed, never reused; one idle longer than `idle_s` is
    replaced, one idle a little while must answer a NOOP first. A message is never sent a
    second time here: if a connection fails under it, the caller retries (MailNotSent)."""

    def __init__(self, config: SmtpConfig, *, connections: int = 8, idle_s: float = 30.0) -> None:
        self._config = config
        self._idle_s = idle_s
        self._slots = asyncio.Semaphore(max(1, connections))
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send(self, message: EmailMessage) -> None:
        async with self._slots:
            try:
                await self._send(message)
            except aiosmtplib.SMTPRecipientsRefused as error:
                # One recipient per message, so "all refused" is that recipient's verdict
                codes = [refusal.code for refusal in error.recipients]
                if codes and all(500 <= code < 600 for code in codes):
                    raise MailRejected(f"recipient refused with {codes}") from error
                raise MailNotSent(f"recipient deferred with {codes}") from error
            except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as error:
                # Only verdicts on this message are final; a refused sender or login is our
                # configuration, which an operator fixes while the message waits.
                # The server's text may quote the address: keep only the code.
                if 500 <= error.code < 600:
                    raise MailRejected(
                        f"mail server refused the message with {error.code}"
                    ) from error
                raise MailNotSent(f"mail server deferred the message with {error.code}") from error
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
                raise MailNotSent(f"mail server unavailable: {type(error).__name__}") from error

    async def _send(self, message: EmailMessage) -> None:
        smtp = await self._reusable()
        if smtp is None:
            smtp = await self._connect()
        try:
            await smtp.send_message(message)
        except BaseException:
            _close(smtp)
            raise
        self._idle.append((smtp, time.monotonic()))

    async def _reusable(self) -> aiosmtplib.SMTP | None:
        """An open connection used lately; one idle for a while must first answer a NOOP
        (a server closes idle connections after its timeout)."""
        now = time.monotonic()
        while self._idle:
            smtp, since = self._idle.pop()
            idle = now - since
            if not smtp.is_connected or idle >= self._idle_s:
                _close(smtp)
                continue
            if idle >= CHECK_AFTER_S:
                try:
                    await smtp.noop()
                except (aiosmtplib.SMTPException, OSError, TimeoutError):
                    _close(smtp)
                    continue
            return smtp
        return None

    async def _connect(self) -> aiosmtplib.SMTP:
        config = self._config
        smtp = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            use_tls=config.use_tls,
            start_tls=config.starttls,
            username=config.username,
            password=config.password,
            timeout=config.timeout_s,
        )
        try:
            await smtp.connect()
        except BaseException:
            _close(smtp)
            raise
        return smtp

    async def close(self) -> None:
        while self._idle:
            smtp, _ = self._idle.pop()
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await smtp.quit()
            _close(smtp)


# A connection idle longer than this is asked (NOOP) whether the server still holds it
CHECK_AFTER_S = 2.0


def _close(smtp: aiosmtplib.SMTP) -> None:
    with contextlib.suppress(Exception):
        smtp.close()


@dataclass
class RecordingMailSender:
    """Keeps every message it is given; `fail_next` makes the next sends fail (tests)."""

    sent: list[EmailMessage] = field(default_factory=list)
    fail_next: int = 0
    reject: bool = False

    async def send(self, message: EmailMessage) -> None:
        if self.reject:
            raise MailRejected("mail server answered 550")
        if self.fail_next > 0:
            self.fail_next -= 1
            raise MailNotSent("mail server unavailable: ConnectionRefusedError")
        self.sent.append(message)
