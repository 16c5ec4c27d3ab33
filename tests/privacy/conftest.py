"""A stack of its own on which `wok demo` has played, shared by the privacy tests.

The stack is started here and `wok demo` runs as a user runs it beside a running stack
(`WOK_DATA_DIR` pointing at it), so every topic, log line and document afterwards is the
demo's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings

# Generous: on a loaded machine (8 test runs on 2 cores) the demo took 250 s instead of 30 s.
DEMO_AGREEMENT_TIMEOUT_S = 360
DEMO_TIMEOUT_S = 500
DEMO_MUNICIPALITIES = 22  # `wok demo`'s default: the full demo


@dataclass(frozen=True)
class PlayedDemo:
    stack: EmbeddedStack
    stdout: str
    seconds: float


@pytest.fixture(scope="module")
def played_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlayedDemo]:
    data_dir = Path(tmp_path_factory.mktemp("wok-privacy"))
    settings = StackSettings.with_free_ports(data_dir=data_dir, stack_stop_grace_s=5.0)
    started = time.monotonic()
    with EmbeddedStack(settings) as stack:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "wok_cli",
                "demo",
                "-n",
                str(DEMO_MUNICIPALITIES),
                "--timeout",
                str(DEMO_AGREEMENT_TIMEOUT_S),
                "--report",
                str(data_dir / "report.html"),
            ],
            env={**os.environ, "COLUMNS": "200", "WOK_DATA_DIR": str(stack.data_dir)},
            cwd=data_dir,
            capture_output=True,
            text=True,
            timeout=DEMO_TIMEOUT_S,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Using the stack running on" in result.stdout
        yield PlayedDemo(stack=stack, stdout=result.stdout, seconds=time.monotonic() - started)
