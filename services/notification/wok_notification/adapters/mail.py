"""Sending e-mail: a Protocol, the SMTP implementation (aiosmtplib) and a recording fake."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import re
import time
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from typing import Any, Protocol

import aiosmtplib
from aiosmtplib import SMTPStatus
from aiosmtplib.email import extract_recipients, extract_sender, parse_address
from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

from wok_notification.headers import HEADER_CLASSES, SIMPLE_TO


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
            await _send_message(smtp, message)
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


async def _send_message(smtp: aiosmtplib.SMTP, message: EmailMessage) -> None:
    """What `aiosmtplib.SMTP.send_message` does (the same envelope, options and bytes),
    with the message written out by `wire_bytes`."""
    sender = extract_sender(message)
    recipients = _recipients(message)
    if sender is None or not recipients:
        raise ValueError("a message needs a From and a recipient header")
    if smtp.is_ehlo_or_helo_needed:
        try:
            await smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            if not smtp.is_connected:
                raise
            await smtp.helo()
    options: list[str] = []
    utf8 = not (sender.isascii() and all(recipient.isascii() for recipient in recipients))
    if utf8:
        if not smtp.supports_extension("smtputf8"):
            raise aiosmtplib.SMTPNotSupported(
                "a non-ASCII address, but the server does not support SMTPUTF8"
            )
        options.append("SMTPUTF8")
    cte_type = "7bit"
    if smtp.supports_extension("8BITMIME"):
        options.append("BODY=8BITMIME")
        cte_type = "8bit"
    await _mail_transaction(
        smtp,
        sender,
        recipients,
        wire_bytes(message, utf8=utf8, cte_type=cte_type),
        options=options,
    )


async def _mail_transaction(
    smtp: aiosmtplib.SMTP,
    sender: str,
    recipients: list[str],
    message: bytes,
    *,
    options: list[str],
) -> None:
    """What `aiosmtplib.SMTP.sendmail` sends and how it answers (the same commands, bytes
    and exceptions), at less CPU per mail: each address is parsed once, not twice (and a
    plain address not at all), and the message, already with CRLF line ends and no line
    starting with a dot as `wire_bytes` writes ours, is not run through the regular
    expressions that would make it so (a third of the client's CPU). No RSET after a
    refusal: the caller closes the connection after any error."""
    encoding = "utf-8" if any(o.lower() == "smtputf8" for o in options) else "ascii"
    mailboxes = [_mailbox(address) for address in (sender, *recipients)]
    message = _crlf(message)
    if smtp.supports_extension("size"):
        # RFC 1870: the size as transmitted, CRLF pairs included (before dot-stuffing)
        options = [f"size={len(message)}", *options]
    response = await smtp.execute_command(
        b"MAIL",
        b"FROM:<" + mailboxes[0].encode(encoding) + b">",
        *(option.encode("ascii") for option in options),
    )
    if response.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
    refused = []
    for recipient, mailbox in zip(recipients, mailboxes[1:], strict=True):
        response = await smtp.execute_command(b"RCPT", b"TO:<" + mailbox.encode(encoding) + b">")
        if response.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            refused.append(
                aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
            )
    if len(refused) == len(recipients):
        raise aiosmtplib.SMTPRecipientsRefused(refused)
    response = await smtp.execute_command(b"DATA")
    if response.code != SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    protocol = smtp.protocol
    if protocol is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    protocol.write(_dot_stuffed(message) + b".\r\n")
    response = await protocol.read_response(timeout=smtp.timeout)
    if response.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)


# An address as `domain.Contact` and the sender hold it mostly: nothing to parse, nothing
# that could smuggle a command (aiosmtplib's parse_address returns such an address as is)
_PLAIN_MAILBOX = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
)


def _mailbox(address: str) -> str:
    if _PLAIN_MAILBOX.fullmatch(address):
        return address
    return parse_address(address)


def _crlf(message: bytes) -> bytes:
    """`normalize_message_line_endings`, without its regular expression when every line
    already ends with CRLF (counting is much cheaper)."""
    crlf = message.count(b"\r\n")
    if crlf == message.count(b"\n") == message.count(b"\r") and message.endswith(b"\r\n"):
        return message
    return normalize_message_line_endings(message)


def _dot_stuffed(message: bytes) -> bytes:
    """A line starting with a dot gets a second one (RFC 5321 4.5.2), as aiosmtplib does."""
    if message.startswith(b".") or b"\n." in message:
        return PERIOD_REGEX.sub(b"..", message)
    return message


_RECIPIENT_HEADERS = frozenset(
    ("to", "cc", "bcc", "resent-date", "resent-to", "resent-cc", "resent-bcc")
)
# A person's name and address: parsed and folded for each mail, never kept in the caches
# below (they would outlive the mail, and an erasure; one person's header is rarely reused)
_PERSONAL_HEADERS = _RECIPIENT_HEADERS | {"reply-to"}


def _recipients(message: EmailMessage) -> list[str]:
    """What `extract_recipients` finds; a single To header set as a plain `Name <address>`
    string (see `headers.simple_to`) is read by its pattern instead of the header parser."""
    found = [
        (name, value) for name, value in message.raw_items() if name.lower() in _RECIPIENT_HEADERS
    ]
    if len(found) == 1 and found[0][0].lower() == "to" and isinstance(found[0][1], str):
        simple = SIMPLE_TO.fullmatch(found[0][1])
        if simple is not None:
            return [simple.group(1)]
    return extract_recipients(message)


class _SmtpPolicy(EmailPolicy):
    """`email.policy.SMTP` (or `SMTPUTF8`), except that a header is parsed once while a
    message is written out, not each time the generator reads it (the Content-Type of
    every part is read about ten times: most of the CPU of writing a message)."""

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name"):
            return value
        if name.lower() in _PERSONAL_HEADERS:
            return super().header_fetch_parse(name, value)
        key = (name, value)
        parsed = _PARSED.get(key)
        if parsed is None:
            if len(_PARSED) >= MAX_PARSED:
                _PARSED.clear()
            parsed = _PARSED[key] = super().header_fetch_parse(name, value)
        return parsed


# Header objects are immutable, so a parsed one can be handed out again
_PARSED: dict[tuple[str, str], Any] = {}
MAX_PARSED = 512
_POLICIES = {
    (utf8, cte_type): _SmtpPolicy(
        linesep="\r\n", utf8=utf8, cte_type=cte_type, header_factory=HEADER_CLASSES
    )
    for utf8 in (False, True)
    for cte_type in ("7bit", "8bit")
}


def _folded(policy: _SmtpPolicy, name: str, value: Any) -> bytes:
    """`policy.fold_binary(name, value)`, kept for a header object (the From of every mail,
    refolded from its parse tree each time otherwise) and for a string that must be
    refolded (parsed first); a short string as written is cheap and not kept, and a header
    naming a person is never kept."""
    if (
        isinstance(value, str)
        and len(value) + len(name) + 2 <= MAX_UNFOLDED
        and value.isascii()
        and value.isprintable()
    ):
        # what the policy writes for a short line of printable ASCII: no line boundary in
        # it, nothing to refold
        return f"{name}: {value}{policy.linesep}".encode("ascii")
    if name.lower() in _PERSONAL_HEADERS:
        return policy.fold_binary(name, value)  # type: ignore[no-any-return]
    if hasattr(value, "name"):
        key: tuple[Any, ...] = (id(policy), name, id(value))
    elif name == "Message-ID" and len(value) <= MAX_PLAIN_ID and _PLAIN_ID.fullmatch(value):
        # one per mail, over 78 characters with a registration's id: the stdlib parses it
        # and writes it on one line as it was
        return f"{name}: {value}{policy.linesep}".encode("ascii")
    elif "\n" in value or "\r" in value or len(value) + len(name) + 2 > MAX_UNFOLDED:
        key = (id(policy), name, value)
    else:
        return policy.fold_binary(name, value)  # type: ignore[no-any-return]
    kept = _FOLDED.get(key)
    # the value is kept alongside, so the id of a header object cannot be reused meanwhile
    if kept is None or kept[0] is not value:
        if len(_FOLDED) >= MAX_PARSED:
            _FOLDED.clear()
        kept = _FOLDED[key] = (value, policy.fold_binary(name, value))
    return kept[1]


_FOLDED: dict[tuple[Any, ...], tuple[Any, bytes]] = {}
# A message id as `domain.message_id` makes it (dot-atoms), of a length tested against the
# stdlib (`test_a_message_id_is_written_as_the_stdlib_writes_it`)
_PLAIN_ID = re.compile(r"<[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
MAX_PLAIN_ID = 300
MAX_UNFOLDED = 78


def wire_bytes(message: EmailMessage, *, utf8: bool, cte_type: str) -> bytes:
    """The message as `aiosmtplib.email.flatten_message` writes it (Bcc headers left out),
    byte for byte."""
    if "Bcc" in message or "Resent-Bcc" in message:
        message = _without_bcc(message)
    policy = _POLICIES[(utf8, cte_type)]
    written: list[bytes] = []
    if _write_plain(message, policy, written):
        return b"".join(written)
    with io.BytesIO() as out:
        BytesGenerator(out, policy=policy).flatten(message)
        return out.getvalue()


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _write_plain(message: Message, policy: _SmtpPolicy, written: list[bytes]) -> bool:
    """What `BytesGenerator` writes for a message of the shape the renderer makes (multiparts
    without preamble or epilogue around text parts whose bodies are ASCII, base64 here),
    without its reading of each part's headers over and over; False (and nothing to use)
    for any other shape, which the generator writes."""
    content_type = None
    for name, value in message.raw_items():
        written.append(_folded(policy, name, value))
        if name.lower() == "content-type":
            if content_type is not None:
                return False
            content_type = _own_multipart(value) or policy.header_fetch_parse(name, value)
    written.append(b"\r\n")
    if content_type is None or content_type.defects:
        return False
    payload = message._payload  # type: ignore[attr-defined]  # the generator reads it so
    if isinstance(payload, list):
        boundary = str(content_type.params.get("boundary") or "").rstrip()
        if content_type.maintype != "multipart" or not payload or not boundary.isascii():
            return False
        if not boundary or message.preamble is not None or message.epilogue is not None:
            return False
        separator = f"\r\n--{boundary}\r\n".encode("ascii")
        written.append(separator[2:])
        for number, part in enumerate(payload):
            if number:
                written.append(separator)
            if not isinstance(part, Message) or not _write_plain(part, policy, written):
                return False
        written.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
        return True
    if content_type.maintype != "text" or not isinstance(payload, str) or not payload.isascii():
        return False
    if "\r" in payload:
        payload = "\r\n".join(_LINE_BREAK.split(payload))
    else:  # base64 lines as `base64.encodebytes` ends them: the same, without the regex
        payload = payload.replace("\n", "\r\n")
    written.append(payload.encode("ascii"))
    return True


@dataclass(frozen=True)
class _MultipartType:
    """What `_write_plain` reads of a multipart Content-Type the renderer wrote."""

    maintype: str
    params: dict[str, str]
    defects: tuple[()] = ()


# The renderer's multipart Content-Type (a fresh boundary in every mail, so the parsed-header
# cache never helps): read here without the header parser, which cost about a tenth of the
# CPU of a confirmation. Anything else is parsed as before.
_OWN_MULTIPART = re.compile(r'multipart/(?:alternative|mixed); boundary="(=-wok-[0-9a-f]{24})"')


def _own_multipart(value: Any) -> _MultipartType | None:
    if not isinstance(value, str):
        return None
    found = _OWN_MULTIPART.fullmatch(value)
    if found is None:
        return None
    return _MultipartType(maintype="multipart", params={"boundary": found.group(1)})


def _without_bcc(message: EmailMessage) -> EmailMessage:
    stripped = copy.copy(message)
    del stripped["Bcc"]
    del stripped["Resent-Bcc"]
    return stripped


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
