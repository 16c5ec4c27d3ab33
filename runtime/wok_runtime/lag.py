"""Consumer lag: how many messages each consumer group of a service has not committed yet.

Measured from the broker (end offsets against the group's committed offsets), so it shows
what an operator needs to know when a consumer falls behind or stops, whatever the process
itself believes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from wok_runtime.kafka import kafka_client_options
from wok_runtime.logging import get_logger
from wok_runtime.settings import WokSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class PartitionLag:
    consumer: str
    topic: str  # without the deployment's prefix
    partition: int
    messages: int


def lag_of(
    *,
    end: Mapping[TopicPartition, int],
    committed: Mapping[TopicPartition, int],
    beginning: Mapping[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition, the messages after the committed offset (from the start if none)."""
    return {
        partition: max(0, last - committed.get(partition, beginning.get(partition, 0)))
        for partition, last in end.items()
    }


class LagMonitor:
    """Measures the lag of consumer groups every `interval_s` and reports it to `record`."""

    def __init__(
        self,
        settings: WokSettings,
        *,
        groups: Mapping[str, Sequence[str]],
        record: Callable[[PartitionLag], None],
        interval_s: float,
    ) -> None:
        self._settings = settings
        self._groups = groups
        self._record = record
        self._interval_s = interval_s

    async def measure(
        self, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer
    ) -> list[PartitionLag]:
        measured: list[PartitionLag] = []
        await consumer._client.force_metadata_update()
        for group, topics in self._groups.items():
            partitions = [
                TopicPartition(self._settings.topic(topic), partition)
                for topic in topics
                for partition in sorted(
                    consumer.partitions_for_topic(self._settings.topic(topic)) or ()
                )
            ]
            if not partitions:
                continue
            offsets = await admin.list_consumer_group_offsets(
                self._settings.consumer_group(group), partitions=partitions
            )
            committed = {
                partition: meta.offset
                for partition, meta in offsets.items()
                if meta is not None and meta.offset >= 0
            }
            lags = lag_of(
                end=await consumer.end_offsets(partitions),
                committed=committed,
                beginning=await consumer.beginning_offsets(partitions),
            )
            measured += [
                PartitionLag(
                    consumer=group,
                    topic=partition.topic.removeprefix(self._settings.topic_prefix),
                    partition=partition.partition,
                    messages=messages,
                )
                for partition, messages in sorted(lags.items())
            ]
        return measured

    async def run(self) -> None:
        """Measure until cancelled; a broker that is away is logged and tried again."""
        options = kafka_client_options(self._settings)
        while True:
            admin = AIOKafkaAdminClient(**options)
            consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)
            try:
                await admin.start()
                await consumer.start()
                while True:
                    for lag in await self.measure(admin, consumer):
                        self._record(lag)
                    await asyncio.sleep(self._interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("consumer lag could not be measured; retrying", error=repr(error))
                await asyncio.sleep(self._interval_s)
            finally:
                await consumer.stop()
                await admin.close()
