"""`wok demo`: play a program with the model municipalities and check the aggregates agree.

It onboards every municipality, schedules its dialogue events, registers residents,
then waits until the program snapshot on `exchange.aggregates.v1` equals what was played
(plus whatever the stack held before), prints a summary and writes an HTML report.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from wok_contracts import decode_envelope
from wok_contracts.topics import EXCHANGE_AGGREGATES

SECTORS = (
    "administration",
    "politics",
    "civil_society",
    "business",
    "migrant_advisory_council",
    "youth_parliament",
    "resident",
)

# Real model-municipality candidates with their official keys (AGS; districts with 5 digits).
MUNICIPALITIES: tuple[tuple[str, str, str], ...] = (
    ("07312000", "Kaiserslautern", "city"),
    ("05911000", "Bochum", "city"),
    ("09162000", "München", "city"),
    ("11000000", "Berlin", "city"),
    ("02000000", "Hamburg", "city"),
    ("05315000", "Köln", "city"),
    ("06412000", "Frankfurt am Main", "city"),
    ("08111000", "Stuttgart", "city"),
    ("14713000", "Leipzig", "city"),
    ("14612000", "Dresden", "city"),
    ("03241001", "Hannover", "city"),
    ("09564000", "Nürnberg", "city"),
    ("04011000", "Bremen", "city"),
    ("07315000", "Mainz", "city"),
    ("01002000", "Kiel", "city"),
    ("10041100", "Saarbrücken", "city"),
    ("16051000", "Erfurt", "city"),
    ("15003000", "Magdeburg", "city"),
    ("12054000", "Potsdam", "city"),
    ("13003000", "Rostock", "city"),
    ("06438", "Kreis Offenbach", "district"),
    ("03159", "Landkreis Göttingen", "district"),
    ("08311000", "Freiburg im Breisgau", "city"),
    ("08222000", "Mannheim", "city"),
    ("06414000", "Wiesbaden", "city"),
    ("05113000", "Essen", "city"),
    ("05913000", "Dortmund", "city"),
    ("13004000", "Schwerin", "city"),
)

METRICS = (
    "municipalities",
    "dialogue_events",
    "registrations_total",
    "registrations_confirmed",
    "registrations_waitlisted",
    "confirmations_sent",
)

# Large enough in any demo (>= 6 people per municipality) never to be withheld.
ALWAYS_PUBLISHED = (
    "municipalities",
    "dialogue_events",
    "registrations_total",
    "confirmations_sent",
)


@dataclass
class Played:
    """What one municipality did in the demo."""

    ags: str
    name: str
    onboarded: bool = False
    dialogue_event_id: str = ""
    dialogue_events: int = 0
    confirmed: int = 0
    waitlisted: int = 0


@dataclass
class DemoResult:
    played: list[Played]
    baseline: dict[str, int | None]
    played_totals: dict[str, int]
    expected: dict[str, int | None]
    observed: dict[str, int | None]
    seconds: float
    agreed: bool
    suppressed: list[str] = field(default_factory=list)


def plan_registrations(index: int) -> int:
    """A varied but deterministic number of registrations per municipality (some waitlists)."""
    return 6 + (index * 7) % 11


@dataclass(frozen=True)
class Endpoints:
    registration_url: str
    admin_key: str
    kafka_bootstrap: str
    topic_prefix: str = ""


async def latest_program_snapshot(
    endpoints: Endpoints, *, timeout_s: float = 5.0
) -> dict[str, Any] | None:
    """The newest program snapshot on the compacted aggregates topic (None if there is none)."""
    topic = f"{endpoints.topic_prefix}{EXCHANGE_AGGREGATES}"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=endpoints.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        assignment = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        ends = await consumer.end_offsets(assignment)
        newest: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in assignment}
            if all(positions[tp] >= ends[tp] for tp in assignment):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    if record.key != b"program":
                        continue
                    snapshot = decode_envelope(record.value).data.model_dump(mode="json")
                    if newest is None or snapshot["sequence"] >= newest["sequence"]:
                        newest = snapshot
        return newest
    finally:
        await consumer.stop()


class DemoPlayer:
    def __init__(
        self,
        endpoints: Endpoints,
        *,
        municipalities: int = 22,
        progress: Callable[[str, int, int], None] = lambda step, done, total: None,
    ) -> None:
        self._endpoints = endpoints
        self._municipalities = MUNICIPALITIES[:municipalities]
        self._progress = progress

    async def play(self, client: httpx.AsyncClient) -> list[Played]:
        admin = {"Authorization": f"Bearer {self._endpoints.admin_key}"}
        played: list[Played] = []
        total = len(self._municipalities)
        self._progress("onboarding and scheduling", 0, total)
        for index, (ags, name, kind) in enumerate(self._municipalities):
            result = Played(ags=ags, name=name)
            response = await client.post(
                "/v1/municipalities", json={"ags": ags, "name": name, "kind": kind}, headers=admin
            )
            if response.status_code == 409:
                response = await client.post(f"/v1/municipalities/{ags}/keys", headers=admin)
            else:
                result.onboarded = True
            response.raise_for_status()
            key = response.json()["api_key"]
            result.dialogue_event_id = await self._schedule(
                client, ags=ags, name=name, key=key, index=index
            )
            result.dialogue_events = 1
            played.append(result)
            self._progress("onboarding and scheduling", index + 1, total)
        registrations = sum(plan_registrations(i) for i in range(total))
        done = 0
        for index, result in enumerate(played):
            event_id = result.dialogue_event_id
            for number in range(plan_registrations(index)):
                response = await client.post(
                    f"/v1/dialogue-events/{event_id}/registrations",
                    json={
                        "name": f"Demo-Person {number + 1} ({result.name})",
                        "email": f"demo-{result.ags}-{event_id[:8]}-{number + 1}@example.org",
                        "sector": SECTORS[(index + number) % len(SECTORS)],
                        "language": "de",
                        "consent": True,
                    },
                )
                response.raise_for_status()
                if response.json()["status"] == "confirmed":
                    result.confirmed += 1
                else:
                    result.waitlisted += 1
                done += 1
                self._progress("registering residents", done, registrations)
        return played

    async def _schedule(
        self, client: httpx.AsyncClient, *, ags: str, name: str, key: str, index: int
    ) -> str:
        starts = (datetime.now(UTC) + timedelta(days=14 + index)).replace(
            hour=17, minute=0, second=0, microsecond=0
        )
        online = index % 2 == 0
        body = {
            "title": f"Dialogveranstaltung {name}: Zusammenhalt vor Ort",
            "description": "Bürgerschaft, Verwaltung, Politik und Wirtschaft im Gespräch.",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2, minutes=30)).isoformat(),
            "format": "online" if online else "in_person",
            "online_link": "https://meet.example.org/weltoffen" if online else None,
            "place": None if online else f"Rathaus {name}, Ratssaal",
            "capacity": 10,
            "registration_deadline": (starts - timedelta(days=10)).isoformat(),
            "languages": ["de"],
        }
        response = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
        )
        response.raise_for_status()
        return str(response.json()["id"])


def played_metrics(played: list[Played]) -> dict[str, int]:
    confirmed = sum(p.confirmed for p in played)
    waitlisted = sum(p.waitlisted for p in played)
    return {
        "municipalities": sum(p.onboarded for p in played),
        "dialogue_events": sum(p.dialogue_events for p in played),
        "registrations_total": confirmed + waitlisted,
        "registrations_confirmed": confirmed,
        "registrations_waitlisted": waitlisted,
        "confirmations_sent": confirmed + waitlisted,
    }


def expected_metrics(
    baseline: dict[str, int | None], played: dict[str, int]
) -> dict[str, int | None]:
    """Before plus played; unknown (None) where disclosure control withheld the value before."""
    return {
        name: None if baseline.get(name) is None else baseline[name] + played[name]  # type: ignore[operator]
        for name in METRICS
    }


def verdict(name: str, expected: int | None, observed: int | None) -> str:
    """'agrees', 'withheld' (disclosure control hides it, or hid it before the run) or 'differs'."""
    if expected is not None and observed == expected:
        return "agrees"
    if name not in ALWAYS_PUBLISHED and (observed is None or expected is None):
        return "withheld"
    return "differs"


def agrees(expected: dict[str, int | None], snapshot: dict[str, Any] | None) -> bool:
    """Every metric that can be compared equals what was played; the totals always can."""
    if snapshot is None:
        return False
    metrics = snapshot["metrics"]
    return all(
        verdict(name, value, metrics.get(name)) != "differs" for name, value in expected.items()
    )


async def run_demo(
    endpoints: Endpoints,
    *,
    municipalities: int = 22,
    timeout_s: float = 180.0,
    progress: Callable[[str, int, int], None] = lambda step, done, total: None,
) -> DemoResult:
    started = time.monotonic()
    before = await latest_program_snapshot(endpoints)
    before_metrics = (before or {}).get("metrics", {})
    baseline: dict[str, int | None] = {
        name: before_metrics.get(name, 0) if before is not None else 0 for name in METRICS
    }
    player = DemoPlayer(endpoints, municipalities=municipalities, progress=progress)
    async with httpx.AsyncClient(base_url=endpoints.registration_url, timeout=30) as client:
        played = await player.play(client)
    played_totals = played_metrics(played)
    expected = expected_metrics(baseline, played_totals)
    snapshot: dict[str, Any] | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        snapshot = await latest_program_snapshot(endpoints)
        observed = (snapshot or {}).get("metrics", {})
        progress(
            "waiting for the aggregates",
            int(observed.get("confirmations_sent") or 0),
            expected["confirmations_sent"] or 0,
        )
        if agrees(expected, snapshot):
            break
        await asyncio.sleep(0.5)
    return DemoResult(
        played=played,
        baseline=baseline,
        played_totals=played_totals,
        expected=expected,
        observed=dict((snapshot or {}).get("metrics", {})),
        seconds=time.monotonic() - started,
        agreed=agrees(expected, snapshot),
        suppressed=list((snapshot or {}).get("suppressed", [])),
    )


def write_html_report(result: DemoResult, path: Path) -> Path:
    def cell(value: object) -> str:
        return f"<td>{html.escape('–' if value is None else str(value))}</td>"

    municipality_rows = "\n".join(
        "<tr>"
        + cell(p.name)
        + cell(p.ags)
        + cell(p.dialogue_events)
        + cell(p.confirmed)
        + cell(p.waitlisted)
        + "</tr>"
        for p in result.played
    )
    metric_rows = "\n".join(
        "<tr>"
        + cell(name)
        + cell(result.played_totals[name])
        + cell(result.expected[name])
        + cell(result.observed.get(name))
        + cell(verdict(name, result.expected[name], result.observed.get(name)))
        + "</tr>"
        for name in METRICS
    )
    outcome = "agree" if result.agreed else "DO NOT agree"
    document = f"""<!doctype html>
<html lang="de"><head><meta charset="utf-8">
<title>Weltoffene Kommune – Demo-Bericht</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1d2b36; }}
table {{ border-collapse: collapse; margin-bottom: 2rem; }}
td, th {{ border: 1px solid #c8d3dc; padding: .3rem .7rem; text-align: left; }}
th {{ background: #eef3f7; }}
.ok {{ color: #1a7f37; }} .bad {{ color: #b42318; }}
</style></head><body>
<h1>Weltoffene Kommune – Demo</h1>
<p class="{"ok" if result.agreed else "bad"}">The program aggregates {outcome} with what was
played ({len(result.played)} municipalities, {result.seconds:.1f} s).</p>
<h2>Program aggregate (exchange.aggregates.v1)</h2>
<table><tr><th>metric</th><th>played now</th><th>expected</th><th>aggregate</th><th></th></tr>
{metric_rows}</table>
<h2>Municipalities</h2>
<table><tr><th>municipality</th><th>AGS</th><th>dialogue events</th><th>confirmed</th>
<th>waitlisted</th></tr>
{municipality_rows}</table>
<p>Generated {html.escape(datetime.now(UTC).isoformat(timespec="seconds"))}.
Data: {html.escape(json.dumps(result.baseline))} before the run.</p>
</body></html>
"""
    path.write_text(document, encoding="utf-8")
    return path
