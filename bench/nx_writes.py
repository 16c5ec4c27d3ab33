"""nx-27017's CPU per write, for the write shapes that decide the ingest ratio: the bare
endpoint's insert, registration's place write on dialogue events already holding N
registrations, and the two writes registrations in documents of their own would need.

    .venv/bin/python bench/nx_writes.py [--held 0,100,300] [--writes 1000] [--events 20]

Starts an embedded stack without services (nx-27017 as `wok dev` runs it) and sends each
shape from `--concurrency` clients in one process with the project's driver settings, reading
nx-27017's CPU time from /proc before and after. The place write is registration's own
(`MongoRegistrationRepository.take_place`, the event it announces included, and the removal
of the previously written one folded in as when the outbox relay keeps up); the documents of
one's own are the alternative `ingest.py`'s ratio points to (a conditional count on a small
event document, then the registration's document with its event), measured without the
recovery steps that model would need. The figures explain `ingest.py`'s ratio; no target.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from _common import bench_stack, console, cpu_seconds, machine, print_table
from pymongo import AsyncMongoClient

from wok_cli.devstack import EmbeddedStack
from wok_contracts import EventFormat, RegistrationStatus, Sector
from wok_registration.adapters.repository import MongoRegistrationRepository
from wok_registration.domain import DialogueEvent, RegistrationRequest, registered_event
from wok_registration.handlers import _outbound
from wok_runtime.mongo import mongo_client
from wok_runtime.outbox import PendingMessage, with_outbox, written_messages

NX = "nx-27017"
Write = Callable[[int], Awaitable[None]]


class RelayKeepingUp:
    """Stands in for the outbox relay of a registration process whose relay keeps up: every
    event a place write added counts as published at once, so the next write to the same
    document removes it (as `OutboxWriter` arranges when the relay is not behind)."""

    def __init__(self) -> None:
        self._published: dict[str, list[PendingMessage]] = {}

    def written(self, document_id: str, update: dict[str, Any]) -> None:
        self._published.setdefault(document_id, []).extend(written_messages(document_id, update))

    def take_published(self, document_id: str) -> list[PendingMessage]:
        return self._published.pop(document_id, [])

    def removed(self, messages: Sequence[PendingMessage]) -> None:
        """Gone from the document with the write that carried their removal: nothing left."""

    def kept(self, messages: Sequence[PendingMessage]) -> None:
        for message in messages:
            self._published.setdefault(message.document_id, []).append(message)

    def uncertain(self) -> None:
        raise RuntimeError("a place write failed without an answer")


def dialogue_event(number: int) -> DialogueEvent:
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    return DialogueEvent(
        id=f"bench-{uuid.uuid4().hex[:8]}-{number}",
        ags="07312000",
        title="Dialog zur Willkommenskultur",
        description="Wie kommen wir in unserer Stadt miteinander ins Gespräch?",
        starts_at=starts,
        ends_at=starts + timedelta(hours=2),
        format=EventFormat.ONLINE,
        place=None,
        online_link="https://meet.example.org/dialog",
        capacity=1_000_000,
        registration_deadline=starts - timedelta(days=1),
        languages=("de",),
    )


def place_writer(repository: MongoRegistrationRepository, events: list[DialogueEvent]) -> Write:
    """Registration's place write (confirmed) for registration `number`, to event `number`
    modulo the events, as `RegistrationHandlers` sends it."""

    async def write(number: int) -> None:
        event = events[number % len(events)]
        request = RegistrationRequest(
            dialogue_event_id=event.id,
            name="-",
            email="-",
            sector=Sector.RESIDENT,
            language="de",
        )
        status = RegistrationStatus.CONFIRMED
        taken = await repository.take_place(
            event=event,
            registration_id=request.registration_id,
            fingerprint=uuid.uuid4().hex + uuid.uuid4().hex,
            status=status,
            record={"sector": Sector.RESIDENT, "language": "de", "position": time.time_ns()},
            events=[_outbound(registered_event(event, request, status), ags=event.ags)],
        )
        if not taken:
            raise RuntimeError(f"the place write to {event.id} did not fit")

    return write


def own_document_writer(database: Any, event_ids: list[str]) -> Write:
    """Registrations in documents of their own: a conditional count of the seat on a small
    event document, then the registration's document carrying its event."""
    events, registrations = database["small_events"], database["registrations"]

    async def write(number: int) -> None:
        event_id = event_ids[number % len(event_ids)]
        counted = await events.update_one(
            {"_id": event_id, "state": "scheduled", "confirmed_count": {"$lt": 1_000_000}},
            {"$inc": {"confirmed_count": 1, "changes": 1}},
        )
        if not counted.matched_count:
            raise RuntimeError(f"the count of {event_id} did not fit")
        request = RegistrationRequest(
            dialogue_event_id=event_id, name="-", email="-", sector=Sector.RESIDENT, language="de"
        )
        status = RegistrationStatus.CONFIRMED
        outbound = _outbound(
            registered_event(replace(dialogue_event(0), id=event_id), request, status),
            ags="07312000",
        )
        document = {
            "_id": request.registration_id,
            "dialogue_event_id": event_id,
            "fingerprint": uuid.uuid4().hex + uuid.uuid4().hex,
            "status": status.value,
            "sector": Sector.RESIDENT.value,
            "language": "de",
            "position": time.time_ns(),
        }
        await registrations.insert_one(with_outbox(document, [outbound]))

    return write


def bare_writer(database: Any) -> Write:
    """The document `ingest.py`'s bare endpoint inserts."""
    collection = database["bare"]

    async def write(number: int) -> None:
        await collection.insert_one(
            {
                "_id": uuid.uuid4().hex,
                "dialogue_event_id": "bench",
                "name": "Erika Mustermann",
                "email": f"erika.{number}@example.org",
                "sector": "resident",
                "language": "de",
                "consent": True,
                "registered_at": datetime.now(UTC),
            }
        )

    return write


async def run(write: Write, *, writes: int, concurrency: int, start: int = 0) -> float:
    """Sends `writes` writes from `concurrency` clients; answers the seconds it took."""
    numbers = iter(range(start, start + writes))

    async def client() -> None:
        for number in numbers:
            await write(number)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - began


async def measured(
    name: str, write: Write, *, writes: int, concurrency: int, stack: EmbeddedStack, start: int
) -> list[str]:
    before = cpu_seconds(stack, [NX])
    seconds = await run(write, writes=writes, concurrency=concurrency, start=start)
    used = cpu_seconds(stack, [NX])[NX] - before[NX]
    return [name, str(writes), f"{writes / seconds:,.0f}", f"{used * 1000 / writes:.2f}"]


async def measure(arguments: argparse.Namespace) -> int:
    held = [int(count) for count in arguments.held.split(",") if count]
    rows: list[list[str]] = []
    async with bench_stack(None, services=[]) as stack:
        assert stack.embedded is not None  # started here: its processes are ours to read
        client: AsyncMongoClient[dict[str, Any]] = mongo_client(stack.mongodb_uri)
        try:
            database = client["wok_bench_nx_writes"]
            common: dict[str, Any] = {
                "stack": stack.embedded,
                "writes": arguments.writes,
                "concurrency": arguments.concurrency,
            }
            bare = bare_writer(database)
            await run(bare, writes=arguments.warmup, concurrency=arguments.concurrency)
            rows.append(
                await measured(
                    "bare insert (ingest.py's bare endpoint)", bare, start=10**9, **common
                )
            )
            for count in held:
                repository = MongoRegistrationRepository(database)
                repository.outbox = RelayKeepingUp()  # type: ignore[assignment]
                events = [dialogue_event(number) for number in range(arguments.events)]
                for event in events:
                    await repository.add_dialogue_event(event, [])
                write = place_writer(repository, events)
                with console.status(f"filling {arguments.events} events with {count} each…"):
                    await run(write, writes=count * len(events), concurrency=arguments.concurrency)
                rows.append(
                    await measured(
                        f"place write, events holding {count} registrations",
                        write,
                        start=count * len(events),
                        **common,
                    )
                )
            event_ids = [f"small-{uuid.uuid4().hex[:8]}-{n}" for n in range(arguments.events)]
            await database["small_events"].insert_many(
                [
                    {"_id": i, "state": "scheduled", "confirmed_count": 0, "changes": 0}
                    for i in event_ids
                ]
            )
            rows.append(
                await measured(
                    "own documents: count on the event + insert of the registration",
                    own_document_writer(database, event_ids),
                    start=0,
                    **common,
                )
            )
        finally:
            await client.close()
    console.print(f"machine: {machine()}")
    console.print(
        f"{arguments.concurrency} clients, {arguments.events} dialogue events; nx-27017's CPU "
        "(user + system) per registration; the place write's events hold N registrations when "
        "the row starts (its own writes add writes/events to each)"
    )
    print_table("nx-27017 CPU per write shape", ["write", "writes", "per s", "nx CPU ms"], rows)
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", default="0,100,300", help="registrations already per event")
    parser.add_argument("--writes", type=int, default=1000, help="measured writes per row")
    parser.add_argument("--warmup", type=int, default=200, help="bare inserts before measuring")
    parser.add_argument("--events", type=int, default=20, help="dialogue events")
    parser.add_argument("--concurrency", type=int, default=8, help="clients")
    raise SystemExit(asyncio.run(measure(parser.parse_args())))


if __name__ == "__main__":
    main()
