"""The mail server goes away while a hundred people register (issue 5): the notification
service backs off and keeps the confirmations waiting, and once the SMTP sink is back
every person gets exactly one confirmation, none twice."""

from __future__ import annotations

import asyncio
import email
import signal
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import httpx

from tests.e2e.conftest import unique_ags
from tests.e2e.helpers import eventually
from wok_cli.devstack import EmbeddedStack

PEOPLE = 100
OUTAGE_S = 30.0  # as the issue says; the whole test stays under a minute
SETTLE_S = 3.0  # after the last mail: long enough for a duplicate to show up


def confirmations_to(mail_dir: Path, addresses: set[str]) -> Counter[str]:
    """How many mails in the sink each of `addresses` received (the To header, exactly)."""
    counts: Counter[str] = Counter()
    for path in mail_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        for recipient in message["To"].addresses:
            if recipient.addr_spec in addresses:
                counts[recipient.addr_spec] += 1
    return counts


async def test_a_30_s_smtp_outage_during_100_registrations_ends_with_one_confirmation_each(
    stack: EmbeddedStack,
) -> None:
    ags = unique_ags()
    run = uuid.uuid4().hex[:8]
    addresses = {f"outage-{run}-{n:03d}@example.org" for n in range(PEOPLE)}
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    admin = {"Authorization": f"Bearer {stack.admin_key}"}
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=10) as client:
        onboarded = await client.post(
            "/v1/municipalities",
            json={"ags": ags, "name": "Ausfallstadt", "kind": "city"},
            headers=admin,
        )
        assert onboarded.status_code == 201, onboarded.text
        key = {"Authorization": f"Bearer {onboarded.json()['api_key']}"}
        created = await client.post(
            f"/v1/municipalities/{ags}/dialogue-events",
            json={
                "title": "Dialog: Zusammenleben im Stadtteil",
                "starts_at": starts.isoformat(),
                "ends_at": (starts + timedelta(hours=2)).isoformat(),
                "format": "in_person",
                "place": "Bürgerhaus, großer Saal",
                "capacity": PEOPLE,
                "registration_deadline": (starts - timedelta(days=3)).isoformat(),
            },
            headers=key,
        )
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]

        assert stack.kill_service("smtp-sink", signal.SIGTERM) is not None, "sink still up"
        down_since = time.monotonic()
        try:
            for n, address in enumerate(sorted(addresses)):
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
                assert registered.json()["status"] == "confirmed", registered.text
            registering_s = time.monotonic() - down_since
            assert registering_s < OUTAGE_S, f"registering took {registering_s:.1f} s"
            await asyncio.sleep(OUTAGE_S - registering_s)
            # Nothing could have been delivered while the sink was away.
            assert confirmations_to(stack.mail_dir, addresses) == Counter()
        finally:
            await asyncio.to_thread(stack.restart_service, "smtp-sink")

    async def received() -> Counter[str]:
        return confirmations_to(stack.mail_dir, addresses)

    await eventually(
        received,
        lambda counts: sum(counts.values()) >= PEOPLE,
        timeout_s=30,
        what=f"{PEOPLE} confirmations after the outage",
    )
    await asyncio.sleep(SETTLE_S)
    counts = await received()
    assert set(counts) == addresses, "everyone got a confirmation"
    twice = {address: count for address, count in counts.items() if count != 1}
    assert not twice, f"confirmations sent more than once: {twice}"
    subjects = {
        str(message["Subject"])
        for path in stack.mail_dir.glob("*.eml")
        if (message := email.message_from_bytes(path.read_bytes(), policy=default_policy))
        and any(r.addr_spec in addresses for r in message["To"].addresses)
    }
    assert all("Zusammenleben im Stadtteil" in subject for subject in subjects), subjects
