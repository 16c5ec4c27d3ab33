"""Assessment and notification killed mid-stream, a redrive after a fix, and 1,000 poison
messages among good traffic (issue 8).

The stack runs registration, assessment, notification and reporting. Sizes are set by
what two cores do within the folder's time budget: notification asks registration for
each registered person's contact and sends a real mail, a few per second under load, so
its kill test registers 60 people over HTTP; assessment learns municipalities and their
keys, so its kill test plays 300 municipalities (900 events) straight to Kafka.
"""

from __future__ import annotations

import asyncio
import email
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.e2e.helpers import read_topic
from tests.faults.conftest import fault_stack
from tests.faults.playback import (
    SETTLE_S,
    SOURCE,
    as_messages,
    behind,
    disagreements,
    eventually,
    kill_and_restart,
    municipality,
    municipality_snapshot,
    produce,
    registration_of,
    report,
    seeded,
    start_producer,
    topic,
    unique_ags,
)
from wok_cli.devstack import EmbeddedStack
from wok_cli.main import app as wok_app
from wok_contracts import MunicipalityRegistered, new_envelope

ASSESSMENT_MUNICIPALITIES = 150
NOTIFICATION_PEOPLE = 60
POISON_PER_KIND = 200  # five kinds: 1,000 poison messages
GOOD_DIALOGUE_EVENTS = 100
GOOD_REGISTRATIONS = 50
MISSING_REFERENCE = 20  # registrations for a dialogue event notification has not seen yet
OVERSIZED_BYTES = 100 * 1024  # beyond the 64 KiB the platform takes over HTTP


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    services = ("registration", "assessment", "notification", "reporting")
    with fault_stack(tmp_path_factory, services=services) as running:
        yield running


# --- assessment ----------------------------------------------------------------------------


async def known_to_assessment(stack: EmbeddedStack, ags: str, key: str) -> bool:
    """Assessment knows the municipality and takes its key (learnt from the events only)."""
    async with httpx.AsyncClient(base_url=stack.url("assessment"), timeout=10) as client:
        try:
            known = await client.get(f"/v1/municipalities/{ags}")
            keyed = await client.get(
                f"/v1/municipalities/{ags}/measures", headers={"Authorization": f"Bearer {key}"}
            )
        except httpx.TransportError:
            return False
    return known.status_code == 200 and keyed.status_code not in (401, 403)


async def unknown_to_assessment(stack: EmbeddedStack, played: list[Any]) -> list[Any]:
    """The played municipalities assessment does not know yet (or whose key it refuses)."""
    unknown = []
    for start in range(0, len(played), 25):
        group = played[start : start + 25]
        answers = await asyncio.gather(*(known_to_assessment(stack, m.ags, m.key) for m in group))
        unknown.extend(m for m, known in zip(group, answers, strict=True) if not known)
    return unknown


async def test_assessment_killed_at_random_moments_learns_every_municipality_and_key(
    stack: EmbeddedStack,
) -> None:
    rng = seeded("assessment SIGKILL")
    played = [municipality(rng) for _ in range(ASSESSMENT_MUNICIPALITIES)]
    messages = as_messages(envelope for m in played for envelope in m.setup)
    producer = await start_producer(stack)
    try:
        playing = asyncio.create_task(
            produce(producer, stack, messages, chunk=50, pace=lambda _: asyncio.sleep(0.6))
        )
        kills = await kill_and_restart(
            stack,
            rng,
            services=("assessment",),
            kills=2,
            pause_s=(0.5, 3.0),
            progress=lambda: behind(stack, "assessment"),
        )
        await playing
    finally:
        await producer.stop()

    # Asked again only about those not known yet, until none is left or the time is up.
    pending = list(played)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        pending = await unknown_to_assessment(stack, pending)
        if pending:
            await asyncio.sleep(1.0)
    known = len(played) - len(pending)
    report(
        "assessment SIGKILLed at random moments, restarted (municipalities and keys learnt)",
        tried=len(messages),
        lost=len(played) - known,
        duplicated=0,
        extra=f"{len(played)} municipalities; duplicates cannot show here (one state per AGS); "
        f"kills at {[kill.at_s for kill in kills]} s",
    )
    assert [kill.exit_code for kill in kills] == [-9, -9]
    assert known == len(played)


# --- notification --------------------------------------------------------------------------


def mails_by_address(mail_dir: Path, addresses: set[str]) -> dict[str, list[str]]:
    """Address -> the Message-IDs of every mail it received (one entry per copy)."""
    found: dict[str, list[str]] = {}
    for path in mail_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        for recipient in message["To"].addresses:
            if recipient.addr_spec in addresses:
                found.setdefault(recipient.addr_spec, []).append(str(message["Message-ID"]))
    return found


async def onboard(client: httpx.AsyncClient, stack: EmbeddedStack, ags: str) -> dict[str, str]:
    onboarded = await client.post(
        "/v1/municipalities",
        json={"ags": ags, "name": "Absturzstadt", "kind": "city"},
        headers={"Authorization": f"Bearer {stack.admin_key}"},
    )
    assert onboarded.status_code == 201, onboarded.text
    return {"Authorization": f"Bearer {onboarded.json()['api_key']}"}


async def test_notification_killed_at_random_moments_sends_one_confirmation_per_person(
    stack: EmbeddedStack,
) -> None:
    rng = seeded("notification SIGKILL")
    ags = unique_ags(rng)
    run = uuid.uuid4().hex[:8]
    addresses = sorted(f"crash-{run}-{n:03d}@example.org" for n in range(NOTIFICATION_PEOPLE))
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        key = await onboard(client, stack, ags)
        created = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog: Nachbarschaft",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "format": "in_person",
                "place": "Bürgerhaus",
                "capacity": NOTIFICATION_PEOPLE,
                "registration_deadline": (starts - timedelta(days=3)).isoformat(),
            },
            headers=key,
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]

        async def register_all() -> None:
            for n, address in enumerate(addresses):
                registered = await client.post(
                    f"/v1/dialogue-events/{event_id}/registrations",
                    json={
                        "name": f"Person {n}",
                        "email": address,
                        "sector": "resident",
                        "language": "de",
                        "consent": True,
                    },
                )
                assert registered.status_code == 201, registered.text
                await asyncio.sleep(0.1)

        registering = asyncio.create_task(register_all())
        kills = await kill_and_restart(
            stack,
            rng,
            services=("notification",),
            kills=2,
            pause_s=(1.0, 4.0),
            progress=lambda: behind(stack, "notification"),
        )
        await registering

    wanted = set(addresses)
    await eventually(
        lambda: asyncio.to_thread(mails_by_address, stack.mail_dir, wanted),
        lambda found: set(found) == wanted,
        timeout_s=150,
        interval_s=1.0,
        what=f"a confirmation for each of {len(wanted)} people",
    )
    await asyncio.sleep(SETTLE_S)
    found = mails_by_address(stack.mail_dir, wanted)
    distinct = {address: len(set(ids)) for address, ids in found.items()}
    copies = sum(len(ids) for ids in found.values()) - len(found)
    snapshot = await eventually(
        lambda: municipality_snapshot(stack, ags),
        lambda seen: (
            seen is not None and seen["metrics"].get("confirmations_sent") == NOTIFICATION_PEOPLE
        ),
        timeout_s=60,
        what="reporting counting every confirmation once",
    )
    report(
        "notification SIGKILLed at random moments during registrations, restarted",
        tried=NOTIFICATION_PEOPLE,
        lost=len(wanted - set(found)),
        duplicated=sum(count - 1 for count in distinct.values()),
        extra=f"same-Message-ID copies from a kill between SMTP and its record: {copies}; "
        f"kills at {[kill.at_s for kill in kills]} s",
    )
    assert [kill.exit_code for kill in kills] == [-9, -9]
    assert set(found) == wanted
    assert all(count == 1 for count in distinct.values()), distinct
    assert snapshot["metrics"]["registrations_total"] == NOTIFICATION_PEOPLE


# --- poison messages -----------------------------------------------------------------------


def envelope_json(type_: str, data: dict[str, Any], *, ags: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/municipal-system/faults",
        "type": type_,
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "municipality": ags,
        "correlationid": str(uuid.uuid4()),
        "data": data,
    }


def poison_messages(rng: Any, *, ags: str, event_id: str) -> dict[str, list[tuple[bytes, bytes]]]:
    """Kind -> (value, key) of POISON_PER_KIND messages of that kind, each one unique."""
    key = ags.encode()
    registered = {
        "dialogue_event_id": event_id,
        "ags": ags,
        "status": "confirmed",
        "sector": "resident",
    }
    kinds: dict[str, list[tuple[bytes, bytes]]] = {
        name: [] for name in ("bad JSON", "wrong schema", "unknown type", "oversized", "wrong key")
    }
    for n in range(POISON_PER_KIND):
        kinds["bad JSON"].append((f'{{"broken": "{uuid.uuid4()}"'.encode(), key))
        wrong = {**registered, "registration_id": str(uuid.uuid4()), "status": "maybe"}
        kinds["wrong schema"].append(
            (
                json.dumps(
                    envelope_json("registration.participant.registered.v1", wrong, ags=ags)
                ).encode(),
                key,
            )
        )
        future = {**registered, "registration_id": str(uuid.uuid4())}
        kinds["unknown type"].append(
            (
                json.dumps(
                    envelope_json("registration.participant.teleported.v1", future, ags=ags)
                ).encode(),
                key,
            )
        )
        huge = {
            "dialogue_event_id": str(uuid.uuid4()),
            "ags": ags,
            "title": "Ü" * (OVERSIZED_BYTES // 2),
            "starts_at": "2031-03-04T18:00:00+01:00",
            "ends_at": "2031-03-04T20:00:00+01:00",
            "format": "online",
            "capacity": 10,
            "registration_deadline": "2031-03-01T18:00:00+01:00",
        }
        kinds["oversized"].append(
            (
                json.dumps(
                    envelope_json("registration.dialogue_event.scheduled.v1", huge, ags=ags),
                    ensure_ascii=False,
                ).encode(),
                key,
            )
        )
        # Under another municipality's key: half are registrations (which reporting and
        # notification handle), half onboardings of a new municipality (which reporting
        # and assessment handle); applied, either would show in the figures.
        if n % 2:
            misfiled = registration_of(ags=ags, dialogue_event_id=event_id, rng=rng)
        else:
            other = unique_ags(rng)
            misfiled = new_envelope(
                MunicipalityRegistered(
                    ags=other, name=f"Fehl {other}", kind="town", land=other[:2]
                ),
                source=SOURCE,
                municipality=other,
            )
        kinds["wrong key"].append((misfiled.to_json_bytes(), unique_ags(rng).encode()))
    return kinds


def dead_letter_reason(record: Any) -> str:
    return dict(record.headers).get("wok-dlq-reason", b"").decode()


EXPECTED_REASON = {
    "bad JSON": "not JSON",
    "wrong schema": "invalid registration.participant.registered.v1",
    "unknown type": "unknown event type 'registration.participant.teleported.v1'",
    "oversized": "invalid registration.dialogue_event.scheduled.v1",
    "wrong key": "wrong key",
}
# Which consumers handle the type of each poison kind (an event type a consumer does not
# handle is ignored by it, whatever its key): undecodable ones are everyone's.
WRONG_KEY_HANDLERS = {
    "registration.participant.registered.v1": {"reporting", "notification"},
    "registration.municipality.registered.v1": {"reporting", "assessment"},
}


def wok(stack: EmbeddedStack, *arguments: str) -> str:
    result = CliRunner().invoke(
        wok_app, [*arguments, "--data-dir", str(stack.data_dir)], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    return result.output


async def dead_letters(stack: EmbeddedStack, consumer: str) -> list[Any]:
    return await read_topic(stack.kafka_bootstrap, topic(stack, f"dead-letter.{consumer}.v1"))


async def gathered(
    stack: EmbeddedStack, consumer: str, wanted: set[bytes], *, timeout_s: float
) -> list[Any]:
    """The consumer's dead letters once `wanted` are all among them, or when the time is up
    (what is missing then counts as lost)."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await dead_letters(stack, consumer)
        if wanted <= {record.value for record in records} or time.monotonic() > deadline:
            return records
        await asyncio.sleep(1.0)


async def program_registrations(stack: EmbeddedStack) -> int:
    """Registrations in the newest program snapshot (never withheld), 0 before the first."""
    async with httpx.AsyncClient(base_url=stack.url("reporting"), timeout=10) as client:
        response = await client.get(
            "/v1/aggregates/program",
            headers={"Authorization": f"Bearer {stack.federal_key}"},
        )
    if response.status_code != 200:
        return 0
    return int(response.json()["metrics"]["registrations_total"] or 0)


async def test_a_dead_letter_whose_cause_was_fixed_is_applied_once_by_redrive(
    stack: EmbeddedStack,
) -> None:
    """Registrations for a dialogue event announced only later: notification cannot confirm
    them before it knows the event, so after its retries it dead-letters them (reporting
    counts them at once). The fix is the event's announcement; `wok dlq redrive` then
    replays them to `registration.events.v1` once: notification applies them, none comes
    back to its dead letters, and reporting, which sees them a second time, counts none twice.
    """
    rng = seeded("redrive after a fix")
    late = municipality(rng, registrations=MISSING_REFERENCE)
    late_event = late.setup.pop()  # the DialogueEventScheduled, held back
    late_values = {value for value, _ in as_messages(late.registrations)}
    # The program total is always published; the municipality's own cell may be withheld
    # by complementary suppression (another municipality of its Land with 1-4 people).
    program_before = await program_registrations(stack)
    producer = await start_producer(stack)
    try:
        await produce(producer, stack, as_messages(late.envelopes))
        dead = await gathered(stack, "notification", late_values, timeout_s=90)
        late_dead = [record for record in dead if record.value in late_values]
        assert len(late_dead) == MISSING_REFERENCE, "registrations for the unknown event kept"
        assert all("UnknownDialogueEvent" in dead_letter_reason(r) for r in late_dead)
        await produce(producer, stack, as_messages([late_event]))  # the fix
    finally:
        await producer.stop()

    redriven = await asyncio.to_thread(wok, stack, "dlq", "redrive", "notification")
    assert f"Redriven {MISSING_REFERENCE} dead letter(s)" in redriven, redriven
    expected = {**late.expected(), "dialogue_events": 1}
    await eventually(
        lambda: program_registrations(stack),
        lambda total: total >= program_before + MISSING_REFERENCE,
        timeout_s=60,
        what="the late registrations in the program total",
    )
    await eventually(
        lambda: municipality_snapshot(stack, late.ags),
        lambda seen: not disagreements(seen, expected),
        timeout_s=60,
        what="the late municipality with its dialogue event",
    )
    # A marker after the replayed registrations, in their partition (same key): once
    # notification has dead-lettered it, it has dealt with every one of them.
    marker = f'{{"marker": "{uuid.uuid4()}"'.encode()
    producer = await start_producer(stack)
    try:
        await produce(producer, stack, [(marker, late.ags.encode())])
    finally:
        await producer.stop()
    dead = await gathered(stack, "notification", {marker}, timeout_s=90)
    assert marker in {record.value for record in dead}, "notification stuck before the marker"
    counts = Counter(record.value for record in dead if record.value in late_values)
    await asyncio.sleep(SETTLE_S)  # reporting has seen the replays too: a double would show
    counted = await program_registrations(stack) - program_before
    report(
        "wok dlq redrive after a fix (the dialogue event announced late)",
        tried=MISSING_REFERENCE,
        lost=sum(1 for value in late_values if counts[value] != 1),
        duplicated=max(0, counted - MISSING_REFERENCE),
        extra="notification dead-lettered each once and took each after the redrive",
    )
    assert all(counts[value] == 1 for value in late_values), counts
    assert counted == MISSING_REFERENCE


async def test_1000_poison_messages_are_dead_lettered_with_their_reasons_and_good_traffic_counts(
    stack: EmbeddedStack,
) -> None:
    rng = seeded("poison messages")
    good = municipality(rng, registrations=GOOD_REGISTRATIONS)
    extra_events = []
    for _ in range(GOOD_DIALOGUE_EVENTS):
        scheduled = good.setup[2].data.model_copy(update={"dialogue_event_id": str(uuid.uuid4())})
        extra_events.append(new_envelope(scheduled, source=SOURCE, municipality=good.ags))
    poison = poison_messages(rng, ags=good.ags, event_id=good.dialogue_event_id)
    all_poison = {value for kind in poison.values() for value, _ in kind}
    assert len(all_poison) == 5 * POISON_PER_KIND
    mixed = as_messages([*extra_events, *good.registrations])
    good_count = len(good.setup) + len(mixed)
    mixed += [message for kind in poison.values() for message in kind]
    rng.shuffle(mixed)

    producer = await start_producer(stack)
    try:
        await produce(producer, stack, as_messages(good.setup))
        await produce(producer, stack, mixed, chunk=200)
    finally:
        await producer.stop()

    def wanted_at(consumer: str) -> set[bytes]:
        """The poison this consumer must dead-letter: all, but a wrong-keyed event only if
        the consumer handles its type (others it ignores, whatever the key)."""
        return {
            value
            for kind, messages in poison.items()
            for value, _ in messages
            if kind != "wrong key" or consumer in WRONG_KEY_HANDLERS[json.loads(value)["type"]]
        }

    consumers = ("assessment", "notification", "reporting")
    started = time.monotonic()
    wrong_keyed = {value for value, _ in poison["wrong key"]}
    dead = {}
    for consumer in consumers:
        # The undecodable ones first; the wrong-keyed ones were mixed in among them, so
        # by then they were decided too (15 s more is generous).
        await gathered(stack, consumer, wanted_at(consumer) - wrong_keyed, timeout_s=150)
        dead[consumer] = await gathered(stack, consumer, wanted_at(consumer), timeout_s=15)
    took_s = time.monotonic() - started
    expected_good = {**good.expected(), "dialogue_events": 1 + GOOD_DIALOGUE_EVENTS}
    good_snapshot = await eventually(
        lambda: municipality_snapshot(stack, good.ags),
        lambda seen: not disagreements(seen, expected_good),
        timeout_s=30,
        what="the good traffic counted",
        fail=False,
    )
    # Every poison message once in each consumer's dead letters with its kind's reason,
    # its original key and origin.
    problems: list[str] = []
    missing = 0
    for consumer, records in dead.items():
        wanted = wanted_at(consumer)
        letters: dict[bytes, list[Any]] = {}
        for record in records:
            if record.value in all_poison:
                letters.setdefault(record.value, []).append(record)
        for kind, messages in poison.items():
            for value, key in messages:
                found = letters.get(value, [])
                if value not in wanted:
                    if found:
                        problems.append(f"{consumer} dead-lettered a {kind} it does not handle")
                    continue
                if not found:
                    missing += 1
                    problems.append(f"{consumer}: a {kind} message is not in its dead letters")
                    continue
                if len(found) > 1:
                    problems.append(f"{consumer}: a {kind} message dead-lettered {len(found)}x")
                reason = dead_letter_reason(found[0])
                if not reason.startswith(EXPECTED_REASON[kind]):
                    problems.append(f"{consumer}: {kind} with the reason {reason[:100]!r}")
                origin = dict(found[0].headers).get("wok-dlq-topic")
                if found[0].key != key or origin != b"registration.events.v1":
                    problems.append(f"{consumer}: {kind} lost its key or origin")
    # A wrong-keyed onboarding must not have been applied: no snapshot of its municipality.
    onboardings = [
        json.loads(value)["municipality"]
        for value, _ in poison["wrong key"]
        if json.loads(value)["type"] == "registration.municipality.registered.v1"
    ]
    applied = [ags for ags in onboardings if await municipality_snapshot(stack, ags) is not None]
    problems += [f"reporting applied a wrong-keyed onboarding of {ags}" for ags in applied]
    good_off = disagreements(good_snapshot, expected_good)
    problems += [
        f"good traffic: {metric} played {figures[0]}, published {figures[1]}"
        for metric, figures in good_off.items()
    ]
    report(
        "1,000 poison messages (200 each: bad JSON, wrong schema, unknown type, "
        f"{OVERSIZED_BYTES // 1024} KiB oversized, wrong key) among {good_count} good events",
        tried=len(all_poison),
        lost=missing,
        duplicated=len(applied),
        extra=f"lost = not in a dead-letter topic, duplicated = applied though poison; "
        f"dead-lettered by {', '.join(consumers)} within {took_s:.0f} s; good traffic "
        f"{'exact' if not good_off else 'OFF'}; {len(problems)} problems",
    )

    # Grouped, so the message says at a glance which consumer missed which kind.
    assert not problems, Counter(re.sub(r"\d{5,}", "<n>", problem) for problem in problems)
