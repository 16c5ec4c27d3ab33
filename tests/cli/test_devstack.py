"""The embedded stack's infrastructure on the real wire protocols: Kafka, MongoDB, SMTP."""

import asyncio
import os
import signal
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pymongo import AsyncMongoClient

from wok_cli.devstack import EmbeddedStack, StackStartError, running_stack
from wok_contracts.topics import REGISTRATION_EVENTS, dead_letter_topic


def caught_subjects(mail_dir: Path) -> list[str]:
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)["Subject"]
        for path in mail_dir.glob("*.eml")
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_message_goes_round_trip_through_the_broker(infrastructure: EmbeddedStack) -> None:
    topic = f"itest.{REGISTRATION_EVENTS}"
    key = b"07312000"
    value = unique("event").encode()
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infrastructure.kafka_bootstrap,
        group_id=unique("round-trip"),
        auto_offset_reset="earliest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            async for record in consumer:
                if record.value == value:
                    break
    finally:
        await consumer.stop()
    assert record.key == key


async def test_topics_are_created_explicitly_with_their_partitions(
    infrastructure: EmbeddedStack,
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=infrastructure.kafka_bootstrap)
    await consumer.start()
    try:
        topics = await consumer.topics()
        domain_partitions = consumer.partitions_for_topic(f"itest.{REGISTRATION_EVENTS}")
        dead_letter_partitions = consumer.partitions_for_topic(
            f"itest.{dead_letter_topic('reporting')}"
        )
    finally:
        await consumer.stop()
    assert {f"itest.{dead_letter_topic(name)}" for name in ("assessment", "notification")} <= topics
    assert domain_partitions == {0, 1, 2, 3}
    # Auto-creation would have given four: one partition shows the stack made it.
    assert dead_letter_partitions == {0}


async def test_the_database_answers_and_keeps_documents(infrastructure: EmbeddedStack) -> None:
    client: AsyncMongoClient = AsyncMongoClient(infrastructure.mongodb_uri)
    try:
        assert (await client.admin.command("ping"))["ok"]
        municipality_id = unique("municipality")
        municipalities = client.wok_itest.municipalities
        await municipalities.insert_one({"_id": municipality_id, "ags": "07312000"})
        stored = await municipalities.find_one({"_id": municipality_id})
    finally:
        await client.close()
    assert stored == {"_id": municipality_id, "ags": "07312000"}


async def test_mail_sent_to_the_stack_lands_in_its_mail_folder(
    infrastructure: EmbeddedStack,
) -> None:
    subject = unique("Anmeldung bestätigt")
    message = EmailMessage()
    message["From"] = "no-reply@wok.example"
    message["To"] = "teilnehmer@example.org"
    message["Subject"] = subject
    message.set_content("Bis bald.")
    await aiosmtplib.send(message, hostname=infrastructure.smtp_host, port=infrastructure.smtp_port)
    assert subject in caught_subjects(infrastructure.mail_dir)


def test_a_running_stack_can_be_found_through_its_data_dir(infrastructure: EmbeddedStack) -> None:
    found = running_stack(infrastructure.data_dir)
    assert found is not None
    assert found.kafka_bootstrap == infrastructure.kafka_bootstrap
    assert found.admin_key == infrastructure.admin_key
    assert (infrastructure.data_dir / "stack.json").stat().st_mode & 0o077 == 0


def test_keys_are_generated_when_unset(infrastructure: EmbeddedStack) -> None:
    keys = {infrastructure.admin_key, infrastructure.federal_key, infrastructure.service_key}
    assert len(keys) == 3 and all(len(key) >= 32 for key in keys)


async def test_the_database_survives_a_hard_kill_and_restart(settings_for) -> None:
    with EmbeddedStack(settings_for(), services=()) as stack:
        client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
        await client.wok_itest.events.insert_one({"_id": "before-the-crash"})
        await client.close()

        assert stack.kill_service("nx-27017", signal.SIGKILL) == -signal.SIGKILL
        assert not stack.is_running("nx-27017")
        stack.restart_service("nx-27017")

        client = AsyncMongoClient(stack.mongodb_uri)
        try:
            assert await client.wok_itest.events.find_one({"_id": "before-the-crash"})
        finally:
            await client.close()


def test_stop_leaves_no_process_behind(settings_for) -> None:
    stack = EmbeddedStack(settings_for(), services=())
    with stack:
        pids = {name: stack.pid(name) for name in stack.names}
        assert all(stack.is_running(name) for name in pids)

    for name, pid in pids.items():
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # neither the child nor anything in its process group
        assert not stack.is_running(name)
    assert not (stack.data_dir / "stack.json").exists()


def test_a_second_stack_on_the_same_data_dir_is_refused(
    infrastructure: EmbeddedStack, settings_for
) -> None:
    second = EmbeddedStack(settings_for(data_dir=infrastructure.data_dir), services=())
    with pytest.raises(StackStartError, match="already running"):
        second.start()


def test_a_taken_port_is_named_with_the_setting_that_moves_it(settings_for) -> None:
    settings = settings_for()
    with EmbeddedStack(settings, services=()):
        clash = EmbeddedStack(
            settings_for(mongodb_uri=settings.mongodb_uri, data_dir=Path(settings.data_dir, "2")),
            services=(),
        )
        with pytest.raises(StackStartError, match="WOK_MONGODB_URI"):
            clash.start()


async def test_a_reset_starts_with_an_empty_database(settings_for) -> None:
    async def stored_ids(stack: EmbeddedStack) -> list[str]:
        client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
        try:
            return [document["_id"] async for document in client.wok_itest.events.find()]
        finally:
            await client.close()

    async with EmbeddedStack(settings_for(), services=()) as stack:
        client: AsyncMongoClient = AsyncMongoClient(stack.mongodb_uri)
        await client.wok_itest.events.insert_one({"_id": "from-the-last-run"})
        await client.close()

    async with EmbeddedStack(settings_for(), services=()) as stack:
        assert await stored_ids(stack) == ["from-the-last-run"]
    async with EmbeddedStack(settings_for(), services=(), reset=True) as stack:
        assert await stored_ids(stack) == []
