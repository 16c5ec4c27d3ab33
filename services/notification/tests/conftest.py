"""Fixtures of the notification tests: unique ids and builders of events and contacts."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from wok_contracts import DialogueEventScheduled, EventFormat, ParticipantRegistered
from wok_notification.domain import Contact

KAISERSLAUTERN = "07312000"
# Thursday, 10 December 2026, 18:00 in Berlin (CET, UTC+1)
EVENING_STARTS = datetime(2026, 12, 10, 17, 0, tzinfo=UTC)


def random_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def scheduled() -> Callable[..., DialogueEventScheduled]:
    def build(**overrides: Any) -> DialogueEventScheduled:
        fields: dict[str, Any] = {
            "dialogue_event_id": random_ref("event"),
            "ags": KAISERSLAUTERN,
            "title": "Dialog: Zusammenhalt in der Nachbarschaft",
            "description": "Wie wollen wir in Kaiserslautern zusammenleben?",
            "starts_at": EVENING_STARTS,
            "ends_at": EVENING_STARTS + timedelta(hours=2, minutes=30),
            "format": EventFormat.ONLINE,
            "capacity": 40,
            "registration_deadline": EVENING_STARTS - timedelta(days=10),
            "revision": 0,
        }
        return DialogueEventScheduled(**(fields | overrides))

    return build


@pytest.fixture
def registered() -> Callable[..., ParticipantRegistered]:
    def build(event: DialogueEventScheduled, **overrides: Any) -> ParticipantRegistered:
        fields: dict[str, Any] = {
            "registration_id": random_ref("registration"),
            "dialogue_event_id": event.dialogue_event_id,
            "ags": event.ags,
            "status": "confirmed",
            "sector": "resident",
            "language": "de",
        }
        return ParticipantRegistered(**(fields | overrides))

    return build


@pytest.fixture
def contact_for() -> Callable[..., Contact]:
    def build(registration: ParticipantRegistered, **overrides: Any) -> Contact:
        fields: dict[str, Any] = {
            "registration_id": registration.registration_id,
            "dialogue_event_id": registration.dialogue_event_id,
            "name": "Jörg Müller",
            "email": f"{registration.registration_id}@example.org",
            "language": "de",
        }
        return Contact(**(fields | overrides))

    return build
