"""Reading the platform from the outside: plain aiokafka consumers and the mail folder."""

from __future__ import annotations

import asyncio
import email
import json
import time
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

T = TypeVar("T")


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every record now on `topic`, read from the beginning without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        ends = await consumer.end_offsets(assignment)
        records: list[Any] = []
        while True:
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= ends[tp] for tp in assignment):
                return records
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def latest_snapshot(bootstrap: str, topic: str, key: str) -> dict[str, Any] | None:
    """The newest aggregate snapshot under `key` on the compacted aggregates topic."""
    newest: dict[str, Any] | None = None
    for record in await read_topic(bootstrap, topic):
        if record.key != key.encode():
            continue
        data = json.loads(record.value)["data"]
        if newest is None or data["sequence"] > newest["sequence"]:
            newest = data
    return newest


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float = 60.0,
    what: str,
) -> T:
    """Poll until `accept(probe())`; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last seen {value!r}")
        await asyncio.sleep(0.3)


def mails_to(mail_dir: Path, address: str) -> list[EmailMessage]:
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        if address in str(message["To"]):
            found.append(message)
    return found


def accounts_for(snapshot: dict[str, Any] | None, expected: dict[str, int]) -> bool:
    """Each metric is the expected figure, or withheld by disclosure control.

    Complementary suppression works across all municipalities of the program, so whether a
    cell of one municipality is withheld depends on the others on the shared stack; a
    published figure, though, must always be exact.
    """
    if snapshot is None:
        return False
    metrics, withheld = snapshot["metrics"], set(snapshot["suppressed"])
    return all(
        metrics.get(name) == value or (metrics.get(name) is None and name in withheld)
        for name, value in expected.items()
    )


async def program_registrations(bootstrap: str, topic: str) -> int:
    """The program-wide registrations total: the margin of the table, large enough never to
    be withheld once the program holds a few municipalities (0 is published too)."""
    snapshot = await latest_snapshot(bootstrap, topic, "program")
    total = None if snapshot is None else snapshot["metrics"]["registrations_total"]
    return -1 if total is None else int(total)
