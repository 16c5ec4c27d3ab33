"""Every query and update shape of the exchange repository, on a real nx-27017, side by side
with the in-memory twin the fast tests use: both must store and answer the same."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from wok_contracts import PeerActivityKind, PeerReason, PeerRole, PeerSuggested, new_envelope
from wok_contracts.events.assessment import MeasureStatus
from wok_contracts.topics import EXCHANGE_PEERS
from wok_exchange.adapters import (
    SUGGESTED,
    WITHDRAWN,
    ExchangeRepository,
    InMemoryExchangeRepository,
    MongoExchangeRepository,
    PairAnnouncement,
)
from wok_exchange.domain import Activity, Measure, PairTold, Scoring
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import (
    InMemoryOutboxSource,
    MongoOutboxSource,
    OutboundEvent,
    OutboxSource,
    pending_messages,
)

KAISERSLAUTERN = "07312000"
MAINZ = "07315000"
T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "nx-27017"])
async def storage(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[ExchangeRepository, OutboxSource]]:
    if request.param == "memory":
        memory = InMemoryExchangeRepository()
        yield memory, InMemoryOutboxSource(memory.announcement_documents)
        return
    client = mongo_client(request.getfixturevalue("mongodb_uri"))
    mongo = MongoExchangeRepository(client[f"wok_exchange_test_{uuid.uuid4().hex[:12]}"])
    await mongo.ensure_indexes()
    try:
        yield mongo, MongoOutboxSource(mongo.announcements)
    finally:
        await client.close()


def scoring(sequence: int, *, deficits: frozenset[int]) -> Scoring:
    return Scoring(
        self_check_id=f"sc-{sequence}",
        ags=KAISERSLAUTERN,
        sequence=sequence,
        scores={1: 12.5, 2: None, 3: 100.0, 4: 0.0, 5: 50.0, 6: 60.0, 7: 70.0},
        strengths=frozenset({3}),
        deficits=deficits,
    )


async def test_scorings_are_stored_once_whole(storage) -> None:
    repository, _ = storage
    first, second = scoring(1, deficits=frozenset({1, 4})), scoring(2, deficits=frozenset())
    assert await repository.add_scoring(first) is True
    assert await repository.add_scoring(first) is False
    assert await repository.add_scoring(second) is True
    stored = sorted(await repository.scorings(), key=lambda s: s.sequence)
    assert stored == [first, second]


async def test_names_are_remembered_and_renamed(storage) -> None:
    repository, _ = storage
    await repository.remember_municipality(ags=KAISERSLAUTERN, name="Kaiserslautern", as_of=T0)
    await repository.remember_municipality(ags=MAINZ, name="Mainz", as_of=T0)
    later = T0 + timedelta(microseconds=1)
    await repository.remember_municipality(ags=MAINZ, name="Landeshauptstadt Mainz", as_of=later)
    assert await repository.municipality_names() == {
        KAISERSLAUTERN: "Kaiserslautern",
        MAINZ: "Landeshauptstadt Mainz",
    }


async def test_a_name_from_an_earlier_event_arriving_late_changes_nothing(storage) -> None:
    """Registration's MunicipalityRegistered and reporting's digests carry the name over
    different topics: the one of the later event stays, whichever arrives last."""
    repository, _ = storage
    renamed_at = datetime(2026, 5, 1, 11, 30, tzinfo=timezone(timedelta(hours=2)))  # 09:30 UTC
    await repository.remember_municipality(ags=MAINZ, name="Neuname", as_of=renamed_at)
    await repository.remember_municipality(ags=MAINZ, name="Altname", as_of=T0)  # 09:00 UTC
    assert await repository.municipality_names() == {MAINZ: "Neuname"}
    # times compare as times, not as they were written: 10:00 UTC is after 11:30+02:00
    await repository.remember_municipality(
        ags=MAINZ, name="Neuester Name", as_of=T0 + timedelta(hours=1)
    )
    assert await repository.municipality_names() == {MAINZ: "Neuester Name"}


async def test_names_kept_without_their_time_give_way_to_the_next_one(mongodb_uri) -> None:
    client = mongo_client(mongodb_uri)
    database = client[f"wok_exchange_test_{uuid.uuid4().hex[:12]}"]
    try:
        await database["municipalities"].insert_one({"_id": MAINZ, "name": "Mainz"})
        repository = MongoExchangeRepository(database)
        await repository.ensure_indexes()
        assert await repository.municipality_names() == {MAINZ: "Mainz"}
        await repository.remember_municipality(ags=MAINZ, name="Neuname", as_of=T0)
        assert await repository.municipality_names() == {MAINZ: "Neuname"}
    finally:
        await client.close()


async def test_measures_keep_their_title_and_latest_status_in_any_order(storage) -> None:
    repository, _ = storage
    planned = Measure("m-1", MAINZ, 2, "Schulungen", MeasureStatus.PLANNED, T0)
    running = Measure("m-1", MAINZ, 2, "", MeasureStatus.RUNNING, T0 + timedelta(days=1))
    await repository.plan_measure(planned)
    await repository.change_measure_status(running)
    await repository.plan_measure(planned)  # redelivered: the status stays
    # a status change that arrives before its plan
    early = Measure("m-2", MAINZ, 6, "", MeasureStatus.DONE, T0 + timedelta(days=2))
    await repository.change_measure_status(early)
    await repository.plan_measure(Measure("m-2", MAINZ, 6, "Treffpunkt", MeasureStatus.PLANNED, T0))

    stored = {m.measure_id: m for m in await repository.measures()}
    assert stored["m-1"] == Measure("m-1", MAINZ, 2, "Schulungen", MeasureStatus.RUNNING, T0)
    assert stored["m-2"] == Measure(
        "m-2", MAINZ, 6, "Treffpunkt", MeasureStatus.DONE, T0 + timedelta(days=2)
    )


async def test_activities_are_stored_once_with_their_time_zone(storage) -> None:
    repository, _ = storage
    activity = Activity(
        source_event_id="e-1",
        ags=MAINZ,
        kind=PeerActivityKind.MEASURE_PLANNED,
        text_de="Mainz plant …",
        text_en="Mainz planned …",
        occurred_at=T0,
        fields=frozenset({2, 5}),
    )
    assert await repository.add_activity(activity) is True
    assert await repository.add_activity(activity) is False
    [stored] = await repository.activities()
    assert stored == activity and stored.occurred_at.tzinfo is not None


@pytest.mark.parametrize("digest_first", [True, False])
async def test_a_measures_own_activity_takes_the_place_of_its_digest_in_either_order(
    storage, digest_first: bool
) -> None:
    """Reporting's digest of a planned measure and the exchange's own reading of the
    measure name the same source event and arrive over different topics in no fixed order:
    the feed keeps the measure's item either way, once."""
    repository, _ = storage
    digest = Activity(
        source_event_id="e-1",
        ags=MAINZ,
        kind=PeerActivityKind.ACTIVITY,
        text_de="Mainz hat eine Maßnahme geplant.",
        text_en="Mainz planned a measure.",
        occurred_at=T0,
        fields=frozenset({2}),
    )
    measure = Activity(
        source_event_id="e-1",
        ags=MAINZ,
        kind=PeerActivityKind.MEASURE_PLANNED,
        text_de="Mainz plant „Schulungen“.",
        text_en="Mainz planned “Schulungen”.",
        occurred_at=T0,
        fields=frozenset({2}),
    )
    first, second = (digest, measure) if digest_first else (measure, digest)

    assert await repository.add_activity(first) is True
    assert await repository.add_activity(second) is digest_first
    assert await repository.add_activity(measure) is False  # and only once

    assert await repository.activities() == [measure]


async def test_an_announcement_is_made_once_and_relayed(storage) -> None:
    repository, source = storage
    event = PeerSuggested(
        suggestion_id=f"2:{KAISERSLAUTERN}:{MAINZ}",
        recipient=MAINZ,
        role=PeerRole.SHARES,
        field=2,
        needing=KAISERSLAUTERN,
        offering=MAINZ,
        peer=KAISERSLAUTERN,
        peer_name="Kaiserslautern",
        reason=PeerReason.STRENGTH,
        needing_score=20.0,
        offering_score=80.0,
    )
    outbound = OutboundEvent(EXCHANGE_PEERS, new_envelope(event, source="/t", municipality=MAINZ))
    told = PairAnnouncement(SUGGESTED, f"2:{KAISERSLAUTERN}:{MAINZ}", MAINZ)
    assert await repository.announce("suggestion:a", [outbound], pair=told) is True
    assert await repository.announce("suggestion:a", [outbound], pair=told) is False
    assert await repository.announce("feed:b", []) is True
    assert await repository.pairs_told() == [
        PairTold(f"2:{KAISERSLAUTERN}:{MAINZ}", MAINZ, suggested=1, withdrawn=0)
    ]

    [document] = await source.documents_with_pending(10)
    [message] = pending_messages(document)
    assert (message.topic, message.key) == (EXCHANGE_PEERS, MAINZ)
    await source.mark_published(message)
    assert await source.documents_with_pending(10) == []


async def test_what_each_municipality_was_told_of_each_pair_is_counted(storage) -> None:
    repository, _ = storage
    pair = f"2:{KAISERSLAUTERN}:{MAINZ}"
    for announcement_id, kind, recipient in (
        ("suggestion:1", SUGGESTED, MAINZ),
        ("suggestion:2", SUGGESTED, KAISERSLAUTERN),
        ("withdrawal:1", WITHDRAWN, MAINZ),
        ("withdrawal:2", WITHDRAWN, KAISERSLAUTERN),
        ("suggestion:3", SUGGESTED, MAINZ),
    ):
        await repository.announce(announcement_id, [], pair=PairAnnouncement(kind, pair, recipient))
    await repository.announce("feed:1", [])

    told = {t.recipient: t for t in await repository.pairs_told()}
    assert told[MAINZ] == PairTold(pair, MAINZ, suggested=2, withdrawn=1)
    assert told[MAINZ].holds
    assert told[KAISERSLAUTERN] == PairTold(pair, KAISERSLAUTERN, suggested=1, withdrawn=1)
    assert not told[KAISERSLAUTERN].holds


async def test_announcements_stored_before_their_kind_was_written_get_it(mongodb_uri) -> None:
    client = mongo_client(mongodb_uri)
    database = client[f"wok_exchange_test_{uuid.uuid4().hex[:12]}"]
    try:
        pair = f"2:{KAISERSLAUTERN}:{MAINZ}"
        await database["announcements"].insert_one({"_id": f"suggestion:{pair}:{MAINZ}"})
        await database["announcements"].insert_one({"_id": f"feed:{MAINZ}:e-1"})
        repository = MongoExchangeRepository(database)
        await repository.ensure_indexes()
        assert await repository.pairs_told() == [PairTold(pair, MAINZ, suggested=1)]
    finally:
        await client.close()
