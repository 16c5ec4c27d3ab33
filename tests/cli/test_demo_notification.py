"""The demo's check of the staff mails, judged on mails rendered by notification's own
templates and written as the SMTP sink writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from wok_cli.demo_notification import office_for, staff_mail_problems
from wok_notification import domain
from wok_notification.rendering import MailRenderer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def write_staff_mail(folder: Path, *, ags: str, email: str, language: str, name: str) -> None:
    office = domain.OfficeContact(ags, f"Modellstadt {ags}", "Integrationsbüro", email, language)
    mail = domain.compose_staff_mail(
        office=office,
        language=language,
        delivery_id=f"self_check_scored:office:{ags}:{name}",
        mail_from="Weltoffene Kommune <noreply@example.org>",
        assessment_url="http://127.0.0.1:8002",
        overall=50.0,
        overall_level="developing",
        strengths=[2],
        deficits=[5],
    )
    message = MailRenderer().render_staff(mail, now=NOW)
    (folder / f"{name}.eml").write_bytes(message.as_bytes())


def test_each_office_with_its_one_mail_in_its_language_passes(tmp_path: Path) -> None:
    offices = {
        ags: office_for(ags, index)
        for index, ags in enumerate(["07312000", "05315000", "09162000", "03241001"])
    }
    assert [o.language for o in offices.values()] == ["de", "en", "tr", "ar"]
    for ags, office in offices.items():
        write_staff_mail(tmp_path, ags=ags, email=office.email, language=office.language, name=ags)
    assert staff_mail_problems(tmp_path, offices) == []


def test_a_missing_a_doubled_or_a_wrong_language_mail_is_named(tmp_path: Path) -> None:
    offices = {
        ags: office_for(ags, index)
        for index, ags in enumerate(["07312000", "05315000", "09162000"])
    }
    german, english, _no_mail = offices.values()
    write_staff_mail(tmp_path, ags=german.ags, email=german.email, language="de", name="a")
    write_staff_mail(tmp_path, ags=german.ags, email=german.email, language="de", name="b")
    write_staff_mail(tmp_path, ags=english.ags, email=english.email, language="de", name="c")
    problems = staff_mail_problems(tmp_path, offices)
    assert problems == [
        "07312000: 2 staff mails, expected 1",
        "05315000: subject 'Selbstcheck ausgewertet: Modellstadt 05315000' is not the en one",
        "05315000: the mail is not marked en/ltr",
        "09162000: 0 staff mails, expected 1",
    ]
