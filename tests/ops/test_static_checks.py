"""The code stays as STYLE.md asks: ruff's lint rules and format, and mypy over every
package (the contracts, the runtime, the `wok` command and each service found under
services/, so a new service is checked from its first commit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.ops.compose import ROOT


def packages() -> list[str]:
    services = sorted(str(path.relative_to(ROOT)) for path in ROOT.glob("services/*/wok_*"))
    found = ["contracts/wok_contracts", "runtime/wok_runtime", "cli/wok_cli", *services]
    return [package for package in found if (ROOT / package / "__init__.py").exists()]


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_service_package_is_found() -> None:
    names = {Path(package).name for package in packages()}
    assert {"wok_registration", "wok_assessment", "wok_notification", "wok_reporting"} <= names
    assert {"wok_contracts", "wok_runtime", "wok_cli"} <= names


def test_ruff_finds_nothing_to_lint_or_format() -> None:
    linted = run("ruff", "check", ".")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    formatted = run("ruff", "format", "--check", ".")
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_mypy_finds_no_type_errors() -> None:
    checked = run("mypy", *packages())
    assert checked.returncode == 0, checked.stdout + checked.stderr
