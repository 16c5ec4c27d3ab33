"""`wok dlq list|show|redrive`: the dead letters of every consumer, and replaying them.

A consumer puts a message it cannot process on `dead-letter.<consumer>.v1` with its
original bytes, key and headers, plus `wok-dlq-*` headers saying why and where from
(`wok_runtime.consumer`). Redrive publishes such messages again to their original topic,
as they were, once the cause is fixed. What was redriven is recorded as the committed
offset of the consumer group `<prefix>wok-dlq-redrive` on the dead-letter topic, so the
same dead letter is never replayed twice: redrive works through a dead-letter topic in
order and commits its position after each message it republished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from wok_cli.commands.topics import (
    DEAD_LETTER_PREFIX,
    DEAD_LETTER_SUFFIX,
    DataDirOption,
    KafkaTarget,
    kafka_target,
)
from wok_contracts.topics import dead_letter_topic
from wok_runtime.logging import configure_logging

REDRIVE_GROUP = "wok-dlq-redrive"
DLQ_HEADER_PREFIX = "wok-dlq-"
READ_TIMEOUT_MS = 500


def consumer_of(topic: str) -> str | None:
    """`dead-letter.reporting.v1` -> `reporting`; None for any other topic."""
    if topic.startswith(DEAD_LETTER_PREFIX) and topic.endswith(DEAD_LETTER_SUFFIX):
        return topic[len(DEAD_LETTER_PREFIX) : -len(DEAD_LETTER_SUFFIX)] or None
    return None


def consumer_argument(value: str) -> str:
    """Accept a consumer name or its dead-letter topic's name."""
    return consumer_of(value) or value


@dataclass(frozen=True)
class DeadLetter:
    """One message on a dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for header, value in self.headers:
            if header == name:
                return value.decode("utf-8", "replace")
        return None

    @property
    def reason(self) -> str:
        return self.header("wok-dlq-reason") or ""

    @property
    def original_topic(self) -> str | None:
        return self.header("wok-dlq-topic")

    @property
    def original_position(self) -> str:
        return f"{self.header('wok-dlq-partition') or '?'}@{self.header('wok-dlq-offset') or '?'}"

    @property
    def failed_at(self) -> str:
        return self.header("wok-dlq-failed-at") or ""

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The message's own headers, without what the dead-lettering added."""
        return [(name, value) for name, value in self.headers if not name.startswith("wok-dlq-")]


@dataclass(frozen=True)
class DeadLetterTopic:
    """Counts of one dead-letter topic: what it holds now, what was redriven, what is left."""

    consumer: str
    topic: str
    messages: int
    redriven: int
    pending: int


def redrive_group(target: KafkaTarget) -> str:
    return target.topic(REDRIVE_GROUP)


def _consumer(target: KafkaTarget) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **target.client_options(),
        group_id=redrive_group(target),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic) or set()
    return [TopicPartition(topic, partition) for partition in sorted(partitions)]


async def dead_letter_topics(target: KafkaTarget) -> list[DeadLetterTopic]:
    """Every dead-letter topic of this deployment, with its counts."""
    admin = AIOKafkaAdminClient(**target.client_options())
    await admin.start()
    try:
        names = sorted(
            name
            for name in await admin.list_topics()
            if consumer_of(target.unprefixed(name) or "") is not None
        )
    finally:
        await admin.close()
    consumer = _consumer(target)
    await consumer.start()
    try:
        found = []
        for name in names:
            partitions = await _partitions(consumer, name)
            beginnings = await consumer.beginning_offsets(partitions)
            ends = await consumer.end_offsets(partitions)
            messages = redriven = 0
            for partition in partitions:
                committed = await consumer.committed(partition) or 0
                start, end = beginnings[partition], ends[partition]
                messages += end - start
                redriven += max(0, min(committed, end) - start)
            unprefixed = target.unprefixed(name) or name
            found.append(
                DeadLetterTopic(
                    consumer=consumer_of(unprefixed) or unprefixed,
                    topic=name,
                    messages=messages,
                    redriven=redriven,
                    pending=messages - redriven,
                )
            )
        return found
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer,
    partition: TopicPartition,
    *,
    start: int,
    stop: int,
    each: Callable[[DeadLetter], Any],
) -> None:
    """Call `each` for every message with start <= offset < stop, in order."""
    if start >= stop:
        return
    consumer.seek(partition, start)
    while True:
        batches = await consumer.getmany(partition, timeout_ms=READ_TIMEOUT_MS)
        for record in batches.get(partition, []):
            if record.offset >= stop:
                return
            outcome = each(
                DeadLetter(
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value or b"",
                    headers=tuple(record.headers or ()),
                )
            )
            if asyncio.iscoroutine(outcome):
                await outcome
            if record.offset + 1 >= stop:
                return
        if await consumer.position(partition) >= stop:
            return


async def read_dead_letters(
    target: KafkaTarget,
    consumer_name: str,
    *,
    from_offset: int | None = None,
    limit: int | None = None,
) -> tuple[list[DeadLetter], dict[int, int]]:
    """The dead letters of one consumer (from `from_offset`, at most `limit` per partition),
    and the redrive position of each partition (offsets below it were dealt with)."""
    topic = target.topic(dead_letter_topic(consumer_name))
    consumer = _consumer(target)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            return [], {}
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[DeadLetter] = []
        positions = {}
        for partition in partitions:
            positions[partition.partition] = await consumer.committed(partition) or 0
            start = max(beginnings[partition], from_offset or 0)
            stop = ends[partition] if limit is None else min(ends[partition], start + limit)
            await _read(consumer, partition, start=start, stop=stop, each=found.append)
        return found, positions
    finally:
        await consumer.stop()


class RedriveStopped(RuntimeError):
    """A dead letter that cannot be redriven; the position stays before it."""


@dataclass(frozen=True)
class RedriveResult:
    redriven: list[DeadLetter]
    already_redriven: int
    skipped: int


async def redrive(
    target: KafkaTarget,
    consumer_name: str,
    *,
    from_offset: int | None = None,
    to_offset: int | None = None,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> RedriveResult:
    """Publish the dead letters not yet redriven (within the range) to their original
    topics, with their original key, value and headers, committing the position after each.

    Dead letters before `from_offset` that were not yet redriven are passed over for good;
    those after `to_offset` stay for a later redrive. Run one redrive per topic at a time.
    """
    topic = target.topic(dead_letter_topic(consumer_name))
    consumer = _consumer(target)
    producer = AIOKafkaProducer(**target.client_options(), acks="all")
    await consumer.start()
    await producer.start()
    try:
        partitions = await _partitions(consumer, topic)
        if not partitions:
            raise RedriveStopped(f"there is no topic {topic}")
        consumer.assign(partitions)
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        ranges: dict[TopicPartition, tuple[int, int, int]] = {}
        already = skipped = 0
        for partition in partitions:
            committed = max(await consumer.committed(partition) or 0, beginnings[partition])
            wanted_start = max(beginnings[partition], from_offset or 0)
            stop = ends[partition] if to_offset is None else min(ends[partition], to_offset + 1)
            start = max(committed, wanted_start)
            already += max(0, min(committed, stop) - wanted_start)
            skipped += max(0, min(wanted_start, stop) - committed)
            ranges[partition] = (committed, start, stop)
        total = sum(max(0, stop - start) for _, start, stop in ranges.values())
        redriven: list[DeadLetter] = []
        progress(0, total)

        for partition, (committed, start, stop) in ranges.items():
            if min(start, stop) > committed:
                # the dead letters before --from-offset are passed over, as asked
                await consumer.commit({partition: min(start, stop)})

            async def republish(letter: DeadLetter, partition: TopicPartition = partition) -> None:
                original = letter.original_topic
                if not original:
                    raise RedriveStopped(
                        f"{topic} offset {letter.offset} names no original topic "
                        f"(no wok-dlq-topic header); pass it over with --from-offset "
                        f"{letter.offset + 1}"
                    )
                await producer.send_and_wait(
                    target.topic(original),
                    letter.value,
                    key=letter.key or None,
                    headers=letter.replay_headers(),
                )
                await consumer.commit({partition: letter.offset + 1})
                redriven.append(letter)
                progress(len(redriven), total)

            await _read(consumer, partition, start=start, stop=stop, each=republish)
        return RedriveResult(redriven=redriven, already_redriven=already, skipped=skipped)
    finally:
        await producer.stop()
        await consumer.stop()


dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters of the consumers: list them, show them, redrive them after a fix.",
    no_args_is_help=True,
)

ConsumerArgument = Annotated[
    str,
    typer.Argument(
        help="The consumer group (e.g. reporting) or its topic (dead-letter.reporting.v1)",
        parser=consumer_argument,
    ),
]
FromOffsetOption = Annotated[
    int | None, typer.Option("--from-offset", min=0, help="First dead-letter offset")
]


@dlq_app.command("list")
def list_(data_dir: DataDirOption = None) -> None:
    """Dead-letter topics with how many messages they hold, were redriven and are pending."""
    configure_logging(service="wok", level="WARNING")
    console = Console()
    target = kafka_target(data_dir, console)
    topics = asyncio.run(dead_letter_topics(target))
    table = Table(title=f"Dead letters on {target.bootstrap}", title_justify="left")
    table.add_column("consumer", style="bold")
    table.add_column("topic")
    for column in ("messages", "redriven", "pending"):
        table.add_column(column, justify="right")
    for topic in topics:
        table.add_row(
            topic.consumer,
            topic.topic,
            str(topic.messages),
            str(topic.redriven),
            Text(str(topic.pending), "yellow" if topic.pending else "green"),
        )
    console.print(table)
    if not topics:
        console.print("No dead-letter topics (create them with `wok topics create`).")


@dlq_app.command()
def show(
    consumer: ConsumerArgument,
    data_dir: DataDirOption = None,
    from_offset: FromOffsetOption = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many messages per partition")
    ] = 50,
    value: Annotated[
        bool, typer.Option("--value", help="Also print each message's value (may be large)")
    ] = False,
) -> None:
    """The dead letters of one consumer: why, where from, when, the key."""
    configure_logging(service="wok", level="WARNING")
    console = Console()
    target = kafka_target(data_dir, console)
    letters, positions = asyncio.run(
        read_dead_letters(target, consumer, from_offset=from_offset, limit=limit)
    )
    table = Table(
        title=f"{target.topic(dead_letter_topic(consumer))} on {target.bootstrap}",
        title_justify="left",
    )
    for column in ("offset", "failed at", "original topic", "partition@offset", "key", "reason"):
        table.add_column(column, overflow="fold")
    table.add_column("")
    for letter in letters:
        done = letter.offset < positions.get(letter.partition, 0)
        table.add_row(
            str(letter.offset) if len(positions) == 1 else f"{letter.partition}@{letter.offset}",
            letter.failed_at,
            letter.original_topic or "?",
            letter.original_position,
            (letter.key or b"").decode("utf-8", "replace"),
            letter.reason,
            Text("redriven", "dim") if done else Text("pending", "yellow"),
        )
    console.print(table)
    if not letters:
        console.print("No dead letters there.")
    if value:
        for letter in letters:
            console.rule(f"offset {letter.offset}")
            console.print(letter.value.decode("utf-8", "replace"), markup=False, highlight=False)


@dlq_app.command("redrive")
def redrive_command(
    consumer: ConsumerArgument,
    data_dir: DataDirOption = None,
    from_offset: Annotated[
        int | None,
        typer.Option(
            "--from-offset",
            min=0,
            help="Start here; pending dead letters before it are passed over for good",
        ),
    ] = None,
    to_offset: Annotated[
        int | None,
        typer.Option("--to-offset", min=0, help="Stop after this offset; later ones stay"),
    ] = None,
) -> None:
    """Publish the pending dead letters of one consumer to their original topics again.

    Key, value and headers are those of the original message (without the wok-dlq-*
    headers). The position is committed after each message, so nothing is redriven twice.
    """
    configure_logging(service="wok", level="WARNING")
    console = Console()
    if from_offset is not None and to_offset is not None and to_offset < from_offset:
        raise typer.BadParameter("--to-offset is before --from-offset")
    target = kafka_target(data_dir, console)
    with Progress(
        TextColumn("redriving {task.fields[topic]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("redrive", total=None, topic=dead_letter_topic(consumer))
        try:
            result = asyncio.run(
                redrive(
                    target,
                    consumer,
                    from_offset=from_offset,
                    to_offset=to_offset,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
            )
        except RedriveStopped as error:
            console.print(Text(str(error), style="red"))
            raise typer.Exit(1) from None
    by_topic: dict[str, int] = {}
    for letter in result.redriven:
        by_topic[letter.original_topic or "?"] = by_topic.get(letter.original_topic or "?", 0) + 1
    console.print(
        f"Redriven {len(result.redriven)} dead letter(s)"
        + "".join(f"; {count} to {target.topic(name)}" for name, count in by_topic.items())
        + "."
    )
    if result.already_redriven:
        console.print(f"{result.already_redriven} in the range had been redriven before.")
    if result.skipped:
        console.print(f"{result.skipped} before --from-offset were passed over for good.")
