"""Every kind of mail, in each of the five languages, on the embedded stack, faking nothing.

One municipality (and four more for the staff mail, one per office language) plays it all
over HTTP: people register for five events, cancel and get promoted, are reminded, receive
the online link, erase their data; events are rescheduled and cancelled; taskforce members
who have not registered are reminded before the deadline; each office hears that its
self-check was scored. The mails are read from the SMTP sink with the standard library's
parser, the calendar attachments with icalendar. The one-message-per-hour limit is seen
holding a second message for its digest in the delivery log.

The stack runs notification with its defaults: reminders and the online link 24 h before the
start, taskforce reminders 48 h before the deadline, the scheduler every 5 s. So the events
that must fire during the test start (or close) just over that far ahead.
"""

from __future__ import annotations

import asyncio
import email
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from html import unescape as html_unescape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
from babel.dates import format_time, get_day_names

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually
from wok_cli.devstack import EmbeddedStack

BERLIN = ZoneInfo("Europe/Berlin")
LANGUAGES = ("de", "en", "tr", "ar", "uk")
SUBJECTS = {
    "confirmed": (
        "Anmeldebestätigung",
        "Registration confirmed",
        "Kayıt onayı",
        "تأكيد التسجيل",
        "Реєстрацію підтверджено",
    ),
    "waitlisted": (
        "Warteliste",
        "Waiting list",
        "Bekleme listesi",
        "قائمة الانتظار",
        "Список очікування",
    ),
    "promotion": (
        "Sie sind dabei",
        "You have a place",
        "Yeriniz kesinleşti",
        "لقد حصلت على مكان",
        "Для вас є місце",
    ),
    "rescheduled": ("Neuer Termin", "New date", "Yeni tarih", "موعد جديد", "Нова дата"),
    "cancelled": ("Abgesagt", "Cancelled", "İptal edildi", "تم الإلغاء", "Скасовано"),
    "erasure": (
        "Ihre Daten wurden gelöscht",
        "Your data has been deleted",
        "Verileriniz silindi",
        "تم حذف بياناتك",
        "Ваші дані видалено",
    ),
    "access": (
        "Zugangsdaten",
        "How to join",
        "Katılım bilgileri",
        "بيانات الدخول",
        "Дані для участі",
    ),
    "reminder": ("Erinnerung", "Reminder", "Hatırlatma", "تذكير", "Нагадування"),
    "taskforce_reminder": (
        "Anmeldeschluss naht",
        "Registration closes soon",
        "Kayıt süresi doluyor",
        "اقتراب موعد انتهاء التسجيل",
        "Реєстрація скоро закінчується",
    ),
    "self_check_scored": (
        "Selbstcheck ausgewertet",
        "Self-check scored",
        "Öz değerlendirme puanlandı",
        "تم تقييم التقييم الذاتي",
        "Самооцінку оцінено",
    ),
}
ONLINE_LINK = "https://meet.example.org/weltoffen-e2e"


def subject(kind: str, language: str, title: str) -> str:
    return f"{SUBJECTS[kind][LANGUAGES.index(language)]}: {title}"


def parts(mail: EmailMessage) -> tuple[str, str]:
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and html is not None, mail["Subject"]
    return text.get_content(), html.get_content()


def calendar(mail: EmailMessage) -> tuple[str, Any]:
    [part] = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
    parsed = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    [entry] = parsed.walk("VEVENT")
    return str(parsed["METHOD"]), entry


def assert_speaks(mail: EmailMessage, language: str, *, starts: datetime) -> None:
    """HTML and text in the language, Arabic right to left, the day with its weekday and the
    time in Europe/Berlin."""
    text, html = parts(mail)
    direction = "rtl" if language == "ar" else "ltr"
    assert f'<html lang="{language}" dir="{direction}">' in html, mail["Subject"]
    assert mail["Content-Language"] == language
    local = starts.astimezone(BERLIN)
    weekday = get_day_names("wide", locale=language)[local.weekday()]
    clock = f"{local:%H:%M}" if language == "de" else format_time(local, "short", locale=language)
    assert weekday in text and clock in text, (mail["Subject"], weekday, clock)
    assert weekday in html


def link(mail: EmailMessage, action: str) -> str:
    text, _ = parts(mail)
    [found] = re.findall(rf"https?://\S+/{action}\?\S+", text)
    return found


class MailFolder:
    """The sink's folder, each mail parsed once (the standard library's parser) and kept by
    recipient: polling it stays cheap while the stack works."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[Path] = set()
        self.by_address: dict[str, list[EmailMessage]] = {}

    def to(self, mail_address: str) -> list[EmailMessage]:
        for path in sorted(self.folder.glob("*.eml")):
            if path in self.seen:
                continue
            self.seen.add(path)
            message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
            assert isinstance(message, EmailMessage)
            for recipient in message["To"].addresses:
                self.by_address.setdefault(recipient.addr_spec, []).append(message)
        return list(self.by_address.get(mail_address, []))


def address(role: str, language: str, run: str) -> str:
    return f"{role}-{language}-{run}@example.org"


class Municipality:
    def __init__(self, stack: EmbeddedStack, client: httpx.AsyncClient, ags: str) -> None:
        self.stack, self.client, self.ags = stack, client, ags
        self.key: dict[str, str] = {}

    async def onboard(self, *, name: str, office_language: str, office_email: str) -> None:
        response = await self.client.post(
            "/v1/municipalities",
            json={
                "ags": self.ags,
                "name": name,
                "kind": "city",
                "contact_office": "Integrationsbüro",
                "contact_office_email": office_email,
                "language": office_language,
            },
            headers={"Authorization": f"Bearer {self.stack.admin_key}"},
        )
        assert response.status_code == 201, response.text
        self.key = {"Authorization": f"Bearer {response.json()['api_key']}"}

    async def schedule(self, title: str, *, starts: datetime, **fields: Any) -> str:
        body = {
            "title": title,
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "format": "in_person",
            "place": "Rathaus, Ratssaal",
            "capacity": 20,
            "registration_deadline": (starts - timedelta(days=3)).isoformat(),
            "languages": list(LANGUAGES),
        } | fields
        response = await self.client.post(
            f"/v1/municipalities/{self.ags}/dialogue-events", json=body, headers=self.key
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def register(self, event_id: str, email: str, language: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/v1/dialogue-events/{event_id}/registrations",
            json={
                "name": f"Person {language}",
                "email": email,
                "sector": "resident",
                "language": language,
                "consent": True,
            },
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def act(self, path: str, body: dict[str, Any]) -> None:
        response = await self.client.post(
            f"/v1/municipalities/{self.ags}/dialogue-events/{path}", json=body, headers=self.key
        )
        assert response.status_code == 200, response.text


async def self_check_scored(stack: EmbeddedStack, municipality: Municipality) -> None:
    """The office's self-check: half the fields answered, submitted."""
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as client:
        started = await eventually(
            lambda: client.post(
                f"/v1/municipalities/{municipality.ags}/self-checks", headers=municipality.key
            ),
            lambda r: r.status_code != 401,
            what="assessment learning the key",
        )
        assert started.status_code == 201, started.text
        draft = started.json()["id"]
        catalogue = (await client.get("/v1/catalogue")).json()
        answers = {
            q["id"]: "fully" for field in catalogue["fields"][:4] for q in field["questions"]
        }
        patched = await client.patch(
            f"/v1/self-checks/{draft}/answers", json={"answers": answers}, headers=municipality.key
        )
        assert patched.status_code == 200, patched.text
        submitted = await client.post(f"/v1/self-checks/{draft}/submit", headers=municipality.key)
        assert submitted.status_code == 200, submitted.text


async def test_every_kind_of_mail_reaches_people_in_each_of_the_five_languages(
    stack: EmbeddedStack,
) -> None:
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).replace(microsecond=0)
    far = (now + timedelta(days=30)).replace(hour=17, minute=0, second=0)
    titles = {
        "online": f"Dialog online {run}",
        "soon": f"Dialog morgen {run}",
        "full": f"Dialog Warteliste {run}",
        "off": f"Dialog abgesagt {run}",
        "taskforce": f"Dialog Taskforce {run}",
    }
    service = {"Authorization": f"Bearer {stack.service_key}"}

    folder = MailFolder(stack.mail_dir)

    def inbox(mail_address: str) -> list[EmailMessage]:
        return folder.to(mail_address)

    async def mails(mail_address: str, count: int, what: str) -> list[EmailMessage]:
        async def probe() -> list[EmailMessage]:
            return inbox(mail_address)

        return await eventually(probe, lambda m: len(m) >= count, what=f"{what} to {mail_address}")

    def only(mail_address: str, kind: str, language: str, title: str) -> EmailMessage:
        wanted = subject(kind, language, title)
        found = [m for m in inbox(mail_address) if m["Subject"] == wanted]
        assert len(found) == 1, (wanted, [m["Subject"] for m in inbox(mail_address)])
        return found[0]

    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        home = Municipality(stack, client, unique_ags())
        offices = {
            language: Municipality(stack, client, unique_ags()) for language in LANGUAGES[1:]
        }
        offices["de"] = home
        for language, municipality in offices.items():
            await municipality.onboard(
                name=f"Modellstadt {language.upper()} {run}",
                office_language=language,
                office_email=address("office", language, run),
            )
        staff = asyncio.gather(*(self_check_scored(stack, m) for m in offices.values()))

        # Taskforce: one member per language, and one who registers (so is not reminded)
        for language in (*LANGUAGES, "registered"):
            added = await client.post(
                f"/v1/municipalities/{home.ags}/taskforce",
                json={
                    "name": f"Taskforce {language}",
                    "email": address("taskforce", language, run),
                    "role": "member",
                    "sector": "administration",
                    "language": language if language in LANGUAGES else "de",
                },
                headers=home.key,
            )
            assert added.status_code == 201, added.text

        # Events whose scheduled mails fall due during the test: the reminder a day before,
        # the taskforce reminder two days before the deadline; their people first, so the
        # reminders are planned before they fall due
        now = datetime.now(UTC).replace(microsecond=0)
        soon_starts = now + timedelta(hours=24, seconds=25)
        soon = await home.schedule(
            titles["soon"],
            starts=soon_starts,
            registration_deadline=(now + timedelta(hours=1)).isoformat(),
        )
        for language in LANGUAGES:
            await home.register(soon, address("soon", language, run), language)
        deadline = now + timedelta(hours=48, seconds=25)
        taskforce_event = await home.schedule(
            titles["taskforce"], starts=far, registration_deadline=deadline.isoformat()
        )
        await home.register(taskforce_event, address("taskforce", "registered", run), "de")
        online_starts = now + timedelta(hours=3)
        online = await home.schedule(
            titles["online"],
            starts=online_starts,
            format="online",
            place=None,
            online_link=ONLINE_LINK,
            registration_deadline=(now + timedelta(hours=2)).isoformat(),
        )
        full = await home.schedule(titles["full"], starts=far, capacity=5)
        off = await home.schedule(titles["off"], starts=far)

        waiting: dict[str, str] = {}
        for language in LANGUAGES:
            await home.register(online, address("online", language, run), language)
            await home.register(off, address("first", language, run), language)
            await home.register(full, address("first", language, run), language)
        for language in LANGUAGES:
            registered = await home.register(full, address("waiting", language, run), language)
            assert registered["status"] == "waitlisted"
            waiting[language] = registered["registration_id"]

        # Whoever had a place in the full event cancels by the link in their mail: the
        # first on the waiting list moves up
        for language in LANGUAGES:
            await mails(address("first", language, run), 2, "confirmations")
            confirmation = only(
                address("first", language, run), "confirmed", language, titles["full"]
            )
            cancelled = await client.post(
                link(confirmation, "cancel"), headers={"Accept": "application/json"}
            )
            assert cancelled.status_code == 200, cancelled.text
        for language in LANGUAGES:
            await mails(address("waiting", language, run), 2, "promotion")

        full_moved_to = far + timedelta(days=7, hours=1)
        await home.act(
            f"{full}/reschedule",
            {
                "starts_at": full_moved_to.isoformat(),
                "ends_at": (full_moved_to + timedelta(hours=2)).isoformat(),
                "place": "Stadtbibliothek",
            },
        )
        await home.act(f"{off}/cancel", {"reason": "Sturmwarnung"})
        for language in LANGUAGES:
            await mails(address("waiting", language, run), 3, "new date")
        # Within the hour a second message to the same person is held for the digest
        await home.act(f"{full}/cancel", {"reason": "Raum fehlt"})

        # The online link is released 24 h before the start, which is now: out it goes;
        # then each person erases their data through the link in that mail
        for language in LANGUAGES:
            online_inbox = await mails(address("online", language, run), 2, "online link")
            access = next(
                m
                for m in online_inbox
                if m["Subject"] == subject("access", language, titles["online"])
            )
            erased = await client.post(
                link(access, "erasure"), headers={"Accept": "application/json"}
            )
            assert erased.status_code == 200, erased.text

        for language in LANGUAGES:
            await mails(address("online", language, run), 3, "erasure confirmation")
            await mails(address("first", language, run), 3, "cancellation")
            await mails(address("soon", language, run), 2, "reminder")
            await mails(address("taskforce", language, run), 1, "taskforce reminder")
            await mails(address("office", language, run), 1, "self-check scored")
        await staff

    for language in LANGUAGES:
        # confirmed, on the waiting list, moved up
        confirmed = only(address("first", language, run), "confirmed", language, titles["off"])
        assert_speaks(confirmed, language, starts=far)
        waitlisted = only(address("waiting", language, run), "waitlisted", language, titles["full"])
        assert_speaks(waitlisted, language, starts=far)
        method, entry = calendar(waitlisted)
        assert (method, str(entry["STATUS"])) == ("REQUEST", "TENTATIVE")
        promoted = only(address("waiting", language, run), "promotion", language, titles["full"])
        assert_speaks(promoted, language, starts=far)
        _, promoted_entry = calendar(promoted)
        assert str(promoted_entry["STATUS"]) == "CONFIRMED"

        # a new date: the same calendar entry, a higher SEQUENCE, the new time
        moved = only(address("waiting", language, run), "rescheduled", language, titles["full"])
        assert_speaks(moved, language, starts=full_moved_to)
        method, moved_entry = calendar(moved)
        assert method == "REQUEST"
        assert str(moved_entry["UID"]) == str(promoted_entry["UID"]) == f"{full}@weltoffene-kommune"
        assert int(moved_entry["SEQUENCE"]) > int(promoted_entry["SEQUENCE"])
        assert moved_entry.decoded("DTSTART") == full_moved_to
        assert "Stadtbibliothek" in parts(moved)[0]
        assert address("first", language, run) not in str(
            [m["To"] for m in inbox(address("waiting", language, run))]
        )
        assert sorted(m["Subject"] for m in inbox(address("first", language, run))) == sorted(
            [
                subject("confirmed", language, titles["full"]),
                subject("confirmed", language, titles["off"]),
                subject("cancelled", language, titles["off"]),
            ]
        ), "who cancelled their place hears nothing more of that event"

        # the event is off: the entry is removed
        off_mail = only(address("first", language, run), "cancelled", language, titles["off"])
        assert_speaks(off_mail, language, starts=far)
        method, off_entry = calendar(off_mail)
        _, first_entry = calendar(confirmed)
        assert (method, str(off_entry["STATUS"])) == ("CANCEL", "CANCELLED")
        assert str(off_entry["UID"]) == str(first_entry["UID"]) == f"{off}@weltoffene-kommune"
        assert int(off_entry["SEQUENCE"]) > int(first_entry["SEQUENCE"])
        assert "Sturmwarnung" in parts(off_mail)[0]

        # the online link, then the erasure confirmation
        access = only(address("online", language, run), "access", language, titles["online"])
        assert_speaks(access, language, starts=online_starts)
        text, html = parts(access)
        assert ONLINE_LINK in text and f'href="{ONLINE_LINK}"' in html
        erasure = only(address("online", language, run), "erasure", language, titles["online"])
        assert_speaks(erasure, language, starts=online_starts)
        assert list(erasure.iter_attachments()) == []

        # the reminder a day before
        reminder = only(address("soon", language, run), "reminder", language, titles["soon"])
        assert_speaks(reminder, language, starts=soon_starts)

        # the taskforce member who has not registered, before the deadline
        nudge = only(
            address("taskforce", language, run), "taskforce_reminder", language, titles["taskforce"]
        )
        assert_speaks(nudge, language, starts=far)
        text, html = parts(nudge)
        local_deadline = deadline.astimezone(BERLIN)
        assert get_day_names("wide", locale=language)[local_deadline.weekday()] in text
        assert f"/v1/dialogue-events/{taskforce_event}" in html

        # the office: its self-check is scored, with the link to the field report
        office = offices[language]
        [scored] = inbox(address("office", language, run))
        name = f"Modellstadt {language.upper()} {run}"
        assert scored["Subject"] == subject("self_check_scored", language, name)
        text, html = parts(scored)
        direction = "rtl" if language == "ar" else "ltr"
        assert f'<html lang="{language}" dir="{direction}">' in html
        [report] = re.findall(r'href="(http[^"]+/report[^"]*)"', html)
        assert (
            report.startswith(stack.url("assessment"))
            and f"/municipalities/{office.ags}/" in report
        )
        # the link opens the report as it is, in a browser without the municipality's key
        async with httpx.AsyncClient(timeout=10) as reader:
            opened = await reader.get(html_unescape(report))
            bare = await reader.get(html_unescape(report).split("?")[0])
        assert opened.status_code == 200 and "<svg" in opened.text
        assert bare.status_code == 401

    # Nobody got anything twice; the member who registered was not reminded
    registered_member = inbox(address("taskforce", "registered", run))
    assert [m["Subject"] for m in registered_member] == [
        subject("confirmed", "de", titles["taskforce"])
    ]

    # The full event's cancellation came within the hour of its new date: held for the
    # digest at the hour's end, shown so in the delivery log, not sent
    async with httpx.AsyncClient(base_url=stack.url("notification"), timeout=10) as client:

        async def held() -> list[dict[str, Any]]:
            response = await client.get(
                "/v1/deliveries",
                params={"status": "held", "kind": "cancelled", "limit": 1000},
                headers=service,
            )
            return [e for e in response.json() if e["registration_id"] in waiting.values()]

        entries = await eventually(held, lambda e: len(e) == 5, what="cancellations held")
    assert all(e["digest_id"] and e["sent_at"] is None for e in entries)
    assert len({e["digest_id"] for e in entries}) == 5, "one digest per person"
    for language in LANGUAGES:
        assert len(inbox(address("waiting", language, run))) == 3
