"""`wok demo`, the main job, as a user runs it: on its own stack, and on a running one."""

from __future__ import annotations

import email
import json
import os
import subprocess
import sys
from collections import Counter
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from wok_cli.demo import plan_registrations, preferred_language
from wok_cli.devstack import STATE_FILE, EmbeddedStack
from wok_cli.settings import SERVICE_NAMES, StackSettings

CHECKS = (
    "self-check scores",
    "AssessmentScored published",
    "benchmark ranks",
    "workshops and measures",
    "confirmation mails per language",
    "Arabic mails right to left",
    "mails addressed to their registration",
    "cancellations and promotions",
    "rescheduling",
    "erasure",
    "promotion mails",
    "rescheduled mails",
    "municipal: profile",
    "municipal: taskforce",
    "municipal: schedule by command",
    "municipal: change by command",
    "municipal: cancel by command",
    "reporting: field scores",
    "reporting: ranks and quartiles",
    "reporting: self-check funnel",
    "reporting: measures",
    "reporting: activity digests",
    "peer suggestions",
    "peer activity feeds",
    "measures that helped",
    "peer suggestions as events",
    "staff mails",
)


def run_wok(*arguments: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wok_cli", *arguments],
        env={**os.environ, "COLUMNS": "200", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def check_lines(stdout: str) -> dict[str, str]:
    """The outcome printed for each check (the row of the checks table that names it)."""
    outcomes = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.strip("│┃ ").split("│")]
        if len(cells) >= 2 and cells[0] in CHECKS:
            outcomes[cells[0]] = cells[1]
    return outcomes


def test_demo_starts_its_own_stack_plays_and_agrees(tmp_path: Path) -> None:
    settings = StackSettings.with_free_ports(data_dir=tmp_path / "wok")
    env = {
        "WOK_DATA_DIR": str(settings.data_dir),
        "WOK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WOK_MONGODB_URI": settings.mongodb_uri,
        "WOK_SMTP_PORT": str(settings.smtp_port),
        **{f"WOK_{name.upper()}_PORT": str(settings.port_of(name)) for name in SERVICE_NAMES},
    }
    result = run_wok("demo", "--municipalities", "4", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Embedded stack started" in result.stdout
    assert "Kaiserslautern" in result.stdout and "07312000" in result.stdout
    assert "overall index" in result.stdout and "weakest field" in result.stdout
    assert "The aggregates agree with what was played" in result.stdout
    assert check_lines(result.stdout) == dict.fromkeys(CHECKS, "passed")
    assert f"All {len(CHECKS)} checks passed." in result.stdout
    report = (tmp_path / "wok-report.html").read_text()
    assert "Bochum" in report and "agree" in report
    assert "overall index" in report and "All checks passed." in report

    # The mails themselves, read with the standard library: one per registration, each in
    # the language the demo asked for, Arabic right to left.
    registrations = sum(plan_registrations(i) for i in range(4))
    every_mail = [
        email.message_from_bytes(path.read_bytes(), policy=default_policy)
        for path in (tmp_path / "wok" / "demo" / "mail").glob("*.eml")
    ]
    kinds = [str(m["Message-ID"]).strip().strip("<").split(".")[0] for m in every_mail]
    # Bochum (13 places asked, 3 wait) and Berlin (16, 6 wait) are full: one promotion each;
    # Bochum's event moved by a week: its 12 still registered are told, once each; the
    # person erased there is told their data is gone; each municipality's contact office is
    # told its self-check was scored.
    assert Counter(kinds) == {
        "confirmation": registrations,
        "promotion": 2,
        "rescheduled": 12,
        "erasure": 1,
        "self_check_scored": 4,
    }
    for mail, kind in zip(every_mail, kinds, strict=True):
        if kind == "rescheduled":
            invitation = next(p for p in mail.walk() if p.get_content_type() == "text/calendar")
            assert "SEQUENCE:1" in invitation.get_content()
    mails = [m for m, kind in zip(every_mail, kinds, strict=True) if kind == "confirmation"]
    assert Counter(str(m["Content-Language"]) for m in mails) == Counter(
        preferred_language(n) for n in range(registrations)
    )
    for mail in mails:
        assert isinstance(mail, EmailMessage)
        body = mail.get_body(preferencelist=("html",))
        assert body is not None
        rtl = 'dir="rtl"' in body.get_content()
        assert rtl == (mail["Content-Language"] == "ar")
    assert not (tmp_path / "wok" / "demo" / "stack.json").exists(), "its stack was stopped"


def test_demo_twice_on_a_running_stack_counts_only_what_it_added(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    env = {"WOK_DATA_DIR": str(stack.data_dir)}
    first = run_wok("demo", "-n", "3", "--report", "first.html", env=env, cwd=tmp_path)
    second = run_wok("demo", "-n", "3", "--report", "second.html", env=env, cwd=tmp_path)

    for result in (first, second):
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Using the stack running on" in result.stdout
        assert "The aggregates agree with what was played" in result.stdout
        assert check_lines(result.stdout) == dict.fromkeys(CHECKS, "passed")
        assert "others on this stack ranked too" in result.stdout
    assert (tmp_path / "second.html").exists()


def test_demo_on_a_stack_without_a_known_mail_folder_skips_only_the_mail_checks(
    stack: EmbeddedStack, tmp_path: Path
) -> None:
    # The running stack as a stack.json that does not say where its mail goes
    state = json.loads((stack.data_dir / STATE_FILE).read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / STATE_FILE
    copy.touch(mode=0o600)  # it holds the keys
    copy.write_text(json.dumps({**state, "mail_dir": ""}))

    result = run_wok("demo", "-n", "1", env={"WOK_DATA_DIR": str(elsewhere)}, cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = check_lines(result.stdout)
    # One municipality's event (6 of 10 places) is not full: nothing to cancel or promote;
    # its event is moved and one person erased all the same.
    assert outcomes == {
        **dict.fromkeys(CHECKS[:4], "passed"),
        **dict.fromkeys(CHECKS[4:7], "skipped"),
        "cancellations and promotions": "skipped",
        "rescheduling": "passed",
        "erasure": "passed",
        "promotion mails": "skipped",
        "rescheduled mails": "skipped",
        **{name: "passed" for name in CHECKS[12:]},
        "staff mails": "skipped",
    }
    assert "mail folder is unknown" in result.stdout
    assert "Skipped: confirmation mails per language" in result.stdout
