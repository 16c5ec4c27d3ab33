"""Turn a decided `Mail` into a MIME message: jinja2 text and HTML in the recipient's
language, and an ICS for the kinds that touch the calendar.

The message is multipart/mixed: a multipart/alternative (plain text, then HTML) and, for
confirmations, promotions, reschedules and cancellations, the calendar entry as a
`text/calendar` attachment (`method=REQUEST`, or `CANCEL` for a cancellation).

Templates (see TEMPLATES.md beside this module): `layout.html`, `layout.txt` and
`subject.txt` place the sentences that each language folder's `messages.j2` defines. A
language is any folder with a `messages.j2`, in the built-in `templates/` or in one of the
extra folders (`WOK_NOTIFICATION_TEMPLATE_DIRS`), which are searched first: a municipality
adds a language, or rewords one, without code.

A mail of its own is filled into a stencil: its text rendered once per event, kind, status
and language with stand-ins for the person's values (`MailRenderer._stencil`; see
TEMPLATES.md), which spares the templates' CPU for every further mail of the kind.
"""

from __future__ import annotations

import binascii
import functools
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import encode_rfc2231, format_datetime, parseaddr, quote
from pathlib import Path
from typing import Any

from icalendar import Calendar, Event, vCalAddress, vText
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import escape

from wok_notification.domain import (
    FALLBACK_LANGUAGE,
    CalendarInvite,
    CalendarMethod,
    Mail,
    StaffMail,
)
from wok_notification.headers import HEADER_CLASSES, simple_to

PRODUCT_ID = "-//Weltoffene Kommune//Benachrichtigungen//DE"
BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
MESSAGES = "messages.j2"
_LANGUAGE_FOLDER = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")
# How long the languages found in the template folders are used without listing them again,
# and how soon a language not among them has them listed again
LANGUAGES_KEPT_S = 5.0
LANGUAGES_RECHECK_S = 1.0
# The values of a mail that are the person's or the mail's own (`Mail` fields). The rest
# (the event, the kind, the language) is the same in every mail of a dialogue event's kind
# and status, whose text is therefore rendered once as a stencil with stand-ins for these.
PERSONAL_FIELDS = ("recipient_name", "recipient_email", "cancel_url", "erasure_url", "message_id")
_SHARED_FIELDS = tuple(
    f.name for f in fields(Mail) if f.name not in PERSONAL_FIELDS and f.name != "invite"
)
# The templates a mail of its own is rendered from, besides `<language>/...` (see
# `_builtin_only`); a stencil is made only when none of them comes from an extra folder
SHARED_TEMPLATES = (
    "subject.txt",
    "layout.txt",
    "layout.html",
    "frame.html",
    "item.txt",
    "item.html",
)
MAX_STENCILS = 512


def _plain(value: Any) -> str:
    """Text, never markup: a macro called from the HTML layout returns Markup, which would
    skip escaping; as plain text it is escaped like any value (names, titles)."""
    return str(value)


def _paragraphs(text: Any) -> list[str]:
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", str(text)) if p.strip()]


def _sentence_start(text: Any) -> str:
    value = str(text)
    return value[:1].upper() + value[1:]


def _lines(text: Any) -> list[str]:
    return [line.strip() for line in str(text).splitlines() if line.strip()]


class MailRenderer:
    """`stencils=False` renders every mail from the templates (see `_stencil`)."""

    def __init__(self, template_dirs: Sequence[Path | str] = (), *, stencils: bool = True) -> None:
        self._use_stencils = stencils
        self._dirs = [Path(folder) for folder in template_dirs] + [BUILTIN_TEMPLATES]
        self._templates = Environment(
            loader=FileSystemLoader(self._dirs),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._templates.filters["plain"] = _plain
        self._templates.filters["paragraphs"] = _paragraphs
        self._templates.filters["split_lines"] = _lines
        self._templates.filters["sentence_start"] = _sentence_start
        self._languages: set[str] = set()
        self._picked: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._languages_at = -LANGUAGES_KEPT_S
        # stencil key -> (when made, the stencil or None when the mail needs the templates)
        self._stencils: dict[tuple[Any, ...], tuple[float, _Stencil | None]] = {}

    def languages(self) -> set[str]:
        """Every language with templates; looked up again on each call (see `language_for`
        for the copy kept between mails)."""
        found: set[str] = set()
        for folder in self._dirs:
            if folder.is_dir():
                found.update(
                    child.name
                    for child in folder.iterdir()
                    if _LANGUAGE_FOLDER.match(child.name) and (child / MESSAGES).is_file()
                )
        return found

    def language_for(self, preferred: str | None) -> str:
        """The recipient's language if it has templates, else German.

        The folders are not listed for every mail: the languages found are kept for
        `LANGUAGES_KEPT_S`, and a language not among them makes the folders be listed again
        (at most once in `LANGUAGES_RECHECK_S`), so a folder added while the service runs
        is used from the next mail on (within a second), one removed after a few seconds."""
        wanted = (preferred or "").strip().lower()
        now = time.monotonic()
        age = now - self._languages_at
        if age >= LANGUAGES_KEPT_S or (
            wanted not in self._languages and age >= LANGUAGES_RECHECK_S
        ):
            self._languages, self._languages_at = self.languages(), now
        return wanted if wanted in self._languages else FALLBACK_LANGUAGE

    def attachment_name(self, language: str) -> str:
        return str(self._messages(language, mail=None).attachment_name()).strip()

    def _messages(
        self, language: str, *, mail: Mail | StaffMail | None, count: int | None = None
    ) -> Any:
        template = self._pick(f"{language}/{MESSAGES}")
        return template.make_module({"mail": mail, "count": count})

    def _pick(self, *names: str) -> Any:
        """The first of the templates that exists, kept for `LANGUAGES_KEPT_S` (jinja checks
        the files of a template on every use otherwise), so an edited template is used
        within a few seconds."""
        now = time.monotonic()
        kept = self._picked.get(names)
        if kept is not None and now - kept[0] < LANGUAGES_KEPT_S:
            return kept[1]
        template = self._templates.select_template(list(names))
        self._picked[names] = (now, template)
        return template

    def render(self, mail: Mail, *, now: datetime) -> EmailMessage:
        stencil = self._stencil(mail)
        if stencil is None:
            subject, text, html, attachment_name = self._render_templates(mail)
        else:
            subject, text, html = stencil.fill(mail)
            attachment_name = stencil.attachment_name
        attachments = []
        if mail.invite is not None:
            ics = invitation_ics(mail.invite, now=now)
            attachments.append((attachment_name, mail.invite.method.value, ics))
        return _assemble(
            mail,
            subject=subject,
            message_id=mail.message_id,
            now=now,
            text=text,
            html=html,
            attachments=attachments,
        )

    def _render_templates(self, mail: Mail) -> tuple[str, str, str, str]:
        """Subject, plain text, HTML and calendar attachment name of a mail of its own."""
        messages = self._messages(mail.language, mail=mail)
        context = {"mail": mail, "m": messages, "in_digest": False}
        # A language folder may bring its own layout; the shared one otherwise
        pick = self._pick
        subject = pick(f"{mail.language}/subject.txt", "subject.txt").render(context)
        text = pick(f"{mail.language}/layout.txt", "layout.txt").render(context)
        html = pick(f"{mail.language}/layout.html", "layout.html").render(context)
        return subject, text, html, str(messages.attachment_name()).strip()

    def _stencil(self, mail: Mail) -> _Stencil | None:
        """The mail's text rendered once for all mails alike but for the person's values
        (kept for `LANGUAGES_KEPT_S`, so an edited template is used within a few seconds),
        or None: the mail is rendered from the templates."""
        key = _stencil_key(mail) if self._use_stencils else None
        if key is None:
            return None
        now = time.monotonic()
        try:
            kept = self._stencils.get(key)
        except TypeError:  # a field that cannot be a key (a list): no stencil for such mails
            return None
        if kept is not None and now - kept[0] < LANGUAGES_KEPT_S:
            return kept[1]
        stencil = self._make_stencil(mail) if self._builtin_only(mail.language) else None
        if len(self._stencils) >= MAX_STENCILS:
            self._stencils.clear()
        self._stencils[key] = (now, stencil)
        return stencil

    def _builtin_only(self, language: str) -> bool:
        """Whether the mail's templates are the built-in ones (an extra folder's are the
        municipality's own: what they do with a person's values is not known here)."""
        return not any(
            (folder / language).exists() or any((folder / n).exists() for n in SHARED_TEMPLATES)
            for folder in self._dirs[:-1]
        )

    def _make_stencil(self, mail: Mail) -> _Stencil | None:
        """Rendered with two different sets of stand-ins for the person's values: the
        stencil made from the first must give exactly what the templates give for the
        second, else (a template that changes or tests such a value) there is none."""
        first, second = _stand_ins(mail, 0), _stand_ins(mail, 1)
        outputs = self._render_templates(_with_values(mail, first))
        again = self._render_templates(_with_values(mail, second))
        if outputs[3] != again[3] or any(stand_in in outputs[3] for stand_in in first.values()):
            return None
        made = []
        for number, (output, expected) in enumerate(zip(outputs[:3], again[:3], strict=True)):
            html = number == 2
            pieces = _Pieces.cut(output, first, html=html)
            if pieces.fill(second, html=html) != expected:
                return None
            made.append(pieces)
        subject, text, html_pieces = made
        return _Stencil(subject=subject, text=text, html=html_pieces, attachment_name=outputs[3])

    def render_digest(
        self, mails: Sequence[Mail], *, message_id: str, now: datetime
    ) -> EmailMessage:
        """Several held messages to one person as one mail: each its own section with its own
        calendar attachment. A digest of one is that message itself."""
        if len(mails) == 1:
            return self.render(replace(mails[0], message_id=message_id), now=now)
        first = mails[0]
        items = [(mail, self._messages(mail.language, mail=mail)) for mail in mails]
        messages = self._messages(first.language, mail=first, count=len(mails))
        context = {"mail": first, "m": messages, "items": items, "in_digest": True}
        pick = self._templates.select_template
        text = pick([f"{first.language}/digest.txt", "digest.txt"]).render(context)
        html = pick([f"{first.language}/digest.html", "digest.html"]).render(context)
        return _assemble(
            first,
            subject=str(messages.digest_subject()),
            message_id=message_id,
            now=now,
            text=text,
            html=html,
            attachments=self._attachments(items, now=now),
        )

    def render_staff(self, mail: StaffMail, *, now: datetime) -> EmailMessage:
        messages = self._messages(mail.language, mail=mail)
        context = {"mail": mail, "m": messages}
        pick = self._templates.select_template
        text = pick([f"{mail.language}/staff.txt", "staff.txt"]).render(context)
        html = pick([f"{mail.language}/staff.html", "staff.html"]).render(context)
        return _assemble(
            mail,
            subject=str(messages.subject()),
            message_id=mail.message_id,
            now=now,
            text=text,
            html=html,
            attachments=[],
        )

    def _attachments(
        self, items: Sequence[tuple[Mail, Any]], *, now: datetime
    ) -> list[tuple[str, str, bytes]]:
        """One calendar attachment (file name, method, ICS) per message that carries one;
        numbered when several."""
        invites = [(mail, messages) for mail, messages in items if mail.invite is not None]
        found: list[tuple[str, str, bytes]] = []
        for number, (mail, messages) in enumerate(invites, start=1):
            assert mail.invite is not None
            filename = str(messages.attachment_name()).strip()
            if len(invites) > 1:
                stem, dot, extension = filename.rpartition(".")
                filename = f"{stem}-{number}.{extension}" if dot else f"{filename}-{number}"
            found.append((filename, mail.invite.method.value, invitation_ics(mail.invite, now=now)))
        return found


def _stencil_key(mail: Mail) -> tuple[Any, ...] | None:
    """What the text of a mail of its own depends on besides the person's values: the
    mail's other fields, whether each personal value is there, and the calendar entry
    without the attendee (None when that attendee is not the recipient, which a stencil
    could not tell apart). Holds nothing of the person."""
    invite = mail.invite
    if invite is None:
        shared_invite: Any = None
    elif invite.attendee_name != mail.recipient_name or invite.attendee_email != (
        mail.recipient_email
    ):
        return None
    else:
        shared_invite = replace(invite, attendee_name="", attendee_email="")
    return (
        tuple(getattr(mail, name) for name in _SHARED_FIELDS),
        tuple(bool(getattr(mail, name)) for name in PERSONAL_FIELDS),
        shared_invite,
    )


def _stand_ins(mail: Mail, variant: int) -> dict[str, str]:
    """A stand-in for each personal value the mail has: text no template writes by
    itself, with characters that escaping, case and white-space changes would alter, in
    two variants, a short and a long one (a template that shortens long values)."""
    made = {}
    for number, name in enumerate(PERSONAL_FIELDS):
        if getattr(mail, name):
            if variant == 0:
                made[name] = f"w\x02{number}<&\"' \u00e4  x\x03z"
            else:
                made[name] = f"q\x02{number}{number}>'&\"\u00ff  \u00df {'y' * 80}\x03r"
    return made


def _with_values(mail: Mail, values: dict[str, Any]) -> Mail:
    invite = mail.invite
    if invite is not None:
        invite = replace(
            invite,
            attendee_name=values.get("recipient_name", invite.attendee_name),
            attendee_email=values.get("recipient_email", invite.attendee_email),
        )
    return replace(mail, invite=invite, **values)


@dataclass(frozen=True)
class _Pieces:
    """A rendered text cut at the stand-ins: literal text and, between, the names of the
    personal values to put there (escaped in HTML, as the templates escape them)."""

    parts: tuple[str, ...]  # literal, name, literal, name, ..., literal

    @classmethod
    def cut(cls, output: str, stand_ins: dict[str, str], *, html: bool) -> _Pieces:
        if not stand_ins:
            return cls((output,))
        written = {(str(escape(v)) if html else v): name for name, v in stand_ins.items()}
        pattern = "|".join(re.escape(text) for text in written)
        split = re.split(f"({pattern})", output)
        return cls(tuple(written[p] if n % 2 else p for n, p in enumerate(split)))

    def fill(self, values: Any, *, html: bool) -> str:
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        read: Any = values.get if isinstance(values, dict) else functools.partial(getattr, values)
        filled = list(parts)
        for n in range(1, len(parts), 2):
            value = read(parts[n])
            filled[n] = str(escape(value)) if html else value
        return "".join(filled)


@dataclass(frozen=True)
class _Stencil:
    subject: _Pieces
    text: _Pieces
    html: _Pieces
    attachment_name: str

    def fill(self, mail: Mail) -> tuple[str, str, str]:
        return (
            self.subject.fill(mail, html=False),
            self.text.fill(mail, html=False),
            self.html.fill(mail, html=True),
        )


def _assemble(
    mail: Mail | StaffMail,
    *,
    subject: str,
    message_id: str,
    now: datetime,
    text: str,
    html: str,
    attachments: Sequence[tuple[str, str, bytes]],
) -> EmailMessage:
    """The MIME message: multipart/alternative (plain text, then HTML), inside a
    multipart/mixed with the calendar attachments if there are any; every part in base64.

    The headers are written here already encoded (RFC 2047 words, RFC 2231 parameters) and
    kept as written (`_PREPARED`), to be parsed only when read, as those of a received
    message are: `set_content`/`add_alternative`/`add_attachment` parse each header they
    set several times over, which cost most of the CPU of a confirmation."""
    body = _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])
    message = body
    if attachments:
        message = _multipart("mixed", [body, *(_calendar_part(*item) for item in attachments)])
    message["From"] = _from_header(mail.mail_from)
    # An Address object, not a formatted string: re-reading a formatted header with brackets
    # and non-ASCII in the name ("Demo-Person 1 (Landkreis Göttingen)") lost the address.
    # A plain name and address are set as the string the stdlib would write (parsed only
    # if read); anything else as that Address object.
    message["To"] = simple_to(mail.recipient_name, mail.recipient_email) or Address(
        display_name=mail.recipient_name, addr_spec=mail.recipient_email
    )
    _set(message, "Subject", _encoded(" ".join(subject.split()), name="Subject"))
    _set(message, "Date", format_datetime(now.astimezone(UTC)))
    _set(message, "Message-ID", message_id)
    # RFC 3834: tells auto-responders not to answer a no-reply sender
    _set(message, "Auto-Submitted", "auto-generated")
    _set(message, "Content-Language", mail.language)
    _set(message, "MIME-Version", "1.0")
    return message


@functools.lru_cache(maxsize=16)
def _from_header(mail_from: str) -> Any:
    """The From header, parsed once per sender (a header object is immutable, and one
    already parsed is stored as it is)."""
    sender_name, sender_address = parseaddr(mail_from)
    return _PREPARED.header_factory(
        "From", Address(display_name=sender_name, addr_spec=sender_address)
    )


class _PreparedHeaders(EmailPolicy):
    """The standard policy, except that a header set as an ASCII string (encoded by us,
    folded lines starting with white space) is kept as written, not parsed on the spot; it
    is parsed when read, like a header of a received message."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, str) and value.isascii():
            lines = value.split("\n")
            if "\r" not in value and all(line[:1] in (" ", "\t") for line in lines[1:]):
                return (name, value)
        return super().header_store_parse(name, value)  # type: ignore[no-any-return]


_PREPARED = _PreparedHeaders(header_factory=HEADER_CLASSES)


def _set(message: EmailMessage, name: str, value: str) -> None:
    """`message[name] = value` on a new message (no header of that name yet, so there is
    no count to check): a value `_PreparedHeaders` keeps as written anyway (one line of
    ASCII) is stored straight away, anything else as the policy stores it."""
    if value.isascii() and "\n" not in value and "\r" not in value:
        message.set_raw(name, value)
    else:
        message[name] = value


def _multipart(subtype: str, parts: list[EmailMessage]) -> EmailMessage:
    message = EmailMessage(policy=_PREPARED)
    # base64 bodies never contain "-", so this boundary cannot occur inside a part; 96
    # random bits keep the header within 78 characters, so it is sent as written (a longer
    # one is parsed and folded anew for every mail)
    _set(message, "Content-Type", f'multipart/{subtype}; boundary="=-wok-{uuid.uuid4().hex[:24]}"')
    for part in parts:
        message.attach(part)
    return message


def _text_part(content: str, subtype: str) -> EmailMessage:
    part = EmailMessage(policy=_PREPARED)
    _set(part, "Content-Type", f'text/{subtype}; charset="utf-8"')
    _set(part, "Content-Transfer-Encoding", "base64")
    part.set_payload(base64_lines(content.encode("utf-8")))
    return part


def _calendar_part(filename: str, method: str, ics: bytes) -> EmailMessage:
    # Bytes in base64: RFC 5545 wants CRLF line ends, which text parts would normalise
    part = EmailMessage(policy=_PREPARED)
    _set(part, "Content-Type", f'text/calendar; method={method}; charset="utf-8"')
    _set(part, "Content-Transfer-Encoding", "base64")
    if filename.isascii():
        _set(part, "Content-Disposition", f'attachment; filename="{quote(filename)}"')
    else:
        disposition = f"attachment; filename*={encode_rfc2231(filename, 'utf-8')}"
        _set(part, "Content-Disposition", disposition)
    part.set_payload(base64_lines(ics))
    return part


BASE64_LINE = 76  # characters, as `base64.encodebytes` writes them (RFC 2045)


def base64_lines(data: bytes) -> str:
    """`base64.encodebytes(data)` as text: encoded in one go and cut into lines, at half
    its CPU (it encodes each line's 57 bytes on their own)."""
    encoded = binascii.b2a_base64(data, newline=False).decode("ascii")
    if not encoded:
        return ""
    lines = [encoded[i : i + BASE64_LINE] for i in range(0, len(encoded), BASE64_LINE)]
    return "\n".join(lines) + "\n"


def _encoded(value: str, *, name: str) -> str:
    """A header value as ASCII: RFC 2047 words (folded) if it is not ASCII already."""
    if value.isascii():
        return value
    return _encoded_words(value, name)


@functools.lru_cache(maxsize=256)
def _encoded_words(value: str, name: str) -> str:
    """Kept: the subjects of one event's mails are the same, and the encoding measures
    every split it tries byte by byte (a third of the CPU of rendering a mail)."""
    return str(Header(value, "utf-8", header_name=name).encode())


def invitation_ics(invite: CalendarInvite, *, now: datetime) -> bytes:
    """An iTIP REQUEST or CANCEL; the same UID with a higher SEQUENCE updates or removes
    the calendar entry the first mail created.

    Written directly, byte for byte as icalendar writes it (`icalendar_ics`, tested against
    it), at a tenth of its CPU; names with characters that need RFC 6868 escapes or text
    with control characters go through icalendar itself."""
    return _direct_ics(invite, now=now) or icalendar_ics(invite, now=now)


# Characters after which icalendar's own escaping rules (RFC 6868) are better left to it
_UNUSUAL_PARAM = re.compile('[\\^"\x00-\x1f\x7f]')
_UNUSUAL_TEXT = re.compile("[\x00-\x09\x0b\x0c\x0e-\x1f\x7f]")
# A CN parameter is quoted when it holds one of these (icalendar's QUOTABLE and quote_also)
_QUOTED_CN = re.compile("[,;:\u2019 ']")
FOLD_OCTETS = 75


def _direct_ics(invite: CalendarInvite, *, now: datetime) -> bytes | None:
    names = (invite.organizer_name, invite.attendee_name)
    texts = (invite.uid, invite.summary, invite.location, invite.description)
    if any(_UNUSUAL_PARAM.search(name) for name in names) or any(
        _UNUSUAL_TEXT.search(text) for text in texts
    ):
        return None
    cancel = invite.method is CalendarMethod.CANCEL
    if cancel:
        status = "CANCELLED"
    else:
        status = "TENTATIVE" if invite.tentative else "CONFIRMED"
    partstat = "TENTATIVE" if invite.tentative else "ACCEPTED"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{_ics_text(PRODUCT_ID)}",
        "CALSCALE:GREGORIAN",
        f"METHOD:{invite.method.value}",
        "BEGIN:VEVENT",
        f"SUMMARY:{_ics_text(invite.summary)}",
        f"DTSTART:{_ics_utc(invite.starts_at)}",
        f"DTEND:{_ics_utc(invite.ends_at)}",
        f"DTSTAMP:{_ics_utc(now)}",
        f"UID:{_ics_text(invite.uid)}",
        f"SEQUENCE:{int(invite.sequence)}",
        f"ATTENDEE;CN={_ics_cn(invite.attendee_name)};PARTSTAT={partstat}"
        f";ROLE=REQ-PARTICIPANT;RSVP=FALSE:mailto:{invite.attendee_email}",
    ]
    if invite.description:
        lines.append(f"DESCRIPTION:{_ics_text(invite.description)}")
    lines += [
        f"LOCATION:{_ics_text(invite.location)}",
        f"ORGANIZER;CN={_ics_cn(invite.organizer_name)}:mailto:{invite.organizer_email}",
        f"STATUS:{status}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_ics_fold(line) + "\r\n" for line in lines).encode("utf-8")


def _ics_text(value: str) -> str:
    """TEXT escapes (RFC 5545 3.3.11) in icalendar's order."""
    return (
        value.replace("\\N", "\n")
        .replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\n")
    )


def _ics_cn(value: str) -> str:
    return f'"{value}"' if _QUOTED_CN.search(value) else value


def _ics_utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _ics_fold(line: str) -> str:
    """Lines of at most 75 octets (a continuation starts with a space), never split inside
    a character or right after an escaping backslash, as icalendar folds them."""
    encoded = line.encode("utf-8")
    if len(encoded) < FOLD_OCTETS:
        return line
    if len(encoded) == len(line):  # one octet per character
        return _ics_fold_ascii(line)
    folded: list[str] = []
    current: list[str] = []
    count = 0
    for char in line:
        size = len(char.encode("utf-8"))
        if current and count + size >= FOLD_OCTETS:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                folded.append("".join(current))
                current = [carried]
                count = len(carried.encode("utf-8"))
            else:
                folded.append("".join(current))
                current = []
                count = 0
        current.append(char)
        count += size
    if current:
        folded.append("".join(current))
    return "\r\n ".join(folded)


def _ics_fold_ascii(line: str) -> str:
    """`_ics_fold` for a line of one-octet characters: pieces of 74, the escaping
    character that would end one moved to the next."""
    folded: list[str] = []
    start = 0
    while len(line) - start > FOLD_OCTETS - 1:
        end = start + FOLD_OCTETS - 1
        if end - start > 1 and line[end - 1] in "\\^":
            end -= 1
        folded.append(line[start:end])
        start = end
    folded.append(line[start:])
    return "\r\n ".join(folded)


def icalendar_ics(invite: CalendarInvite, *, now: datetime) -> bytes:
    """The invitation written by icalendar (for what `_direct_ics` leaves to it)."""
    cancel = invite.method is CalendarMethod.CANCEL
    calendar = Calendar()
    calendar.add("prodid", PRODUCT_ID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", invite.method.value)

    event = Event()
    event.add("uid", invite.uid)
    event.add("sequence", invite.sequence)
    event.add("dtstamp", now.astimezone(UTC))
    # UTC times need no VTIMEZONE block; calendars show them in the reader's own zone
    event.add("dtstart", invite.starts_at.astimezone(UTC))
    event.add("dtend", invite.ends_at.astimezone(UTC))
    event.add("summary", invite.summary)
    event.add("location", invite.location)
    if invite.description:
        event.add("description", invite.description)
    if cancel:
        status = "CANCELLED"
    else:
        status = "TENTATIVE" if invite.tentative else "CONFIRMED"
    event.add("status", status)

    organizer = vCalAddress(f"mailto:{invite.organizer_email}")
    organizer.params["cn"] = vText(invite.organizer_name)
    event.add("organizer", organizer)
    attendee = vCalAddress(f"mailto:{invite.attendee_email}")
    attendee.params["cn"] = vText(invite.attendee_name)
    attendee.params["role"] = vText("REQ-PARTICIPANT")
    attendee.params["partstat"] = vText("TENTATIVE" if invite.tentative else "ACCEPTED")
    attendee.params["rsvp"] = vText("FALSE")
    event.add("attendee", attendee)

    calendar.add_component(event)
    return calendar.to_ical()
