"""The projection benchmarks still run and check what they stored (tiny counts; not a
measurement)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
TARGET_LINE = re.compile(r"^target: .+: .+ -> (met|MISSED)$", re.MULTILINE)


def run(script: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_the_projection_benchmarks_print_their_figures_and_check_what_was_stored() -> None:
    throughput = run("projection.py", "--events", "800", "--batch", "300")
    scaling = run("projection_scaling.py", "--sizes", "100", "3000", "--events", "800")
    outputs = []
    for process in (throughput, scaling):
        output, _ = process.communicate(timeout=240)
        assert process.returncode == 0, output
        outputs.append(output)
    measured, scaled = outputs

    assert "stored offsets at the ends: yes" in measured, measured
    assert re.search(r"distinct events stored (\d+) of \1 played", measured), measured
    assert "CPU per event while projecting" in measured
    assert len(TARGET_LINE.findall(measured)) == 1, measured
    assert scaled.count("stored offsets at the ends: yes") == 2, scaled
    assert "cost per event at 3,000 / at 100" in scaled, scaled
    assert len(TARGET_LINE.findall(scaled)) == 1, scaled
