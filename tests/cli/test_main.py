"""The `wok` command as a user runs it."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from typer.testing import CliRunner

from wok_cli.commands.dev import stack_summary
from wok_cli.devstack import EmbeddedStack, StackSettings
from wok_cli.main import app
from wok_cli.settings import SERVICE_NAMES


def wok_dev_environment(settings: StackSettings) -> dict[str, str]:
    """The environment a user would export to move `wok dev` to these ports."""
    return {
        **os.environ,
        "COLUMNS": "200",
        "WOK_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "WOK_MONGODB_URI": settings.mongodb_uri,
        "WOK_SMTP_PORT": str(settings.smtp_port),
        **{f"WOK_{name.upper()}_PORT": str(settings.port_of(name)) for name in SERVICE_NAMES},
    }


def start_wok_dev(settings: StackSettings, output: Path) -> subprocess.Popen[bytes]:
    with open(output, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "wok_cli", "dev", "--data-dir", str(settings.data_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=wok_dev_environment(settings),
        )


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_wok_lists_its_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "dev" in result.output


def test_the_summary_shows_every_address_and_key(infrastructure: EmbeddedStack) -> None:
    console = Console(record=True, width=200)
    console.print(stack_summary(infrastructure))
    shown = console.export_text()
    for expected in (
        infrastructure.kafka_bootstrap,
        infrastructure.mongodb_uri,
        f"{infrastructure.smtp_host}:{infrastructure.smtp_port}",
        str(infrastructure.mail_dir),
        infrastructure.admin_key,
        infrastructure.federal_key,
        "Generated for this run",
    ):
        assert expected in shown


def test_wok_dev_says_which_setting_moves_a_taken_port(settings_for, tmp_path: Path) -> None:
    settings = settings_for()
    kafka_host, kafka_port = settings.kafka_address
    with socket.socket() as squatter:
        squatter.bind((kafka_host, kafka_port))
        squatter.listen()
        wok = start_wok_dev(settings, tmp_path / "wok-dev.out")
        assert wok.wait(timeout=60) == 1
    output = (tmp_path / "wok-dev.out").read_text()
    assert f"port {kafka_port}" in output and "WOK_KAFKA_BOOTSTRAP" in output


def test_wok_dev_runs_the_platform_until_sigterm_then_stops_everything(
    settings_for, tmp_path: Path
) -> None:
    settings = settings_for()
    output = tmp_path / "wok-dev.out"
    wok = start_wok_dev(settings, output)
    try:
        deadline = time.monotonic() + 120
        while "Running." not in output.read_text() and wok.poll() is None:
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        shown = output.read_text()
        assert "Running." in shown, shown
        for name in SERVICE_NAMES:
            assert f"http://127.0.0.1:{settings.port_of(name)}/docs" in shown

        wok.send_signal(signal.SIGTERM)
        assert wok.wait(timeout=60) == 0
    finally:
        if wok.poll() is None:
            wok.terminate()  # `wok dev` stops its children on SIGTERM; SIGKILL would orphan them
            wok.wait(timeout=60)
    assert output.read_text().rstrip().endswith("Stopped.")
    ports = [settings.kafka_address[1], settings.mongodb_address[1], settings.smtp_port]
    ports += [settings.port_of(name) for name in SERVICE_NAMES]
    assert all(port_free(port) for port in ports)
