"""The platform's AsyncAPI document holds for an independent validator: the AsyncAPI parser (npm).

The parser is pinned in tests/ops/asyncapi/package-lock.json and installed with `npm ci` on
first use (CI starts from a clean clone; Node.js and npm come with the machine).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = Path(__file__).resolve().parent / "asyncapi"
DOCUMENT = ROOT / "docs" / "api" / "asyncapi.json"
ERROR, WARNING = 0, 1


@pytest.fixture(scope="module")
def parser() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("Node.js and npm are needed to run the AsyncAPI parser")
    if not (VALIDATOR / "node_modules" / "@asyncapi" / "parser").exists():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=VALIDATOR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert installed.returncode == 0, installed.stdout + installed.stderr
    return VALIDATOR / "validate.mjs"


def validate(parser: Path, document: Path) -> dict[str, Any]:
    result = subprocess.run(
        ["node", str(parser), str(document)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def problems(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report["diagnostics"] if d["severity"] in (ERROR, WARNING)]


def test_the_committed_asyncapi_document_parses_without_errors_or_warnings(
    parser: Path,
) -> None:
    report = validate(parser, DOCUMENT)
    assert report["parsed"], report
    assert problems(report) == []
    ours = json.loads(DOCUMENT.read_text())
    assert report["channels"] == len(ours["channels"])
    assert report["messages"] >= len(ours["components"]["messages"])


def test_the_validator_catches_a_broken_document(parser: Path, tmp_path: Path) -> None:
    broken: dict[str, Any] = copy.deepcopy(json.loads(DOCUMENT.read_text()))
    missing = next(iter(broken["components"]["messages"]))
    del broken["components"]["messages"][missing]  # still referenced by a channel
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(broken))

    report = validate(parser, path)

    assert not report["parsed"] or any(d["severity"] == ERROR for d in report["diagnostics"])
    assert any(d["severity"] == ERROR for d in report["diagnostics"]), report
