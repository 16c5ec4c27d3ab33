"""`bench/notification.py` still runs and prints its figures (tiny counts; not a measurement).

It starts its own stack with registration and notification only (no `--data-dir`), so it
runs apart from the shared smoke stack of test_bench_scripts.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
TARGET_LINE = re.compile(r"^target: .+: .+ -> (met|MISSED)$", re.MULTILINE)


def test_the_notification_benchmark_prints_its_figures_and_target() -> None:
    finished = subprocess.run(
        [
            sys.executable,
            str(BENCH / "notification.py"),
            *("--rate", "20", "--duration", "0.5", "--municipalities", "1", "--events", "2"),
            *("--timeout", "60"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output
    assert "machine: " in output
    for path in ("relay", "notification", "201 -> e-mail"):
        assert re.search(rf"{re.escape(path)}.*│\s+10 / 10\s+│", output), output
    assert re.search(r"CPU per mail: nx-27017 [\d.]+ ms", output), output
    assert len(TARGET_LINE.findall(output)) == 1, output
