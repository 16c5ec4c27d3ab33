"""Exchange, the peer matchmaker, under faults (issue 8): SIGKILLed at random moments while
10,000 events stream in over its topics, restarted. What each municipality then reads with
its own key (`/peers`, `/feed`) must be exactly what the played events call for, and every
announcement on `exchange.peers.v1` must be there once: 0 lost, 0 counted twice.

On the 2-core VM exchange applies the 10,000 (about 20,000 announcements) within about 30 s
of the last one sent, with three restarts. (Until it kept its standing between events it
read every self-check, measure and name again for each one: 10,000 took over 4 minutes
without any kill, and this test played 4,000.)

The events are built so that the final state is known by construction, without asking the
killed process or its matching code, whatever order the partitions are taken in:

- Set-up (played first, and waited for): every municipality registered with its key;
  "models" strong in one field each (two per field 1-5, one each for 6 and 7); an
  "improver" whose field 7 rose by 22 points between two self-checks, with measures in
  field 7 between them; "learners" with one deficit each in fields 1-5, scored once.
- The stream (the kills fall here): "togglers" scored again and again with a changing set
  of deficits among fields 6 and 7, so their pairs with the models of those fields are
  suggested, withdrawn and suggested again (the n-th announcement of a pair to a recipient
  follows from each toggler's own sequence of self-checks, kept in order by its key); and
  measures (planned, then statuses changed at random) and reporting's activity digests in
  fields 1-5, where whom they concern cannot change any more. Scores never rise by 15
  points where a deficit could meet them, so no other pair can arise.

The outbox relay may send an event again after a crash with the same envelope id (consumers
deduplicate by id): on the topic each announcement must carry exactly one distinct envelope
id. `/feed` answers at most 500 items: each feed is checked over HTTP for its newest 500
(every item of the feeds that are shorter) and in full on the topic.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.faults.conftest import fault_stack
from tests.faults.playback import (
    SETTLE_S,
    SOURCE,
    as_messages,
    eventually,
    kill_and_restart,
    lag,
    report,
    seeded,
    start_producer,
    topic,
    unique_ags,
)
from wok_cli.devstack import EmbeddedStack
from wok_contracts import (
    ActivityDigest,
    AssessmentLevel,
    AssessmentScored,
    Envelope,
    EventData,
    FieldScore,
    MeasurePlanned,
    MeasureStatus,
    MeasureStatusChanged,
    MunicipalityRegistered,
    new_envelope,
)
from wok_contracts.events.registration import MunicipalityKeyIssued

EVENTS = 10_000
KILLS = 3
STABLE_FIELDS = (1, 2, 3, 4, 5)  # learners' deficits: fixed after the set-up
TOGGLED_FIELDS = (6, 7)  # togglers' deficits: changing all through the stream
MODELS_PER_FIELD = 2
LEARNERS_PER_FIELD = 2
TOGGLERS = 8
SCORINGS_PER_TOGGLER = 10
MEASURES = 80  # planned during the stream; every other measure event changes a status
STATUS_CHANGES = 800
FEED_LIMIT = 500  # the most /feed answers
STREAM_CHUNK, STREAM_PAUSE_S = 250, 0.5  # the stream takes about 20 s to send
IMPROVER_MEASURES = 3
IMPROVEMENT = 22.0  # the improving model's gain in field 7 (15 points make an offer)

STRONG, MIDDLE, WEAK, TOGGLED_WEAK, TOGGLED_OK = 80.0, 50.0, 20.0, 20.0, 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with fault_stack(tmp_path_factory, services=("exchange",)) as running:
        yield running


# --- the played world ----------------------------------------------------------------------


@dataclass
class Town:
    """One played municipality, its key and its self-checks in order."""

    ags: str
    name: str
    key: str
    scorings: list[AssessmentScored] = field(default_factory=list)

    @property
    def latest(self) -> AssessmentScored | None:
        return self.scorings[-1] if self.scorings else None

    def deficits(self) -> set[int]:
        return set(self.latest.deficits) if self.latest else set()

    def strengths(self) -> set[int]:
        return set(self.latest.strengths) if self.latest else set()

    def score(self, field_number: int) -> float | None:
        if self.latest is None:
            return None
        return next(s.score for s in self.latest.fields if s.field == field_number)


@dataclass
class PlayedMeasure:
    measure_id: str
    ags: str
    field: int
    title: str
    status: MeasureStatus
    planned_at: datetime


@dataclass(frozen=True)
class Activity:
    """A played event the feed is made of: a measure's plan or status change, or a digest."""

    source_event_id: str
    ags: str
    kind: str
    occurred_at: datetime
    measure_field: int | None  # None: a digest (it concerns the fields of its pairs)
    text_en: tuple[str, ...]  # a digest's exact text; what a measure's text must contain


@dataclass(frozen=True)
class Pair:
    """Municipality `needing` lacks `field`; `offering` is strong in it or improved."""

    field: int
    needing: str
    offering: str
    reason: str
    improvement: float | None

    @property
    def suggestion_id(self) -> str:
        return f"{self.field}:{self.needing}:{self.offering}"


@dataclass
class World:
    towns: dict[str, Town] = field(default_factory=dict)
    models: dict[int, list[str]] = field(default_factory=dict)  # field -> strong there
    improver: str = ""
    learners: list[str] = field(default_factory=list)
    togglers: list[str] = field(default_factory=list)
    measures: dict[str, PlayedMeasure] = field(default_factory=dict)
    activities: list[Activity] = field(default_factory=list)
    # (suggestion id, recipient, "suggested" | "withdrawn") -> how many times it is told
    told: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    setup: list[tuple[str, Envelope[Any]]] = field(default_factory=list)  # (topic, envelope)
    setup_view: dict[str, tuple[bool, list[int], list[int], list[str]]] = field(
        default_factory=dict
    )
    stream: list[tuple[str, Envelope[Any]]] = field(default_factory=list)

    def offerers(self, field_number: int) -> list[tuple[str, str, float | None]]:
        """(AGS, reason, improvement) of each municipality that can help in the field."""
        found: list[tuple[str, str, float | None]] = [
            (ags, "strength", None) for ags in self.models.get(field_number, [])
        ]
        if field_number == 7:
            found.append((self.improver, "improvement", IMPROVEMENT))
        return found

    def pairs(self) -> list[Pair]:
        """Every pair the final self-checks call for (by construction: deficits here only
        ever meet the models of the field)."""
        found = []
        for ags in (*self.learners, *self.togglers):
            for number in sorted(self.towns[ags].deficits()):
                for offering, reason, improvement in self.offerers(number):
                    found.append(Pair(number, ags, offering, reason, improvement))
        return found


def scoring(
    ags: str,
    *,
    sequence: int,
    scores: dict[int, float],
    strengths: Sequence[int] = (),
    deficits: Sequence[int] = (),
) -> AssessmentScored:
    return AssessmentScored(
        self_check_id=f"fault-sc-{ags}-{sequence}",
        ags=ags,
        sequence=sequence,
        catalogue_version="2026.1",
        fields=[
            FieldScore(
                field=number,
                score=scores.get(number, MIDDLE),
                level=AssessmentLevel.DEVELOPING,
                coverage=1.0,
                answered=8,
                questions=8,
            )
            for number in range(1, 8)
        ],
        overall=MIDDLE,
        overall_level=AssessmentLevel.DEVELOPING,
        strengths=sorted(strengths),
        deficits=sorted(deficits),
    )


class Clock:
    """Envelope times one millisecond apart in the order the events are built, so the feed's
    newest-first order is known."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)

    def tick(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def build_world(rng: Random) -> World:
    world = World()
    clock = Clock()

    def envelope(data: EventData, ags: str) -> Envelope[Any]:
        built = new_envelope(data, source=SOURCE, municipality=ags)
        built.time = clock.tick()
        return built

    def town(kind: str) -> Town:
        ags = unique_ags(rng)
        made = Town(ags=ags, name=f"{kind} {ags}", key=f"fault-key-{uuid.uuid4().hex}")
        world.towns[ags] = made
        world.setup.append(
            (
                "registration.events.v1",
                envelope(
                    MunicipalityRegistered(ags=ags, name=made.name, kind="town", land=ags[:2]),
                    ags,
                ),
            )
        )
        world.setup.append(
            (
                "registration.events.v1",
                envelope(
                    MunicipalityKeyIssued(
                        ags=ags,
                        key_id=uuid.uuid4().hex,
                        key_hash=hashlib.sha256(made.key.encode()).hexdigest(),
                    ),
                    ags,
                ),
            )
        )
        return made

    def scored(target: Town, data: AssessmentScored, into: list[tuple[str, Envelope[Any]]]) -> None:
        target.scorings.append(data)
        into.append(("assessment.events.v1", envelope(data, target.ags)))

    # Set-up: models, the improving model, learners (scored), togglers (not yet scored).
    for number in (*STABLE_FIELDS, *TOGGLED_FIELDS):
        count = MODELS_PER_FIELD if number in STABLE_FIELDS else 1
        for _ in range(count):
            model = town("Vorbild")
            world.models.setdefault(number, []).append(model.ags)
            scored(
                model,
                scoring(model.ags, sequence=1, scores={number: STRONG}, strengths=[number]),
                world.setup,
            )
    # The improving model: strong in field 6 at first (nobody lacks it yet), then no longer
    # strong there but 22 points better in field 7; its measures in field 7 come between
    # the two self-checks on its partition, so the second one shown means all are stored.
    improver = town("Aufsteiger")
    world.improver = improver.ags
    first = scoring(improver.ags, sequence=1, scores={6: STRONG, 7: 40.0}, strengths=[6])
    scored(improver, first, world.setup)
    for _ in range(IMPROVER_MEASURES):
        plan_measure(world, rng, envelope, ags=improver.ags, field_number=7, into=world.setup)
    second = scoring(improver.ags, sequence=2, scores={6: STRONG, 7: 40.0 + IMPROVEMENT})
    scored(improver, second, world.setup)
    for number in STABLE_FIELDS:
        for _ in range(LEARNERS_PER_FIELD):
            learner = town("Lernort")
            world.learners.append(learner.ags)
            scored(
                learner,
                scoring(learner.ags, sequence=1, scores={number: WEAK}, deficits=[number]),
                world.setup,
            )
    world.togglers = [town("Wechselort").ags for _ in range(TOGGLERS)]
    world.setup_view = {ags: setup_view(world, ags) for ags in world.towns}

    # The stream: toggler self-checks, measures and digests, drawn in turn.
    lanes: list[list[str]] = []
    for ags in world.togglers:
        lanes.append([f"score:{ags}"] * SCORINGS_PER_TOGGLER)
    measure_owners = [
        *(ags for number in STABLE_FIELDS for ags in world.models[number]),
        *world.learners,
        *world.togglers,
    ]
    changes = Counter(rng.randrange(MEASURES) for _ in range(STATUS_CHANGES))
    for index in range(MEASURES):
        lanes.append([f"plan:{index}"] + [f"change:{index}"] * changes[index])
    fixed = sum(len(lane) for lane in lanes) + len(world.setup)
    digests = EVENTS - fixed
    assert digests > 0, "the world's set-up and measures leave no room for digests"
    lanes.append(["digest"] * digests)
    measure_ids: dict[int, str] = {}
    while lanes:
        lane = rng.choices(lanes, weights=[len(lane) for lane in lanes])[0]
        step = lane.pop(0)
        if not lane:
            lanes.remove(lane)
        kind, _, subject = step.partition(":")
        if kind == "score":
            toggler = world.towns[subject]
            deficits = [n for n in TOGGLED_FIELDS if rng.random() < 0.5]
            scores = {n: TOGGLED_WEAK if n in deficits else TOGGLED_OK for n in TOGGLED_FIELDS}
            before = toggler.deficits()
            scored(
                toggler,
                scoring(
                    toggler.ags,
                    sequence=len(toggler.scorings) + 1,
                    scores=scores,
                    deficits=deficits,
                ),
                world.stream,
            )
            count_told(world, toggler.ags, before=before, after=set(deficits))
        elif kind == "plan":
            owner = rng.choice(measure_owners)
            number = next(
                (n for n in STABLE_FIELDS if owner in world.models[n]), rng.choice(STABLE_FIELDS)
            )
            measure_ids[int(subject)] = plan_measure(
                world, rng, envelope, ags=owner, field_number=number, into=world.stream
            )
        elif kind == "change":
            change_status(world, rng, envelope, measure_id=measure_ids[int(subject)])
        else:
            digest(world, rng, clock)
    assert len(world.setup) + len(world.stream) == EVENTS
    for pair in world.pairs():
        if pair.field in STABLE_FIELDS:
            for recipient in (pair.needing, pair.offering):
                world.told[(pair.suggestion_id, recipient, "suggested")] += 1
    return world


def setup_view(world: World, ags: str) -> tuple[bool, list[int], list[int], list[str]]:
    """What /peers shows a municipality once the set-up is applied: scored, deficits,
    strengths and its pairs."""
    town = world.towns[ags]
    pairs = sorted(p.suggestion_id for p in world.pairs() if ags in (p.needing, p.offering))
    return town.latest is not None, sorted(town.deficits()), sorted(town.strengths()), pairs


def count_told(world: World, toggler: str, *, before: set[int], after: set[int]) -> None:
    """Each pair of the toggler that begins to hold is suggested to both sides once more,
    each that ends is withdrawn from both once more."""
    for number in TOGGLED_FIELDS:
        if (number in before) == (number in after):
            continue
        kind = "suggested" if number in after else "withdrawn"
        for offering, _, _ in world.offerers(number):
            suggestion_id = f"{number}:{toggler}:{offering}"
            for recipient in (toggler, offering):
                world.told[(suggestion_id, recipient, kind)] += 1


def plan_measure(
    world: World,
    rng: Random,
    envelope: Any,
    *,
    ags: str,
    field_number: int,
    into: list[tuple[str, Envelope[Any]]],
) -> str:
    title = f"Maßnahme {uuid.UUID(int=rng.getrandbits(128)).hex[:8]}"
    data = MeasurePlanned(
        measure_id=str(uuid.UUID(int=rng.getrandbits(128))),
        ags=ags,
        field=field_number,
        title=title,
        owner_role="Integrationsbüro",
        status=MeasureStatus.PLANNED,
    )
    built = envelope(data, ags)
    world.measures[data.measure_id] = PlayedMeasure(
        data.measure_id, ags, field_number, title, MeasureStatus.PLANNED, built.time
    )
    world.activities.append(
        Activity(built.id, ags, "measure_planned", built.time, field_number, (f"“{title}”",))
    )
    into.append(("assessment.events.v1", built))
    return data.measure_id


def change_status(world: World, rng: Random, envelope: Any, *, measure_id: str) -> None:
    measure = world.measures[measure_id]
    status = rng.choice([s for s in MeasureStatus if s is not measure.status])
    built = envelope(
        MeasureStatusChanged(
            measure_id=measure_id,
            ags=measure.ags,
            field=measure.field,
            previous_status=measure.status,
            status=status,
            changed_on=measure.planned_at.date(),
        ),
        measure.ags,
    )
    measure.status = status
    world.activities.append(
        Activity(
            built.id,
            measure.ags,
            "measure_status_changed",
            built.time,
            measure.field,
            (f"“{measure.title}”", f"is now {status.value}."),
        )
    )
    world.stream.append(("assessment.events.v1", built))


def digest(world: World, rng: Random, clock: Clock) -> None:
    number = rng.choice(STABLE_FIELDS)
    ags = rng.choice(world.models[number])
    happened = clock.tick()
    source_event_id = str(uuid.UUID(int=rng.getrandbits(128)))
    text = f"Dialog {source_event_id[:8]} angekündigt"
    data = ActivityDigest(
        municipality=ags,
        municipality_name=world.towns[ags].name,
        kind="dialogue_event_scheduled",
        text_de=text,
        text_en=text,
        occurred_at=happened,
        subject_id=source_event_id,
        source_event_id=source_event_id,
    )
    built = new_envelope(data, source=SOURCE, municipality=ags)
    built.time = happened
    world.activities.append(Activity(source_event_id, ags, "activity", happened, None, (text,)))
    world.stream.append(("exchange.activity.v1", built))


# --- what the played events call for --------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    item_id: str
    peer: str
    kind: str
    fields: tuple[int, ...]
    occurred_at: datetime
    text_en: tuple[str, ...]


def feed_of(world: World, recipient: str, pairs: Sequence[Pair]) -> list[FeedEntry]:
    """Every item of the recipient's feed, newest first: its peers' measures in its deficits,
    and the digests of those it learns from (in the fields it learns from them)."""
    deficits = world.towns[recipient].deficits()
    items = []
    for activity in world.activities:
        if activity.ags == recipient:
            continue
        if activity.measure_field is not None:
            fields = {activity.measure_field} & deficits
        else:
            fields = {
                p.field for p in pairs if p.needing == recipient and p.offering == activity.ags
            }
        if fields:
            items.append(
                FeedEntry(
                    item_id=f"{recipient}:{activity.source_event_id}",
                    peer=activity.ags,
                    kind=activity.kind,
                    fields=tuple(sorted(fields)),
                    occurred_at=activity.occurred_at,
                    text_en=activity.text_en,
                )
            )
    return sorted(items, key=lambda item: (item.occurred_at, item.item_id), reverse=True)


def expected_suggestions(world: World, ags: str, pairs: Sequence[Pair]) -> dict[str, Any]:
    """suggestion id -> what /peers must show of it to `ags`."""
    found = {}
    for pair in pairs:
        if ags not in (pair.needing, pair.offering):
            continue
        learns = ags == pair.needing
        peer = pair.offering if learns else pair.needing
        needing_score = world.towns[pair.needing].score(pair.field)
        offering_score = world.towns[pair.offering].score(pair.field)
        found[pair.suggestion_id] = {
            "role": "learns" if learns else "shares",
            "peer": peer,
            "peer_name": world.towns[peer].name,
            "reason": pair.reason,
            "own_score": needing_score if learns else offering_score,
            "peer_score": offering_score if learns else needing_score,
            "improvement": pair.improvement,
            "measures": sorted(
                (m.measure_id, m.title, m.status.value)
                for m in world.measures.values()
                if m.ags == pair.offering
                and m.field == pair.field
                and m.status is not MeasureStatus.DROPPED
            ),
        }
    return found


def peers_differences(
    world: World, ags: str, pairs: Sequence[Pair], seen: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(missing, unexpected) of one municipality's /peers against what was played."""
    if seen is None:
        return [f"{ags}: /peers not answered"], []
    town = world.towns[ags]
    missing: list[str] = []
    unexpected: list[str] = []
    head = (seen["scored"], seen["deficits"], seen["strengths"])
    wanted = (town.latest is not None, sorted(town.deficits()), sorted(town.strengths()))
    if head != wanted:
        missing.append(f"{ags}: scored/deficits/strengths {head}, played {wanted}")
    expected = expected_suggestions(world, ags, pairs)
    shown: dict[str, Any] = {}
    for suggestion in seen["suggestions"]:
        if suggestion["suggestion_id"] in shown:
            unexpected.append(f"{ags}: suggestion {suggestion['suggestion_id']} listed twice")
        shown[suggestion["suggestion_id"]] = {
            "role": suggestion["role"],
            "peer": suggestion["peer"],
            "peer_name": suggestion["peer_name"],
            "reason": suggestion["reason"],
            "own_score": suggestion["own_score"],
            "peer_score": suggestion["peer_score"],
            "improvement": suggestion["improvement"],
            "measures": sorted(
                (m["measure_id"], m["title"], m["status"]) for m in suggestion["measures"]
            ),
        }
    for suggestion_id, want in expected.items():
        got = shown.get(suggestion_id)
        if got is None:
            missing.append(f"{ags}: suggestion {suggestion_id} missing")
            continue
        if got != want:
            shown_measures, played_measures = set(got["measures"]), set(want["measures"])
            missing.extend(
                f"{ags}: {suggestion_id} lacks measure {m}"
                for m in played_measures - shown_measures
            )
            unexpected.extend(
                f"{ags}: {suggestion_id} shows measure {m}"
                for m in shown_measures - played_measures
            )
            rest = {k: (got[k], want[k]) for k in want if k != "measures" and got[k] != want[k]}
            if rest:
                missing.append(f"{ags}: {suggestion_id} differs (shown, played): {rest}")
    unexpected.extend(f"{ags}: suggestion {s} not played" for s in shown.keys() - expected.keys())
    return missing, unexpected


def feed_differences(
    world: World, ags: str, pairs: Sequence[Pair], seen: dict[str, Any] | None
) -> tuple[list[str], list[str]]:
    """(missing, unexpected) of one municipality's /feed (its newest 500) against the played."""
    if seen is None:
        return [f"{ags}: /feed not answered"], []
    every = feed_of(world, ags, pairs)
    expected = every[:FEED_LIMIT]
    missing: list[str] = []
    unexpected: list[str] = []
    if seen["deficits"] != sorted(world.towns[ags].deficits()):
        missing.append(f"{ags}: feed deficits {seen['deficits']}")
    items = seen["items"]
    counted = Counter(item["item_id"] for item in items)
    unexpected.extend(f"{ags}: feed item {i} twice" for i, n in counted.items() if n > 1)
    shown = {item["item_id"]: item for item in items}
    for entry in expected:
        item = shown.get(entry.item_id)
        if item is None:
            missing.append(f"{ags}: feed item {entry.item_id} ({entry.kind}) missing")
            continue
        got = (
            item["peer"],
            item["peer_name"],
            item["kind"],
            tuple(item["fields"]),
            datetime.fromisoformat(item["occurred_at"]),
        )
        want = (
            entry.peer,
            world.towns[entry.peer].name,
            entry.kind,
            entry.fields,
            entry.occurred_at,
        )
        text_ok = (
            (item["text_en"],) == entry.text_en
            if entry.kind == "activity"
            else all(part in item["text_en"] for part in entry.text_en)
        )
        if got != want or not text_ok:
            missing.append(
                f"{ags}: feed item {entry.item_id} is {got} {item['text_en']!r}, "
                f"played {want} {entry.text_en}"
            )
    unexpected.extend(
        f"{ags}: feed item {i} not played" for i in shown.keys() - {e.item_id for e in every}
    )
    order = [item["item_id"] for item in items]
    if not (missing or unexpected) and order != [entry.item_id for entry in expected]:
        missing.append(f"{ags}: feed not newest first")
    return missing, unexpected


# --- reading what exchange did ---------------------------------------------------------------


class PeersTopic:
    """exchange.peers.v1 from the beginning, read on as it grows: each announcement with the
    distinct envelope ids it was sent under."""

    def __init__(self, stack: EmbeddedStack) -> None:
        self.name = topic(stack, "exchange.peers.v1")
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False
        )
        self.ids: dict[tuple[str, str, str], set[str]] = {}
        self.records = 0
        self.misaddressed: list[str] = []
        self.withdrawal_reasons: Counter[str] = Counter()

    async def start(self) -> None:
        await self.consumer.start()
        partitions = self.consumer.partitions_for_topic(self.name)
        if not partitions:
            await self.consumer._client.force_metadata_update()
            partitions = self.consumer.partitions_for_topic(self.name) or set()
        assignment = [TopicPartition(self.name, partition) for partition in sorted(partitions)]
        self.consumer.assign(assignment)
        await self.consumer.seek_to_beginning(*assignment)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def read_on(self) -> None:
        """Everything sent since the last read (until a fetch brings nothing)."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=300, max_records=5_000)
            if not any(batches.values()):
                return
            for records in batches.values():
                for record in records:
                    self.take(record.key, json.loads(record.value))

    def take(self, key: bytes | None, event: dict[str, Any]) -> None:
        self.records += 1
        data = event["data"]
        kind = {
            "exchange.peer.suggested.v1": "suggested",
            "exchange.peer.withdrawn.v1": "withdrawn",
            "exchange.feed.activity_shared.v1": "feed",
        }[event["type"]]
        subject = data["item_id"] if kind == "feed" else data["suggestion_id"]
        announcement = (subject, data["recipient"], kind)
        if not (key == data["recipient"].encode() and event["municipality"] == data["recipient"]):
            self.misaddressed.append(f"{announcement} keyed {key!r}")
        self.ids.setdefault(announcement, set()).add(event["id"])
        if kind == "withdrawn":
            self.withdrawal_reasons[data["reason"]] += 1


def expected_announcements(world: World, pairs: Sequence[Pair]) -> Counter[tuple[str, str, str]]:
    """Announcement -> how many times it is made: each pair's n-th suggestion and withdrawal
    to each side, and each item of the learners' feeds (all played during the stream; the
    togglers' feeds hold only the set-up's measures, which concerned nobody yet)."""
    wanted = Counter(world.told)
    for recipient in world.learners:
        for entry in feed_of(world, recipient, pairs):
            wanted[(entry.item_id, recipient, "feed")] += 1
    return wanted


def announcement_tally(
    wanted: Counter[tuple[str, str, str]], seen: dict[tuple[str, str, str], set[str]]
) -> tuple[list[str], list[str]]:
    """(lost, counted twice), one entry per announcement missing or made once too often:
    fewer or more distinct envelope ids than played, or an announcement nothing played
    calls for."""
    lost = [
        f"{announcement}: {len(seen.get(announcement, ()))} of {count}"
        for announcement, count in wanted.items()
        for _ in range(count - len(seen.get(announcement, ())))
    ]
    doubled = [
        f"{announcement}: {len(ids)} ids, {wanted.get(announcement, 0)} played"
        for announcement, ids in seen.items()
        for _ in range(len(ids) - wanted.get(announcement, 0))
    ]
    return lost, doubled


async def read_views(
    stack: EmbeddedStack, world: World, *, feeds: bool
) -> dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """Each municipality's /peers (and /feed) read with its own key; None if not answered."""

    async def get(client: httpx.AsyncClient, path: str, key: str) -> dict[str, Any] | None:
        try:
            response = await client.get(path, headers={"Authorization": f"Bearer {key}"})
        except httpx.TransportError:
            return None  # exchange is being restarted
        answer: dict[str, Any] | None = response.json() if response.status_code == 200 else None
        return answer

    views = {}
    async with httpx.AsyncClient(base_url=stack.url("exchange"), timeout=30) as client:
        for ags, town in world.towns.items():
            peers = await get(client, f"/v1/municipalities/{ags}/peers", town.key)
            feed = (
                await get(client, f"/v1/municipalities/{ags}/feed?limit={FEED_LIMIT}", town.key)
                if feeds
                else None
            )
            views[ags] = (peers, feed)
    return views


def view_tally(
    world: World, views: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]
) -> tuple[list[str], list[str]]:
    pairs = world.pairs()
    lost: list[str] = []
    doubled: list[str] = []
    for ags in world.towns:
        peers, feed = views[ags]
        for missing, unexpected in (
            peers_differences(world, ags, pairs, peers),
            feed_differences(world, ags, pairs, feed),
        ):
            lost.extend(missing)
            doubled.extend(unexpected)
    return lost, doubled


def setup_applied(
    world: World, views: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None]]
) -> list[str]:
    """The municipalities whose /peers does not show the set-up yet (or refuses the key)."""
    pending = []
    for ags, (peers, _) in views.items():
        if peers is None:
            pending.append(ags)
            continue
        shown = (
            peers["scored"],
            peers["deficits"],
            peers["strengths"],
            sorted(s["suggestion_id"] for s in peers["suggestions"]),
        )
        names = {s["peer"]: s["peer_name"] for s in peers["suggestions"]}
        if shown != world.setup_view[ags] or any(
            name != world.towns[peer].name for peer, name in names.items()
        ):
            pending.append(ags)
    return pending


# --- the test --------------------------------------------------------------------------------


async def play(
    producer: Any,
    stack: EmbeddedStack,
    events: Sequence[tuple[str, Envelope[Any]]],
    *,
    chunk: int,
    pause_s: float,
) -> None:
    """Send the events in order, each to its own topic keyed by its AGS, `chunk` at a time
    with a pause after each (so the kills fall mid-stream)."""
    for start in range(0, len(events), chunk):
        pending = []
        for name, envelope in events[start : start + chunk]:
            [(value, key)] = as_messages([envelope])
            pending.append(
                await producer.send(
                    topic(stack, name),
                    value,
                    key=key,
                    headers=[("content-type", b"application/cloudevents+json")],
                )
            )
        await asyncio.gather(*pending)
        await asyncio.sleep(pause_s)


async def test_exchange_killed_at_random_moments_during_10000_events_tells_each_once(
    stack: EmbeddedStack,
) -> None:
    rng = seeded("exchange SIGKILL")
    world = build_world(rng)
    pairs = world.pairs()
    wanted = expected_announcements(world, pairs)
    topic_reader = PeersTopic(stack)
    await topic_reader.start()
    try:
        producer = await start_producer(stack)
        try:
            began = time.monotonic()
            await play(producer, stack, world.setup, chunk=len(world.setup), pause_s=0)
            await eventually(
                lambda: read_views(stack, world, feeds=False),
                lambda views: not setup_applied(world, views),
                timeout_s=60,
                what="the set-up applied (keys, names, self-checks, the improver's measures)",
            )
            setup_s = time.monotonic() - began
            streaming = asyncio.create_task(
                play(producer, stack, world.stream, chunk=STREAM_CHUNK, pause_s=STREAM_PAUSE_S)
            )
            kills = await kill_and_restart(
                stack,
                rng,
                services=("exchange",),
                kills=KILLS,
                pause_s=(1.0, 4.0),
                progress=lambda: progress(stack),
            )
            await streaming
            played_s = time.monotonic() - began
        finally:
            await producer.stop()

        async def announcements_missing() -> int:
            await topic_reader.read_on()
            lost, _ = announcement_tally(wanted, topic_reader.ids)
            return len(lost)

        # Until everything is announced and every /peers shows the played self-checks (or
        # the time is up), then once more after a pause, so that a late extra would show.
        await eventually(
            announcements_missing,
            lambda missing: missing == 0,
            timeout_s=120,
            what="every announcement on exchange.peers.v1",
            fail=False,
        )
        announced_s = time.monotonic() - began
        await eventually(
            lambda: read_views(stack, world, feeds=False),
            lambda views: all(
                peers_differences(world, ags, pairs, views[ags][0]) == ([], [])
                for ags in world.towns
            ),
            timeout_s=30,
            interval_s=1.0,
            what="every /peers as played",
            fail=False,
        )
        await asyncio.sleep(SETTLE_S)
        await topic_reader.read_on()
        views = await read_views(stack, world, feeds=True)
        done_s = time.monotonic() - began
    finally:
        await topic_reader.stop()

    lost_announcements, doubled_announcements = announcement_tally(wanted, topic_reader.ids)
    lost_views, doubled_views = view_tally(world, views)
    lost = lost_announcements + lost_views
    doubled = doubled_announcements + doubled_views
    report(
        "exchange SIGKILLed at random moments, restarted (peers, feeds and announcements)",
        tried=len(world.setup) + len(world.stream),
        lost=len(lost),
        duplicated=len(doubled),
        extra=f"{sum(wanted.values())} announcements in {topic_reader.records} records, "
        f"{len(world.towns)} municipalities' /peers and /feed; {len(kills)} kills at "
        f"{[(k.at_s, k.progress) for k in kills]}; set-up {setup_s:.1f} s, played after "
        f"{played_s:.1f} s, all announced after {announced_s:.1f} s, read after {done_s:.1f} s",
    )
    assert (lost[:10], doubled[:10]) == ([], [])
    assert not topic_reader.misaddressed, topic_reader.misaddressed[:10]
    # A toggler's pair ends when its deficit closes; the models stay strong throughout.
    assert set(topic_reader.withdrawal_reasons) == {"deficit_closed"}
    assert [kill.exit_code for kill in kills] == [-9] * KILLS


async def progress(stack: EmbeddedStack) -> str:
    behind = await lag(stack, "exchange", of="exchange.activity.v1")
    return f"about {max(0, behind)} digests not yet committed"
