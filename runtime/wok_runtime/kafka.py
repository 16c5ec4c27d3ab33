"""Kafka wiring through FastStream: broker, publisher, topics, manual-ack subscribers."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from wok_contracts.topics import TopicSpec
from wok_runtime.consumer import EventProcessor, Record
from wok_runtime.logging import get_logger
from wok_runtime.settings import WokSettings

log = get_logger(__name__)


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
        # Not "faststream": that stdlib logger has FastStream's own plain-text handler.
        logger=logging.getLogger("wok.kafka"),
        # Per-message "Received"/"Processed" lines at DEBUG; lifecycle and errors stay visible.
        log_level=logging.DEBUG,
        graceful_timeout=10.0,
    )


class KafkaPublisher:
    """Publishes raw CloudEvents bytes; topic names get the deployment's prefix here."""

    def __init__(self, broker: KafkaBroker, settings: WokSettings) -> None:
        self._broker = broker
        self._settings = settings

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        await self._broker.publish(
            value,
            topic=self._settings.topic(topic),
            key=key.encode() if key else None,
            headers=headers,
            correlation_id=headers.get("correlation_id") or None,
        )


def subscribe(
    broker: KafkaBroker,
    processor: EventProcessor,
    *,
    topics: Sequence[str],
    settings: WokSettings,
) -> Any:
    """One consumer-group member over `topics`; it commits only after `process` returned."""

    async def consume(message: KafkaMessage) -> None:
        raw = message.raw_message
        assert not isinstance(raw, tuple)
        try:
            await processor.process(
                Record(
                    topic=raw.topic.removeprefix(settings.topic_prefix),
                    partition=raw.partition,
                    offset=raw.offset,
                    key=raw.key,
                    value=raw.value,
                    headers=tuple(raw.headers or ()),
                )
            )
        except Exception as error:
            # Not acknowledged and not skipped: a later ack would commit past this message,
            # so rewind to it and let it come again after a pause.
            log.error(
                "message could not be processed; it will be redelivered",
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                error=repr(error),
            )
            await message.nack()
            await asyncio.sleep(settings.consumer_backoff_max_s)
            return
        await message.ack()

    consume.__name__ = f"consume_{processor.consumer.replace('-', '_')}"
    return broker.subscriber(
        *(settings.topic(topic) for topic in topics),
        group_id=settings.consumer_group(processor.consumer),
        ack_policy=AckPolicy.MANUAL,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        no_reply=True,
    )(consume)


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
