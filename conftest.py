"""Servers for tests anywhere in the repository, started by the test session itself.

Nothing runs beforehand (CI starts from a clean clone); each server starts on first use.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, *, process: subprocess.Popen[bytes], log_file: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode} before listening on {port}:\n"
                + (log_file.read_text() if log_file.exists() else "(no log)")
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {STARTUP_TIMEOUT_S} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MongoDB wire-protocol server (nx-27017) with its own data dir, for the whole session."""
    binary = Path(sys.executable).parent / "nx-27017"
    if not binary.exists():
        pytest.fail(f"{binary} not found: install the dev requirements (nx-27017)")
    directory = tmp_path_factory.mktemp("nx-27017")
    port = free_port()
    console = (directory / "console.log").open("wb")
    process = subprocess.Popen(
        [
            str(binary),
            # --data-dir: one SQLite file per database; without it databases share collections
            "--data-dir",
            str(directory / "data"),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-file",
            str(directory / "server.log"),
            "--pid-file",
            str(directory / "server.pid"),
        ],
        stdout=console,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process=process, log_file=directory / "console.log")
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop(process)
        console.close()
