"""`wok demo`, the main job, as a user runs it: on its own stack, and on a running one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import SERVICE_NAMES, StackSettings


def run_wok(*arguments: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wok_cli", *arguments],
        env={**os.environ, "COLUMNS": "160", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


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
    assert "The aggregates agree with what was played" in result.stdout
    report = (tmp_path / "wok-report.html").read_text()
    assert "Bochum" in report and "agree" in report
    mails = list((tmp_path / "wok" / "demo" / "mail").glob("*.eml"))
    assert len(mails) == sum(6 + (i * 7) % 11 for i in range(4)), "one confirmation each"
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
    assert (tmp_path / "second.html").exists()
