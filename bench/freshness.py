"""Freshness: from the 201 of a registration to the aggregate on `exchange.aggregates.v1`
that includes it, and to its e-mail in the SMTP sink, p50/p99 at a fixed rate (open loop).

    .venv/bin/python bench/freshness.py [--rate 200] [--duration 5] [--data-dir DIR] [--no-mail]

Starts the whole embedded stack (or uses the one `wok dev` runs on `--data-dir`), onboards
fresh municipalities with dialogue events and posts public registrations to them while two
plain Kafka consumers (no group) follow `registration.events.v1` and
`exchange.aggregates.v1`, each record stamped when it arrives here.

When an aggregate includes a registration: one municipality's events share a key, hence a
partition, and reporting consumes them in order; so if `ParticipantRegistered` of a
registration is the k-th of its municipality on the topic, the first snapshot keyed
`municipality:<ags>` whose `registrations_total` reaches k includes it (the municipalities
are new, so they hold nothing else). Its latency is that snapshot's arrival minus the 201.
The e-mail's is the arrival time in the sink (the `.eml` file name, stamped by the sink on
receipt) minus the 201, matched by the `To` address.

CPU per registration: the CPU seconds each process of the stack used from the first
registration until the last aggregate (and e-mail) arrived, from /proc, divided by the
registrations answered 201 (`bench` is this script, with its followers). Database commands
per registration: each service's `wok_mongo_commands_total` (its /metrics) over the same
span, by service with the most frequent (command, collection) pairs, each with the
milliseconds until the answers (`wok_mongo_command_seconds_total`: the server's time and
the wait for it, the nx-27017 queue included, so a pointer to where its time goes, not its
CPU).

Targets (issue 8): aggregate p99 under 1 s, e-mail p99 under 2 s, at 200 registrations/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from pathlib import Path
from typing import Any

from _common import (
    HttpPool,
    Target,
    bench_stack,
    commands_per,
    console,
    cpu_per,
    cpu_seconds,
    format_cpu,
    http_client,
    machine,
    mongo_commands,
    ms,
    percentile,
    print_commands,
    print_p99_target,
    print_table,
    register_at_rate,
    run_id,
    set_up_events,
)
from aiokafka import AIOKafkaConsumer, TopicPartition

from wok_contracts.topics import EXCHANGE_AGGREGATES, REGISTRATION_EVENTS

REGISTERED = "registration.participant.registered.v1"
TARGET_AGGREGATE_P99_S = 1.0
TARGET_MAIL_P99_S = 2.0


class Follower:
    """Follows topics from their current end without a consumer group; each record is
    handed to `on_record` with its arrival time (`time.time()`)."""

    def __init__(self, bootstrap: str, topics: list[str], on_record: Any) -> None:
        # A short fetch wait: tansu answers a waiting fetch only when the wait runs out (not
        # when a record arrives), so the default 500 ms would be measured as lag.
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        self._topics = topics
        self._on_record = on_record
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        assignment: list[TopicPartition] = []
        for topic in self._topics:
            partitions = self._consumer.partitions_for_topic(topic)
            if not partitions:
                await self._consumer._client.force_metadata_update()
                partitions = self._consumer.partitions_for_topic(topic) or set()
            assignment.extend(TopicPartition(topic, partition) for partition in partitions)
        self._consumer.assign(assignment)
        await self._consumer.seek_to_end(*assignment)
        for partition in assignment:  # resolve the end positions now, before anything is sent
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=50)
            arrived = time.time()
            for records in batches.values():
                for record in records:
                    self._on_record(record, arrived)

    async def stop(self) -> None:
        """Stops following (again: nothing); its fetches, every 10 ms, cost CPU here and in
        the broker, so it stops as soon as what it follows has all arrived."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._consumer.stop()


class Observations:
    """What the followers saw: the order of registrations per municipality, and each
    municipality snapshot's registrations total with its arrival time."""

    def __init__(self, *, registrations_topic: str, municipalities: set[str]) -> None:
        self._registrations_topic = registrations_topic
        self._municipalities = municipalities
        self.order: dict[str, list[str]] = defaultdict(list)
        self.published: dict[str, float] = {}  # registration id -> its event's arrival
        # registration id -> when the outbox relay handed its event to the producer (the
        # record's timestamp, set by the relay's producer)
        self.handed_over: dict[str, float] = {}
        self.snapshots: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.aggregates_seen = 0  # every snapshot on the aggregates topic, of any scope
        self.withheld = 0  # snapshots of these municipalities with the total withheld
        self.repeated = 0  # ParticipantRegistered seen again (the same registration)

    def on_record(self, record: Any, arrived: float) -> None:
        key = (record.key or b"").decode()
        if record.topic == self._registrations_topic:
            if key not in self._municipalities:
                return
            envelope = json.loads(record.value)
            if envelope.get("type") == REGISTERED:
                registration_id = envelope["data"]["registration_id"]
                if registration_id in self.published:
                    # Sent again (the relay delivers at least once; consumers skip the
                    # copy by its id), so it holds no place of its own in the count.
                    self.repeated += 1
                    return
                self.order[key].append(registration_id)
                self.published[registration_id] = arrived
                self.handed_over[registration_id] = record.timestamp / 1000
            return
        self.aggregates_seen += 1
        ags = key.removeprefix("municipality:")
        if ags == key or ags not in self._municipalities:
            return
        total = json.loads(record.value)["data"]["metrics"].get("registrations_total")
        if total is not None:  # None: withheld by disclosure control (1-4 people)
            self.snapshots[ags].append((arrived, int(total)))
        else:
            self.withheld += 1

    def included_at(self) -> dict[str, float]:
        """For every registration some snapshot includes: when that snapshot arrived."""
        found: dict[str, float] = {}
        for ags, order in self.order.items():
            snapshots = sorted(self.snapshots.get(ags, []))
            index = 0
            for position, registration_id in enumerate(order, start=1):
                while index < len(snapshots) and snapshots[index][1] < position:
                    index += 1
                if index == len(snapshots):
                    break
                found[registration_id] = snapshots[index][0]
        return found


class MailArrivals:
    """By registration id: when the sink received its first mail (from the file name).

    Each `.eml` file is read once: `update` looks at the files that are new since the last
    call only (the sink never rewrites one), so polling while thousands arrive stays cheap
    and leaves the CPU to the stack being measured."""

    def __init__(self, mail_dir: Path, addresses: dict[str, str], since: float) -> None:
        self._mail_dir = mail_dir
        self._addresses = addresses
        self._since = since
        self._read: set[str] = set()
        self.found: dict[str, float] = {}

    def update(self) -> dict[str, float]:
        for path in self._mail_dir.glob("*.eml"):
            if path.name in self._read:
                continue
            self._read.add(path.name)
            self._take(path)
        return self.found

    def _take(self, path: Path) -> None:
        stamp = path.name.split("-", 1)[0]
        try:
            received = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        except ValueError:
            return
        if received.timestamp() < self._since:
            return
        # The header block only, parsed the cheap way: the full parser (a MIME body and the
        # default policy's header objects) cost the benchmark 2.5 ms of CPU per mail.
        content = path.read_bytes().replace(b"\r\n", b"\n")
        head = content.split(b"\n\n", 1)[0] + b"\n\n"
        headers = BytesHeaderParser(policy=compat32).parsebytes(head)
        for _, address in getaddresses([str(value) for value in headers.get_all("To", [])]):
            registration_id = self._addresses.get(address.strip())
            if registration_id is not None:
                self.found[registration_id] = min(
                    received.timestamp(), self.found.get(registration_id, float("inf"))
                )


async def wait_until(what: str, done: Any, *, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    with console.status(what):
        while time.monotonic() < deadline:
            if done():
                return True
            await asyncio.sleep(0.5)
    return done()


@contextlib.asynccontextmanager
async def spied(stack: Any, folder: Path | None, names: Sequence[str]) -> AsyncIterator[None]:
    """With `--spy DIR`: py-spy samples each named process of the stack meanwhile and writes
    its collapsed stacks to DIR/<name>.txt (where the CPU goes; it costs CPU itself, so
    take the CPU figures from a run without it)."""
    if folder is None or stack.embedded is None:
        yield
        return
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    processes = []
    for name in names:
        pid = stack.embedded.pid(name)
        processes.append(
            await asyncio.create_subprocess_exec(
                *(str(spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "200"),
                *("--output", str(folder / f"{name}.txt")),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    try:
        yield
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        for process in processes:
            await asyncio.wait_for(process.wait(), timeout=30)


async def measure(arguments: argparse.Namespace) -> int:
    run = run_id()
    count = max(1, int(arguments.rate * arguments.duration))
    async with (
        bench_stack(arguments.data_dir) as stack,
        http_client(stack.registration_url) as setup,
        HttpPool(stack.registration_url, connections=arguments.connections) as client,
    ):
        with console.status("onboarding municipalities and scheduling events…"):
            targets: list[Target] = await set_up_events(
                setup,
                admin_key=stack.admin_key,
                municipalities=arguments.municipalities,
                events_per_municipality=arguments.events,
                capacity=arguments.capacity,
                seed=int(time.time()),
            )
        observations = Observations(
            registrations_topic=stack.topic(REGISTRATION_EVENTS),
            municipalities={target.ags for target in targets},
        )
        spying = spied(stack, arguments.spy, arguments.spy_processes.split(","))
        follower = Follower(
            stack.kafka_bootstrap,
            [stack.topic(REGISTRATION_EVENTS), stack.topic(EXCHANGE_AGGREGATES)],
            observations.on_record,
        )
        await follower.start()
        commands_before = await mongo_commands(stack.service_urls)
        began = time.time()
        cpu_before = cpu_seconds(stack.embedded)
        try:
            async with spying:
                registered = await register_at_rate(
                    client, targets, run=run, rate=arguments.rate, count=count
                )
                # registration id -> wall-clock time of its 201; address -> registration id
                ingest, created = registered.ingest, registered.created
                addresses = registered.addresses
                await wait_until(
                    "waiting for the aggregates to include every registration…",
                    lambda: len(observations.included_at()) >= len(created),
                    timeout_s=arguments.timeout,
                )
                await follower.stop()  # everything it follows is in: no more fetches
                arrivals = MailArrivals(stack.mail_dir, addresses, began - 1)
                mails = arrivals.found

                def all_mailed() -> bool:
                    return len(arrivals.update()) >= len(created)

                if arguments.mail:
                    await wait_until(
                        "waiting for every confirmation e-mail…",
                        all_mailed,
                        timeout_s=arguments.timeout,
                    )
                cpu_after = cpu_seconds(stack.embedded)
                commands_after = await mongo_commands(stack.service_urls)
        finally:
            await follower.stop()

    included = observations.included_at()
    event_lags = [
        observations.published[rid] - at
        for rid, at in created.items()
        if rid in observations.published
    ]
    aggregate_lags = [included[rid] - at for rid, at in created.items() if rid in included]
    mail_lags = [mails[rid] - at for rid, at in created.items() if rid in mails]
    console.print(f"machine: {machine()}")
    console.print(
        f"{count} registrations offered at {arguments.rate:g}/s to {arguments.municipalities} "
        f"municipalities x {arguments.events} dialogue events: {ingest.completed} answered 201 "
        f"({ingest.throughput:.1f}/s, p50 {ms(ingest.p(50))} ms, p99 {ms(ingest.p(99))} ms), "
        f"{ingest.failures} failed"
    )
    for example in ingest.failure_examples:
        console.print(f"[yellow]failure: {example}[/yellow]")
    rows = []
    # Negative when the relay was quicker than the 201 reached this client.
    pickup_lags = [
        observations.handed_over[rid] - at
        for rid, at in created.items()
        if rid in observations.handed_over
    ]
    paths = [
        ("201 -> handed to the producer (outbox relay)", pickup_lags),
        ("201 -> ParticipantRegistered on the topic", event_lags),
        ("201 -> aggregate", aggregate_lags),
    ]
    if arguments.mail:
        paths.append(("201 -> e-mail", mail_lags))
    for name, lags in paths:
        rows.append(
            [
                name,
                f"{len(lags)} / {len(created)}",
                ms(percentile(lags, 50)),
                ms(percentile(lags, 99)),
                ms(max(lags, default=float("nan"))),
            ]
        )
    print_table("Freshness", ["path", "seen", "p50 ms", "p99 ms", "max ms"], rows)
    if stack.embedded is not None:
        # From the first registration until the last aggregate (and e-mail) arrived.
        console.print(format_cpu(cpu_per(cpu_before, cpu_after, len(created)), unit="registration"))
    print_commands(commands_per(commands_before, commands_after, len(created)), unit="registration")
    console.print(
        f"aggregate snapshots on the topic meanwhile: {observations.aggregates_seen} "
        f"({observations.withheld} of these municipalities with the total withheld); "
        f"ParticipantRegistered on the topic more than once: {observations.repeated}"
    )
    print_p99_target(
        f"201 -> aggregate p99 < {TARGET_AGGREGATE_P99_S:g} s at {arguments.rate:g}/s",
        aggregate_lags,
        expected=count,
        limit_s=TARGET_AGGREGATE_P99_S,
    )
    if not arguments.mail:
        return 0
    print_p99_target(
        f"201 -> e-mail p99 < {TARGET_MAIL_P99_S:g} s at {arguments.rate:g}/s",
        mail_lags,
        expected=count,
        limit_s=TARGET_MAIL_P99_S,
    )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="registrations/s")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of load")
    parser.add_argument("--municipalities", type=int, default=4)
    parser.add_argument("--events", type=int, default=5, help="dialogue events each")
    parser.add_argument("--capacity", type=int, default=100, help="places per event")
    parser.add_argument("--connections", type=int, default=64, help="HTTP connections at most")
    parser.add_argument("--timeout", type=float, default=90.0, help="wait for the last one")
    parser.add_argument(
        "--no-mail",
        dest="mail",
        action="store_false",
        help="measure the topics only, without waiting for the e-mails",
    )
    parser.add_argument("--data-dir", type=Path, help="measure the stack `wok dev` runs here")
    parser.add_argument(
        "--spy", type=Path, help="sample the processes with py-spy, collapsed stacks to this folder"
    )
    parser.add_argument(
        "--spy-processes",
        default="reporting,exchange,assessment",
        help="which processes --spy samples (comma-separated)",
    )
    sys.exit(asyncio.run(measure(parser.parse_args())))


if __name__ == "__main__":
    main()
