"""Sending e-mail: a Protocol, the SMTP implementation (aiosmtplib) and a recording fake."""

from __future__ import annotations

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
    """One SMTP connection per message: confirmations are few, and nothing stays open idle."""

    def __init__(self, config: SmtpConfig) -> None:
        self._config = config

    async def send(self, message: EmailMessage) -> None:
        config = self._config
        try:
            await aiosmtplib.send(
                message,
                hostname=config.host,
                port=config.port,
                use_tls=config.use_tls,
                start_tls=config.starttls,
                username=config.username,
                password=config.password,
                timeout=config.timeout_s,
            )
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
                raise MailRejected(f"mail server refused the message with {error.code}") from error
            raise MailNotSent(f"mail server deferred the message with {error.code}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise MailNotSent(f"mail server unavailable: {type(error).__name__}") from error


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
