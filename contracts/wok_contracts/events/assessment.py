"""Event payloads produced by the assessment service (topic assessment.events.v1)."""

from __future__ import annotations

from wok_contracts.envelope import EventData

EVENT_TYPES: tuple[type[EventData], ...] = ()
