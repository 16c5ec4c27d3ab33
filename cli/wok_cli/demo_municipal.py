"""The demo's municipal operations: profile, taskforce, and a municipality's own system over Kafka.

For every model municipality: its population is updated (`PATCH`), two taskforce members
join (administration and the migrant advisory council), and its own system schedules a
"Werkstattgespräch" on `registration.commands.v1` and then raises its capacity by command;
every third municipality cancels that event again by command. Each step is read back over
HTTP and judged as a demo check.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaProducer

from wok_contracts import (
    CancelDialogueEvent,
    ChangeDialogueEvent,
    EventData,
    EventFormat,
    ScheduleDialogueEvent,
    new_envelope,
)
from wok_contracts.events.registration import REGISTRATION_COMMANDS

WORKSHOP_TITLE = "Werkstattgespräch: Ankommen in der Nachbarschaft"
TASKFORCE = (
    {"name": "Leitung Integrationsbüro", "role": "lead", "sector": "administration"},
    {"name": "Vorsitz Integrationsbeirat", "role": "member", "sector": "migrant_advisory_council"},
)


class Municipality(Protocol):
    ags: str
    name: str
    onboarded: bool
    dialogue_events: int


@dataclass
class MunicipalOutcome:
    """What the municipal operations changed, per step: AGS -> problem (empty: all held)."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    scheduled_by_command: int = 0
    cancelled_by_command: int = 0

    def problem(self, step: str, text: str) -> None:
        self.problems.setdefault(step, []).append(text)


def commanded_event_id(command_id: str) -> str:
    """The id registration gives an event scheduled by command (derived from the envelope id)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, command_id))


def command_bytes(data: EventData, *, ags: str) -> tuple[str, bytes]:
    envelope = new_envelope(data, source=f"/municipal-system/{ags}", municipality=ags)
    return envelope.id, envelope.to_json_bytes()


async def _eventually(probe: Any, accept: Any, *, deadline: float, pause_s: float = 0.3) -> Any:
    while True:
        value = await probe()
        if accept(value) or time.monotonic() > deadline:
            return value
        await asyncio.sleep(pause_s)


async def play_municipal_operations(
    client: httpx.AsyncClient,
    *,
    played: Sequence[Municipality],
    keys: Mapping[str, str],
    kafka_bootstrap: str,
    topic_prefix: str,
    timeout_s: float = 60.0,
) -> MunicipalOutcome:
    """Play the steps for every onboarded municipality; `played` counts the events held."""
    outcome = MunicipalOutcome()
    deadline = time.monotonic() + timeout_s
    municipalities = [p for p in played if p.onboarded and p.ags in keys]
    starts = (datetime.now(UTC) + timedelta(days=60)).replace(
        hour=16, minute=0, second=0, microsecond=0
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        scheduled: dict[str, str] = {}
        for index, p in enumerate(municipalities):
            headers = {"Authorization": f"Bearer {keys[p.ags]}"}
            population = 10_000 + 1_000 * index
            updated = await client.patch(
                f"/v1/municipalities/{p.ags}", json={"population": population}, headers=headers
            )
            if updated.status_code != 200 or updated.json().get("population") != population:
                outcome.problem("profile", f"{p.ags}: {updated.status_code} {updated.text[:120]}")
            for member in TASKFORCE:
                added = await client.post(
                    f"/v1/municipalities/{p.ags}/taskforce", json=member, headers=headers
                )
                if added.status_code != 201:
                    outcome.problem("taskforce", f"{p.ags}: {added.status_code} {added.text[:120]}")
            listed = await client.get(f"/v1/municipalities/{p.ags}/taskforce", headers=headers)
            sectors = {m["sector"] for m in listed.json()} if listed.is_success else set()
            if not {str(member["sector"]) for member in TASKFORCE} <= sectors:
                outcome.problem("taskforce", f"{p.ags}: listed {sorted(sectors)}")

            command_id, value = command_bytes(
                ScheduleDialogueEvent(
                    ags=p.ags,
                    title=WORKSHOP_TITLE,
                    starts_at=starts + timedelta(days=index % 7),
                    ends_at=starts + timedelta(days=index % 7, hours=2),
                    format=EventFormat.IN_PERSON,
                    place="Stadtteilzentrum",
                    capacity=20,
                    registration_deadline=starts - timedelta(days=3),
                ),
                ags=p.ags,
            )
            await producer.send_and_wait(
                f"{topic_prefix}{REGISTRATION_COMMANDS}", value, key=p.ags.encode()
            )
            scheduled[p.ags] = commanded_event_id(command_id)

        async def event(event_id: str) -> dict[str, Any] | None:
            response = await client.get(f"/v1/dialogue-events/{event_id}")
            return response.json() if response.status_code == 200 else None

        for p in municipalities:
            found = await _eventually(
                lambda p=p: event(scheduled[p.ags]), lambda e: e is not None, deadline=deadline
            )
            if found is None or found["title"] != WORKSHOP_TITLE:
                outcome.problem("schedule by command", f"{p.ags}: not scheduled ({found})")
                continue
            outcome.scheduled_by_command += 1
            p.dialogue_events += 1
            _, change = command_bytes(
                ChangeDialogueEvent(ags=p.ags, dialogue_event_id=scheduled[p.ags], capacity=30),
                ags=p.ags,
            )
            await producer.send_and_wait(
                f"{topic_prefix}{REGISTRATION_COMMANDS}", change, key=p.ags.encode()
            )

        for index, p in enumerate(municipalities):
            if p.ags not in scheduled:
                continue
            found = await _eventually(
                lambda p=p: event(scheduled[p.ags]),
                lambda e: e is not None and e["capacity"] == 30,
                deadline=deadline,
            )
            if found is None or found["capacity"] != 30:
                outcome.problem(
                    "change by command", f"{p.ags}: capacity {found and found['capacity']}"
                )
            if index % 3 == 0:
                _, cancel = command_bytes(
                    CancelDialogueEvent(
                        ags=p.ags, dialogue_event_id=scheduled[p.ags], reason="Raum nicht verfügbar"
                    ),
                    ags=p.ags,
                )
                await producer.send_and_wait(
                    f"{topic_prefix}{REGISTRATION_COMMANDS}", cancel, key=p.ags.encode()
                )
                cancelled = await _eventually(
                    lambda p=p: event(scheduled[p.ags]),
                    lambda e: e is not None and e["status"] == "cancelled",
                    deadline=deadline,
                )
                if cancelled is None or cancelled["status"] != "cancelled":
                    outcome.problem(
                        "cancel by command", f"{p.ags}: {cancelled and cancelled['status']}"
                    )
                else:
                    outcome.cancelled_by_command += 1
                    p.dialogue_events -= 1
    finally:
        await producer.stop()
    return outcome


STEPS = {
    "profile": "every municipality's profile update was stored",
    "taskforce": "every municipality has its two taskforce members",
    "schedule by command": "every municipality's system scheduled an event over Kafka",
    "change by command": "every event scheduled over Kafka got its new capacity by command",
    "cancel by command": "every third municipality cancelled that event by command",
}
