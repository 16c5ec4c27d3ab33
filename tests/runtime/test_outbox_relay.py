"""The outbox relay publishes every pending event once, in the order it was written.

The documents are shaped exactly as in MongoDB; `apply` plays a MongoDB update on one, so
`with_outbox` and `outbox_update` are exercised by what they produce, not re-implemented.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from wok_contracts import (
    CONTENT_TYPE,
    MunicipalityRegistered,
    decode_envelope,
    new_envelope,
)
from wok_runtime.kafka import KafkaPublisher
from wok_runtime.outbox import (
    EVENT_TYPE_HEADER,
    OUTBOX_FIELD,
    PENDING_FIELD,
    InMemoryOutboxSource,
    OutboundEvent,
    OutboxRelay,
    OutboxWriter,
    PendingMessage,
    outbox_update,
    pending_messages,
    with_outbox,
    with_removal,
    written_messages,
)
from wok_runtime.settings import WokSettings

REGISTRATION_EVENTS = "registration.events.v1"
KAISERSLAUTERN = "07312000"
MAINZ = "07315000"


@dataclass
class RecordingPublisher:
    """Records what is handed over; `failures_left` hand-overs fail first (broker away).
    As `KafkaPublisher.send_all`: after a failed hand-over, the rest of that key is not
    handed over."""

    messages: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    failures_left: int = 0
    rounds: int = 0

    async def send_all(self, messages: Sequence[PendingMessage]) -> list[Awaitable[object]]:
        self.rounds += 1
        acks: list[Awaitable[object]] = []
        failed: dict[str, BaseException] = {}
        for message in messages:
            try:
                if message.key in failed:
                    raise failed[message.key]
                acks.append(await self.send(message))
            except ConnectionError as error:
                failed[message.key] = error
                acks.append(asyncio.ensure_future(_raise(error)))
        return acks

    async def send(self, message: PendingMessage) -> Awaitable[object]:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("broker away")
        self.messages.append((message.topic, message.key, message.value, message.headers))
        return self.acknowledgement(message.event_id)

    def acknowledgement(self, event_id: str) -> Awaitable[object]:
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        acknowledged.set_result(None)
        return acknowledged

    @property
    def event_ids(self) -> list[str]:
        return [decode_envelope(value).id for _, _, value, _ in self.messages]


async def _raise(error: BaseException) -> None:
    raise error


def registered(ags: str, name: str) -> OutboundEvent:
    data = MunicipalityRegistered(ags=ags, name=name, kind="city", land=ags[:2])
    return OutboundEvent(
        REGISTRATION_EVENTS, new_envelope(data, source="/wok/registration", municipality=ags)
    )


def apply(document: dict[str, Any], update: dict[str, Any]) -> None:
    """Play a MongoDB `$set`/`$unset`/`$inc` update with dotted paths on a document."""

    def parent_of(path: str) -> tuple[dict[str, Any], str]:
        *parents, leaf = path.split(".")
        node = document
        for part in parents:
            node = node.setdefault(part, {})
        return node, leaf

    for operator, fields in update.items():
        for path, value in fields.items():
            node, leaf = parent_of(path)
            if operator == "$set":
                node[leaf] = value
            elif operator == "$inc":
                node[leaf] = node.get(leaf, 0) + value
            elif operator == "$unset":
                node.pop(leaf, None)
            else:
                raise AssertionError(f"outbox update uses {operator}, which nx-27017 may not do")


@pytest.fixture
def documents() -> dict[str, dict[str, Any]]:
    return {}


def test_with_outbox_puts_the_events_in_a_map_with_a_pending_counter() -> None:
    first, second = registered(KAISERSLAUTERN, "Kaiserslautern"), registered(KAISERSLAUTERN, "KL")

    document = with_outbox({"_id": KAISERSLAUTERN, "name": "KL"}, [first, second])

    assert document[PENDING_FIELD] == 2
    assert set(document[OUTBOX_FIELD]) == {first.envelope.id, second.envelope.id}
    entry = document[OUTBOX_FIELD][first.envelope.id]
    assert entry["topic"] == REGISTRATION_EVENTS
    assert entry["key"] == KAISERSLAUTERN
    assert decode_envelope(entry["value"].encode()).id == first.envelope.id
    assert document["name"] == "KL"
    assert all("." not in event_id for event_id in document[OUTBOX_FIELD])


def test_outbox_update_sets_fields_and_adds_events_in_one_update() -> None:
    event = registered(KAISERSLAUTERN, "Kaiserslautern")

    update = outbox_update([event], set_fields={"name": "Kaiserslautern"})

    entry = update["$set"].pop(f"{OUTBOX_FIELD}.{event.envelope.id}")
    assert update == {"$inc": {PENDING_FIELD: 1}, "$set": {"name": "Kaiserslautern"}}
    assert entry["key"] == KAISERSLAUTERN
    assert decode_envelope(entry["value"].encode()).id == event.envelope.id


def test_an_event_is_keyed_by_municipality_else_subject_else_its_id() -> None:
    data = MunicipalityRegistered(ags=KAISERSLAUTERN, name="KL", kind="city", land="07")
    by_subject = new_envelope(data, source="/s", municipality=None, subject="program")
    by_id = new_envelope(data, source="/s", municipality=None)

    assert registered(KAISERSLAUTERN, "KL").key == KAISERSLAUTERN
    assert OutboundEvent(REGISTRATION_EVENTS, by_subject).key == "program"
    assert OutboundEvent(REGISTRATION_EVENTS, by_id).key == by_id.id


async def test_every_event_is_published_once_in_the_order_it_was_written(
    documents: dict[str, dict[str, Any]],
) -> None:
    first, second = registered(KAISERSLAUTERN, "KL"), registered(KAISERSLAUTERN, "Kaiserslautern")
    third = registered(KAISERSLAUTERN, "Stadt Kaiserslautern")
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN, "name": "KL"}, [first, second])
    apply(documents[KAISERSLAUTERN], outbox_update([third], set_fields={"name": "Stadt KL"}))
    elsewhere = registered(MAINZ, "Mainz")
    documents[MAINZ] = with_outbox({"_id": MAINZ}, [elsewhere])
    publisher = RecordingPublisher()
    relay = OutboxRelay(sources=[InMemoryOutboxSource(documents)], publisher=publisher)

    assert await relay.drain_once() == 4
    assert await relay.drain_once() == 0

    ids = publisher.event_ids
    assert sorted(ids) == sorted(e.envelope.id for e in (first, second, third, elsewhere))
    kaiserslautern = [i for i in ids if i != elsewhere.envelope.id]
    assert kaiserslautern == [first.envelope.id, second.envelope.id, third.envelope.id]
    for topic, key, value, headers in publisher.messages:
        assert topic == REGISTRATION_EVENTS
        assert key == decode_envelope(value).municipality
        assert headers == {
            "content-type": CONTENT_TYPE,
            "correlation_id": decode_envelope(value).correlationid,
            # consumers without a handler for the type skip it without decoding
            EVENT_TYPE_HEADER: decode_envelope(value).type,
        }
    for document in documents.values():
        assert document[PENDING_FIELD] == 0
        assert document[OUTBOX_FIELD] == {}
    assert documents[KAISERSLAUTERN]["name"] == "Stadt KL"


async def test_an_event_that_failed_to_publish_stays_pending_until_a_later_drain(
    documents: dict[str, dict[str, Any]],
) -> None:
    event = registered(KAISERSLAUTERN, "Kaiserslautern")
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [event])
    publisher = RecordingPublisher(failures_left=1)
    relay = OutboxRelay(sources=[InMemoryOutboxSource(documents)], publisher=publisher)

    with pytest.raises(ConnectionError):
        await relay.drain_once()

    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 1
    assert list(documents[KAISERSLAUTERN][OUTBOX_FIELD]) == [event.envelope.id]
    assert publisher.messages == []

    assert await relay.drain_once() == 1
    assert publisher.event_ids == [event.envelope.id]
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 0


async def test_more_documents_than_one_batch_are_drained_in_one_call(
    documents: dict[str, dict[str, Any]],
) -> None:
    for number in range(7):
        ags = f"0731{number}000"
        documents[ags] = with_outbox({"_id": ags}, [registered(ags, f"Gemeinde {number}")])
    publisher = RecordingPublisher()
    relay = OutboxRelay(
        sources=[InMemoryOutboxSource(documents)], publisher=publisher, batch_size=2
    )

    assert await relay.drain_once() == 7
    assert all(document[PENDING_FIELD] == 0 for document in documents.values())


async def test_the_running_relay_retries_after_a_failure_and_counts_what_it_published(
    documents: dict[str, dict[str, Any]],
) -> None:
    event = registered(KAISERSLAUTERN, "Kaiserslautern")
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [event])
    publisher = RecordingPublisher(failures_left=2)
    published_topics: list[str] = []
    progress = asyncio.Event()

    def on_published(message: PendingMessage) -> None:
        published_topics.append(message.topic)
        progress.set()

    async def until_published(count: int) -> None:
        async with asyncio.timeout(5):
            while True:
                progress.clear()
                if len(published_topics) >= count:
                    return
                await progress.wait()

    relay = OutboxRelay(
        sources=[], publisher=publisher, poll_interval_s=0.01, on_published=on_published
    )
    relay.add_source(InMemoryOutboxSource(documents))

    running = asyncio.create_task(relay.run())
    try:
        await until_published(1)
        later = registered(KAISERSLAUTERN, "KL")
        apply(documents[KAISERSLAUTERN], outbox_update([later]))
        relay.wake()
        await until_published(2)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert publisher.event_ids == [event.envelope.id, later.envelope.id]
    assert published_topics == [REGISTRATION_EVENTS, REGISTRATION_EVENTS]


def test_pending_messages_come_back_in_write_order_whatever_the_map_order() -> None:
    events = [registered(KAISERSLAUTERN, f"Name {n}") for n in range(5)]
    document = with_outbox({"_id": KAISERSLAUTERN}, events)
    # a database may hand the map back in any key order
    document[OUTBOX_FIELD] = dict(reversed(list(document[OUTBOX_FIELD].items())))

    messages = pending_messages(document)

    assert [m.event_id for m in messages] == [e.envelope.id for e in events]
    assert all(json.loads(m.value)["id"] == m.event_id for m in messages)


@dataclass
class SlowPublisher(RecordingPublisher):
    """The broker acknowledges each message `delay_s` after it was handed over, as a real
    one does; it may refuse one event (`refused_event_id`) or fail to hand one over."""

    delay_s: float = 0.05
    refused_event_id: str | None = None
    unsendable_event_id: str | None = None
    awaiting: int = 0
    most_awaiting: int = 0

    async def send(self, message: PendingMessage) -> Awaitable[object]:
        if message.event_id == self.unsendable_event_id:
            raise ConnectionError("no metadata for the topic")
        return await super().send(message)

    def acknowledgement(self, event_id: str) -> Awaitable[object]:
        async def acknowledge() -> None:
            self.awaiting += 1
            self.most_awaiting = max(self.most_awaiting, self.awaiting)
            try:
                await asyncio.sleep(self.delay_s)
            finally:
                self.awaiting -= 1
            if event_id == self.refused_event_id:
                raise ConnectionError("not acknowledged")

        return asyncio.ensure_future(acknowledge())


def relayed_for(publisher: RecordingPublisher, key: str) -> list[str]:
    """The ids of the events handed over under `key`, in that order."""
    return [decode_envelope(value).id for _, k, value, _ in publisher.messages if k == key]


async def test_a_round_hands_everything_over_then_awaits_the_broker_and_marks_in_bulk(
    documents: dict[str, dict[str, Any]],
) -> None:
    municipalities = [f"0731{number}000" for number in range(8)]
    written = {ags: [registered(ags, f"Name {n}") for n in range(3)] for ags in municipalities}
    for ags, events in written.items():
        documents[ags] = with_outbox({"_id": ags}, events[:1])
        apply(documents[ags], outbox_update(events[1:]))
    publisher = SlowPublisher(delay_s=0.05)
    source = InMemoryOutboxSource(documents)
    relay = OutboxRelay(sources=[source], publisher=publisher)

    started = asyncio.get_running_loop().time()
    assert await relay.drain_once() == 24
    elapsed = asyncio.get_running_loop().time() - started

    # 24 acknowledgements of 50 ms one after another would take 1.2 s; all at once, 50 ms.
    assert publisher.most_awaiting == 24
    assert elapsed < 0.6
    for ags, events in written.items():
        assert relayed_for(publisher, ags) == [event.envelope.id for event in events]
    assert all(document[PENDING_FIELD] == 0 for document in documents.values())
    assert all(document[OUTBOX_FIELD] == {} for document in documents.values())
    assert source.mark_calls == 1


async def test_events_of_several_collections_go_out_in_write_order_in_one_round() -> None:
    municipalities: dict[str, dict[str, Any]] = {}
    dialogue_events: dict[str, dict[str, Any]] = {}
    onboarded, scheduled, renamed = (registered(KAISERSLAUTERN, f"KL {n}") for n in range(3))
    municipalities[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [onboarded])
    dialogue_events["event-1"] = with_outbox({"_id": "event-1"}, [scheduled])
    apply(municipalities[KAISERSLAUTERN], outbox_update([renamed]))
    publisher = RecordingPublisher()
    sources = [InMemoryOutboxSource(dialogue_events), InMemoryOutboxSource(municipalities)]
    relay = OutboxRelay(sources=sources, publisher=publisher)

    assert await relay.drain_once() == 3

    assert publisher.event_ids == [e.envelope.id for e in (onboarded, scheduled, renamed)]
    assert [source.mark_calls for source in sources] == [1, 1]


async def test_a_failed_hand_over_holds_back_the_rest_of_that_municipality_only(
    documents: dict[str, dict[str, Any]],
) -> None:
    kaiserslautern = [registered(KAISERSLAUTERN, f"KL {n}") for n in range(3)]
    mainz = [registered(MAINZ, f"Mainz {n}") for n in range(3)]
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, kaiserslautern)
    documents[MAINZ] = with_outbox({"_id": MAINZ}, mainz)
    publisher = SlowPublisher(delay_s=0.01, unsendable_event_id=kaiserslautern[1].envelope.id)
    relay = OutboxRelay(sources=[InMemoryOutboxSource(documents)], publisher=publisher)

    with pytest.raises(ConnectionError):
        await relay.drain_once()

    # KL 2 was not handed over after KL 1 failed: it must not overtake it.
    assert relayed_for(publisher, KAISERSLAUTERN) == [kaiserslautern[0].envelope.id]
    assert relayed_for(publisher, MAINZ) == [e.envelope.id for e in mainz]
    assert documents[MAINZ][PENDING_FIELD] == 0
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 2
    assert sorted(documents[KAISERSLAUTERN][OUTBOX_FIELD]) == sorted(
        e.envelope.id for e in kaiserslautern[1:]
    )

    publisher.unsendable_event_id = None
    assert await relay.drain_once() == 2
    assert relayed_for(publisher, KAISERSLAUTERN) == [e.envelope.id for e in kaiserslautern]
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 0


async def test_an_event_the_broker_did_not_acknowledge_stays_pending_and_is_sent_again(
    documents: dict[str, dict[str, Any]],
) -> None:
    events = [registered(KAISERSLAUTERN, f"KL {n}") for n in range(3)]
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, events)
    publisher = SlowPublisher(delay_s=0.01, refused_event_id=events[1].envelope.id)
    published: list[str] = []
    relay = OutboxRelay(
        sources=[InMemoryOutboxSource(documents)],
        publisher=publisher,
        on_published=lambda message: published.append(message.event_id),
    )

    with pytest.raises(ConnectionError):
        await relay.drain_once()

    assert list(documents[KAISERSLAUTERN][OUTBOX_FIELD]) == [events[1].envelope.id]
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 1
    assert published == [events[0].envelope.id, events[2].envelope.id]

    publisher.refused_event_id = None
    assert await relay.drain_once() == 1
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 0
    # Sent twice (once refused): consumers deduplicate by id; none is lost.
    assert publisher.event_ids.count(events[1].envelope.id) == 2
    assert published[-1] == events[1].envelope.id


async def test_a_write_after_a_quiet_spell_goes_out_at_once_and_a_busy_spell_is_batched(
    documents: dict[str, dict[str, Any]],
) -> None:
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [])
    source = InMemoryOutboxSource(documents)
    publisher = RecordingPublisher()
    published: list[str] = []
    progress = asyncio.Event()

    def on_published(message: PendingMessage) -> None:
        published.append(message.event_id)
        progress.set()

    async def until_published(count: int) -> None:
        async with asyncio.timeout(2):
            while len(published) < count:
                progress.clear()
                await progress.wait()

    relay = OutboxRelay(
        sources=[source],
        publisher=publisher,
        poll_interval_s=5.0,  # only a wake-up can explain a prompt relay
        min_round_interval_s=0.2,
        on_published=on_published,
    )
    running = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.05)  # the first round found nothing
        written_at = loop.time()
        apply(documents[KAISERSLAUTERN], outbox_update([registered(KAISERSLAUTERN, "first")]))
        relay.wake()
        await until_published(1)
        assert loop.time() - written_at < 0.1
        rounds_before = publisher.rounds

        # Ten writes 20 ms apart while busy: at most one round every 200 ms carries them.
        for number in range(10):
            event = registered(KAISERSLAUTERN, f"Name {number}")
            apply(documents[KAISERSLAUTERN], outbox_update([event]))
            relay.wake()
            await asyncio.sleep(0.02)
        await until_published(11)
        # Removed from the document a little later (`mark_interval_s`), all in one write.
        await until(lambda: documents[KAISERSLAUTERN][PENDING_FIELD] == 0)
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert publisher.event_ids == published
    assert documents[KAISERSLAUTERN][OUTBOX_FIELD] == {}
    assert publisher.rounds - rounds_before <= 3
    assert source.mark_calls <= 3


async def test_a_quiet_relay_looks_less_often_yet_a_write_here_goes_out_at_once(
    documents: dict[str, dict[str, Any]],
) -> None:
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [])
    source = InMemoryOutboxSource(documents)
    published: list[str] = []
    relay = OutboxRelay(
        sources=[source],
        publisher=RecordingPublisher(),
        poll_interval_s=0.02,
        idle_poll_interval_s=0.32,
        on_published=lambda message: published.append(message.event_id),
    )
    running = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    try:
        # Quiet: looks after 20, 40, 80, 160, 320, 320 ms ... instead of every 20 ms.
        await asyncio.sleep(1.0)
        assert source.find_calls <= 9

        # A write of this process wakes it at once.
        written_at = loop.time()
        mine = registered(KAISERSLAUTERN, "mine")
        apply(documents[KAISERSLAUTERN], outbox_update([mine]))
        relay.wake()
        await until(lambda: published == [mine.envelope.id])
        assert loop.time() - written_at < 0.1

        # Another process's write (no wake-up) is found by a look, at the latest after the
        # longest quiet interval.
        await until(lambda: documents[KAISERSLAUTERN][PENDING_FIELD] == 0)
        await asyncio.sleep(0.7)  # quiet again
        documents[MAINZ] = with_outbox({"_id": MAINZ}, [theirs := registered(MAINZ, "theirs")])
        written_at = loop.time()
        await until(lambda: theirs.envelope.id in published)
        assert loop.time() - written_at < 0.32 + 0.1
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


@dataclass
class StubBroker:
    """Stands in for FastStream's broker: refuses the messages of `refused` event ids."""

    refused: set[str]
    published: list[tuple[str, bytes | None]] = field(default_factory=list)

    async def publish(self, value: bytes, *, topic: str, key: bytes | None, **_: Any) -> None:
        if decode_envelope(value).id in self.refused:
            raise ConnectionError("broker away")
        self.published.append((topic, key))


async def test_the_kafka_publisher_without_its_producer_holds_back_the_rest_of_a_failed_key(
    documents: dict[str, dict[str, Any]],
) -> None:
    kaiserslautern = [registered(KAISERSLAUTERN, f"KL {n}") for n in range(3)]
    mainz = registered(MAINZ, "Mainz")
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, kaiserslautern)
    documents[MAINZ] = with_outbox({"_id": MAINZ}, [mainz])
    messages = sorted(
        (m for d in documents.values() for m in pending_messages(d)), key=lambda m: m.order
    )
    broker = StubBroker(refused={kaiserslautern[1].envelope.id})
    publisher = KafkaPublisher(broker, WokSettings(topic_prefix="t."))  # type: ignore[arg-type]

    acks = await publisher.send_all(messages)
    outcomes = await asyncio.gather(*acks, return_exceptions=True)

    by_event = {m.event_id: o for m, o in zip(messages, outcomes, strict=True)}
    assert by_event[kaiserslautern[0].envelope.id] is None
    assert isinstance(by_event[kaiserslautern[1].envelope.id], ConnectionError)
    assert isinstance(by_event[kaiserslautern[2].envelope.id], ConnectionError)  # held back
    assert by_event[mainz.envelope.id] is None
    assert broker.published == [
        ("t." + REGISTRATION_EVENTS, KAISERSLAUTERN.encode()),
        ("t." + REGISTRATION_EVENTS, MAINZ.encode()),
    ]


# -- events a writer hands over, and removals folded into its next write ----------------------


async def until(condition: Any) -> None:
    """Wait up to 2 s for `condition()`."""
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("not within 2 s")


async def test_offered_events_go_out_without_a_find_and_are_removed_later_in_one_write(
    documents: dict[str, dict[str, Any]],
) -> None:
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [])
    source = InMemoryOutboxSource(documents)
    publisher = RecordingPublisher()
    relay = OutboxRelay(
        sources=[source], publisher=publisher, poll_interval_s=5.0, mark_interval_s=0.1
    )
    running = asyncio.create_task(relay.run())
    try:
        await until(lambda: source.find_calls == 1)  # the first round looks everywhere
        written = []
        for number in range(5):
            event = registered(KAISERSLAUTERN, f"Name {number}")
            update = outbox_update([event])
            apply(documents[KAISERSLAUTERN], update)
            relay.offer(source, written_messages(KAISERSLAUTERN, update))
            written.append(event.envelope.id)
            await asyncio.sleep(0.01)
        await until(lambda: len(publisher.messages) == 5)
        assert publisher.event_ids == written
        assert source.find_calls == 1, "offered events need no read"
        await until(lambda: documents[KAISERSLAUTERN][PENDING_FIELD] == 0)
        assert documents[KAISERSLAUTERN][OUTBOX_FIELD] == {}
        assert source.mark_calls <= 2
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running


async def test_a_writer_removes_published_events_in_its_next_write_and_the_relay_does_not(
    documents: dict[str, dict[str, Any]],
) -> None:
    first, second = registered(KAISERSLAUTERN, "first"), registered(KAISERSLAUTERN, "second")
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [first])
    source = InMemoryOutboxSource(documents)
    relay = OutboxRelay(sources=[source], publisher=RecordingPublisher(), mark_interval_s=60)
    writer = OutboxWriter(relay, source)
    sent, _ = await relay._round(full=True)  # published, not yet removed
    assert sent == 1 and documents[KAISERSLAUTERN][PENDING_FIELD] == 1

    published = writer.take_published(KAISERSLAUTERN)
    assert [m.event_id for m in published] == [first.envelope.id]
    assert writer.take_published(KAISERSLAUTERN) == [], "taken once"
    condition, update = with_removal(
        {"_id": KAISERSLAUTERN}, outbox_update([second]), [m.event_id for m in published]
    )
    assert condition == {
        "_id": KAISERSLAUTERN,
        f"{OUTBOX_FIELD}.{first.envelope.id}": {"$exists": True},
    }
    apply(documents[KAISERSLAUTERN], update)
    writer.removed(published)
    assert list(documents[KAISERSLAUTERN][OUTBOX_FIELD]) == [second.envelope.id]
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 1

    await relay.drain_once()  # publishes the second; the first is not sent again
    assert relay._publisher.event_ids == [first.envelope.id, second.envelope.id]  # type: ignore[attr-defined]
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 0
    assert source.mark_calls == 1

    # Handed back (the writer's write did not happen): the relay removes them itself.
    third = registered(KAISERSLAUTERN, "third")
    apply(documents[KAISERSLAUTERN], outbox_update([third]))
    await relay._round(full=True)
    writer.kept(writer.take_published(KAISERSLAUTERN))
    await relay.drain_once()
    assert documents[KAISERSLAUTERN][PENDING_FIELD] == 0
    assert relay._publisher.event_ids.count(third.envelope.id) == 1  # type: ignore[attr-defined]


async def test_after_a_failed_offered_event_the_next_round_reads_all_in_write_order(
    documents: dict[str, dict[str, Any]],
) -> None:
    documents[KAISERSLAUTERN] = with_outbox({"_id": KAISERSLAUTERN}, [])
    source = InMemoryOutboxSource(documents)
    publisher = RecordingPublisher(failures_left=1)
    relay = OutboxRelay(sources=[source], publisher=publisher)
    await relay._round(full=True)
    events = [registered(KAISERSLAUTERN, f"KL {n}") for n in range(2)]
    update = outbox_update(events[:1])
    apply(documents[KAISERSLAUTERN], update)
    relay.offer(source, written_messages(KAISERSLAUTERN, update))
    with pytest.raises(ConnectionError):
        await relay._relay_now()
    later = outbox_update(events[1:])
    apply(documents[KAISERSLAUTERN], later)
    relay.offer(source, written_messages(KAISERSLAUTERN, later))
    await relay._relay_now()  # a full round: the failed one first, then the later one
    assert publisher.event_ids == [e.envelope.id for e in events]


async def test_a_full_round_leaves_another_writers_young_events_to_it(
    documents: dict[str, dict[str, Any]],
) -> None:
    ours, theirs, abandoned = (registered(KAISERSLAUTERN, name) for name in ("a", "b", "c"))
    documents["ours"] = with_outbox({"_id": "ours"}, [ours])
    documents["theirs"] = with_outbox({"_id": "theirs"}, [theirs])
    documents["abandoned"] = with_outbox({"_id": "abandoned"}, [abandoned])
    for name in ("theirs", "abandoned"):
        for entry in documents[name][OUTBOX_FIELD].values():
            entry["writer"] = "another process"
    documents["abandoned"][OUTBOX_FIELD][abandoned.envelope.id]["order"] -= 10**10  # 10 s old
    publisher = RecordingPublisher()
    relay = OutboxRelay(sources=[InMemoryOutboxSource(documents)], publisher=publisher)
    assert await relay.drain_once() == 2
    assert sorted(publisher.event_ids) == sorted([ours.envelope.id, abandoned.envelope.id])
    assert documents["theirs"][PENDING_FIELD] == 1


async def test_another_writers_events_left_pending_are_taken_over_once_old_enough(
    documents: dict[str, dict[str, Any]],
) -> None:
    """A writer that died right after its write: another relay publishes its events once
    they are `foreign_grace_s` old, even while busy with its own (no quiet poll needed)."""
    theirs = registered(KAISERSLAUTERN, "b")
    documents["theirs"] = with_outbox({"_id": "theirs"}, [theirs])
    for entry in documents["theirs"][OUTBOX_FIELD].values():
        entry["writer"] = "a process that died"
    publisher = RecordingPublisher()
    source = InMemoryOutboxSource(documents)
    relay = OutboxRelay(
        sources=[source], publisher=publisher, foreign_grace_s=0.05, rescan_interval_s=60
    )
    assert await relay._relay_now() == 0  # the first round: too young, left to its writer
    await asyncio.sleep(0.06)
    assert await relay._relay_now() == 1  # looked again once old enough
    assert publisher.event_ids == [theirs.envelope.id]
    assert documents["theirs"][PENDING_FIELD] == 0
