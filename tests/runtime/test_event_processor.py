"""The reliable consumer: each message ends processed once, skipped, or dead-lettered.

Fast: fake stores and publishers, no broker, tiny backoff.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo.errors import AutoReconnect

from wok_contracts import (
    Envelope,
    MunicipalityRegistered,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    new_envelope,
)
from wok_runtime.consumer import (
    DLQ_REASON,
    EventProcessor,
    InMemoryProcessedStore,
    ProcessorMetrics,
    Record,
    RetryPolicy,
    TransientError,
)
from wok_runtime.outbox import EVENT_TYPE_HEADER

CONSUMER = "reporting"
DEAD_LETTERS = "dead-letter.reporting.v1"
KAISERSLAUTERN = "07312000"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.002)

_offsets = itertools.count()


@dataclass
class Published:
    topic: str
    key: str
    value: bytes
    headers: dict[str, str]


@dataclass
class RecordingPublisher:
    messages: list[Published] = field(default_factory=list)
    failures_left: int = 0

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker away")
        self.messages.append(Published(topic, key, value, headers))


@dataclass
class CountingHandler:
    """Fails with the given errors in turn, then succeeds; remembers what it was called with."""

    errors: list[BaseException] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)

    async def __call__(self, envelope: Envelope[Any]) -> None:
        self.calls.append(envelope.id)
        if self.errors:
            raise self.errors.pop(0)
        self.succeeded.append(envelope.id)


def always(error: BaseException, times: int) -> list[BaseException]:
    return [error] * times


def participant_registered(registration_id: str = "reg-1") -> Envelope[Any]:
    return new_envelope(
        ParticipantRegistered(
            registration_id=registration_id,
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            status=RegistrationStatus.CONFIRMED,
            sector=Sector.RESIDENT,
        ),
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
    )


def record_of(value: bytes | None, *, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
    return Record(
        topic="registration.events.v1",
        partition=2,
        offset=next(_offsets),
        key=KAISERSLAUTERN.encode(),
        value=value,
        headers=headers,
    )


@dataclass
class Consumer:
    processor: EventProcessor
    handler: CountingHandler
    processed: InMemoryProcessedStore
    dead_letters: RecordingPublisher
    outcomes: list[tuple[str, str]]


@pytest.fixture
def consumer() -> Consumer:
    return build_consumer(CountingHandler())


def build_consumer(
    handler: CountingHandler,
    *,
    retry: RetryPolicy = FAST_RETRY,
    processed: Any = None,
) -> Consumer:
    store = processed if processed is not None else InMemoryProcessedStore()
    dead_letters = RecordingPublisher()
    outcomes: list[tuple[str, str]] = []
    processor = EventProcessor(
        consumer=CONSUMER,
        handlers={ParticipantRegistered: handler},
        processed=store,
        dead_letters=dead_letters,
        dead_letter_topic=DEAD_LETTERS,
        retry=retry,
        metrics=ProcessorMetrics(on_outcome=lambda t, outcome: outcomes.append((t, outcome))),
    )
    return Consumer(processor, handler, store, dead_letters, outcomes)


async def test_a_good_event_is_handled_once_and_marked_processed(consumer: Consumer) -> None:
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.succeeded == [envelope.id]
    assert await consumer.processed.seen(CONSUMER, envelope.id)
    assert consumer.dead_letters.messages == []
    assert consumer.outcomes == [(ParticipantRegistered.event_type, "processed")]
    assert consumer.processor.event_types == [ParticipantRegistered.event_type]


async def test_the_same_event_delivered_again_is_skipped(consumer: Consumer) -> None:
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))
    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.calls == [envelope.id]
    assert consumer.outcomes[-1] == (ParticipantRegistered.event_type, "duplicate")


async def test_processed_ids_are_kept_per_consumer(consumer: Consumer) -> None:
    envelope = participant_registered()
    await consumer.processed.mark("notification", envelope.id)

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.succeeded == [envelope.id]


async def test_bad_bytes_go_to_the_dead_letter_topic_and_the_next_record_still_processes(
    consumer: Consumer,
) -> None:
    # Kafka allows a header without a value
    headers: Any = (("trace", b"abc"), ("empty", None))
    bad = record_of(b"{definitely not json", headers=headers)
    good = participant_registered()

    await consumer.processor.process(bad)
    await consumer.processor.process(record_of(good.to_json_bytes()))

    (dead,) = consumer.dead_letters.messages
    assert dead.topic == DEAD_LETTERS
    assert dead.value == b"{definitely not json"
    assert dead.key == KAISERSLAUTERN
    assert dead.headers[DLQ_REASON].startswith("not JSON: ")
    assert dead.headers["trace"] == "abc"
    assert dead.headers["empty"] == ""
    assert dead.headers["wok-dlq-consumer"] == CONSUMER
    assert dead.headers["wok-dlq-topic"] == "registration.events.v1"
    assert dead.headers["wok-dlq-partition"] == "2"
    assert dead.headers["wok-dlq-offset"] == str(bad.offset)
    assert dead.headers["wok-dlq-failed-at"]
    assert consumer.handler.succeeded == [good.id]
    assert consumer.outcomes == [
        ("undecodable", "dead_lettered"),
        (ParticipantRegistered.event_type, "processed"),
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty message"),
        (b"[]", "not a CloudEvents envelope: expected a JSON object"),
        (b'{"type": "registration.participant.registered.v7"}', "unknown event type"),
    ],
    ids=["empty", "array", "unknown-type"],
)
async def test_an_undecodable_message_is_dead_lettered_with_its_reason(
    consumer: Consumer, value: bytes | None, reason: str
) -> None:
    await consumer.processor.process(record_of(value))

    (dead,) = consumer.dead_letters.messages
    assert dead.headers[DLQ_REASON].startswith(reason)
    assert dead.value == (value or b"")
    assert consumer.handler.calls == []


async def test_an_invalid_event_is_dead_lettered_with_the_field_named(consumer: Consumer) -> None:
    raw = participant_registered().to_json_bytes().replace(b'"confirmed"', b'"maybe"')

    await consumer.processor.process(record_of(raw))

    (dead,) = consumer.dead_letters.messages
    assert "data.status" in dead.headers[DLQ_REASON]
    assert dead.value == raw


async def test_an_event_type_without_a_handler_is_ignored(consumer: Consumer) -> None:
    other = new_envelope(
        MunicipalityRegistered(ags=KAISERSLAUTERN, name="Kaiserslautern", kind="city", land="07"),
        source="/wok/registration",
        municipality=KAISERSLAUTERN,
    )

    await consumer.processor.process(record_of(other.to_json_bytes()))

    assert consumer.handler.calls == []
    assert consumer.dead_letters.messages == []
    assert not await consumer.processed.seen(CONSUMER, other.id)
    assert consumer.outcomes == [(MunicipalityRegistered.event_type, "ignored")]


async def test_a_record_declaring_a_type_without_a_handler_is_ignored_undecoded(
    consumer: Consumer,
) -> None:
    declared = ((EVENT_TYPE_HEADER, MunicipalityRegistered.event_type.encode()),)

    await consumer.processor.process(record_of(b"{not json", headers=declared))

    assert consumer.dead_letters.messages == []
    assert consumer.outcomes == [(MunicipalityRegistered.event_type, "ignored")]

    # declaring a handled type does not excuse the body: it is checked and dead-lettered
    handled = ((EVENT_TYPE_HEADER, ParticipantRegistered.event_type.encode()),)
    await consumer.processor.process(record_of(b"{not json", headers=handled))
    (dead,) = consumer.dead_letters.messages
    assert dead.headers[DLQ_REASON].startswith("not JSON")
    assert consumer.handler.calls == []


async def test_a_body_of_another_type_than_its_header_names_is_dead_lettered(
    consumer: Consumer,
) -> None:
    """The consumers handling a registration skip it when its header names another type;
    one reading it must not pass it over as "not mine" (it would be lost to everyone)."""
    body = participant_registered().to_json_bytes()
    other = ((EVENT_TYPE_HEADER, b"wok.somewhere.else.v1"),)

    await consumer.processor.process(record_of(body, headers=other))

    (dead,) = consumer.dead_letters.messages
    assert "'wok.somewhere.else.v1'" in dead.headers[DLQ_REASON]
    assert ParticipantRegistered.event_type in dead.headers[DLQ_REASON]
    assert consumer.handler.calls == []


async def test_a_handler_failing_a_few_times_is_retried_until_it_succeeds() -> None:
    consumer = build_consumer(CountingHandler(errors=always(ValueError("flaky"), 2)))
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.calls == [envelope.id] * 3
    assert consumer.handler.succeeded == [envelope.id]
    assert consumer.dead_letters.messages == []
    assert await consumer.processed.seen(CONSUMER, envelope.id)


async def test_a_handler_that_always_fails_is_dead_lettered_after_max_attempts() -> None:
    consumer = build_consumer(CountingHandler(errors=always(ValueError("no such event"), 99)))
    envelope = participant_registered()
    raw = envelope.to_json_bytes()

    await consumer.processor.process(record_of(raw, headers=(("content-type", b"x"),)))

    assert len(consumer.handler.calls) == FAST_RETRY.max_attempts
    (dead,) = consumer.dead_letters.messages
    assert dead.value == raw
    assert dead.headers["content-type"] == "x"
    assert dead.headers[DLQ_REASON] == (
        "handler failed after 3 attempts: ValueError('no such event')"
    )
    assert not await consumer.processed.seen(CONSUMER, envelope.id), "a redrive must run it again"
    assert consumer.outcomes == [(ParticipantRegistered.event_type, "dead_lettered")]


@pytest.mark.parametrize(
    "error",
    [TransientError("registration service away"), AutoReconnect("mongodb away"), TimeoutError()],
    ids=["transient-error", "auto-reconnect", "timeout"],
)
async def test_a_dependency_outage_is_retried_past_max_attempts_and_never_dead_lettered(
    error: BaseException,
) -> None:
    outage = FAST_RETRY.max_attempts * 3
    consumer = build_consumer(CountingHandler(errors=always(error, outage)))
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert len(consumer.handler.calls) == outage + 1
    assert consumer.handler.succeeded == [envelope.id]
    assert consumer.dead_letters.messages == []
    assert await consumer.processed.seen(CONSUMER, envelope.id)


async def test_an_outage_does_not_use_up_the_attempts_of_a_later_failure() -> None:
    outage = always(AutoReconnect("mongodb away"), FAST_RETRY.max_attempts + 2)
    consumer = build_consumer(CountingHandler(errors=[*outage, ValueError("once")]))
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.succeeded == [envelope.id]
    assert consumer.dead_letters.messages == []


class FlakyProcessedStore:
    """A processed store whose database drops out once on each kind of call."""

    def __init__(self) -> None:
        self.stored = InMemoryProcessedStore()
        self.broken = {"seen", "mark"}

    def _drop_once(self, call: str) -> None:
        if call in self.broken:
            self.broken.discard(call)
            raise AutoReconnect(f"{call}: connection reset")

    async def seen(self, consumer: str, event_id: str) -> bool:
        self._drop_once("seen")
        return await self.stored.seen(consumer, event_id)

    async def mark(self, consumer: str, event_id: str) -> None:
        self._drop_once("mark")
        await self.stored.mark(consumer, event_id)


async def test_a_processed_store_outage_is_waited_out() -> None:
    store = FlakyProcessedStore()
    consumer = build_consumer(CountingHandler(), processed=store)
    envelope = participant_registered()

    await consumer.processor.process(record_of(envelope.to_json_bytes()))

    assert consumer.handler.succeeded == [envelope.id]
    assert store.broken == set()
    assert await store.seen(CONSUMER, envelope.id)


async def test_a_dead_letter_publish_is_retried_while_the_broker_is_away(
    consumer: Consumer,
) -> None:
    consumer.dead_letters.failures_left = 2

    await consumer.processor.process(record_of(b"not json"))

    (dead,) = consumer.dead_letters.messages
    assert dead.value == b"not json"


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = RetryPolicy(max_attempts=5, initial_backoff_s=0.2, max_backoff_s=1.0)

    assert [policy.backoff(attempt) for attempt in range(1, 6)] == [0.2, 0.4, 0.8, 1.0, 1.0]
