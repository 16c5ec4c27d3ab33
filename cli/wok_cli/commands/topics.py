"""`wok topics create|list`: the platform's topics on the embedded stack or any Kafka.

Topics are created explicitly with their partitions and settings (auto-creation would pick
the broker's partition count and default retention). The plan here is the one source the
compose provisioning step and the Kubernetes Job follow (tests/ops hold them to it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from wok_cli.devstack import DEAD_LETTER_CONSUMERS, running_stack
from wok_contracts.topics import (
    DOMAIN_TOPICS,
    EXCHANGE_ACTIVITY,
    EXCHANGE_AGGREGATES,
    topic_specs,
)
from wok_runtime.kafka import kafka_client_options
from wok_runtime.logging import configure_logging
from wok_runtime.settings import WokSettings

DAY_MS = 24 * 60 * 60 * 1000
# Reporting rebuilds its projections from the domain topics, so they are kept for good
# (no payload on them carries a name or an e-mail address).
DOMAIN_RETENTION_MS = -1
EXCHANGE_ACTIVITY_RETENTION_MS = 90 * DAY_MS
# Dead letters keep the bytes of rejected messages as they came, which may hold personal
# data a sender put there by mistake: two weeks to fix and redrive, then they are gone.
DEAD_LETTER_RETENTION_MS = 14 * DAY_MS
DEAD_LETTER_PREFIX = "dead-letter."
DEAD_LETTER_SUFFIX = ".v1"


@dataclass(frozen=True)
class PlannedTopic:
    """A topic as provisioned: name (without the deployment's prefix), partitions, configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return topic_kind(self.name)


def topic_kind(name: str) -> str:
    if name in DOMAIN_TOPICS:
        return "domain events"
    if name.startswith("exchange."):
        return "exchange"
    if name.startswith(DEAD_LETTER_PREFIX):
        return "dead letters"
    return "other"


def topic_configs(name: str) -> dict[str, str]:
    if name == EXCHANGE_AGGREGATES:
        return {"cleanup.policy": "compact"}
    if name == EXCHANGE_ACTIVITY:
        return {"cleanup.policy": "delete", "retention.ms": str(EXCHANGE_ACTIVITY_RETENTION_MS)}
    if name.startswith(DEAD_LETTER_PREFIX):
        return {"cleanup.policy": "delete", "retention.ms": str(DEAD_LETTER_RETENTION_MS)}
    return {"cleanup.policy": "delete", "retention.ms": str(DOMAIN_RETENTION_MS)}


def topic_plan(
    *, partitions: int, consumers: tuple[str, ...] = DEAD_LETTER_CONSUMERS
) -> list[PlannedTopic]:
    """Every topic of the platform: the domain and exchange topics with `partitions`
    (keyed by AGS, so partitions bound how far a consumer group scales out) and one
    single-partition dead-letter topic per consumer group."""
    return [
        PlannedTopic(name=spec.name, partitions=spec.partitions, configs=topic_configs(spec.name))
        for spec in topic_specs(consumers, partitions=partitions)
    ]


@dataclass(frozen=True)
class KafkaTarget:
    """Where the command works: a bootstrap address and the deployment's topic prefix."""

    bootstrap: str
    prefix: str = ""
    security: Mapping[str, Any] = field(default_factory=dict)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka client of this target (address and security)."""
        return {"bootstrap_servers": self.bootstrap, **self.security}

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def unprefixed(self, name: str) -> str | None:
        """The platform name of a broker topic, None if it is not of this deployment."""
        return name.removeprefix(self.prefix) if name.startswith(self.prefix) else None


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Use the embedded stack running on this data dir (its stack.json); "
        "without it, WOK_KAFKA_BOOTSTRAP and WOK_TOPIC_PREFIX say where",
        file_okay=False,
    ),
]


def kafka_target(data_dir: Path | None, console: Console) -> KafkaTarget:
    """The stack running on `data_dir`, or the Kafka the `WOK_*` environment names."""
    if data_dir is None:
        settings = WokSettings()
        options = kafka_client_options(settings)
        return KafkaTarget(
            bootstrap=options.pop("bootstrap_servers"),
            prefix=settings.topic_prefix,
            security=options,
        )
    endpoints = running_stack(data_dir)
    if endpoints is None:
        console.print(
            Text(
                f"No stack is running on {data_dir} (no live stack.json); start one with "
                "`wok dev`, or leave out --data-dir and set WOK_KAFKA_BOOTSTRAP.",
                style="red",
            )
        )
        raise typer.Exit(1)
    return KafkaTarget(bootstrap=endpoints.kafka_bootstrap, prefix=endpoints.topic_prefix)


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: int
    created: bool


async def create_topics(
    target: KafkaTarget, plan: list[PlannedTopic], *, replication_factor: int = 1
) -> list[TopicState]:
    """Create what is missing; existing topics are left as they are and reported."""
    admin = AIOKafkaAdminClient(**target.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [topic for topic in plan if target.topic(topic.name) not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=target.topic(topic.name),
                            num_partitions=topic.partitions,
                            replication_factor=replication_factor,
                            topic_configs=topic.configs,
                        )
                        for topic in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
        partitions = await _partition_counts(admin, [target.topic(t.name) for t in plan])
    finally:
        await admin.close()
    created = {topic.name for topic in missing}
    return [
        TopicState(
            name=topic.name,
            partitions=partitions.get(target.topic(topic.name), 0),
            created=topic.name in created,
        )
        for topic in plan
    ]


async def list_topics(target: KafkaTarget, *, every_topic: bool = False) -> dict[str, int]:
    """Topics of this deployment (all topics with `every_topic`) -> partition count."""
    admin = AIOKafkaAdminClient(**target.client_options())
    await admin.start()
    try:
        names = [
            name
            for name in await admin.list_topics()
            if not name.startswith("__") and (every_topic or target.unprefixed(name) is not None)
        ]
        return dict(sorted((await _partition_counts(admin, names)).items()))
    finally:
        await admin.close()


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    if not names:
        return {}
    described: list[dict[str, Any]] = await admin.describe_topics(names)
    return {
        item["topic"]: len(item["partitions"])
        for item in described
        if item.get("error_code", 0) == 0
    }


topics_app = typer.Typer(
    name="topics",
    help="Create and list the platform's Kafka topics.",
    no_args_is_help=True,
)


@topics_app.command("create")
def create(
    data_dir: DataDirOption = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            "--partitions",
            min=1,
            help="Partitions of the domain and exchange topics (default: WOK_TOPIC_PARTITIONS)",
        ),
    ] = None,
    replication_factor: Annotated[
        int, typer.Option("--replication-factor", min=1, help="Copies of each partition")
    ] = 1,
) -> None:
    """Create every topic of the platform, dead-letter topics included; existing ones stay."""
    configure_logging(service="wok", level="WARNING")
    console = Console()
    target = kafka_target(data_dir, console)
    plan = topic_plan(partitions=partitions or WokSettings().topic_partitions)
    states = asyncio.run(create_topics(target, plan, replication_factor=replication_factor))
    table = Table(title=f"Topics on {target.bootstrap}", title_justify="left")
    for column in ("topic", "partitions", "settings", ""):
        table.add_column(column, justify="right" if column == "partitions" else "left")
    for topic, state in zip(plan, states, strict=True):
        table.add_row(
            target.topic(topic.name),
            str(state.partitions),
            ", ".join(f"{key}={value}" for key, value in sorted(topic.configs.items())),
            Text("created", "green") if state.created else Text("exists", "dim"),
        )
    console.print(table)


@topics_app.command("list")
def list_(
    data_dir: DataDirOption = None,
    every_topic: Annotated[
        bool, typer.Option("--all", help="Also topics without this deployment's prefix")
    ] = False,
) -> None:
    """List the topics with their partition counts."""
    configure_logging(service="wok", level="WARNING")
    console = Console()
    target = kafka_target(data_dir, console)
    partitions = asyncio.run(list_topics(target, every_topic=every_topic))
    table = Table(title=f"Topics on {target.bootstrap}", title_justify="left")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("kind")
    for name, count in partitions.items():
        table.add_row(name, str(count), topic_kind(target.unprefixed(name) or name))
    console.print(table)
