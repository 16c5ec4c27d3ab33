"""The demo's staff mails: every model municipality's integration office hears that its
self-check was scored, in the municipality's language, with the link to its field report.

`set_contact_offices` gives each onboarded municipality a contact office address (an
office, not a person: `integrationsbuero-<AGS>@example.org`) and a language, in turn German,
English, Turkish, Arabic and Ukrainian, before its self-check is submitted; registration
keeps the address and hands it only to notification. `staff_mail_problems` then reads the
mail folder: each office got exactly one "self-check scored" mail, in its language (Arabic
right to left), whose report link points at its own field report.
"""

from __future__ import annotations

import asyncio
import email
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import httpx

OFFICE_LANGUAGES = ("de", "en", "tr", "ar", "uk")
# The subject each language's templates give the mail (services/notification templates)
SCORED_SUBJECTS = {
    "de": "Selbstcheck ausgewertet",
    "en": "Self-check scored",
    "tr": "Öz değerlendirme puanlandı",
    "ar": "تم تقييم التقييم الذاتي",
    "uk": "Самооцінку оцінено",
}


@dataclass(frozen=True)
class Office:
    ags: str
    email: str
    language: str


def office_for(ags: str, index: int) -> Office:
    return Office(
        ags=ags,
        email=f"integrationsbuero-{ags}@example.org",
        language=OFFICE_LANGUAGES[index % len(OFFICE_LANGUAGES)],
    )


async def set_contact_offices(
    client: httpx.AsyncClient, *, admin_key: str, municipalities: Iterable[str]
) -> tuple[dict[str, Office], list[str]]:
    """Give each municipality (by AGS, on registration's client) its office address and
    language; answers the offices set and the problems met."""
    offices: dict[str, Office] = {}
    problems: list[str] = []
    for index, ags in enumerate(municipalities):
        office = office_for(ags, index)
        response = await client.patch(
            f"/v1/municipalities/{ags}",
            json={
                "contact_office": "Integrationsbüro",
                "contact_office_email": office.email,
                "language": office.language,
            },
            headers={"Authorization": f"Bearer {admin_key}"},
        )
        if response.status_code == 200:
            offices[ags] = office
        else:
            problems.append(f"{ags}: contact office not set ({response.status_code})")
    return offices, problems


def _mails_to(
    mail_dir: Path, addresses: set[str], *, since: float = 0.0
) -> dict[str, list[EmailMessage]]:
    found: dict[str, list[EmailMessage]] = {}
    for path in sorted(mail_dir.glob("*.eml")):
        if path.stat().st_mtime < since:
            continue  # an earlier run's mail on the same stack
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        if not isinstance(message, EmailMessage) or message["To"] is None:
            continue
        for recipient in message["To"].addresses:
            if recipient.addr_spec in addresses:
                found.setdefault(recipient.addr_spec, []).append(message)
    return found


def staff_mail_problems(
    mail_dir: Path, offices: Mapping[str, Office], *, since: float = 0.0
) -> list[str]:
    """What is wrong with the offices' mails written since `since` (a Unix time; empty:
    each got exactly its one)."""
    received = _mails_to(mail_dir, {office.email for office in offices.values()}, since=since)
    problems = []
    for ags, office in offices.items():
        mails = received.get(office.email, [])
        if len(mails) != 1:
            problems.append(f"{ags}: {len(mails)} staff mails, expected 1")
            continue
        [mail] = mails
        subject = str(mail["Subject"])
        if not subject.startswith(SCORED_SUBJECTS[office.language] + ":"):
            problems.append(f"{ags}: subject {subject!r} is not the {office.language} one")
        html_part = mail.get_body(("html",))
        html = html_part.get_content() if html_part is not None else ""
        direction = "rtl" if office.language == "ar" else "ltr"
        if f'<html lang="{office.language}" dir="{direction}">' not in html:
            problems.append(f"{ags}: the mail is not marked {office.language}/{direction}")
        if not re.search(rf'href="[^"]*/v1/municipalities/{ags}/report[^"]*"', html):
            problems.append(f"{ags}: no link to its field report")
    return problems


async def wait_for_staff_mails(
    mail_dir: Path, offices: Mapping[str, Office], *, timeout_s: float = 60.0, since: float = 0.0
) -> list[str]:
    """Poll the mail folder until every office has its mail (or the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        problems = staff_mail_problems(mail_dir, offices, since=since)
        if not problems or time.monotonic() > deadline:
            return problems
        await asyncio.sleep(1.0)
