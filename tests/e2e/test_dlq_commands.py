"""An operator finds a dead letter with `wok dlq`, and redrives it after a fix.

A municipality's system sends an event of a type the platform does not know yet (as it
would while a newer contract is rolled out); every consumer dead-letters it. Redrive
publishes its bytes again unchanged, exactly once however often it is run; here the cause
is not fixed, so the replayed message is dead-lettered anew and shows up as pending again.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from typer.testing import CliRunner

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually, read_topic
from wok_cli.devstack import EmbeddedStack
from wok_cli.main import app

ORIGINAL_HEADERS = [
    ("content-type", b"application/cloudevents+json"),
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
]


def wok(stack: EmbeddedStack, *arguments: str) -> str:
    result = CliRunner().invoke(
        app, [*arguments, "--data-dir", str(stack.data_dir)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    return result.output


def future_event(ags: str) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/municipal-system/e2e",
            "type": "registration.participant.teleported.v1",
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "municipality": ags,
            "correlationid": str(uuid.uuid4()),
            "data": {"ags": ags, "registration_id": str(uuid.uuid4())},
        }
    ).encode()


async def publish(stack: EmbeddedStack, value: bytes, ags: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            f"{stack.settings.topic_prefix}registration.events.v1",
            value,
            key=ags.encode(),
            headers=ORIGINAL_HEADERS,
        )
    finally:
        await producer.stop()


def records_with(stack: EmbeddedStack, topic: str, value: bytes) -> list[Any]:
    records = asyncio.run(
        read_topic(stack.kafka_bootstrap, f"{stack.settings.topic_prefix}{topic}")
    )
    return [record for record in records if record.value == value]


def dead_letters_of(stack: EmbeddedStack, value: bytes, *, count: int) -> list[Any]:
    return asyncio.run(
        eventually(
            lambda: asyncio.to_thread(records_with, stack, "dead-letter.assessment.v1", value),
            lambda found: len(found) >= count,
            what=f"{count} dead letter(s) of the future event at assessment",
        )
    )


def row(output: str, needle: str) -> list[str]:
    line = next(line for line in output.splitlines() if needle in line)
    return [cell.strip() for cell in line.split("│")[1:-1]]


def test_a_dead_letter_is_listed_shown_and_redriven_exactly_once(stack: EmbeddedStack) -> None:
    ags = unique_ags()
    poison = future_event(ags)
    asyncio.run(publish(stack, poison, ags))
    [dead] = dead_letters_of(stack, poison, count=1)

    listed = wok(stack, "dlq", "list")
    messages, _, pending = row(listed, "dead-letter.assessment.v1")[2:5]
    assert int(messages) >= 1 and int(pending) >= 1

    offset = str(dead.offset)
    shown = wok(stack, "dlq", "show", "assessment", "--from-offset", offset, "--limit", "1")
    cells = row(shown, ags)
    assert cells[0] == offset
    assert cells[2] == "registration.events.v1"
    assert "unknown event type 'registration.participant.teleported.v1'" in cells[5]
    assert cells[6] == "pending"
    assert "teleported" not in shown.replace(cells[5], "")  # the value only with --value

    redriven = wok(
        stack, "dlq", "redrive", "assessment", "--from-offset", offset, "--to-offset", offset
    )
    assert "Redriven 1 dead letter(s)" in redriven

    copies = records_with(stack, "registration.events.v1", poison)
    assert len(copies) == 2
    replay = copies[1]
    assert replay.key == ags.encode()
    headers = list(replay.headers)
    assert all(header in headers for header in ORIGINAL_HEADERS)
    assert not [name for name, _ in headers if name.startswith("wok-dlq-")]

    # not fixed, so dead-lettered again: a new dead letter, pending; the old one is done
    dead_letters_of(stack, poison, count=2)
    assert row(wok(stack, "dlq", "show", "assessment", "--from-offset", offset), ags)[6] == (
        "redriven"
    )

    again = wok(
        stack, "dlq", "redrive", "assessment", "--from-offset", offset, "--to-offset", offset
    )
    assert "Redriven 0 dead letter(s)" in again and "1 in the range had been redriven" in again
    assert len(records_with(stack, "registration.events.v1", poison)) == 2
