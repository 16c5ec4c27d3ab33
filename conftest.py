"""Servers for tests anywhere in the repository, started by the test session itself.

Nothing runs beforehand (CI starts from a clean clone); each server starts on first use.
"""

from __future__ import annotations

import os
import shutil
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
    """A MongoDB wire-protocol server (nx-27017) with its own data dir, for the whole session,
    run as the embedded stack runs it (`wok_cli.mongo_server`: nx-27017's handler and storage,
    commands answered on the event loop)."""
    directory = tmp_path_factory.mktemp("nx-27017")
    port = free_port()
    console = (directory / "console.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wok_cli.mongo_server",
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


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's headless Chromium for browser tests, installed with apt-get on a clean machine.

    Fails (never skips) when Chromium is missing and cannot be installed: a browser test that
    did not run did not pass.
    """
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            "Chromium is missing: install Debian's package `chromium` (apt-get install chromium)"
        )
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            pytest.fail(
                f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium_args() -> tuple[str, ...]:
    """Flags for headless Chromium on a machine with a closed network, running as root."""
    return CHROMIUM_ARGS
