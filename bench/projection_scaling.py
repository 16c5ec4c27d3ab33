"""Projection cost as history grows: the same new events on 10⁴ and on 10⁶ stored events.

    .venv/bin/python bench/projection_scaling.py [--sizes 10000 1000000] [--events 30000]

For each size, a fresh reporting database on the same embedded nx-27017 is preloaded with
that many stored events, then reporting's projection (its own consumer group) consumes the
same `--events` new events from tansu, as `bench/projection.py` measures it. The preload is
written directly in MongoDB, the way the projection stores what it consumed (chunks of 2000
facts with their offsets, via the repository's own `record_batches`, plus the municipality
facts), on the partitions of an earlier topic (`history.registration.events.v1`) so the new
events' offsets are not taken as stored: producing and consuming 10⁶ events first would
take longer than the measurement. The stored events are registrations of 1,000
municipalities, as in the live mix.

Printed per size: events/s, the CPU time per event of this process and of nx-27017 (what
the cost per event is; independent of other load on the machine), and the ratio of the
cost per event at the largest size to the smallest. Target (issue 8): at most 1.2.
With `--snapshot-round`, also the time of one snapshot round (load every fact, aggregate,
disclosure control) at each size, which grows with the history (see the README).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta

from _common import console, machine, print_table, print_target
from projection import (
    T0,
    Infrastructure,
    Run,
    check_stored,
    infrastructure,
    play,
    produce,
    projection,
)

from wok_reporting.adapters.mongo import MongoProjectionRepository
from wok_reporting.adapters.repository import FactBatch
from wok_reporting.disclosure import disclose
from wok_reporting.domain import MUNICIPALITY, REGISTRATION, Fact, aggregate
from wok_runtime.mongo import mongo_client

TARGET_RATIO = 1.2
CHUNK = 2000
HISTORY_TOPIC = "history.registration.events.v1"
SECTORS = ("resident", "civil_society", "business", "politics", "administration")


def history(size: int, municipalities: int = 1000) -> Iterator[Fact]:
    """`size` stored facts: each municipality's join, then registrations round-robin."""
    codes = [f"{(m % 16) + 1:02d}{m:06d}" for m in range(municipalities)]
    joined = min(municipalities, size)
    for m, ags in enumerate(codes[:joined]):
        yield Fact(
            entity=MUNICIPALITY,
            entity_id=ags,
            ags=ags,
            event_id=str(uuid.UUID(int=m + 1)),
            event_type="registration.municipality.registered.v1",
            time=T0 - timedelta(days=400),
            fields={"name": f"Gemeinde {m}", "kind": "town"},
        )
    for n in range(size - joined):
        ags = codes[n % municipalities]
        yield Fact(
            entity=REGISTRATION,
            entity_id=f"registration-h{n:09d}",
            ags=ags,
            event_id=str(uuid.UUID(int=10**7 + n)),
            event_type="registration.participant.registered.v1",
            time=T0 - timedelta(days=365) + timedelta(seconds=n * 20),
            fields={
                "dialogue_event_id": f"event-h{ags}-{n % 10}",
                "status": "confirmed",
                "sector": SECTORS[n % len(SECTORS)],
            },
        )


async def preload(infra: Infrastructure, database: str, size: int) -> float:
    """Store `size` events as the projection would have; returns the seconds it took."""
    client = mongo_client(infra.mongodb_uri)
    began = time.perf_counter()
    try:
        projections = MongoProjectionRepository(client[database])
        await projections.ensure_ready()
        facts = history(size)
        offsets = [0, 0, 0, 0]
        for number in itertools.count():
            part = tuple(itertools.islice(facts, CHUNK))
            if not part:
                break
            partition = number % 4
            offsets[partition] += len(part)
            batch = FactBatch(
                topic=HISTORY_TOPIC,
                partition=partition,
                last_offset=offsets[partition] - 1,
                facts=part,
            )
            await projections.record_batches([batch])
    finally:
        await client.close()
    return time.perf_counter() - began


async def snapshot_round(infra: Infrastructure, database: str) -> float:
    """One snapshot round's computation: load every fact, aggregate, disclosure control."""
    client = mongo_client(infra.mongodb_uri)
    try:
        began = time.perf_counter()
        loaded = await MongoProjectionRepository(client[database]).load()
        disclose(aggregate(loaded))
        return time.perf_counter() - began
    finally:
        await client.close()


def per_event_us(run: Run) -> float:
    """CPU per event of the projection and nx-27017 together (the cost of an event)."""
    return (
        sum(seconds for name, seconds in run.cpu_s.items() if not name.startswith("tansu"))
        * 1e6
        / run.records
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--events", type=int, default=30_000, help="new events per size")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--snapshot-round", action="store_true")
    arguments = parser.parse_args()
    console.print(f"[dim]{machine()}[/dim]")
    played = play(arguments.events, duplicates=0.01, seed=8)
    rows = []
    runs: dict[int, Run] = {}
    async with infrastructure() as infra:
        _, ends = await produce(infra.kafka_bootstrap, infra.prefix, played)
        for size in arguments.sizes:
            database = f"wok_reporting_{size}"
            with console.status(f"preloading {size:,} stored events…"):
                seconds = await preload(infra, database, size)
            console.print(f"preloaded {size:,} stored events in {seconds:.1f} s")
            run = await projection(
                infra,
                database=database,
                ends=ends,
                batch=arguments.batch,
                group=f"reporting-bench-{size}",
            )
            ok, detail = await check_stored(infra, database=database, ends=ends, played=played)
            console.print(f"check at {size:,}: {detail}")
            round_s = await snapshot_round(infra, database) if arguments.snapshot_round else None
            runs[size] = run
            rows.append(
                (
                    f"{size:,}",
                    f"{run.per_s:,.0f}",
                    *(f"{s * 1e6 / run.records:.0f}" for s in run.cpu_s.values()),
                    f"{per_event_us(run):.0f}",
                    "-" if round_s is None else f"{round_s:.1f}",
                    "yes" if ok else "NO",
                )
            )
    names = list(next(iter(runs.values())).cpu_s)
    print_table(
        f"Projection cost as history grows ({arguments.events:,} new events; {machine()})",
        (
            "stored events",
            "events/s",
            *(f"CPU µs/event: {name}" for name in names),
            "cost µs/event",
            "snapshot round s",
            "stored exactly",
        ),
        rows,
    )
    smallest, largest = min(runs), max(runs)
    ratio = per_event_us(runs[largest]) / per_event_us(runs[smallest])
    wall_ratio = runs[smallest].per_s / runs[largest].per_s
    console.print(
        f"cost per event at {largest:,} / at {smallest:,}: {ratio:.2f} (CPU); "
        f"{wall_ratio:.2f} (wall clock, sensitive to other load)"
    )
    print_target(
        f"cost per event at {largest:,} stored ≤ {TARGET_RATIO} × at {smallest:,}",
        measured=f"{ratio:.2f}",
        met=ratio <= TARGET_RATIO,
    )


if __name__ == "__main__":
    asyncio.run(main())
