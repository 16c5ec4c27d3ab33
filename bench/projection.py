"""Projection throughput: reporting's consumer against a bare aiokafka consumer, same topics.

    .venv/bin/python bench/projection.py [--events 50000] [--batch 2000] [--duplicates 0.01]

Starts the embedded infrastructure (tansu and nx-27017, no services) in a temporary folder,
produces `--events` CloudEvents to `registration.events.v1` and `notification.events.v1`
(municipalities joining, dialogue events scheduled, registrations, cancellations,
confirmation mails; keyed by AGS; a share of them sent twice with the same event id, as a
producer retry would), then measures, each from its first record to its last:

- a bare aiokafka consumer (its own group, `getmany`, nothing done with the records);
- reporting's projection as the service runs it: `ServiceRuntime.consume_batches` with the
  reporting sink on MongoDB (FastStream batch subscriber, decoding and validating every
  envelope, facts and digests stored, offsets committed after the write). The aggregate
  snapshots are not published meanwhile (they are a separate task; see the README).

Then it checks the stored result: every partition's stored offset is its end, and the facts
of the run are exactly the distinct events produced (duplicates counted once). It also
prints the CPU time per event of each process (this one, nx-27017, tansu), which does not
depend on what else runs on the machine. `--profile` prints a pyinstrument tree of the
projection; `PY_SPY_OUT=file` records it with py-spy (CPU samples, raw format).

Target (issue 6): at least 20,000 events/s on 2 cores, durable and deduplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import console, machine, print_table, print_target
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from wok_cli.devstack import EmbeddedStack
from wok_cli.settings import StackSettings
from wok_contracts import (
    DialogueEventScheduled,
    EventFormat,
    MunicipalityKind,
    MunicipalityRegistered,
    NotificationKind,
    NotificationSent,
    ParticipantCancelled,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    new_envelope,
)
from wok_contracts.topics import NOTIFICATION_EVENTS, REGISTRATION_EVENTS
from wok_reporting.adapters.mongo import (
    CHUNKS,
    MongoActivityRepository,
    MongoProjectionRepository,
    decode_facts,
)
from wok_reporting.batches import ProjectionSink
from wok_reporting.entrypoints.consumers import GROUP, event_handlers
from wok_reporting.handlers import Projector
from wok_reporting.settings import ReportingSettings
from wok_runtime.logging import configure_logging
from wok_runtime.mongo import mongo_client
from wok_runtime.service import ServiceRuntime

TARGET_EVENTS_PER_S = 20_000
TOPICS = (REGISTRATION_EVENTS, NOTIFICATION_EVENTS)
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


# -- the events ------------------------------------------------------------------------------


@dataclass
class Played:
    """What was produced: (topic, key, value) in order, and the distinct event ids."""

    messages: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)

    def add(self, topic: str, ags: str, data: Any, moment: datetime) -> bytes:
        envelope = new_envelope(data, source="/bench", municipality=ags)
        envelope = envelope.model_copy(update={"time": moment})
        value = envelope.to_json_bytes()
        self.messages.append((topic, ags.encode(), value))
        self.event_ids.add(envelope.id)
        return value


def play(events: int, *, duplicates: float, seed: int) -> Played:
    """About `events` messages: per municipality one join, 10 dialogue events, then
    registrations (5 % cancelled again, 80 % with a confirmation mail), `duplicates` of
    them sent twice."""
    rng = random.Random(seed)
    played = Played()
    registrations_per_municipality = 400
    # joins + events + registrations + cancellations + mails
    per_municipality = 1 + 10 + registrations_per_municipality * (1 + 0.05 + 0.8)
    municipalities = max(1, round(events / per_municipality / (1 + duplicates)))
    moment = T0
    sectors = list(Sector)
    for m in range(municipalities):
        ags = f"{(m % 16) + 1:02d}{rng.randrange(10**6):06d}"
        moment += timedelta(seconds=1)
        played.add(
            REGISTRATION_EVENTS,
            ags,
            MunicipalityRegistered(
                ags=ags, name=f"Gemeinde {m}", kind=MunicipalityKind.TOWN, land=ags[:2]
            ),
            moment,
        )
        dialogue_events = []
        for e in range(10):
            starts = T0 + timedelta(days=30 + e)
            scheduled = DialogueEventScheduled(
                dialogue_event_id=f"event-{uuid.UUID(int=rng.getrandbits(128)).hex[:16]}",
                ags=ags,
                title=f"Dialog {e}",
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                format=EventFormat.IN_PERSON,
                capacity=100,
                registration_deadline=starts - timedelta(days=1),
            )
            dialogue_events.append(scheduled.dialogue_event_id)
            played.add(REGISTRATION_EVENTS, ags, scheduled, moment)
        for r in range(registrations_per_municipality):
            moment += timedelta(milliseconds=50)
            registered = ParticipantRegistered(
                registration_id=f"registration-{uuid.UUID(int=rng.getrandbits(128)).hex}",
                dialogue_event_id=dialogue_events[r % 10],
                ags=ags,
                status=RegistrationStatus.CONFIRMED,
                sector=sectors[r % len(sectors)],
            )
            value = played.add(REGISTRATION_EVENTS, ags, registered, moment)
            if rng.random() < duplicates:
                played.messages.append((REGISTRATION_EVENTS, ags.encode(), value))
            if rng.random() < 0.8:
                played.add(
                    NOTIFICATION_EVENTS,
                    ags,
                    NotificationSent(
                        notification_id=f"notification-{registered.registration_id[13:]}",
                        kind=NotificationKind.CONFIRMATION,
                        registration_id=registered.registration_id,
                        dialogue_event_id=registered.dialogue_event_id,
                        ags=ags,
                        language="de",
                        sent_at=moment,
                    ),
                    moment,
                )
            if rng.random() < 0.05:
                played.add(
                    REGISTRATION_EVENTS,
                    ags,
                    ParticipantCancelled(
                        registration_id=registered.registration_id,
                        dialogue_event_id=registered.dialogue_event_id,
                        ags=ags,
                        previous_status=RegistrationStatus.CONFIRMED,
                    ),
                    moment + timedelta(seconds=1),
                )
    return played


async def produce(
    bootstrap: str, prefix: str, played: Played
) -> tuple[float, dict[tuple[str, int], int]]:
    """Send every message (acks=all); returns the seconds it took and the end offset of
    every partition written (from the acknowledgements: tansu answers ListOffsets with the
    base offset + 1 of a partition's last record batch, short of its end when that batch
    held several records)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    began = time.perf_counter()
    ends: dict[tuple[str, int], int] = {}

    def note(acknowledged: Sequence[Any]) -> None:
        for metadata in acknowledged:
            key = (metadata.topic.removeprefix(prefix), metadata.partition)
            ends[key] = max(ends.get(key, 0), metadata.offset + 1)

    try:
        pending = []
        for topic, key, value in played.messages:
            pending.append(await producer.send(f"{prefix}{topic}", value, key=key))
            if len(pending) >= 5000:
                note(await asyncio.gather(*pending))
                pending.clear()
        note(await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return time.perf_counter() - began, ends


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Infrastructure:
    kafka_bootstrap: str
    mongodb_uri: str
    prefix: str
    pids: dict[str, int] = field(default_factory=dict)  # nx-27017, tansu

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time used so far by this process and by each server (user + system)."""
        used = {"projection (this process)": time.process_time()}
        tick = os.sysconf("SC_CLK_TCK")
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used[name] = (int(fields[11]) + int(fields[12])) / tick
        return used


@contextlib.asynccontextmanager
async def infrastructure() -> AsyncIterator[Infrastructure]:
    """tansu and nx-27017 (no services) on free ports in a temporary folder."""
    configure_logging(service="bench", level="WARNING")
    folder = Path(tempfile.mkdtemp(prefix="wok-bench-projection-"))
    try:
        settings = StackSettings.with_free_ports(data_dir=folder, topic_prefix="bench.")
        stack = EmbeddedStack(settings, services=())
        with console.status("starting tansu and nx-27017…"):
            await stack.astart()
        try:
            pids = {name: stack.pid(name) for name in ("nx-27017", "tansu")}
            yield Infrastructure(
                stack.kafka_bootstrap,
                stack.mongodb_uri,
                "bench.",
                {name: pid for name, pid in pids.items() if pid is not None},
            )
        finally:
            await stack.astop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- the two consumers -----------------------------------------------------------------------


@dataclass
class Run:
    records: int
    seconds: float
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU used meanwhile, by process

    @property
    def per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


async def bare_consumer(infra: Infrastructure, *, expected: int, batch: int) -> Run:
    consumer = AIOKafkaConsumer(
        *(f"{infra.prefix}{topic}" for topic in TOPICS),
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        seen = 0
        first = None
        cpu = time.process_time()
        while seen < expected:
            found = await consumer.getmany(timeout_ms=200, max_records=batch)
            if found and first is None:
                first = time.perf_counter()
            seen += sum(len(records) for records in found.values())
        assert first is not None
        cpu_s = {"bare consumer (this process)": time.process_time() - cpu}
        return Run(seen, time.perf_counter() - first, cpu_s)
    finally:
        await consumer.stop()


async def projection(
    infra: Infrastructure,
    *,
    database: str,
    ends: dict[tuple[str, int], int],
    batch: int,
    group: str = GROUP,
    pipeline: int | None = None,
    timeout_s: float = 900.0,
) -> Run:
    """Reporting's consumer group (its runtime, sink and MongoDB repositories), timed from
    the first batch to the write that stored the last offset of every partition."""
    settings = ReportingSettings(
        kafka_bootstrap=infra.kafka_bootstrap,
        mongodb_uri=infra.mongodb_uri,
        topic_prefix=infra.prefix,
        kafka_session_timeout_ms=2000,
        batch_max_records=batch,
        otel_enabled=False,
    )
    runtime = ServiceRuntime(name="reporting", settings=settings)
    client = mongo_client(infra.mongodb_uri)
    db = client[database]
    projections = MongoProjectionRepository(db)
    activities = MongoActivityRepository(db)
    runtime.add_outbox(activities.collection)
    projector = Projector(projections=projections, activities=activities)
    processor = runtime.consume_batches(
        group=group,
        topics=TOPICS,
        sink=ProjectionSink(projector),
        event_types=[model.event_type for model in event_handlers(projector)],
        max_records=batch,
    )
    if pipeline is not None:
        processor._pipeline_records = pipeline
    remaining = {key for key, end in ends.items() if end > 0}
    stored: dict[tuple[str, int], int] = {}
    records = sum(ends.values())
    first: float | None = None
    last = 0.0
    done = asyncio.Event()
    process = processor.process

    async def timed(batch_records: Sequence[Any]) -> None:
        nonlocal first, last
        if first is None:
            first = time.perf_counter()
        await process(batch_records)
        last = time.perf_counter()
        for record in batch_records:
            key = (record.topic, record.partition)
            stored[key] = max(stored.get(key, -1), record.offset)
            if key in remaining and stored[key] >= ends[key] - 1:
                remaining.discard(key)
        if not remaining:
            done.set()

    processor.process = timed  # type: ignore[method-assign,assignment]
    await projections.ensure_ready()
    await runtime.start()
    try:
        cpu_before = infra.cpu_seconds()
        await asyncio.wait_for(done.wait(), timeout_s)
        cpu_after = infra.cpu_seconds()
    finally:
        await runtime.stop()
        await client.close()
    assert first is not None
    cpu = {name: cpu_after[name] - cpu_before[name] for name in cpu_after if name in cpu_before}
    return Run(records, last - first, cpu)


async def check_stored(
    infra: Infrastructure, *, database: str, ends: dict[tuple[str, int], int], played: Played
) -> tuple[bool, str]:
    """Every partition's stored offset is its end, and the run's facts are the distinct
    events played (read from the run's own chunks, so a large preloaded store is not read)."""
    client = mongo_client(infra.mongodb_uri)
    try:
        projections = MongoProjectionRepository(client[database])
        offsets_ok = True
        for (topic, partition), end in ends.items():
            if end > 0:
                stored = await projections.stored_offset(topic, partition)
                offsets_ok = offsets_ok and stored == end - 1
        event_ids: set[str] = set()
        chunks = client[database][CHUNKS].find({"kind": "live", "topic": {"$in": list(TOPICS)}})
        async for chunk in chunks:
            event_ids.update(fact.event_id for fact in decode_facts(chunk["facts"]))
    finally:
        await client.close()
    facts_ok = event_ids == played.event_ids
    return offsets_ok and facts_ok, (
        f"stored offsets at the ends: {'yes' if offsets_ok else 'NO'}; "
        f"distinct events stored {len(event_ids)} of {len(played.event_ids)} played "
        f"({len(played.messages)} messages)"
    )


async def measure(
    infra: Infrastructure,
    *,
    played: Played,
    ends: dict[tuple[str, int], int],
    database: str,
    batch: int,
    profile: bool = False,
    pipeline: int | None = None,
) -> tuple[Run, Run, tuple[bool, str]]:
    bare = await bare_consumer(infra, expected=sum(ends.values()), batch=batch)
    spy = None
    if os.environ.get("PY_SPY_OUT"):  # where the time goes, CPU only: py-spy on this process
        spy = await asyncio.create_subprocess_exec(
            shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
            *("record", "-p", str(os.getpid()), "-r", "200", "-f", "raw", "--nonblocking"),
            *("-o", os.environ["PY_SPY_OUT"]),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(1)
    if profile:
        from pyinstrument import Profiler  # optional: pip install pyinstrument

        profiler = Profiler(async_mode="disabled")
        profiler.start()
    projected = await projection(
        infra, database=database, ends=ends, batch=batch, pipeline=pipeline
    )
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    if profile:
        profiler.stop()
        console.print(
            profiler.output_text(
                unicode=True, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))
            )
        )
    checked = await check_stored(infra, database=database, ends=ends, played=played)
    return bare, projected, checked


def report(bare: Run, projected: Run, checked: tuple[bool, str], *, title: str) -> None:
    print_table(
        title,
        ("consumer", "records", "seconds", "events/s"),
        [
            ("bare aiokafka (getmany, nothing stored)", bare.records, f"{bare.seconds:.2f}",
             f"{bare.per_s:,.0f}"),
            ("reporting projection (stored, committed)", projected.records,
             f"{projected.seconds:.2f}", f"{projected.per_s:,.0f}"),
        ],
    )  # fmt: skip
    console.print(f"ratio projection / bare consumer: {projected.per_s / bare.per_s:.2f}")
    console.print(
        f"CPU per event of the bare consumer: "
        f"{sum(bare.cpu_s.values()) * 1e6 / bare.records:.0f} µs"
    )
    console.print(
        "CPU per event while projecting (independent of other load on the machine): "
        + ", ".join(
            f"{name} {seconds * 1e6 / projected.records:.0f} µs"
            for name, seconds in projected.cpu_s.items()
        )
    )
    console.print(f"check: {checked[1]}")
    print_target(
        f"projection ≥ {TARGET_EVENTS_PER_S:,} events/s, durable and deduplicated",
        measured=f"{projected.per_s:,.0f} events/s",
        met=projected.per_s >= TARGET_EVENTS_PER_S and checked[0],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=2000, help="records per batch at most")
    parser.add_argument("--duplicates", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    parser.add_argument(
        "--pipeline", type=int, default=None, help="records per write within a batch"
    )
    arguments = parser.parse_args()
    console.print(f"[dim]{machine()}[/dim]")
    played = play(arguments.events, duplicates=arguments.duplicates, seed=arguments.seed)
    async with infrastructure() as infra:
        seconds, ends = await produce(infra.kafka_bootstrap, infra.prefix, played)
        console.print(
            f"produced {len(played.messages):,} messages "
            f"({len(played.event_ids):,} distinct events) in {seconds:.1f} s"
        )
        bare, projected, checked = await measure(
            infra,
            played=played,
            ends=ends,
            database="wok_reporting",
            batch=arguments.batch,
            profile=arguments.profile,
            pipeline=arguments.pipeline,
        )
    report(bare, projected, checked, title=f"Projection throughput ({machine()})")


if __name__ == "__main__":
    asyncio.run(main())
