"""A municipality's event under another key is dead-lettered, not applied out of order.

Found by tests/faults/test_consumer_faults.py (poison messages with a wrong key were
applied by every consumer). Fast: fake store and publisher, no broker.
"""

from __future__ import annotations

from typing import Any

from wok_contracts import Envelope, ParticipantRegistered, new_envelope
from wok_runtime.consumer import (
    DLQ_REASON,
    EventProcessor,
    InMemoryProcessedStore,
    Record,
    RetryPolicy,
    key_problem,
)

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, str, bytes, dict[str, str]]] = []

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        self.messages.append((topic, key, value, headers))


def registered() -> Envelope[Any]:
    return new_envelope(
        ParticipantRegistered(
            registration_id="reg-1",
            dialogue_event_id="dlg-1",
            ags=KAISERSLAUTERN,
            status="confirmed",
            sector="resident",
        ),
        source="/test",
        municipality=KAISERSLAUTERN,
    )


def record(value: bytes, key: bytes | None) -> Record:
    return Record(topic="registration.events.v1", partition=1, offset=7, key=key, value=value)


async def test_an_event_under_another_municipalitys_key_is_dead_lettered_with_the_reason() -> None:
    applied: list[str] = []

    async def handler(envelope: Envelope[Any]) -> None:
        applied.append(envelope.id)

    dead = Recorder()
    processed = InMemoryProcessedStore()
    processor = EventProcessor(
        consumer="reporting",
        handlers={ParticipantRegistered: handler},
        processed=processed,
        dead_letters=dead,
        dead_letter_topic="dead-letter.reporting.v1",
        retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.001),
    )
    envelope = registered()
    value = envelope.to_json_bytes()

    await processor.process(record(value, MAINZ.encode()))
    assert applied == []
    [(topic, key, body, headers)] = dead.messages
    assert (topic, key, body) == ("dead-letter.reporting.v1", MAINZ, value)
    assert headers[DLQ_REASON].startswith("wrong key: '07315000' is not the envelope's")
    assert not processed.ids  # not marked: once redriven under the right key it applies

    await processor.process(record(value, KAISERSLAUTERN.encode()))
    assert applied == [envelope.id]
    assert len(dead.messages) == 1


def test_only_a_key_that_names_another_municipality_is_wrong() -> None:
    envelope = registered()
    value = envelope.to_json_bytes()
    assert key_problem(record(value, KAISERSLAUTERN.encode()), envelope) is None
    assert key_problem(record(value, None), envelope) is None  # not judged
    assert key_problem(record(value, b"program"), envelope) is not None
