"""`wok new service`: a throwaway service generated into a temporary folder passes its own
tests (run by pytest in a subprocess, against a real nx-27017 for its storage test), and
registering one edits a copy of the repository so that compose, kustomize, the embedded
stack and the requirements know it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from wok_cli.main import app

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_FILES = (
    "cli/wok_cli/settings.py",
    "cli/wok_cli/devstack.py",
    "cli/pyproject.toml",
    "requirements.txt",
    "pyproject.toml",
    "docker-compose.yml",
    ".env.example",
    "deploy/kubernetes/base",
    "deploy/kubernetes/overlays/production",
)


def test_a_generated_service_passes_its_own_tests(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["new", "service", "throwaway", "--into", str(tmp_path)])
    assert result.exit_code == 0, result.output
    service = tmp_path / "throwaway"
    package = service / "wok_throwaway"
    expected = {"settings", "domain", "handlers", "adapters", "entrypoints", "app", "__main__"}
    assert expected <= {path.stem for path in package.glob("*.py")}
    assert (service / "Dockerfile").is_file() and (service / "pyproject.toml").is_file()
    assert "class ThrowawaySettings(WokSettings)" in (package / "settings.py").read_text()

    # Its tests, as a developer runs them: the repository's pytest settings and the root
    # conftest (its `mongodb_uri` fixture starts nx-27017 for the storage test).
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(service),
            str(service / "tests"),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(service), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "4 passed" in run.stdout

    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(ROOT / "pyproject.toml"), service],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout


def test_a_service_that_exists_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["new", "service", "twice", "--into", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["new", "service", "twice", "--into", str(tmp_path)])
    assert again.exit_code == 1 and "already exists" in " ".join(again.output.split())
    for bad in ("Exchange", "peer-exchange", "x", "1st"):
        refused = runner.invoke(app, ["new", "service", bad, "--into", str(tmp_path)])
        assert refused.exit_code == 1, bad
        assert "not a service name" in " ".join(refused.output.split()), bad


def test_registering_a_service_wires_it_into_the_repository(tmp_path: Path) -> None:
    for relative in REGISTRY_FILES:
        source, target = ROOT / relative, tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    (tmp_path / "services").mkdir()

    result = CliRunner().invoke(
        app, ["new", "service", "peers", "--root", str(tmp_path), "--no-install"]
    )
    assert result.exit_code == 0, result.output

    settings = (tmp_path / "cli/wok_cli/settings.py").read_text()
    port = max(int(line.split("= ")[1]) for line in settings.splitlines() if "_port: int" in line)
    assert '"peers")' in settings
    # the port follows the other services' ports, not SMTP's
    assert re.search(
        rf"^    [a-z]+_port: int = {port - 1}\n    peers_port: int = {port}$", settings, re.M
    )
    assert '"peers")' in (tmp_path / "cli/wok_cli/devstack.py").read_text()
    assert "-e ./services/peers\n-e ./cli" in (tmp_path / "requirements.txt").read_text()
    assert '"wok-peers",' in (tmp_path / "cli/pyproject.toml").read_text()
    assert '"wok_peers", "wok_cli"]' in (tmp_path / "pyproject.toml").read_text()
    assert f"WOK_PEERS_PORT={port}" in (tmp_path / ".env.example").read_text()

    compose = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())
    peers = compose["services"]["peers"]
    assert peers["build"]["dockerfile"] == "services/peers/Dockerfile"
    assert peers["environment"]["WOK_PEERS_PORT"] == port
    assert peers["environment"]["WOK_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the shared block
    assert f"127.0.0.1:{port}/readyz" in " ".join(peers["healthcheck"]["test"])

    base = tmp_path / "deploy/kubernetes/base"
    assert "  - peers.yaml\n" in (base / "kustomization.yaml").read_text()
    deployment, kubernetes_service = yaml.safe_load_all((base / "peers.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        container["ports"][0]["containerPort"]
        == port
        == kubernetes_service["spec"]["ports"][0]["port"]
    )
    assert container["env"][0] == {"name": "WOK_PEERS_PORT", "value": str(port)}
    overlay = (tmp_path / "deploy/kubernetes/overlays/production/kustomization.yaml").read_text()
    assert "registry.example.org/weltoffene-kommune/wok-peers" in overlay
    assert "create dead-letter.peers.v1 1 " in (base / "create-topics.sh").read_text()
    if "wok-kafka-users" in overlay:  # production speaks SASL: the service is its own user
        assert "value: wok-peers" in overlay and "key: peers" in overlay

    built = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "deploy/kubernetes/overlays/production")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    deployments = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(built)
        if doc and doc["kind"] == "Deployment"
    }
    [built_container] = deployments["peers"]["spec"]["template"]["spec"]["containers"]
    assert built_container["image"] == "registry.example.org/weltoffene-kommune/wok-peers:0.1.0"

    service = tmp_path / "services" / "peers"
    assert f"WOK_PEERS_PORT={port}" in (service / "Dockerfile").read_text()
    assert f"EXPOSE {port}" in (service / "Dockerfile").read_text()

    twice = CliRunner().invoke(
        app, ["new", "service", "peers", "--root", str(tmp_path), "--no-install"]
    )
    assert twice.exit_code == 1
