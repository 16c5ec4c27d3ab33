"""What the benchmark scripts share: percentiles, open- and closed-loop load, the stack to
measure, the set-up of municipalities and dialogue events, and the printed table.

Not part of the test suite; each script prints its figures. Run them from the repository
root with the project's interpreter, e.g. `.venv/bin/python bench/ingest.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from wok_cli.devstack import EmbeddedStack, ServiceSpec, running_stack
from wok_cli.loadclient import HttpPool
from wok_cli.settings import StackSettings
from wok_runtime.logging import configure_logging

console = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))

SECTORS = ("resident", "civil_society", "business", "politics", "administration")
LANGUAGES = ("de", "en", "tr", "ar", "uk")


# -- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class LoadResult:
    """The outcome of one load run: latencies (s) of the successful requests, failures."""

    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    elapsed_s: float = 0.0
    failure_examples: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.completed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def fail(self, reason: str) -> None:
        self.failures += 1
        if len(self.failure_examples) < 3:
            self.failure_examples.append(reason)


Send = Callable[[int], Awaitable[None]]
"""One request number `i`; raises on failure (the reason is counted)."""


async def open_loop(send: Send, *, rate: float, count: int) -> LoadResult:
    """Send `count` requests at a fixed `rate`, whatever the answers take (open loop).

    Request i is due at start + i/rate; its latency runs from when it was due, so time
    spent queueing (in this client or in the server) counts, as it would for a user.
    """
    loop = asyncio.get_running_loop()
    result = LoadResult()
    start = loop.time()
    finished: list[float] = []

    async def timed(number: int, due: float) -> None:
        try:
            await send(number)
        except Exception as error:
            result.fail(f"{type(error).__name__}: {error}"[:300])
            return
        now = loop.time()
        result.latencies.append(now - due)
        finished.append(now)

    tasks = []
    for number in range(count):
        due = start + number / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(number, due)))
    await asyncio.gather(*tasks)
    result.elapsed_s = (max(finished) if finished else loop.time()) - start
    return result


async def closed_loop(send: Send, *, concurrency: int, duration_s: float) -> LoadResult:
    """`concurrency` clients each sending the next request as soon as the last is answered,
    for `duration_s`: the most this endpoint serves (its saturation throughput)."""
    loop = asyncio.get_running_loop()
    result = LoadResult()
    counter = iter(range(10**9))
    start = loop.time()
    stop_at = start + duration_s

    async def client() -> None:
        while loop.time() < stop_at:
            began = loop.time()
            try:
                await send(next(counter))
            except Exception as error:
                result.fail(f"{type(error).__name__}: {error}"[:300])
                continue
            result.latencies.append(loop.time() - began)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed_s = loop.time() - start
    return result


def http_client(base_url: str, *, timeout_s: float = 30.0) -> httpx.AsyncClient:
    """For set-up requests (few, not timed)."""
    return httpx.AsyncClient(base_url=base_url, timeout=timeout_s)


# -- the stack -------------------------------------------------------------------------------


@dataclass
class BenchStack:
    """A stack to measure: one this script started (`embedded`), or one `wok dev` runs."""

    registration_url: str
    admin_key: str
    kafka_bootstrap: str
    mongodb_uri: str
    topic_prefix: str
    mail_dir: Path
    service_urls: dict[str, str]
    embedded: EmbeddedStack | None = None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@contextlib.asynccontextmanager
async def bench_stack(
    data_dir: Path | None, *, services: Sequence[str] | None = None
) -> AsyncIterator[BenchStack]:
    """The stack `wok dev` runs on `data_dir`, or else a new embedded stack on free ports in
    a temporary folder (only `services`, if given), stopped and deleted afterwards."""
    configure_logging(service="bench", level="WARNING")  # the figures, not library chatter
    if data_dir is not None:
        endpoints = running_stack(data_dir)
        if endpoints is None:
            raise SystemExit(f"no running stack on {data_dir} (start one with `wok dev`)")
        console.print(f"[dim]using the stack running on {data_dir}[/dim]")
        yield BenchStack(
            registration_url=endpoints.service_urls["registration"],
            admin_key=endpoints.admin_key,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            mongodb_uri=endpoints.mongodb_uri,
            topic_prefix=endpoints.topic_prefix,
            mail_dir=Path(endpoints.mail_dir),
            service_urls=endpoints.service_urls,
        )
        return
    folder = Path(tempfile.mkdtemp(prefix="wok-bench-"))
    try:
        settings = StackSettings.with_free_ports(data_dir=folder, topic_prefix="bench.")
        chosen = None
        if services is not None:
            chosen = [
                ServiceSpec(name=name, module=f"wok_{name}", port=settings.port_of(name))
                for name in services
            ]
        stack = EmbeddedStack(settings, services=chosen)
        began = time.monotonic()
        with console.status("starting the embedded stack…"):
            await stack.astart()
        console.print(
            f"[dim]embedded stack up in {time.monotonic() - began:.1f} s "
            f"({', '.join(stack.service_urls) or 'no services'}) in {folder}[/dim]"
        )
        try:
            yield BenchStack(
                registration_url=stack.service_urls.get("registration", ""),
                admin_key=stack.admin_key,
                kafka_bootstrap=stack.kafka_bootstrap,
                mongodb_uri=stack.mongodb_uri,
                topic_prefix=stack.settings.topic_prefix,
                mail_dir=stack.mail_dir,
                service_urls=stack.service_urls,
                embedded=stack,
            )
        finally:
            with console.status("stopping the embedded stack…"):
                await stack.astop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


STACK_PROCESSES = (
    "nx-27017",
    "tansu",
    "smtp-sink",
    "registration",
    "notification",
    "reporting",
    "exchange",
    "assessment",
)


def cpu_seconds(
    stack: EmbeddedStack | None, names: Sequence[str] = STACK_PROCESSES
) -> dict[str, float]:
    """CPU seconds (user + system) each named process of the stack used so far, from /proc,
    and this benchmark process's own (`bench`); a process that is not running is left out."""
    found: dict[str, float] = {"bench": time.process_time()}
    if stack is None:  # a stack `wok dev` runs: its processes are not ours to read
        return found
    ticks = os.sysconf("SC_CLK_TCK")
    for name in names:
        try:
            pid = stack.pid(name)
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, KeyError, AttributeError, TypeError):
            continue
        found[name] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def cpu_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU milliseconds per operation of each process between two `cpu_seconds` readings."""
    return {
        name: (after[name] - before[name]) * 1000 / max(1, count)
        for name in after
        if name in before
    }


def format_cpu(per_operation: dict[str, float], *, unit: str) -> str:
    """`CPU per <unit>: a 1.23 ms, ...`, the biggest first, with the stack's total
    (the benchmark process itself not counted in it)."""
    ordered = sorted(per_operation.items(), key=lambda item: -item[1])
    total = sum(value for name, value in ordered if name != "bench")
    return (
        f"CPU per {unit}: "
        + ", ".join(f"{name} {value:.2f} ms" for name, value in ordered)
        + f"; stack total {total:.2f} ms"
    )


MONGO_COMMANDS = "wok_mongo_commands_total"
MONGO_SECONDS = "wok_mongo_command_seconds_total"
# by service: by (command, collection): [commands, seconds until their answers]
CommandCounts = dict[str, dict[tuple[str, str], list[float]]]


async def mongo_commands(service_urls: dict[str, str]) -> CommandCounts:
    """By service: its MongoDB commands so far by (command, collection), and the seconds
    until their answers, from its /metrics (`wok_mongo_commands_total`,
    `wok_mongo_command_seconds_total`); a service that does not answer is left out."""
    from prometheus_client.parser import text_string_to_metric_families

    found: CommandCounts = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for name, url in service_urls.items():
            try:
                response = await client.get(f"{url}/metrics")
                response.raise_for_status()
            except httpx.HTTPError:
                continue
            counts: dict[tuple[str, str], list[float]] = {}
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    if sample.name not in (MONGO_COMMANDS, MONGO_SECONDS):
                        continue
                    key = (sample.labels["command"], sample.labels["collection"])
                    entry = counts.setdefault(key, [0.0, 0.0])
                    entry[0 if sample.name == MONGO_COMMANDS else 1] = sample.value
            found[name] = counts
    return found


def commands_per(before: CommandCounts, after: CommandCounts, count: int) -> CommandCounts:
    """By service: MongoDB commands and milliseconds until their answers per operation, by
    (command, collection), between two `mongo_commands` readings (the pairs that moved)."""
    per: CommandCounts = {}
    for name, counts in after.items():
        earlier = before.get(name, {})
        moved = {}
        for key, (commands, seconds) in counts.items():
            was = earlier.get(key, [0.0, 0.0])
            if commands > was[0]:
                moved[key] = [
                    (commands - was[0]) / max(1, count),
                    (seconds - was[1]) * 1000 / max(1, count),
                ]
        per[name] = moved
    return per


def print_commands(per: CommandCounts, *, unit: str, top: int = 6) -> None:
    """One line per service, the most commands first: its database commands per operation
    (and the milliseconds until their answers, waiting for the server included) and its
    `top` (command, collection) pairs; then the total."""

    def total(pairs: dict[tuple[str, str], list[float]], index: int) -> float:
        return sum(entry[index] for entry in pairs.values())

    ordered = sorted(per.items(), key=lambda item: -total(item[1], 0))
    console.print(
        f"MongoDB commands per {unit}: {sum(total(pairs, 0) for _, pairs in ordered):.2f} "
        "in all (commands, then ms until their answers, waiting included)"
    )
    for name, pairs in ordered:
        biggest = sorted(pairs.items(), key=lambda item: -item[1][0])[:top]
        detail = ", ".join(
            f"{command} {collection or '-'} {commands:.2f} / {waited:.2f} ms"
            for (command, collection), (commands, waited) in biggest
        )
        console.print(
            f"  {name} {total(pairs, 0):.2f} / {total(pairs, 1):.2f} ms"
            + (f" ({detail})" if detail else "")
        )


# -- set-up: municipalities and dialogue events ---------------------------------------------


def random_ags(rng: random.Random, taken: set[str]) -> str:
    """A valid 8-digit municipality key not in `taken` (Land codes 01-16)."""
    while True:
        ags = f"{rng.randint(1, 16):02d}{rng.randint(0, 999_999):06d}"
        if ags not in taken:
            taken.add(ags)
            return ags


async def onboard(client: httpx.AsyncClient, *, admin_key: str, ags: str) -> str:
    """Onboard a municipality (or rotate its key if it exists); returns its key."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    response = await client.post(
        "/v1/municipalities",
        json={"ags": ags, "name": f"Benchmark {ags}", "kind": "town"},
        headers=admin,
    )
    if response.status_code == 409:
        response = await client.post(f"/v1/municipalities/{ags}/keys", headers=admin)
    response.raise_for_status()
    return str(response.json()["api_key"])


async def schedule(
    client: httpx.AsyncClient, *, ags: str, key: str, capacity: int, index: int
) -> str:
    """Schedule an in-person dialogue event four weeks ahead; returns its id."""
    starts = (datetime.now(UTC) + timedelta(days=28 + index % 30)).replace(
        hour=17, minute=0, second=0, microsecond=0
    )
    response = await client.post(
        f"/v1/municipalities/{ags}/dialogue-events",
        json={
            "title": f"Benchmark-Dialog {index}",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "format": "in_person",
            "place": "Rathaus, Ratssaal",
            "capacity": capacity,
            "registration_deadline": (starts - timedelta(days=1)).isoformat(),
            "languages": ["de"],
        },
        headers={"Authorization": f"Bearer {key}"},
    )
    response.raise_for_status()
    return str(response.json()["id"])


@dataclass(frozen=True)
class Target:
    """A dialogue event registrations go to, with its municipality."""

    ags: str
    dialogue_event_id: str


async def set_up_events(
    client: httpx.AsyncClient,
    *,
    admin_key: str,
    municipalities: int,
    events_per_municipality: int,
    capacity: int,
    seed: int,
) -> list[Target]:
    """Onboard fresh municipalities, each with its dialogue events (round-robin targets)."""
    rng = random.Random(seed)
    taken: set[str] = set()
    per_municipality: list[list[Target]] = []
    for _ in range(municipalities):
        ags = random_ags(rng, taken)
        key = await onboard(client, admin_key=admin_key, ags=ags)
        per_municipality.append(
            [
                Target(
                    ags=ags,
                    dialogue_event_id=await schedule(
                        client, ags=ags, key=key, capacity=capacity, index=index
                    ),
                )
                for index in range(events_per_municipality)
            ]
        )
    # Interleaved, so consecutive requests touch different municipalities and documents.
    return [target for row in zip(*per_municipality, strict=True) for target in row]


def registration_body(*, run: str, number: int) -> dict[str, Any]:
    """A public registration with a unique address (`bench-<run>-<n>@example.org`)."""
    return {
        "name": f"Bench Person {number}",
        "email": registration_address(run=run, number=number),
        "sector": SECTORS[number % len(SECTORS)],
        "language": LANGUAGES[number % len(LANGUAGES)],
        "consent": True,
    }


def registration_address(*, run: str, number: int) -> str:
    return f"bench-{run}-{number}@example.org"


@dataclass
class Registered:
    """Registrations made at a fixed rate: the load figures, when each was answered 201
    (wall clock, by registration id) and which registration each address belongs to."""

    ingest: LoadResult
    created: dict[str, float]
    addresses: dict[str, str]


async def register_at_rate(
    client: HttpPool, targets: Sequence[Target], *, run: str, rate: float, count: int
) -> Registered:
    """`count` public registrations round-robin over `targets` at `rate` per second (open
    loop); any answer but 201 fails the run."""
    created: dict[str, float] = {}
    addresses: dict[str, str] = {}

    async def send(number: int) -> None:
        target = targets[number % len(targets)]
        response = await client.post_json(
            f"/v1/dialogue-events/{target.dialogue_event_id}/registrations",
            registration_body(run=run, number=number),
        )
        answered = time.time()
        if response.status != 201:
            raise RuntimeError(f"{response.status} {response.body[:200]!r}")
        registration_id = response.json()["registration_id"]
        created[registration_id] = answered
        addresses[registration_address(run=run, number=number)] = registration_id

    with console.status(f"{count} registrations at {rate:g}/s…"):
        ingest = await open_loop(send, rate=rate, count=count)
    return Registered(ingest=ingest, created=created, addresses=addresses)


def run_id() -> str:
    return f"{int(time.time()):x}{random.randrange(16**4):04x}"


# -- printing --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def machine() -> str:
    """One line about where the figures were measured."""
    cpus = os.cpu_count() or 0
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = f", load average {os.getloadavg()[0]:.1f}"
    return (
        f"{platform.node()}: {cpus} CPU {model}, Python {platform.python_version()}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC{load}"
    )


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)


def verdict(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]MISSED[/red]"


def print_target(text: str, *, measured: str, met: bool) -> None:
    """A line the smoke test looks for: `target: <text>: <measured> -> met|MISSED`."""
    console.print(f"target: {text}: {measured} -> {verdict(met)}")


def print_p99_target(text: str, lags: Sequence[float], *, expected: int, limit_s: float) -> None:
    """A p99 latency target over `lags` (seconds), met only when all `expected` were seen."""
    p99 = percentile(lags, 99)
    missing = expected - len(lags)
    print_target(
        text,
        measured=f"{ms(p99)} ms" + (f" ({missing} never seen)" if missing else ""),
        met=not missing and p99 < limit_s,
    )
