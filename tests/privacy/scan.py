"""Looking for personal data everywhere a stack keeps something: topics, logs, databases.

    scan = await scan_stack(stack, Needles.of(names=[...], emails=[...]),
                            skip_databases=PERSONAL_DATA_OWNERS)
    assert not scan.findings, scan.report()

or, as a plain list: `await find_personal_data(stack, needles)`.

- Topics: every record of every topic on the broker (key, value and each header), from the
  beginning, without a consumer group.
- Logs: every line of every file in the stack's log folder.
- Databases: every document of every collection of every database (its `_id` included;
  binary values decompressed when they are zlib or gzip), except the databases named in
  `skip_databases`.

A needle is found case-insensitively in the raw text and in the text after JSON decoding
(so `M\\u00fcller` in a JSON log line or a JSON document kept as a string still counts as
`Müller`). With `any_email=True` (the default) every e-mail address is a finding too, needle
or not, unless it is in `allowed_emails` (the platform's own sender, for instance).
The mail folder is not scanned: it is the recipients' mailbox.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer
from pymongo import MongoClient

from tests.e2e.helpers import read_topic
from wok_cli.devstack import EmbeddedStack, StackEndpoints

# Registration and notification hold names and addresses by design (DESIGN.md, Privacy).
PERSONAL_DATA_OWNERS = ("wok_registration", "wok_notification")
SYSTEM_DATABASES = ("admin", "config", "local")
PLATFORM_SENDER = "noreply@weltoffene-kommune.example"
# A local part starts where no local-part character precedes it: linear, even on long tokens.
EMAIL = re.compile(r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
EXCERPT_CHARS = 60
PREFIX_CHARS = 4


@dataclass(frozen=True)
class Needles:
    """What must not be found: names and e-mail addresses (and any other exact strings)."""

    strings: frozenset[str]

    @classmethod
    def of(
        cls, *, names: Iterable[str] = (), emails: Iterable[str] = (), other: Iterable[str] = ()
    ) -> Self:
        found = {s.strip() for group in (names, emails, other) for s in group if s and s.strip()}
        return cls(frozenset(found))

    def __len__(self) -> int:
        return len(self.strings)


@dataclass(frozen=True)
class Finding:
    where: str
    """e.g. `topic registration.events.v1 partition 2 offset 17 value`,
    `log registration.log line 12`, `mongodb wok_reporting.snapshots _id='program'`."""
    found: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.found!r} in …{self.excerpt}…"


@dataclass
class ScanCounts:
    topics: int = 0
    messages: int = 0
    log_files: int = 0
    log_lines: int = 0
    databases: int = 0
    collections: int = 0
    documents: int = 0

    def __str__(self) -> str:
        return (
            f"{self.messages} messages on {self.topics} topics, {self.log_lines} log lines in "
            f"{self.log_files} files, {self.documents} documents in {self.collections} "
            f"collections of {self.databases} databases"
        )


@dataclass
class Scan:
    needles: int
    counts: ScanCounts = field(default_factory=ScanCounts)
    findings: list[Finding] = field(default_factory=list)
    skipped_databases: tuple[str, ...] = ()

    def report(self, *, limit: int = 40) -> str:
        lines = [f"scanned {self.counts} for {self.needles} needles: {len(self.findings)} findings"]
        lines.extend(str(finding) for finding in self.findings[:limit])
        if len(self.findings) > limit:
            lines.append(f"… and {len(self.findings) - limit} more")
        return "\n".join(lines)


class _Matcher:
    """Finds needles in one pass: a pattern of their distinct first characters marks where
    one may start, and only there are the needles compared (hundreds of needles, thousands of
    records); the e-mail pattern runs only where there is an `@`."""

    def __init__(self, needles: Needles, *, any_email: bool, allowed_emails: Iterable[str]) -> None:
        self._by_prefix: dict[str, list[str]] = {}
        for needle in {needle.lower() for needle in needles.strings}:
            self._by_prefix.setdefault(needle[:PREFIX_CHARS], []).append(needle)
        prefixes = sorted(self._by_prefix, key=len, reverse=True)
        self._starts = (
            re.compile("(?=(" + "|".join(re.escape(prefix) for prefix in prefixes) + "))")
            if prefixes
            else None
        )
        self._any_email = any_email
        self._allowed = {address.lower() for address in allowed_emails}

    def findings(self, where: str, raw: str | bytes | None) -> Iterator[Finding]:
        if raw is None:
            return
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        seen: set[str] = set()
        for found, excerpt in self._matches("\n".join((text, *_decoded(text)))):
            if found.lower() not in seen:
                seen.add(found.lower())
                yield Finding(where=where, found=found, excerpt=excerpt)

    def _matches(self, haystack: str) -> Iterator[tuple[str, str]]:
        lowered = haystack.lower()
        if self._starts is not None:
            for start in self._starts.finditer(lowered):
                at = start.start()
                for needle in self._by_prefix[start.group(1)]:
                    if lowered.startswith(needle, at):
                        end = at + len(needle)
                        yield haystack[at:end], _excerpt(haystack, at, end)
        if self._any_email and "@" in haystack:
            for match in EMAIL.finditer(haystack):
                if match.group(0).lower() not in self._allowed:
                    yield match.group(0), _excerpt(haystack, match.start(), match.end())


@dataclass
class Person:
    """Someone the platform wrote to or registered, as their own mailbox or registration knows
    them."""

    email: str
    names: set[str] = field(default_factory=set)
    registrations: dict[str, set[str]] = field(default_factory=dict)
    """Mail kinds (confirmation, erasure, ...) by registration id, from the Message-IDs."""

    @property
    def needles(self) -> Needles:
        return Needles.of(names=self.names, emails=[self.email])


# Mails to a municipality's contact office: its address is institutional, not personal data.
STAFF_MAIL_KINDS = frozenset({"self_check_scored"})


def people_in_mail(mail_dir: Path) -> dict[str, Person]:
    """Everyone the stack's SMTP sink holds a mail for, by address (lower case): the name and
    address of the To header, and the registration and kind each Message-ID names
    (`<kind>.<registration id>@...`, notification's delivery id)."""
    parser = BytesHeaderParser(policy=default_policy)
    people: dict[str, Person] = {}
    for path in sorted(mail_dir.glob("*.eml")):
        headers = parser.parsebytes(path.read_bytes())
        delivery = str(headers.get("Message-ID", "")).strip().strip("<>").rpartition("@")[0]
        kind, _, rest = delivery.partition(".")
        if kind in STAFF_MAIL_KINDS:
            continue  # to a municipality's office (an institution's address), not a person
        registration_id = rest.split(".")[0]
        for name, address in getaddresses([str(headers.get("To", ""))]):
            if "@" not in address:
                continue
            person = people.setdefault(address.lower(), Person(email=address.lower()))
            if name:
                person.names.add(name)
            if registration_id:
                person.registrations.setdefault(registration_id, set()).add(kind)
    return people


def people_registered(mongodb_uri: str) -> dict[str, Person]:
    """Participants and taskforce members as registration stores them (name, e-mail)."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    people: dict[str, Person] = {}
    try:
        database = client["wok_registration"]
        for collection in ("participants", "taskforce_members"):
            for document in database[collection].find({}):
                address = str(document.get("email") or "").lower()
                if not address:
                    continue
                person = people.setdefault(address, Person(email=address))
                person.names.add(str(document.get("name") or ""))
                if collection == "participants":
                    person.registrations.setdefault(str(document["_id"]), set())
    finally:
        client.close()
    return people


def _excerpt(text: str, start: int, end: int) -> str:
    return text[max(0, start - EXCERPT_CHARS) : end + EXCERPT_CHARS].replace("\n", " ")


def _decoded(text: str) -> list[str]:
    """The strings inside `text` read as JSON (keys and values; JSON kept inside strings is
    read too), joined, when it is JSON at all."""
    stripped = text.strip()
    if not stripped or stripped[0] not in '[{"':
        return []
    try:
        value = json.loads(stripped)
    except ValueError:
        return []
    return ["\n".join(_strings(value))]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        yield from _decoded(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _readable(value: Any) -> Any:
    """A document with its binary values as text: decompressed where they are zlib or gzip
    (reporting keeps its facts as compressed JSON), else decoded as far as they are UTF-8."""
    if isinstance(value, bytes):
        try:
            value = zlib.decompress(value, wbits=47)  # 47: a zlib or a gzip header
        except zlib.error:
            pass
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {key: _readable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_readable(item) for item in value]
    return value


def _endpoints(stack: EmbeddedStack | StackEndpoints) -> tuple[str, str, Path]:
    if isinstance(stack, EmbeddedStack):
        return stack.kafka_bootstrap, stack.mongodb_uri, stack.logs_dir
    return stack.kafka_bootstrap, stack.mongodb_uri, Path(stack.logs_dir)


async def _topics(bootstrap: str) -> list[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        return sorted(name for name in await consumer.topics() if not name.startswith("__"))
    finally:
        await consumer.stop()


async def _scan_topics(bootstrap: str, matcher: _Matcher, scan: Scan) -> None:
    for topic in await _topics(bootstrap):
        scan.counts.topics += 1
        for record in await read_topic(bootstrap, topic):
            scan.counts.messages += 1
            where = f"topic {topic} partition {record.partition} offset {record.offset}"
            scan.findings.extend(matcher.findings(f"{where} key", record.key))
            scan.findings.extend(matcher.findings(f"{where} value", record.value))
            for name, value in record.headers or ():
                scan.findings.extend(matcher.findings(f"{where} header {name}", name))
                scan.findings.extend(matcher.findings(f"{where} header {name}", value))


def _scan_logs(logs_dir: Path, matcher: _Matcher, scan: Scan) -> None:
    for path in sorted(logs_dir.glob("*.log")):
        scan.counts.log_files += 1
        with path.open("rb") as log:
            for number, line in enumerate(log, start=1):
                scan.counts.log_lines += 1
                scan.findings.extend(matcher.findings(f"log {path.name} line {number}", line))


def _scan_databases(uri: str, matcher: _Matcher, scan: Scan) -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        for database in sorted(client.list_database_names()):
            if database in SYSTEM_DATABASES or database in scan.skipped_databases:
                continue
            scan.counts.databases += 1
            for collection in sorted(client[database].list_collection_names()):
                scan.counts.collections += 1
                for document in client[database][collection].find({}):
                    scan.counts.documents += 1
                    where = f"mongodb {database}.{collection} _id={document.get('_id')!r}"
                    text = json.dumps(_readable(document), default=str, ensure_ascii=False)
                    scan.findings.extend(matcher.findings(where, text))
    finally:
        client.close()


async def scan_stack(
    stack: EmbeddedStack | StackEndpoints,
    needles: Needles,
    *,
    skip_databases: Iterable[str] = (),
    any_email: bool = True,
    allowed_emails: Iterable[str] = (PLATFORM_SENDER,),
) -> Scan:
    """Every topic, log line and database document of `stack` (see the module docstring)."""
    bootstrap, mongodb_uri, logs_dir = _endpoints(stack)
    matcher = _Matcher(needles, any_email=any_email, allowed_emails=allowed_emails)
    scan = Scan(needles=len(needles), skipped_databases=tuple(skip_databases))
    await _scan_topics(bootstrap, matcher, scan)
    await asyncio.to_thread(_scan_logs, logs_dir, matcher, scan)
    await asyncio.to_thread(_scan_databases, mongodb_uri, matcher, scan)
    return scan


def findings_in(
    where: str,
    raw: str | bytes,
    needles: Needles,
    *,
    any_email: bool = True,
    allowed_emails: Iterable[str] = (PLATFORM_SENDER,),
) -> list[Finding]:
    """The needles (and e-mail addresses) in one text, as the stack scan finds them; for text
    the scan does not cover (a page, an export, a mail)."""
    matcher = _Matcher(needles, any_email=any_email, allowed_emails=allowed_emails)
    return list(matcher.findings(where, raw))


async def find_personal_data(
    stack: EmbeddedStack | StackEndpoints,
    needles: Needles,
    *,
    skip_databases: Iterable[str] = (),
) -> list[Finding]:
    """The findings of `scan_stack` alone: empty when none of `needles` (and no e-mail
    address other than the platform's sender) is anywhere on the stack."""
    return (await scan_stack(stack, needles, skip_databases=skip_databases)).findings
