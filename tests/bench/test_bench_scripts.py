"""The benchmark scripts still run and print their figures (tiny counts; not a measurement).

One embedded stack serves `ingest.py` and `freshness.py` through `--data-dir` (as a running
`wok dev` would); `startup.py` starts `wok dev` itself, beside them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings

BENCH = Path(__file__).resolve().parents[2] / "bench"
TARGET_LINE = re.compile(r"^target: .+: .+ -> (met|MISSED)$", re.MULTILINE)


@pytest.fixture(scope="module")
def bench_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    data_dir = tmp_path_factory.mktemp("wok-bench-smoke")
    settings = StackSettings.with_free_ports(data_dir=data_dir, topic_prefix="bench-smoke.")
    with EmbeddedStack(settings):
        yield data_dir


def start(script: str, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"},
    )


def figures(process: subprocess.Popen[str], *, timeout_s: float) -> str:
    output, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, output
    return output


def test_every_benchmark_prints_its_figures_and_targets(bench_stack: Path) -> None:
    tiny = ("--data-dir", str(bench_stack), "--municipalities", "1", "--events", "2")
    # All three at once: each on municipalities or ports of its own.
    running = {
        "startup": start("startup.py", "--repeat", "1"),
        "ingest": start(
            "ingest.py",
            *tiny,
            *("--rates", "20", "--duration", "0.5", "--warmup", "2", "--concurrency", "2"),
            *("--settle", "0"),
        ),
        "freshness": start(
            "freshness.py", *tiny, "--rate", "20", "--duration", "0.5", "--timeout", "60"
        ),
    }
    try:
        ingest, freshness, started = (
            figures(running[name], timeout_s=180) for name in ("ingest", "freshness", "startup")
        )
    finally:
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # the scripts stop what they started
                process.communicate(timeout=60)

    assert "Registration HTTP ingest" in ingest
    assert re.search(r"registration\s+│\s+20/s\s+│\s+10\s+│\s+0\s+│", ingest), ingest
    assert re.search(r"bare insert\s+│\s+20/s\s+│\s+10\s+│\s+0\s+│", ingest), ingest
    assert len(TARGET_LINE.findall(ingest)) == 2, ingest

    for path in ("ParticipantRegistered", "aggregate", "e-mail"):
        assert re.search(rf"201 -> {path}.*│\s+10 / 10\s+│", freshness), freshness
    assert len(TARGET_LINE.findall(freshness)) == 2, freshness

    assert re.search(r"^│ 1\s+│\s+\d+\.\d\d\s+│", started, re.MULTILINE), started
    assert len(TARGET_LINE.findall(started)) == 1, started


def test_nx_writes_prints_the_cost_of_each_write_shape() -> None:
    process = start(
        "nx_writes.py",
        *("--held", "0,3", "--writes", "20", "--warmup", "5", "--events", "2"),
    )
    output = figures(process, timeout_s=120)
    for shape in (
        r"bare insert \(ingest\.py's bare endpoint\)",
        r"place write, events holding 0 registrations",
        r"place write, events holding 3 registrations",
        r"own documents: count on the event \+ insert of the registration",
    ):
        assert re.search(rf"{shape}\s+│\s+20\s+│\s+[\d,]+\s+│\s+\d+\.\d\d\s+│", output), output
