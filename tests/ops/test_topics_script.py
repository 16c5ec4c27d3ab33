"""deploy/kubernetes/base/create-topics.sh (compose's `kafka-topics` step, the Kubernetes Job)
creates exactly the topics `wok topics create` does, with the same partitions and settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.ops.compose import ROOT
from wok_cli.commands.topics import topic_plan

SCRIPT = ROOT / "deploy" / "kubernetes" / "base" / "create-topics.sh"


def run_script(tmp_path: Path, **env: str) -> list[list[str]]:
    """Run the script with a stand-in for kafka-topics.sh that records its arguments."""
    calls = tmp_path / "calls.jsonl"
    recorder = tmp_path / "kafka-topics"
    recorder.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    recorder.chmod(0o755)
    subprocess.run(
        ["sh", str(SCRIPT)],
        env={"PATH": os.environ["PATH"], "KAFKA_TOPICS": str(recorder), **env},
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in calls.read_text().splitlines()]


def option(arguments: list[str], name: str) -> str:
    return arguments[arguments.index(name) + 1]


def test_the_script_creates_the_planned_topics_with_their_settings(tmp_path: Path) -> None:
    calls = run_script(
        tmp_path,
        BOOTSTRAP="kafka-0.kafka:9092",
        TOPIC_PREFIX="prod.",
        PARTITIONS="12",
        REPLICATION_FACTOR="3",
        COMMAND_CONFIG="/etc/wok/client.properties",
    )
    creates = [call for call in calls if "--create" in call]
    created = {
        option(call, "--topic"): (
            int(option(call, "--partitions")),
            {
                key: value
                for key, _, value in (
                    call[i + 1].partition("=") for i, arg in enumerate(call) if arg == "--config"
                )
            },
        )
        for call in creates
    }
    assert created == {
        f"prod.{topic.name}": (topic.partitions, topic.configs)
        for topic in topic_plan(partitions=12)
    }
    for call in calls:
        assert option(call, "--bootstrap-server") == "kafka-0.kafka:9092"
        assert option(call, "--command-config") == "/etc/wok/client.properties"
    for call in creates:
        assert option(call, "--replication-factor") == "3"
        assert "--if-not-exists" in call  # safe to run again
    assert "--list" in calls[-1]


def test_without_a_client_config_the_script_connects_plainly(tmp_path: Path) -> None:
    calls = run_script(tmp_path)
    assert calls and all("--command-config" not in call for call in calls)
    assert option(calls[0], "--bootstrap-server") == "kafka:9092"
    assert option(calls[0], "--topic") == "registration.events.v1"
