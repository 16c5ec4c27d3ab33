"""Kafka wiring through FastStream: broker, publisher, topics, manual-ack subscribers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from wok_contracts.topics import TopicSpec
from wok_runtime.logging import get_logger
from wok_runtime.settings import WokSettings

log = get_logger(__name__)

# The relay's batches: many events in one request (the producer's default is 16 KiB).
RELAY_BATCH_BYTES = 512 * 1024


def kafka_security(settings: WokSettings) -> BaseSecurity | None:
    """How to reach the brokers: plaintext in dev, TLS and a SASL user per service in production."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    use_ssl = protocol in ("SSL", "SASL_SSL")
    cafile = settings.kafka_ssl_cafile or None
    context = ssl.create_default_context(cafile=cafile) if use_ssl else None
    if protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    sasl = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.kafka_sasl_mechanism]
    return sasl(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        ssl_context=context,
        use_ssl=use_ssl,
    )


def kafka_client_options(settings: WokSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (consumer, producer, admin) of these settings."""
    return {
        "bootstrap_servers": settings.kafka_bootstrap,
        **parse_security(kafka_security(settings)),
    }


def build_broker(
    settings: WokSettings, *, client_id: str, middlewares: Sequence[Any] = ()
) -> KafkaBroker:
    """A broker object; it connects only when started."""
    return KafkaBroker(
        settings.kafka_bootstrap,
        middlewares=tuple(middlewares),
        security=kafka_security(settings),
        client_id=client_id,
        acks="all",
        # One record per produce batch: tansu reports a partition's end offset as the last
        # batch's first offset + 1, so the other records of a multi-record batch would sit
        # past the end for every reader that reads "to the end" (redrive, rebuild, lag).
        # Publishes at the same moment (dead letters of several handlers) would batch.
        max_batch_size=1,
        # Not "faststream": that stdlib logger has FastStream's own plain-text handler.
        logger=logging.getLogger("wok.kafka"),
        # Per-message "Received"/"Processed" lines at DEBUG; lifecycle and errors stay visible.
        log_level=logging.DEBUG,
        graceful_timeout=10.0,
    )


class OutgoingMessage(Protocol):
    """A message for `KafkaPublisher.send_all` (the relay's `PendingMessage`)."""

    @property
    def topic(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def value(self) -> bytes: ...

    @property
    def headers(self) -> dict[str, str]: ...


class KafkaPublisher:
    """Publishes raw CloudEvents bytes; topic names get the deployment's prefix here."""

    def __init__(
        self, broker: KafkaBroker, settings: WokSettings, *, client_id: str = "wok"
    ) -> None:
        self._broker = broker
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        await self._broker.publish(
            value,
            topic=self._settings.topic(topic),
            key=key.encode() if key else None,
            headers=headers,
            correlation_id=headers.get("correlation_id") or None,
        )

    async def start(self) -> None:
        """Connect the relay's own producer (see `send_all`); until then, and with FastStream's
        test broker, `send_all` publishes one message at a time through the broker."""
        producer = AIOKafkaProducer(
            **kafka_client_options(self._settings),
            client_id=f"{self._client_id}-outbox-relay",
            acks="all",
            max_batch_size=RELAY_BATCH_BYTES,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send_all(self, messages: Sequence[OutgoingMessage]) -> list[Awaitable[object]]:
        """Hand the messages over in this order without waiting for the broker; one awaitable
        each, completing with the broker's acknowledgement (acks=all) or raising. A message
        that could not be handed over gets a failed one, and so does every later message of
        its partition (hence of its key): none overtakes another of its key.

        Each partition's messages go in batches of many records, the last one alone: tansu
        reports a partition's end offset as its last batch's first offset + 1, so a batch of
        one at the end keeps every record before the end for readers that read "to the end".
        aiokafka keeps one request in flight per broker and retries in order.
        """
        if self._producer is None:
            return await self._send_one_by_one(messages)
        return await self._send_in_batches(self._producer, messages)

    async def _send_one_by_one(
        self, messages: Sequence[OutgoingMessage]
    ) -> list[Awaitable[object]]:
        acks: list[Awaitable[object]] = []
        failed: dict[str, BaseException] = {}
        for message in messages:
            if message.key in failed:
                acks.append(_failed(failed[message.key]))
                continue
            try:
                pending = await self._broker.publish(
                    message.value,
                    topic=self._settings.topic(message.topic),
                    key=message.key.encode() if message.key else None,
                    headers=message.headers,
                    correlation_id=message.headers.get("correlation_id") or None,
                    no_confirm=True,
                )
            except Exception as error:
                failed[message.key] = error
                acks.append(_failed(error))
                continue
            # FastStream's TestKafkaBroker delivers at once and hands back no future.
            acks.append(pending if isinstance(pending, asyncio.Future) else _done(pending))
        return acks

    async def _send_in_batches(
        self, producer: AIOKafkaProducer, messages: Sequence[OutgoingMessage]
    ) -> list[Awaitable[object]]:
        acks: list[Awaitable[object] | None] = [None] * len(messages)
        partitions: dict[str, list[int] | BaseException] = {}
        groups: dict[tuple[str, int], list[int]] = {}
        for index, message in enumerate(messages):
            topic = self._settings.topic(message.topic)
            key = message.key.encode() if message.key else None
            if topic not in partitions:
                try:
                    partitions[topic] = sorted(await producer.partitions_for(topic))
                except Exception as error:
                    partitions[topic] = error  # the whole topic waits for the next round
            known = partitions[topic]
            if isinstance(known, BaseException):
                acks[index] = _failed(known)
                continue
            # The producer's own choice for the key (murmur2), as any other publisher's.
            partition = self._partitioner(key, known, known)
            groups.setdefault((topic, partition), []).append(index)
        failures: dict[tuple[str, int], BaseException] = {}

        async def submit(where: tuple[str, int], indexes: list[int]) -> None:
            """Batches of these messages, in order, onto their partition."""
            if where in failures:
                for index in indexes:
                    acks[index] = _failed(failures[where])
                return
            position = 0
            while position < len(indexes):
                batch = producer.create_batch()
                taken = 0
                for index in indexes[position:]:
                    message = messages[index]
                    appended = batch.append(
                        key=message.key.encode() if message.key else None,
                        value=message.value,
                        timestamp=None,
                        headers=[(name, value.encode()) for name, value in message.headers.items()],
                    )
                    if appended is None:
                        break
                    taken += 1
                chunk = indexes[position : position + taken]
                position += taken
                try:
                    delivered = await producer.send_batch(batch, where[0], partition=where[1])
                except Exception as error:
                    failures[where] = error
                    for index in indexes[position - taken :]:
                        acks[index] = _failed(error)
                    return
                for index in chunk:
                    acks[index] = delivered

        # All partitions' batches first, then each partition's last message alone: one
        # request carries the batches, the next one the last messages.
        for where, indexes in groups.items():
            if len(indexes) > 1:
                await submit(where, indexes[:-1])
        for where, indexes in groups.items():
            await submit(where, indexes[-1:])
        return [ack if ack is not None else _failed(RuntimeError("not sent")) for ack in acks]


def _done(result: object) -> Awaitable[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_result(result)
    return future


def _failed(error: BaseException) -> Awaitable[object]:
    future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


async def ensure_topics(settings: WokSettings, specs: Sequence[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet (explicitly: auto-creation picks partitions)."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if settings.topic(spec.name) not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=settings.topic(spec.name),
                            num_partitions=spec.partitions,
                            replication_factor=1,
                            topic_configs={"cleanup.policy": "compact"} if spec.compacted else {},
                        )
                        for spec in missing
                    ]
                )
            except TopicAlreadyExistsError:
                pass
            log.info("topics created", topics=[settings.topic(spec.name) for spec in missing])
        return [settings.topic(spec.name) for spec in missing]
    finally:
        await admin.close()
