"""What `bench/freshness.py` concludes from what it sees: a registration's event delivered
twice holds one place in its municipality's count, and each mail in the sink is read once.

Fast: no stack; the script's own classes on hand-made records and `.eml` files.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
AGS = "07312000"


@pytest.fixture
def freshness() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("freshness")
    finally:
        sys.path.remove(str(BENCH))


def registered(registration_id: str) -> SimpleNamespace:
    value = {"type": "registration.participant.registered.v1"}
    value["data"] = {"registration_id": registration_id}  # type: ignore[assignment]
    return SimpleNamespace(
        topic="bench.registration.events.v1",
        key=AGS.encode(),
        value=json.dumps(value).encode(),
        timestamp=1_000,
    )


def snapshot(total: int) -> SimpleNamespace:
    value = {"data": {"metrics": {"registrations_total": total}}}
    return SimpleNamespace(
        topic="bench.exchange.aggregates.v1",
        key=f"municipality:{AGS}".encode(),
        value=json.dumps(value).encode(),
        timestamp=2_000,
    )


def test_an_event_delivered_twice_holds_one_place_in_the_count(freshness: ModuleType) -> None:
    seen = freshness.Observations(
        registrations_topic="bench.registration.events.v1", municipalities={AGS}
    )
    for name, at in (("r-1", 1.0), ("r-2", 1.1), ("r-1", 1.2), ("r-3", 1.3)):
        seen.on_record(registered(name), at)
    seen.on_record(snapshot(3), 2.0)

    assert seen.included_at() == {"r-1": 2.0, "r-2": 2.0, "r-3": 2.0}
    assert seen.published["r-1"] == 1.0  # the first arrival counts
    assert seen.repeated == 1


def test_each_mail_in_the_sink_is_read_once(freshness: ModuleType, tmp_path: Path) -> None:
    mail = (
        "From: wok@example.org\r\nTo: Bench Person 1 <bench-x-1@example.org>\r\n"
        "Subject: =?utf-8?q?Best=C3=A4tigung?=\r\nContent-Type: text/plain\r\n\r\nHallo\r\n"
    )
    (tmp_path / "20261126T010203123456Z-aa.eml").write_text(mail)
    addresses = {f"bench-x-{n}@example.org": f"r-{n}" for n in (1, 2, 3)}
    arrivals = freshness.MailArrivals(tmp_path, addresses, 0)

    received = datetime(2026, 11, 26, 1, 2, 3, 123456, tzinfo=UTC).timestamp()
    assert arrivals.update() == {"r-1": received}
    # a file read before is not read again (were it, r-2 would appear); a new one is
    (tmp_path / "20261126T010203123456Z-aa.eml").write_text(mail.replace("x-1", "x-2"))
    (tmp_path / "20261126T010204000000Z-bb.eml").write_text(mail.replace("x-1", "x-3"))
    later = datetime(2026, 11, 26, 1, 2, 4, tzinfo=UTC).timestamp()
    assert arrivals.update() == {"r-1": received, "r-3": later}
