"""Playing N events into the platform and reading the final aggregates, for the fault tests.

Events go straight to `registration.events.v1` with a plain Kafka producer, as a
municipality's own system may publish them (DESIGN.md section 2): 10,000 events take a
few seconds that way, where HTTP would take minutes on two cores. Every consumer group of
the platform (reporting, notification, assessment) reads that topic.

What a fault test judges is what a user sees: reporting's published snapshot of each
municipality that was played (the federal API serves the same stored snapshot that went to
`exchange.aggregates.v1`), compared metric by metric with what was played. Each played
municipality gets a fresh AGS, so the session's other tests cannot change its figures.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from wok_cli.devstack import EmbeddedStack
from wok_contracts import (
    DialogueEventScheduled,
    Envelope,
    MunicipalityRegistered,
    ParticipantRegistered,
    new_envelope,
)
from wok_contracts.events.registration import MunicipalityKeyIssued

SOURCE = "/municipal-system/faults"
CONTENT_TYPE = [("content-type", b"application/cloudevents+json")]
SECTORS = ("administration", "civil_society", "business", "resident")
STATUSES = ("confirmed", "waitlisted")
SETTLE_S = 2.0  # past a snapshot interval (0.2 s) many times: a late extra would show
_used_ags: set[str] = set()

T = TypeVar("T")


def unique_ags(rng: random.Random) -> str:
    """A valid AGS no other fault test of this session plays (drawn from the test's seed)."""
    while True:
        ags = f"{rng.randint(1, 16):02d}{rng.randint(0, 999_999):06d}"
        if ags not in _used_ags:
            _used_ags.add(ags)
            return ags


def topic(stack: EmbeddedStack, name: str) -> str:
    return f"{stack.settings.topic_prefix}{name}"


def seeded(name: str, seed: int | None = None) -> random.Random:
    """A random generator whose seed is printed, so a failing run can be played again
    (`WOK_FAULT_SEED=<seed>` fixes it)."""
    if seed is None:
        seed = int(os.environ.get("WOK_FAULT_SEED") or random.randrange(2**31))
    print(f"{name}: seed {seed} (WOK_FAULT_SEED={seed} plays this run again)")
    return random.Random(seed)


@dataclass
class Municipality:
    """One played municipality: its onboarding, one dialogue event and the registrations."""

    ags: str
    dialogue_event_id: str
    key: str
    setup: list[Envelope[Any]]
    registrations: list[Envelope[Any]] = field(default_factory=list)

    def expected(self) -> dict[str, int]:
        """The municipality's snapshot metrics the played events must produce."""
        statuses = Counter(envelope.data.status.value for envelope in self.registrations)
        sectors = Counter(envelope.data.sector.value for envelope in self.registrations)
        return {
            "municipalities": 1,
            "dialogue_events": 1,
            "registrations_total": len(self.registrations),
            "registrations_confirmed": statuses["confirmed"],
            "registrations_waitlisted": statuses["waitlisted"],
            **{f"registrations_sector_{sector}": sectors[sector] for sector in SECTORS},
        }

    @property
    def envelopes(self) -> list[Envelope[Any]]:
        return [*self.setup, *self.registrations]


def municipality(rng: random.Random, *, registrations: int = 0) -> Municipality:
    """A municipality with its key issued (assessment learns it), one dialogue event, and
    `registrations` people registered for it (status and sector drawn from `rng`)."""
    ags = unique_ags(rng)
    event_id = str(uuid.UUID(int=rng.getrandbits(128)))
    key = f"fault-key-{uuid.UUID(int=rng.getrandbits(128)).hex}"
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    setup = [
        new_envelope(
            MunicipalityRegistered(ags=ags, name=f"Gemeinde {ags}", kind="town", land=ags[:2]),
            source=SOURCE,
            municipality=ags,
        ),
        new_envelope(
            MunicipalityKeyIssued(
                ags=ags, key_id=uuid.uuid4().hex, key_hash=hashlib.sha256(key.encode()).hexdigest()
            ),
            source=SOURCE,
            municipality=ags,
        ),
        new_envelope(
            DialogueEventScheduled(
                dialogue_event_id=event_id,
                ags=ags,
                title="Bürgerdialog",
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                format="online",
                capacity=100_000,
                registration_deadline=starts - timedelta(days=1),
            ),
            source=SOURCE,
            municipality=ags,
        ),
    ]
    played = Municipality(ags=ags, dialogue_event_id=event_id, key=key, setup=setup)
    played.registrations = [registration(played, rng) for _ in range(registrations)]
    return played


def registration(played: Municipality, rng: random.Random) -> Envelope[Any]:
    return registration_of(ags=played.ags, dialogue_event_id=played.dialogue_event_id, rng=rng)


def registration_of(*, ags: str, dialogue_event_id: str, rng: random.Random) -> Envelope[Any]:
    """A person registered (status and sector drawn from `rng`), as registration announces it."""
    return new_envelope(
        ParticipantRegistered(
            registration_id=str(uuid.UUID(int=rng.getrandbits(128))),
            dialogue_event_id=dialogue_event_id,
            ags=ags,
            status=rng.choice(STATUSES),
            sector=rng.choice(SECTORS),
        ),
        source=SOURCE,
        municipality=ags,
    )


def interleaved(municipalities: Sequence[Municipality]) -> list[Envelope[Any]]:
    """Every municipality's set-up first, then the registrations of all, taking turns."""
    setups = [envelope for played in municipalities for envelope in played.setup]
    rows = [played.registrations for played in municipalities]
    longest = max((len(row) for row in rows), default=0)
    turns = [row[index] for index in range(longest) for row in rows if index < len(row)]
    return setups + turns


async def produce(
    producer: AIOKafkaProducer,
    stack: EmbeddedStack,
    messages: Iterable[tuple[bytes, bytes | None]],
    *,
    to: str = "registration.events.v1",
    partition: int | None = None,
    pace: Callable[[int], Awaitable[None]] | None = None,
    chunk: int = 500,
) -> int:
    """Send (value, key) pairs to a topic, `chunk` at a time, waiting for every ack; `pace`
    is awaited after each chunk with the number sent so far. Returns how many were sent."""
    name = topic(stack, to)
    sent = 0
    pending: list[asyncio.Future[Any]] = []
    for value, key in messages:
        pending.append(
            await producer.send(name, value, key=key, partition=partition, headers=CONTENT_TYPE)
        )
        sent += 1
        if len(pending) >= chunk:
            await asyncio.gather(*pending)
            pending.clear()
            if pace is not None:
                await pace(sent)
    await asyncio.gather(*pending)
    return sent


def as_messages(envelopes: Iterable[Envelope[Any]]) -> list[tuple[bytes, bytes | None]]:
    """(CloudEvents bytes, key = the AGS) of each envelope, as the platform keys them."""
    return [
        (envelope.to_json_bytes(), (envelope.municipality or "").encode() or None)
        for envelope in envelopes
    ]


async def start_producer(stack: EmbeddedStack) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.kafka_bootstrap, acks="all", linger_ms=5, max_request_size=4 << 20
    )
    await producer.start()
    return producer


# --- reading the aggregates ------------------------------------------------------------------


async def municipality_snapshot(stack: EmbeddedStack, ags: str) -> dict[str, Any] | None:
    """The newest published snapshot of one municipality (federal API), None if none yet."""
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        try:
            response = await client.get(
                f"/v1/aggregates/municipalities/{ags}",
                headers={"Authorization": f"Bearer {stack.federal_key}"},
            )
        except httpx.TransportError:
            return None  # reporting is being restarted
    if response.status_code != 200:
        return None
    snapshot: dict[str, Any] = response.json()
    return snapshot


@dataclass(frozen=True)
class Tally:
    """A played figure against the published one: what was lost and what counted twice.

    A withheld cell (disclosure control, 1-4 people) is neither; the registrations total
    of a played municipality is large enough to be always published.
    """

    played: int
    counted: int | None

    @property
    def lost(self) -> int:
        return max(0, self.played - (self.counted or 0))

    @property
    def duplicated(self) -> int:
        return max(0, (self.counted or 0) - self.played)


def disagreements(snapshot: dict[str, Any] | None, expected: dict[str, int]) -> dict[str, Any]:
    """Metric -> (played, published) for every published metric that differs."""
    if snapshot is None:
        return {"snapshot": "none published"}
    metrics, withheld = snapshot["metrics"], set(snapshot["suppressed"])
    return {
        name: (value, metrics.get(name))
        for name, value in expected.items()
        if metrics.get(name) != value and not (metrics.get(name) is None and name in withheld)
    }


async def final_snapshots(
    stack: EmbeddedStack,
    municipalities: Sequence[Municipality],
    *,
    timeout_s: float,
) -> dict[str, dict[str, Any] | None]:
    """Wait until every municipality's snapshot shows what was played (or the time is up),
    then once more after `SETTLE_S` so that a late duplicate would show; the last ones read."""

    async def read_all() -> dict[str, dict[str, Any] | None]:
        return {
            played.ags: await municipality_snapshot(stack, played.ags) for played in municipalities
        }

    deadline = time.monotonic() + timeout_s
    while True:
        snapshots = await read_all()
        done = all(
            not disagreements(snapshots[played.ags], played.expected()) for played in municipalities
        )
        if done or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(SETTLE_S)
    return await read_all()


async def counted_so_far(stack: EmbeddedStack, municipalities: Sequence[Municipality]) -> str:
    """How many of the played registrations the published snapshots count now."""
    snapshots = {m.ags: await municipality_snapshot(stack, m.ags) for m in municipalities}
    now = tally(snapshots, municipalities)
    return f"{now.counted} of {now.played} counted"


def tally(
    snapshots: dict[str, dict[str, Any] | None], municipalities: Sequence[Municipality]
) -> Tally:
    """Registrations played against registrations counted, over all played municipalities."""
    played = sum(len(m.registrations) for m in municipalities)
    counted = 0
    for m in municipalities:
        snapshot = snapshots.get(m.ags)
        counted += int((snapshot or {}).get("metrics", {}).get("registrations_total") or 0)
    return Tally(played=played, counted=counted)


def report(what: str, *, tried: int, lost: int, duplicated: int, extra: str = "") -> str:
    """The one-line result every fault test prints (for the README's table)."""
    line = f"FAULT RESULT | {what} | tried {tried} | lost {lost} | duplicated {duplicated}" + (
        f" | {extra}" if extra else ""
    )
    print(line)
    return line


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout_s: float,
    what: str,
    interval_s: float = 0.3,
    fail: bool = True,
) -> T:
    """Poll until `accept(probe())`; fail naming `what` and the last value seen (or, with
    `fail=False`, return the last value seen when the time is up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            if not fail:
                return value
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last seen {value!r}")
        await asyncio.sleep(interval_s)


async def lag(stack: EmbeddedStack, group: str, *, of: str = "registration.events.v1") -> int:
    """How many messages of a topic the consumer group has not committed yet (0: all done;
    approximate on tansu, see `behind`)."""

    name = topic(stack, of)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"{stack.settings.topic_prefix}{group}",  # groups carry the prefix too
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name) or set()
        assigned = [TopicPartition(name, partition) for partition in sorted(partitions)]
        ends = await consumer.end_offsets(assigned)
        behind = 0
        for partition in assigned:
            behind += ends[partition] - (await consumer.committed(partition) or 0)
        return behind
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Kill:
    at_s: float  # since the chaos began
    service: str
    progress: str  # how far the consumer had got when it was killed
    exit_code: int | None
    restarted_s: float  # how long the restart took until /readyz answered


async def kill_and_restart(
    stack: EmbeddedStack,
    rng: random.Random,
    *,
    services: Sequence[str],
    kills: int,
    pause_s: tuple[float, float] = (0.3, 2.0),
    until: Callable[[], bool] = lambda: False,
    progress: Callable[[], Awaitable[str]] | None = None,
) -> list[Kill]:
    """SIGKILL a service drawn from `services` after a pause drawn from `pause_s`, restart it
    and wait until it is ready; `kills` times, each service at least once (in drawn order),
    or fewer if `until()` says the run is over before a kill. Every kill is printed."""
    import signal

    order = list(services) + [rng.choice(services) for _ in range(max(0, kills - len(services)))]
    rng.shuffle(order)
    began = time.monotonic()
    done: list[Kill] = []
    for service in order:
        await asyncio.sleep(rng.uniform(*pause_s))
        if until():
            break
        seen = await progress() if progress is not None else ""
        at = time.monotonic() - began
        code = stack.kill_service(service, signal.SIGKILL)
        restart_began = time.monotonic()
        await asyncio.to_thread(stack.restart_service, service)
        kill = Kill(
            at_s=round(at, 2),
            service=service,
            progress=seen,
            exit_code=code,
            restarted_s=round(time.monotonic() - restart_began, 2),
        )
        print(
            f"SIGKILL {kill.service} at {kill.at_s} s ({seen or 'progress not measured'}), "
            f"exit {code}, ready again after {kill.restarted_s} s"
        )
        done.append(kill)
    return done


async def behind(stack: EmbeddedStack, group: str) -> str:
    """A consumer group's progress as a phrase, for the kill lines. Approximate: tansu
    answers a partition's end offset as the base offset of its last record batch plus one,
    so after batched sends it reports fewer messages than there are (measured)."""
    return f"about {max(0, await lag(stack, group))} messages not yet committed"


# --- added for the consumer kill tests at the sizes ---------------------------------


def taking_turns(rows: Sequence[Sequence[T]]) -> list[T]:
    """The items of all rows, one of each row in turn (each row's own order kept): a
    municipality's events spread over the whole stream instead of standing together."""
    longest = max((len(row) for row in rows), default=0)
    return [row[index] for index in range(longest) for row in rows if index < len(row)]


async def at_rate(
    send: Callable[[int], Awaitable[None]],
    *,
    count: int,
    rate: float,
    concurrency: int = 32,
) -> float:
    """Await `send(0)` … `send(count - 1)`, the n-th due at start + n / rate whether or not
    earlier ones are done (open loop), at most `concurrency` in flight (a server falling
    behind slows the sending down instead of piling up requests). The first exception of a
    `send` fails the run. Returns the seconds it took."""
    in_flight = asyncio.Semaphore(concurrency)
    failures: list[Exception] = []
    started = time.monotonic()
    tasks: list[asyncio.Task[None]] = []

    async def one(number: int) -> None:
        try:
            await send(number)
        except Exception as error:
            failures.append(error)
        finally:
            in_flight.release()

    for number in range(count):
        due = started + number / rate - time.monotonic()
        if due > 0:
            await asyncio.sleep(due)
        await in_flight.acquire()
        if failures:
            in_flight.release()
            break
        tasks.append(asyncio.create_task(one(number)))
    await asyncio.gather(*tasks)
    if failures:
        raise failures[0]
    return time.monotonic() - started


class Mailbox:
    """The mails in the SMTP sink's folder to a set of addresses, each `.eml` file read once
    (the sink writes a file under a temporary name and renames it, so a listed file is
    whole). Only the headers are parsed: at thousands of mails, re-reading every file on each
    look would cost more than the sending."""

    def __init__(self, mail_dir: Path, addresses: Iterable[str]) -> None:
        self.mail_dir = mail_dir
        self.addresses = set(addresses)
        self.message_ids: dict[str, list[str]] = {}  # address -> Message-ID of each copy
        self._read: set[str] = set()

    def read_new(self) -> Mailbox:
        """Read the files that arrived since the last look (blocking: run it in a thread)."""
        parser = BytesHeaderParser()
        with os.scandir(self.mail_dir) as entries:
            names = [
                e.name for e in entries if e.name.endswith(".eml") and e.name not in self._read
            ]
        for name in names:
            headers = parser.parsebytes((self.mail_dir / name).read_bytes())
            for _, address in getaddresses(headers.get_all("To", [])):
                if address in self.addresses:
                    self.message_ids.setdefault(address, []).append(str(headers["Message-ID"]))
            self._read.add(name)
        return self

    async def look(self) -> Mailbox:
        return await asyncio.to_thread(self.read_new)

    @property
    def received(self) -> set[str]:
        """The addresses that got at least one mail."""
        return set(self.message_ids)

    def copies(self) -> int:
        """Mails beyond the first to an address (same or another Message-ID)."""
        return sum(len(ids) - 1 for ids in self.message_ids.values())

    def distinct(self) -> dict[str, int]:
        """Address -> how many different Message-IDs it received."""
        return {address: len(set(ids)) for address, ids in self.message_ids.items()}


async def program_metrics(stack: EmbeddedStack) -> dict[str, Any]:
    """The newest program-wide snapshot's metrics (never withheld: all municipalities
    together), {} before the first."""
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        try:
            response = await client.get(
                "/v1/aggregates/program",
                headers={"Authorization": f"Bearer {stack.federal_key}"},
            )
        except httpx.TransportError:
            return {}
    if response.status_code != 200:
        return {}
    metrics: dict[str, Any] = response.json()["metrics"]
    return metrics


def partition_of(key: bytes, *, partitions: int) -> int:
    """The partition a producer with the default partitioner sends a keyed message to."""
    return int(DefaultPartitioner()(key, list(range(partitions)), []))
