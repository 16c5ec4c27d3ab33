"""Snapshot publishing: what goes on the exchange stream, when, and with which sequence."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import CONTENT_TYPE, AggregateScope, AggregateSnapshot, decode_envelope
from wok_contracts.topics import EXCHANGE_AGGREGATES
from wok_reporting.adapters.repository import (
    InMemoryProjectionRepository,
    InMemorySnapshotRepository,
)
from wok_reporting.domain import PROGRAM, REGISTRATION, REGISTRATIONS_TOTAL, Fact
from wok_reporting.snapshots import SnapshotPublisher

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
KL = "07312000"


class RecordingPublisher:
    def __init__(self, *, failures: int = 0) -> None:
        self.sent: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.failures = failures

    async def publish(self, *, topic: str, key: str, value: bytes, headers: dict[str, str]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker away")
        self.sent.append((topic, key, value, headers))

    def snapshots(self, key: str | None = None) -> list[AggregateSnapshot]:
        return [
            decode_envelope(value).data
            for _, sent_key, value, _ in self.sent
            if key is None or sent_key == key
        ]


class BatchingPublisher(RecordingPublisher):
    """As the runtime's `KafkaPublisher.send_all`: hands a round over at once, one
    acknowledgement each; the scopes in `refused` are not acknowledged (once each)."""

    def __init__(self, *, refused: set[str] | None = None) -> None:
        super().__init__()
        self.hand_overs = 0
        self.refused = set(refused or ())

    async def send_all(self, messages: Any) -> list[asyncio.Future[object]]:
        self.hand_overs += 1
        acks: list[asyncio.Future[object]] = []
        for message in messages:
            ack: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            if message.key in self.refused:
                self.refused.discard(message.key)
                ack.set_exception(ConnectionError("not acknowledged"))
            else:
                self.sent.append((message.topic, message.key, message.value, message.headers))
                ack.set_result(None)
            acks.append(ack)
        return acks


class MarkCountingStore(InMemorySnapshotRepository):
    def __init__(self) -> None:
        super().__init__()
        self.mark_writes = 0
        self.save_writes = 0

    async def save_all(self, items: Any) -> set[str]:
        self.save_writes += 1
        return await super().save_all(items)

    async def mark_all_published(self, marks: Any) -> None:
        self.mark_writes += 1
        await super().mark_all_published(marks)


class Setup:
    def __init__(
        self,
        *,
        failures: int = 0,
        interval_s: float = 0.05,
        wire: RecordingPublisher | None = None,
    ) -> None:
        self.projections = InMemoryProjectionRepository()
        self.store = MarkCountingStore()
        self.wire = wire or RecordingPublisher(failures=failures)
        self.publisher = SnapshotPublisher(
            projections=self.projections,
            snapshots=self.store,
            publisher=self.wire,
            interval_s=interval_s,
        )

    async def register(self, count: int, *, ags: str = KL, at: datetime = T0) -> None:
        for index in range(count):
            registration_id = f"r-{ags}-{at.isoformat()}-{index}"
            await self.projections.record(
                Fact(
                    entity=REGISTRATION,
                    entity_id=registration_id,
                    ags=ags,
                    event_id=f"event-of-{registration_id}",
                    event_type="registration.participant.registered.v1",
                    time=at,
                    fields={
                        "dialogue_event_id": "d-1",
                        "status": "confirmed",
                        "sector": "resident",
                    },
                )
            )
            self.publisher.changed()


async def wait_for(condition: Callable[[], object], timeout_s: float = 2.0) -> None:
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not within {timeout_s} s")


async def test_the_first_snapshot_goes_out_at_start_even_with_nothing_known() -> None:
    setup = Setup()

    task = asyncio.create_task(setup.publisher.run())
    try:
        await wait_for(lambda: setup.wire.sent)
    finally:
        task.cancel()

    topic, key, value, headers = setup.wire.sent[0]
    assert (topic, key, headers) == (EXCHANGE_AGGREGATES, PROGRAM, {"content-type": CONTENT_TYPE})
    envelope = decode_envelope(value)
    assert envelope.type == "reporting.aggregate.snapshot.v1"
    assert envelope.data.scope is AggregateScope.PROGRAM
    assert envelope.data.sequence == 1
    assert envelope.data.as_of is None
    assert envelope.data.metrics[REGISTRATIONS_TOTAL] == 0


async def test_each_change_gives_the_changed_scopes_a_higher_sequence() -> None:
    setup = Setup()
    await setup.publisher.publish_changes(force=(PROGRAM,))
    await setup.register(6)

    first = await setup.publisher.publish_changes()
    await setup.register(1, at=T0 + timedelta(minutes=1))
    second = await setup.publisher.publish_changes()

    assert [(s.scope_key, s.sequence) for s in first] == [(PROGRAM, 2), ("07", 1), (KL, 1)]
    assert [(s.scope_key, s.sequence) for s in second] == [(PROGRAM, 3), ("07", 2), (KL, 2)]
    assert second[0].metrics[REGISTRATIONS_TOTAL] == 7
    assert second[0].as_of == T0 + timedelta(minutes=1)


async def test_nothing_is_published_when_nothing_changed_unless_forced() -> None:
    setup = Setup()
    await setup.register(5)
    await setup.publisher.publish_changes()

    assert await setup.publisher.publish_changes() == []
    forced = await setup.publisher.publish_changes(force=(PROGRAM,))
    assert [(s.scope_key, s.sequence) for s in forced] == [(PROGRAM, 2)]


async def test_municipality_snapshots_carry_the_ags_and_are_keyed_by_scope() -> None:
    setup = Setup()
    await setup.register(5)

    await setup.publisher.publish_changes()

    keys = [key for _, key, _, _ in setup.wire.sent]
    assert keys == [PROGRAM, "land:07", f"municipality:{KL}"]
    land = decode_envelope(setup.wire.sent[1][2])
    assert land.municipality is None
    assert land.data.scope is AggregateScope.LAND
    envelope = decode_envelope(setup.wire.sent[2][2])
    assert envelope.municipality == KL
    assert envelope.subject == f"municipality:{KL}"
    assert envelope.data.daily_registrations == {"2026-11-01": 5}


async def test_a_snapshot_stored_but_not_sent_is_sent_unchanged_next_time() -> None:
    setup = Setup(failures=1)
    await setup.register(5)

    with pytest.raises(ConnectionError):
        await setup.publisher.publish_changes()
    retried = await setup.publisher.publish_changes()

    # the scopes are sent side by side: the others went out the first time, the failed one
    # now, as it was stored (sequence 1), and nothing twice
    assert [(s.scope_key, s.sequence) for s in retried] == [(PROGRAM, 1)]
    for scope in (PROGRAM, "land:07", f"municipality:{KL}"):
        assert [s.sequence for s in setup.wire.snapshots(scope)] == [1], scope
        stored = await setup.store.latest(scope)
        assert stored is not None and stored.published


async def test_a_burst_of_changes_is_published_as_one_snapshot() -> None:
    setup = Setup(interval_s=0.1)
    task = asyncio.create_task(setup.publisher.run())
    try:
        await wait_for(lambda: len(setup.wire.sent) == 1)
        await setup.register(8)
        await wait_for(lambda: len(setup.wire.snapshots(PROGRAM)) == 2)
        await asyncio.sleep(0.25)
    finally:
        task.cancel()

    program = setup.wire.snapshots(PROGRAM)
    assert [s.sequence for s in program] == [1, 2]
    assert program[-1].metrics[REGISTRATIONS_TOTAL] == 8


async def test_publishing_retries_while_the_broker_is_away() -> None:
    setup = Setup(failures=2, interval_s=0.01)

    task = asyncio.create_task(setup.publisher.run())
    try:
        await wait_for(lambda: setup.wire.sent)
    finally:
        task.cancel()

    assert setup.wire.snapshots(PROGRAM)[0].sequence == 1


class CountingStore(InMemorySnapshotRepository):
    """Counts the snapshot reads and writes a round makes."""

    def __init__(self) -> None:
        super().__init__()
        self.operations: list[str] = []

    async def latest(self, scope_id: str):  # type: ignore[no-untyped-def]
        self.operations.append(f"latest {scope_id}")
        return await super().latest(scope_id)

    async def all(self):  # type: ignore[no-untyped-def]
        self.operations.append("all")
        return await super().all()

    async def save(self, stored, *, previous_sequence):  # type: ignore[no-untyped-def]
        self.operations.append(f"save {stored.scope_id}")
        return await super().save(stored, previous_sequence=previous_sequence)


async def test_a_round_reads_only_new_facts_and_touches_only_the_scopes_that_changed() -> None:
    setup = Setup()
    setup.store = CountingStore()
    setup.publisher = SnapshotPublisher(
        projections=setup.projections, snapshots=setup.store, publisher=setup.wire, interval_s=0
    )
    others = ("07315000", "09162000", "01001000")
    for ags in (KL, *others):
        await setup.register(6, ags=ags)
    await setup.publisher.publish_changes()

    async def no_full_load() -> None:
        raise AssertionError("a round after the first must not load every fact")

    setup.projections.load = no_full_load  # type: ignore[method-assign]
    setup.store.operations.clear()
    await setup.register(2, ags=KL, at=T0 + timedelta(hours=1))
    changed = await setup.publisher.publish_changes()

    assert [(s.scope_key, s.sequence) for s in changed] == [(PROGRAM, 2), ("07", 2), (KL, 2)]
    assert changed[2].metrics[REGISTRATIONS_TOTAL] == 8
    assert setup.store.operations == ["save program", "save land:07", f"save municipality:{KL}"]
    setup.store.operations.clear()
    assert await setup.publisher.publish_changes() == []
    assert setup.store.operations == []


async def test_a_rounds_snapshots_are_stored_handed_over_and_marked_at_once() -> None:
    wire = BatchingPublisher()
    setup = Setup(wire=wire)
    await setup.register(5)

    published = await setup.publisher.publish_changes()

    assert [(s.scope_key, s.sequence) for s in published] == [(PROGRAM, 1), ("07", 1), (KL, 1)]
    assert (setup.store.save_writes, wire.hand_overs, setup.store.mark_writes) == (1, 1, 1)
    for scope in (PROGRAM, "land:07", f"municipality:{KL}"):
        stored = await setup.store.latest(scope)
        assert stored is not None and stored.published


async def test_a_snapshot_not_acknowledged_stays_unpublished_and_goes_out_next_round() -> None:
    wire = BatchingPublisher(refused={"land:07"})
    setup = Setup(wire=wire)
    await setup.register(5)

    with pytest.raises(ConnectionError):
        await setup.publisher.publish_changes()
    land = await setup.store.latest("land:07")
    assert land is not None and not land.published
    program = await setup.store.latest(PROGRAM)
    assert program is not None and program.published  # acknowledged ones are marked
    retried = await setup.publisher.publish_changes()

    assert [(s.scope_key, s.sequence) for s in retried] == [("07", 1)]
    for scope in (PROGRAM, "land:07", f"municipality:{KL}"):
        assert [s.sequence for s in wire.snapshots(scope)] == [1], scope
        stored = await setup.store.latest(scope)
        assert stored is not None and stored.published
