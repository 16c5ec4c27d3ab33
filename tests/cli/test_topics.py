"""`wok topics create|list` against a real Kafka-protocol broker (tansu)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from wok_cli.commands.topics import KafkaTarget, topic_plan
from wok_cli.devstack import EmbeddedStack
from wok_cli.main import app
from wok_contracts.topics import ALL_TOPICS, EXCHANGE_AGGREGATES


def wok(*arguments: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(arguments), env={"COLUMNS": "250", **(env or {})})
    assert result.exit_code == 0, result.output
    return result.output


async def partitions_on_broker(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        return {item["topic"]: len(item["partitions"]) for item in described}
    finally:
        await admin.close()


def test_the_plan_holds_every_topic_with_retention_and_compaction() -> None:
    plan = {topic.name: topic for topic in topic_plan(partitions=6)}
    assert set(ALL_TOPICS) <= set(plan)
    assert {"dead-letter.assessment.v1", "dead-letter.notification.v1"} <= set(plan)
    assert plan[EXCHANGE_AGGREGATES].configs == {"cleanup.policy": "compact"}
    assert plan["registration.events.v1"].configs["retention.ms"] == "-1"  # replayable
    assert plan["registration.events.v1"].partitions == 6
    dead_letters = plan["dead-letter.reporting.v1"]
    assert dead_letters.partitions == 1
    assert int(dead_letters.configs["retention.ms"]) == 14 * 24 * 60 * 60 * 1000


def test_topics_create_makes_every_topic_once_and_list_shows_them(
    infrastructure: EmbeddedStack,
) -> None:
    prefix = f"ops-{uuid.uuid4().hex[:6]}."
    env = {
        "WOK_KAFKA_BOOTSTRAP": infrastructure.kafka_bootstrap,
        "WOK_TOPIC_PREFIX": prefix,
        "WOK_TOPIC_PARTITIONS": "3",
    }
    target = KafkaTarget(bootstrap=infrastructure.kafka_bootstrap, prefix=prefix)
    plan = topic_plan(partitions=3)

    first = wok("topics", "create", env=env)
    assert first.count("created") == len(plan)
    assert "cleanup.policy=compact" in first
    counts = asyncio.run(
        partitions_on_broker(infrastructure.kafka_bootstrap, [target.topic(t.name) for t in plan])
    )
    assert counts == {target.topic(t.name): t.partitions for t in plan}
    assert counts[target.topic("registration.events.v1")] == 3
    assert counts[target.topic("dead-letter.reporting.v1")] == 1

    again = wok("topics", "create", env=env)
    assert "created" not in again and again.count("exists") == len(plan)

    listed = wok("topics", "list", env=env)
    for topic in plan:
        line = next(line for line in listed.splitlines() if f" {target.topic(topic.name)} " in line)
        assert f" {topic.partitions} " in line
    # the stack's own topics carry another prefix and are left out unless asked for
    assert "itest." not in listed
    assert "itest.registration.events.v1" in wok("topics", "list", "--all", env=env)


def test_topics_list_finds_a_running_stack_through_its_data_dir(
    infrastructure: EmbeddedStack,
) -> None:
    listed = wok("topics", "list", "--data-dir", str(infrastructure.data_dir))
    assert "itest.exchange.aggregates.v1" in listed
    assert "itest.dead-letter.reporting.v1" in listed


def test_a_data_dir_without_a_running_stack_is_refused(tmp_path) -> None:
    result = CliRunner().invoke(app, ["topics", "list", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "No stack is running" in result.output
