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

Also per size, the aggregate snapshot rounds as the service's `SnapshotPublisher` makes
them (without publishing): the first round after a start reads every stored fact into the
incremental aggregates (`Tally`), which grows with the history; a round after the new
events reads only the chunks stored since (`facts_since`) and updates the scopes they
touch: its reading and aggregating per new event should not depend on the history.
Disclosure control runs over every scope each round; its time depends on the size of the
published table (scopes × cells, the days with registrations among them), printed too.
`--no-rounds` leaves the rounds out.

Before the sizes, the same events are projected once into a throwaway database (a warm-up:
the first projection in a process costs about a quarter more per event, whichever size it
is, and would bias the ratio); `--no-warmup` leaves it out.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
from wok_reporting.domain import MUNICIPALITY, REGISTRATION, Fact
from wok_reporting.tally import Tally
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


@dataclass
class Rounds:
    """A snapshot round's parts, in seconds of this process's CPU time."""

    first_s: float = 0.0  # the first round after a start: every stored fact
    read_s: float = 0.0  # a later round: the facts stored since, into the aggregates
    facts: int = 0  # how many that later round read
    disclose_s: float = 0.0  # disclosure control over every scope, each round
    cells: int = 0


class RoundMeter:
    """Snapshot rounds over one database, as `SnapshotPublisher.publish_changes` makes them
    (without storing or sending)."""

    def __init__(self, infra: Infrastructure, database: str) -> None:
        self._client = mongo_client(infra.mongodb_uri)
        self._projections = MongoProjectionRepository(self._client[database])
        self._tally = Tally()
        self._cursor: object = None
        self.rounds = Rounds()

    async def round(self) -> tuple[float, int, float, int]:
        """(CPU s reading and aggregating, facts read, CPU s of disclosure control, cells)."""
        began = time.process_time()
        found = await self._projections.facts_since(self._cursor)
        self._tally.add(found.facts)
        self._cursor = found.cursor
        figures = self._tally.figures()
        read = time.process_time() - began
        began = time.process_time()
        disclose(figures)
        cells = sum(len(figure.cells()) for figure in figures.values())
        return read, len(found.facts), time.process_time() - began, cells

    async def first(self) -> None:
        self.rounds.first_s, _, _, _ = await self.round()

    async def later(self) -> None:
        read, facts, disclose_s, cells = await self.round()
        self.rounds.read_s, self.rounds.facts = read, facts
        self.rounds.disclose_s, self.rounds.cells = disclose_s, cells

    async def close(self) -> None:
        await self._client.close()


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
    parser.add_argument("--no-rounds", action="store_true", help="leave the rounds out")
    parser.add_argument("--no-warmup", action="store_true", help="leave the warm-up out")
    arguments = parser.parse_args()
    console.print(f"[dim]{machine()}[/dim]")
    played = play(arguments.events, duplicates=0.01, seed=8)
    rows = []
    runs: dict[int, Run] = {}
    async with infrastructure() as infra:
        _, ends = await produce(infra.kafka_bootstrap, infra.prefix, played)
        if not arguments.no_warmup:
            with console.status("warming up (the same events into a throwaway database)…"):
                warm = await projection(
                    infra,
                    database="wok_reporting_warmup",
                    ends=ends,
                    batch=arguments.batch,
                    group="reporting-bench-warmup",
                )
            console.print(f"warm-up: {warm.per_s:,.0f} events/s (not counted)")
        for size in arguments.sizes:
            database = f"wok_reporting_{size}"
            with console.status(f"preloading {size:,} stored events…"):
                seconds = await preload(infra, database, size)
            console.print(f"preloaded {size:,} stored events in {seconds:.1f} s")
            meter = None if arguments.no_rounds else RoundMeter(infra, database)
            if meter is not None:
                with console.status("the first snapshot round (every stored fact)…"):
                    await meter.first()
            run = await projection(
                infra,
                database=database,
                ends=ends,
                batch=arguments.batch,
                group=f"reporting-bench-{size}",
            )
            ok, detail = await check_stored(infra, database=database, ends=ends, played=played)
            console.print(f"check at {size:,}: {detail}")
            rounds = None
            if meter is not None:
                await meter.later()
                await meter.close()
                rounds = meter.rounds
            runs[size] = run
            rows.append(
                (
                    f"{size:,}",
                    f"{run.per_s:,.0f}",
                    *(f"{s * 1e6 / run.records:.0f}" for s in run.cpu_s.values()),
                    f"{per_event_us(run):.0f}",
                    *(
                        ("-", "-", "-")
                        if rounds is None
                        else (
                            f"{rounds.first_s:.1f}",
                            f"{rounds.read_s * 1e6 / max(rounds.facts, 1):.1f} "
                            f"({rounds.facts:,} facts)",
                            f"{rounds.disclose_s:.2f} ({rounds.cells:,} cells)",
                        )
                    ),
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
            "first round s",
            "later round µs/new event",
            "disclosure s/round",
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
