"""No name or e-mail address of a participant anywhere it must not be, after a full `wok demo`;
and after an erasure, nothing of that person anywhere at all.

The people are read from the demo's own traces before the scan: the To header of every mail
in the stack's SMTP sink (everyone the demo registered got a confirmation there) and
registration's participants. Registration and notification hold names and addresses by
design (DESIGN.md, Privacy); everywhere else (every record, key and header on every topic,
every log line of every process of the stack, every document of assessment, reporting and
any other service's database) must hold none, nor any other e-mail address. The mail folder
is the recipients' mailbox and is not scanned.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from tests.privacy.conftest import DEMO_MUNICIPALITIES, PlayedDemo
from tests.privacy.scan import (
    PERSONAL_DATA_OWNERS,
    Needles,
    Person,
    people_in_mail,
    people_registered,
    scan_stack,
)
from wok_cli.demo import plan_registrations

ERASURE_WAIT_S = 90.0
# The first test starts the stack and plays the demo (see conftest.DEMO_TIMEOUT_S).
pytestmark = pytest.mark.timeout(700)


def _everyone(demo: PlayedDemo) -> dict[str, Person]:
    people = people_in_mail(demo.stack.mail_dir)
    for address, person in people_registered(demo.stack.mongodb_uri).items():
        known = people.setdefault(address, person)
        known.names |= person.names
        for registration_id, kinds in person.registrations.items():
            known.registrations.setdefault(registration_id, set()).update(kinds)
    return people


def _in_owner_database(where: str) -> bool:
    return any(where.startswith(f"mongodb {database}.") for database in PERSONAL_DATA_OWNERS)


async def test_after_the_demo_no_topic_log_or_projection_holds_a_name_or_an_address(
    played_demo: PlayedDemo,
) -> None:
    people = _everyone(played_demo)
    registered = sum(plan_registrations(index) for index in range(DEMO_MUNICIPALITIES))
    # Every person the demo registered, erased or not, is a needle.
    assert len(people) >= registered, (
        f"{len(people)} people found, the demo registered {registered}"
    )
    needles = Needles.of(
        names=[name for person in people.values() for name in person.names],
        emails=list(people),
    )

    scan = await scan_stack(played_demo.stack, needles)

    leaks = [finding for finding in scan.findings if not _in_owner_database(finding.where)]
    print(
        f"\nprivacy scan after wok demo (stack and demo {played_demo.seconds:.0f} s): scanned "
        f"{scan.counts} for {len(needles)} names and addresses of {len(people)} people and any "
        f"e-mail address: {len(leaks)} findings outside registration and notification "
        f"({len(scan.findings) - len(leaks)} inside, where they are kept by design)"
    )
    assert not leaks, "\n".join(str(finding) for finding in leaks[:40])
    # The scan does see personal data where it is kept by design, so it would see it elsewhere.
    assert any(f.where.startswith("mongodb wok_registration.participants") for f in scan.findings)
    assert any(f.where.startswith("mongodb wok_notification.") for f in scan.findings)
    assert scan.counts.messages > registered and scan.counts.log_lines > 0
    assert scan.counts.documents > registered


def _event_of(mongodb_uri: str, registration_id: str) -> str:
    """The dialogue event of a registration, from notification's delivery log."""
    client: MongoClient[dict[str, Any]] = MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        delivery = client["wok_notification"]["deliveries"].find_one(
            {"registration_id": registration_id}
        )
        assert delivery is not None, f"no delivery for {registration_id}"
        return str(delivery["dialogue_event_id"])
    finally:
        client.close()


def _traces(person: Person, registration_id: str, event_id: str) -> Needles:
    """Name, address and the address fingerprint registration keeps to refuse a second
    registration (sha256 of event id and address: recomputable, so personal data too)."""
    fingerprint = hashlib.sha256(f"{event_id}\x00{person.email}".encode()).hexdigest()
    return Needles.of(names=person.names, emails=[person.email], other=[fingerprint])


async def test_after_an_erasure_nothing_of_that_person_is_anywhere(
    played_demo: PlayedDemo,
) -> None:
    stack = played_demo.stack
    people = _everyone(played_demo)
    erased_by_demo = [
        (person, rid)
        for person in people.values()
        for rid, kinds in person.registrations.items()
        if "erasure" in kinds
    ]
    assert erased_by_demo, "the demo erases a person through their link"
    # Someone else with a confirmation, erased here through the link of their e-mail.
    person, registration_id = next(
        (person, rid)
        for person in people.values()
        for rid, kinds in person.registrations.items()
        if kinds == {"confirmation"}
    )
    service = {"Authorization": f"Bearer {stack.service_key}"}
    async with httpx.AsyncClient(base_url=stack.url("registration"), timeout=30) as client:
        contact = await client.get(
            f"/internal/v1/registrations/{registration_id}/contact", headers=service
        )
        assert contact.status_code == 200, contact.text
        assert contact.json()["email"].lower() == person.email
        erased = await client.post(contact.json()["erasure_url"])
        assert erased.status_code == 200 and erased.json()["status"] == "erased", erased.text
        gone = await client.get(
            f"/internal/v1/registrations/{registration_id}/contact", headers=service
        )
        assert gone.status_code == 404

    targets = [(person, registration_id), *erased_by_demo]
    needles = Needles.of(
        other=[
            needle
            for target, rid in targets
            for needle in _traces(target, rid, _event_of(stack.mongodb_uri, rid)).strings
        ]
    )
    # Notification deletes its copy when it reads ParticipantErased (after confirming the
    # erasure by mail): wait for that, then nothing may be left anywhere.
    deadline = time.monotonic() + ERASURE_WAIT_S
    while True:
        scan = await scan_stack(stack, needles, any_email=False)
        if not scan.findings or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    print(
        f"\nprivacy scan after erasing {len(targets)} people (everything, registration and "
        f"notification included): {scan.report(limit=0)}"
    )
    assert not scan.findings, scan.report()
    erasure_mails = people_in_mail(stack.mail_dir)[person.email].registrations[registration_id]
    assert "erasure" in erasure_mails, "the person was told of the erasure"
