"""`wok dlq list|show|redrive` on a real Kafka-protocol broker (tansu), with dead letters
shaped as the runtime writes them; tests/e2e/test_dlq_commands.py runs it on the platform."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from tests.e2e.helpers import read_topic
from wok_cli.commands.dlq import dead_letter_topics, redrive
from wok_cli.commands.topics import KafkaTarget, create_topics, topic_plan
from wok_cli.devstack import DEAD_LETTER_CONSUMERS, EmbeddedStack
from wok_cli.main import app

ORIGINAL_TOPIC = "registration.events.v1"


def wok(*arguments: str, target: KafkaTarget, code: int = 0) -> str:
    result = CliRunner().invoke(
        app,
        list(arguments),
        env={
            "COLUMNS": "250",
            "WOK_KAFKA_BOOTSTRAP": target.bootstrap,
            "WOK_TOPIC_PREFIX": target.prefix,
        },
    )
    assert result.exit_code == code, result.output
    return result.output


def row(output: str, needle: str) -> list[str]:
    """The cells of the table row that mentions `needle`."""
    line = next(line for line in output.splitlines() if needle in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def fresh_target(stack: EmbeddedStack) -> KafkaTarget:
    target = KafkaTarget(bootstrap=stack.kafka_bootstrap, prefix=f"dlq-{uuid.uuid4().hex[:6]}.")
    asyncio.run(create_topics(target, topic_plan(partitions=2)))
    return target


def dead_letter_headers(number: int, *, original: str | None = ORIGINAL_TOPIC) -> list[Any]:
    headers = [
        ("content-type", b"application/cloudevents+json"),
        ("traceparent", f"00-{number:032x}-{number:016x}-01".encode()),
        ("wok-dlq-reason", f"unknown event type 'x.{number}.v1'".encode()),
        ("wok-dlq-consumer", b"reporting"),
        ("wok-dlq-partition", b"1"),
        ("wok-dlq-offset", str(100 + number).encode()),
        ("wok-dlq-failed-at", b"2026-11-25T10:00:00+00:00"),
    ]
    if original is not None:
        headers.append(("wok-dlq-topic", original.encode()))
    return headers


def dead_letter_value(number: int) -> bytes:
    return f'{{"type": "x.{number}.v1", "secret": "value-{number}"}}'.encode()


async def put_dead_letters(
    target: KafkaTarget, numbers: range, *, original: str | None = ORIGINAL_TOPIC
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=target.bootstrap, acks="all")
    await producer.start()
    try:
        for number in numbers:
            await producer.send_and_wait(
                target.topic("dead-letter.reporting.v1"),
                dead_letter_value(number),
                key=f"0731200{number % 10}".encode(),
                headers=dead_letter_headers(number, original=original),
            )
    finally:
        await producer.stop()


def replayed(target: KafkaTarget) -> list[Any]:
    return asyncio.run(read_topic(target.bootstrap, target.topic(ORIGINAL_TOPIC)))


def counts(target: KafkaTarget) -> dict[str, tuple[int, int, int]]:
    return {
        topic.consumer: (topic.messages, topic.redriven, topic.pending)
        for topic in asyncio.run(dead_letter_topics(target))
    }


def test_list_counts_messages_redriven_and_pending(infrastructure: EmbeddedStack) -> None:
    target = fresh_target(infrastructure)
    asyncio.run(put_dead_letters(target, range(3)))
    assert counts(target) == {
        **dict.fromkeys(DEAD_LETTER_CONSUMERS, (0, 0, 0)),
        "reporting": (3, 0, 3),
    }
    listed = wok("dlq", "list", target=target)
    assert row(listed, "dead-letter.reporting.v1") == [
        "reporting",
        target.topic("dead-letter.reporting.v1"),
        "3",
        "0",
        "3",
    ]


def test_show_tells_why_and_where_from_without_the_value_unless_asked(
    infrastructure: EmbeddedStack,
) -> None:
    target = fresh_target(infrastructure)
    asyncio.run(put_dead_letters(target, range(2)))
    shown = wok("dlq", "show", "reporting", target=target)
    assert "unknown event type 'x.1.v1'" in shown
    assert ORIGINAL_TOPIC in shown and "1@101" in shown and "07312001" in shown
    assert "2026-11-25T10:00:00+00:00" in shown and "pending" in shown
    assert "value-1" not in shown
    assert "value-1" in wok("dlq", "show", "dead-letter.reporting.v1", "--value", target=target)
    limited = wok("dlq", "show", "reporting", "--from-offset", "1", "--limit", "1", target=target)
    assert "x.1.v1" in limited and "x.0.v1" not in limited


def test_redrive_replays_each_dead_letter_once_as_it_was(infrastructure: EmbeddedStack) -> None:
    target = fresh_target(infrastructure)
    asyncio.run(put_dead_letters(target, range(4)))

    output = wok("dlq", "redrive", "reporting", target=target)
    assert "Redriven 4 dead letter(s)" in output
    records = replayed(target)
    assert [record.value for record in records if record.key == b"07312002"] == [
        dead_letter_value(2)
    ]
    assert sorted(record.value for record in records) == sorted(
        dead_letter_value(n) for n in range(4)
    )
    replayed_two = next(record for record in records if record.value == dead_letter_value(2))
    assert list(replayed_two.headers) == [
        ("content-type", b"application/cloudevents+json"),
        ("traceparent", f"00-{2:032x}-{2:016x}-01".encode()),
    ]

    again = wok("dlq", "redrive", "reporting", target=target)
    assert "Redriven 0 dead letter(s)" in again
    assert len(replayed(target)) == 4
    assert counts(target)["reporting"] == (4, 4, 0)
    assert "redriven" in wok("dlq", "show", "reporting", target=target)


def test_an_offset_range_redrives_only_that_range_and_passes_over_what_lies_before(
    infrastructure: EmbeddedStack,
) -> None:
    target = fresh_target(infrastructure)
    asyncio.run(put_dead_letters(target, range(6)))

    result = asyncio.run(redrive(target, "reporting", from_offset=2, to_offset=3))
    assert [letter.offset for letter in result.redriven] == [2, 3]
    assert result.skipped == 2
    assert sorted(record.value for record in replayed(target)) == [
        dead_letter_value(2),
        dead_letter_value(3),
    ]
    assert counts(target)["reporting"] == (6, 4, 2)

    result = asyncio.run(redrive(target, "reporting", from_offset=0, to_offset=3))
    assert result.redriven == [] and result.already_redriven == 4

    result = asyncio.run(redrive(target, "reporting"))
    assert [letter.offset for letter in result.redriven] == [4, 5]
    assert len(replayed(target)) == 4


def test_a_dead_letter_without_its_origin_stops_the_redrive_before_it(
    infrastructure: EmbeddedStack,
) -> None:
    target = fresh_target(infrastructure)
    asyncio.run(put_dead_letters(target, range(1)))
    asyncio.run(put_dead_letters(target, range(1, 2), original=None))
    asyncio.run(put_dead_letters(target, range(2, 3)))

    output = wok("dlq", "redrive", "reporting", target=target, code=1)
    assert "offset 1 names no original topic" in output and "--from-offset 2" in output
    assert [record.value for record in replayed(target)] == [dead_letter_value(0)]
    assert counts(target)["reporting"] == (3, 1, 2)

    assert "Redriven 1" in wok("dlq", "redrive", "reporting", "--from-offset", "2", target=target)
    assert sorted(record.value for record in replayed(target)) == [
        dead_letter_value(0),
        dead_letter_value(2),
    ]
