"""Registration's command consumer under faults (issue 8): municipal systems' commands on
`registration.commands.v1` while registration is killed with SIGKILL at random moments and
restarted. What the commands call for must be exactly what registration holds and
announces: every dialogue event scheduled once, every change, reschedule, cancellation and
attendance applied once, none refused.

The stack runs registration alone (with tansu, nx-27017 and the SMTP sink). The
municipalities are onboarded over HTTP first (a command for one that is not onboarded is
refused); the commands then go straight to Kafka, keyed by AGS, as a municipality's own
system sends them (README, "Municipal systems over Kafka").

Size: the issue's 10,000 commands. Registration takes them in batches and carries them out
one at a time (about 1.8 ms of its CPU and 1.6 ms of nx-27017's per command, about 300
commands/s on the 2-core VM): with three kills about 45 s from the first command to the
last applied.

A scheduled event's id is `uuid5(NAMESPACE_URL, <the schedule command's envelope id>)`
(entrypoints/commands.py), so the follow-ups name events scheduled earlier in the stream.
Attendance can only be recorded once an event has started, and an event can only be
scheduled to start in the future: the events that get attendance are scheduled first
(before the kills), to start shortly after, and their attendance is sent last, once they
have started.

Judged is what a user sees: each event as `GET /v1/dialogue-events/{id}` shows it
(registration has no listing of a municipality's events), the announcements on
`registration.events.v1` (distinct envelope ids: the outbox relay may send one again after
a crash with the same id, which consumers skip; two ids for one command count twice), and
the command dead-letter topic, which must stay empty.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e.helpers import read_topic
from tests.faults.conftest import fault_stack
from tests.faults.playback import (
    SETTLE_S,
    as_messages,
    eventually,
    kill_and_restart,
    lag,
    produce,
    report,
    seeded,
    start_producer,
    topic,
    unique_ags,
)
from wok_cli.devstack import EmbeddedStack
from wok_contracts import (
    CancelDialogueEvent,
    ChangeDialogueEvent,
    Envelope,
    EventFormat,
    RecordAttendance,
    RescheduleDialogueEvent,
    ScheduleDialogueEvent,
    new_envelope,
)

COMMANDS = 10_000
MUNICIPALITIES = 8
KILLS = 3
EARLY_EVENTS = 40  # scheduled before the kills, to start soon: they get attendance
EARLY_LEAD_S = 15.0  # how soon after being scheduled they start
SOURCE = "/municipal-system/faults"
COMMAND_TOPIC = "registration.commands.v1"
GROUP = "registration-commands"
# The stream's commands after the early schedules, drawn one by one: (kind, weight); a
# follow-up for a municipality without an open event is a schedule instead.
FOLLOW_UPS = (("schedule", 22), ("change", 45), ("reschedule", 23), ("cancel", 10))

ANNOUNCED = {
    "schedule": "registration.dialogue_event.scheduled.v1",
    "change": "registration.dialogue_event.changed.v1",
    "reschedule": "registration.dialogue_event.rescheduled.v1",
    "cancel": "registration.dialogue_event.cancelled.v1",
    "attendance": "registration.dialogue_event.attendance_recorded.v1",
}
REJECTED = "registration.command.rejected.v1"
T = TypeVar("T")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with fault_stack(tmp_path_factory, services=("registration",)) as running:
        yield running


# --- what the commands call for --------------------------------------------------------------


@dataclass
class Planned:
    """One dialogue event as the commands sent so far make it."""

    ags: str
    id: str
    title: str
    description: str
    place: str
    capacity: int
    starts_at: datetime
    ends_at: datetime
    registration_deadline: datetime
    early: bool
    status: str = "scheduled"
    attended: int | None = None
    commands: Counter[str] = field(default_factory=Counter)  # kind -> how many

    @property
    def revision(self) -> int:
        """Each change, reschedule and cancellation raises the revision by one."""
        return self.commands["change"] + self.commands["reschedule"] + self.commands["cancel"]

    def expected_view(self) -> dict[str, Any]:
        return {
            "ags": self.ags,
            "title": self.title,
            "description": self.description,
            "place": self.place,
            "capacity": self.capacity,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "registration_deadline": self.registration_deadline,
            "status": self.status,
            "attended": self.attended,
            "revision": self.revision,
        }


def seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class Plan:
    """A municipal systems' command stream drawn from `rng`, and what it calls for."""

    def __init__(self, rng: random.Random, municipalities: list[str]) -> None:
        self.rng = rng
        self.municipalities = municipalities
        self.events: dict[str, Planned] = {}
        self.open: dict[str, list[Planned]] = {ags: [] for ags in municipalities}
        self.serial = 0

    def _envelope(self, command: Any) -> Envelope[Any]:
        self.serial += 1
        return new_envelope(command, source=SOURCE, municipality=command.ags)

    def schedule(self, ags: str, *, starts_at: datetime, early: bool) -> Envelope[Any]:
        self.serial += 1
        title = f"Dialog {self.serial}"
        starts_at = seconds(starts_at)
        deadline = starts_at - timedelta(minutes=30)
        capacity = self.rng.randint(10, 400)
        place = f"Bürgerhaus, Saal {self.rng.randint(1, 9)}"
        command = ScheduleDialogueEvent(
            ags=ags,
            title=title,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(hours=2),
            format=EventFormat.IN_PERSON,
            place=place,
            capacity=capacity,
            registration_deadline=deadline,
        )
        envelope = new_envelope(command, source=SOURCE, municipality=ags)
        planned = Planned(
            ags=ags,
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, envelope.id)),  # as registration derives it
            title=title,
            description="",
            place=place,
            capacity=capacity,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(hours=2),
            registration_deadline=deadline,
            early=early,
        )
        planned.commands["schedule"] += 1
        self.events[planned.id] = planned
        self.open[ags].append(planned)
        return envelope

    def change(self, planned: Planned) -> Envelope[Any]:
        """Two of the fields, each to a value it does not have (a change to what is there
        already would be no change)."""
        fields: dict[str, Any] = {}
        for name in self.rng.sample(("title", "description", "place", "capacity"), k=2):
            if name == "title":
                fields[name] = planned.title = f"Dialog {self.serial + 1}, geändert"
            elif name == "description":
                fields[name] = planned.description = f"Neu: Runde {self.serial + 1}"
            elif name == "place":
                fields[name] = planned.place = self._other(
                    planned.place, lambda: f"Rathaus, Raum {self.rng.randint(100, 999)}"
                )
            else:
                fields[name] = planned.capacity = self._other(
                    planned.capacity, lambda: self.rng.randint(10, 400)
                )
        planned.commands["change"] += 1
        return self._envelope(
            ChangeDialogueEvent(ags=planned.ags, dialogue_event_id=planned.id, **fields)
        )

    @staticmethod
    def _other(current: T, draw: Callable[[], T]) -> T:
        value = draw()
        while value == current:
            value = draw()
        return value

    def reschedule(self, planned: Planned, *, now: datetime) -> Envelope[Any]:
        # Always other times: a reschedule to the times the event has is no change (the
        # same reschedule sent again must not tell the participants twice).
        starts_at = self._other(
            planned.starts_at,
            lambda: seconds(now + timedelta(days=self.rng.randint(20, 200), hours=3)),
        )
        planned.starts_at, planned.ends_at = starts_at, starts_at + timedelta(hours=3)
        planned.registration_deadline = starts_at - timedelta(days=1)
        planned.commands["reschedule"] += 1
        return self._envelope(
            RescheduleDialogueEvent(
                ags=planned.ags,
                dialogue_event_id=planned.id,
                starts_at=planned.starts_at,
                ends_at=planned.ends_at,
                registration_deadline=planned.registration_deadline,
            )
        )

    def cancel(self, planned: Planned) -> Envelope[Any]:
        planned.status = "cancelled"
        planned.commands["cancel"] += 1
        self.open[planned.ags].remove(planned)  # nothing more for a cancelled event
        return self._envelope(
            CancelDialogueEvent(
                ags=planned.ags, dialogue_event_id=planned.id, reason="Der Saal ist belegt."
            )
        )

    def attendance(self, planned: Planned) -> Envelope[Any]:
        planned.attended = self._other(
            planned.attended, lambda: self.rng.randint(0, planned.capacity)
        )
        planned.commands["attendance"] += 1
        return self._envelope(
            RecordAttendance(
                ags=planned.ags, dialogue_event_id=planned.id, attended=planned.attended
            )
        )

    def early(self, count: int, *, starts_at: datetime) -> list[Envelope[Any]]:
        """Events that start at `starts_at` (soon), one municipality after the other."""
        return [
            self.schedule(
                self.municipalities[n % len(self.municipalities)], starts_at=starts_at, early=True
            )
            for n in range(count)
        ]

    def body(self, count: int, *, now: datetime) -> list[Envelope[Any]]:
        """`count` commands: schedules of later events and follow-ups of the scheduled ones
        (the early events only get changes: they start before the stream ends)."""
        kinds = [kind for kind, _ in FOLLOW_UPS]
        weights = [weight for _, weight in FOLLOW_UPS]
        commands: list[Envelope[Any]] = []
        while len(commands) < count:
            ags = self.rng.choice(self.municipalities)
            kind = self.rng.choices(kinds, weights)[0]
            candidates = [p for p in self.open[ags] if kind == "change" or not p.early]
            if kind == "schedule" or not candidates:
                later = now + timedelta(days=self.rng.randint(10, 120))
                commands.append(self.schedule(ags, starts_at=later, early=False))
                continue
            planned = self.rng.choice(candidates)
            if kind == "change":
                commands.append(self.change(planned))
            elif kind == "reschedule":
                commands.append(self.reschedule(planned, now=now))
            else:
                commands.append(self.cancel(planned))
        return commands

    def tail(self, count: int) -> list[Envelope[Any]]:
        """`count` attendance records of the early events (which must have started)."""
        early = [p for p in self.events.values() if p.early]
        return [self.attendance(self.rng.choice(early)) for _ in range(count)]

    def announcements(self) -> dict[tuple[str, str], int]:
        """(event type, dialogue event id) -> how many distinct announcements it must have."""
        return {
            (ANNOUNCED[kind], planned.id): count
            for planned in self.events.values()
            for kind, count in planned.commands.items()
        }


# --- reading registration ----------------------------------------------------------------


async def onboard(client: httpx.AsyncClient, stack: EmbeddedStack, ags: str) -> None:
    onboarded = await client.post(
        "/v1/municipalities",
        json={"ags": ags, "name": f"Gemeinde {ags}", "kind": "town"},
        headers={"Authorization": f"Bearer {stack.admin_key}"},
    )
    assert onboarded.status_code == 201, onboarded.text


async def views(
    client: httpx.AsyncClient, ids: list[str], *, parallel: int = 16
) -> dict[str, dict[str, Any] | None]:
    """Each dialogue event as registration shows it (None: not found or not reachable)."""
    found: dict[str, dict[str, Any] | None] = {}
    queue = list(ids)

    async def worker() -> None:
        while queue:
            event_id = queue.pop()
            try:
                response = await client.get(f"/v1/dialogue-events/{event_id}")
            except httpx.TransportError:
                found[event_id] = None  # registration is being restarted
                continue
            found[event_id] = response.json() if response.status_code == 200 else None

    await asyncio.gather(*(worker() for _ in range(parallel)))
    return found


def differences(planned: Planned, view: dict[str, Any] | None) -> dict[str, Any]:
    """Field -> (called for, shown) for each field of the event that differs."""
    if view is None:
        return {"event": "missing"}
    shown = dict(view)
    for name in ("starts_at", "ends_at", "registration_deadline"):
        shown[name] = datetime.fromisoformat(shown[name])
    return {
        name: (value, shown.get(name))
        for name, value in planned.expected_view().items()
        if shown.get(name) != value
    }


@dataclass
class Announcements:
    """What registration announced on `registration.events.v1` for the played municipalities."""

    distinct: Counter[tuple[str, str]]  # (type, dialogue event id) -> distinct envelope ids
    resent: int  # records whose envelope id came before (the relay sending again)
    rejected: list[dict[str, Any]]


async def announcements(stack: EmbeddedStack, municipalities: set[str]) -> Announcements:
    records = await read_topic(stack.kafka_bootstrap, topic(stack, "registration.events.v1"))
    seen: set[str] = set()
    distinct: Counter[tuple[str, str]] = Counter()
    resent = 0
    rejected = []
    for record in records:
        raw = json.loads(record.value)
        if raw.get("municipality") not in municipalities:
            continue
        if raw["id"] in seen:
            resent += 1
            continue
        seen.add(raw["id"])
        if raw["type"] == REJECTED:
            rejected.append(raw["data"])
        elif raw["type"] in ANNOUNCED.values():
            distinct[(raw["type"], raw["data"]["dialogue_event_id"])] += 1
    return Announcements(distinct=distinct, resent=resent, rejected=rejected)


def miscounted(
    expected: dict[tuple[str, str], int], got: Counter[tuple[str, str]]
) -> tuple[int, int, list[str]]:
    """(announcements missing, announcements extra, a description of each difference)."""
    lost = duplicated = 0
    problems = []
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key, 0), got.get(key, 0)
        if want != have:
            lost += max(0, want - have)
            duplicated += max(0, have - want)
            problems.append(f"{key[0]} of {key[1]}: called for {want}, announced {have}")
    return lost, duplicated, problems


# --- the test ------------------------------------------------------------------------------


async def test_registration_killed_at_random_moments_during_10000_commands_applies_each_once(
    stack: EmbeddedStack,
) -> None:
    rng = seeded("registration commands SIGKILL")
    municipalities = [unique_ags(rng) for _ in range(MUNICIPALITIES)]
    plan = Plan(rng, municipalities)
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        for ags in municipalities:
            await onboard(client, stack, ags)

        now = datetime.now(UTC)
        head = plan.early(EARLY_EVENTS, starts_at=now + timedelta(seconds=EARLY_LEAD_S))
        attendances = EARLY_EVENTS + EARLY_EVENTS // 2  # some recorded twice: the last counts
        body = plan.body(COMMANDS - len(head) - attendances, now=now)
        tail = plan.tail(attendances)
        commands = [*head, *body, *tail]
        assert len(commands) == COMMANDS
        early_ids = [planned.id for planned in plan.events.values() if planned.early]

        producer = await start_producer(stack)
        try:
            started = time.monotonic()
            # The early events must be scheduled before they start: before the kills.
            await produce(producer, stack, as_messages(head), to=COMMAND_TOPIC)
            await eventually(
                lambda: views(client, early_ids),
                lambda seen: all(seen.values()),
                timeout_s=30,
                what="the early events scheduled",
            )

            async def play() -> None:
                await produce(
                    producer,
                    stack,
                    as_messages(body),
                    to=COMMAND_TOPIC,
                    chunk=250,
                    pace=lambda _: asyncio.sleep(0.2),
                )
                # their attendance once they have started (registration refuses it before)
                began = plan.events[early_ids[0]].starts_at
                await asyncio.sleep(max(0.0, (began - datetime.now(UTC)).total_seconds() + 0.5))
                await produce(producer, stack, as_messages(tail), to=COMMAND_TOPIC)

            playing = asyncio.create_task(play())
            kills = await kill_and_restart(
                stack,
                rng,
                services=("registration",),
                kills=KILLS,
                pause_s=(1.0, 8.0),
                progress=lambda: behind(stack),
            )
            await playing
        finally:
            await producer.stop()

        # Done when each municipality's last command shows (registration applies one
        # municipality's commands in order); then every event is read once.
        last = {command.municipality: command for command in commands}
        last_ids = sorted({event_of(command) for command in last.values()})
        await eventually(
            lambda: views(client, last_ids),
            lambda seen: all(not differences(plan.events[i], view) for i, view in seen.items()),
            timeout_s=120,
            interval_s=0.5,
            what="each municipality's last command applied",
            fail=False,
        )
        applied_s = time.monotonic() - started
        shown = await views(client, list(plan.events))
    expected = plan.announcements()
    await eventually(  # the outbox relay may still be sending
        lambda: announcements(stack, set(municipalities)),
        lambda seen: not miscounted(expected, seen.distinct)[2],
        timeout_s=15,
        interval_s=1.0,
        what="every command announced",
        fail=False,
    )
    await asyncio.sleep(SETTLE_S)  # a late extra announcement would show
    got = await announcements(stack, set(municipalities))
    dead = await read_topic(
        stack.kafka_bootstrap, topic(stack, "dead-letter.registration-commands.v1")
    )

    wrong = {i: off for i, view in shown.items() if (off := differences(plan.events[i], view))}
    lost, duplicated, problems = miscounted(expected, got.distinct)
    missing = sum(1 for off in wrong.values() if off == {"event": "missing"})
    sent = Counter(kind for planned in plan.events.values() for kind in planned.commands.elements())
    report(
        "registration SIGKILLed at random moments during municipal systems' commands, restarted",
        tried=COMMANDS,
        lost=lost,
        duplicated=duplicated,
        extra=f"{dict(sent)} for {len(plan.events)} dialogue events of {MUNICIPALITIES} "
        f"municipalities; {len(wrong)} events not as called for ({missing} missing); "
        f"{len(dead)} dead letters, {len(got.rejected)} rejections; {got.resent} sent again "
        f"with the same id; {len(kills)} kills at {[(k.at_s, k.progress) for k in kills]}; "
        f"all applied {applied_s:.0f} s after the first command",
    )
    assert len(kills) == KILLS
    assert all(kill.exit_code == -9 for kill in kills)
    assert not dead, [dict(record.headers).get("wok-dlq-reason") for record in dead[:5]]
    assert not got.rejected, got.rejected[:5]
    history = {command.id: command for command in commands}
    assert not wrong and not problems, {
        "announcements": problems[:10],
        "events": {
            i: {"off": off, "commands": commands_for(i, history)}
            for i, off in list(wrong.items())[:5]
        },
    }


def event_of(command: Envelope[Any]) -> str:
    """The id of the dialogue event a command is about (derived from a schedule's id)."""
    if isinstance(command.data, ScheduleDialogueEvent):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, command.id))
    return str(command.data.dialogue_event_id)


def commands_for(event_id: str, history: dict[str, Envelope[Any]]) -> list[str]:
    """The commands sent for one event, in order (type and envelope id), for a failure."""
    return [
        f"{command.type.split('.')[-2]} {command.id}"
        for command in history.values()
        if event_of(command) == event_id
    ]


async def behind(stack: EmbeddedStack) -> str:
    """Registration's progress through the commands, for the kill lines (approximate: see
    playback.behind)."""
    left = max(0, await lag(stack, GROUP, of=COMMAND_TOPIC))
    return f"about {left} commands not yet committed"
