"""Activity digests for exchange.activity.v1: what a municipality did, in German and English.

Plain code, no I/O. Only activities of a municipality itself get a digest; what residents
do (register, cancel, ask for erasure), workshop participants (a perspective) and taskforce
members (joining, leaving) do never does, and no digest carries a count of people. A
measure's digest names its field, not its title (free text that could name someone).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from wok_contracts import (
    ActivityDigest,
    ActivityKind,
    AttendanceRecorded,
    DialogueEventCancelled,
    DialogueEventChanged,
    DialogueEventRescheduled,
    DialogueEventScheduled,
    Envelope,
    MeasurePlanned,
    MeasureStatus,
    MeasureStatusChanged,
    MunicipalityProfileUpdated,
    MunicipalityRegistered,
    SelfCheckStarted,
    SelfCheckSubmitted,
)
from wok_reporting.domain import BERLIN, FIELD_NAMES_DE, as_utc

# Digest envelope ids derive from the source event id: a digest sent twice is one digest.
DIGEST_NAMESPACE = uuid.UUID("5f0c6a52-93d4-4a0e-9a43-6d2b0c7f4e11")

MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def digest_id(source_event_id: str) -> str:
    return str(uuid.uuid5(DIGEST_NAMESPACE, source_event_id))


def _day_de(moment: datetime) -> str:
    return as_utc(moment).astimezone(BERLIN).strftime("%d.%m.%Y")


def _day_en(moment: datetime) -> str:
    local = as_utc(moment).astimezone(BERLIN)
    return f"{local.day} {MONTHS_EN[local.month - 1]} {local.year}"


Texts = tuple[ActivityKind, str, str, str]
"""(kind, German text, English text, subject id) of an event's digest."""


def _joined(data: MunicipalityRegistered, name: str) -> Texts:
    return (
        ActivityKind.MUNICIPALITY_JOINED,
        f"{name} ist dem Programm „Weltoffene Kommune“ beigetreten.",
        f"{name} joined the “Weltoffene Kommune” program.",
        data.ags,
    )


def _profile_updated(data: MunicipalityProfileUpdated, name: str) -> Texts:
    return (
        ActivityKind.PROFILE_UPDATED,
        f"{name} hat das Profil aktualisiert.",
        f"{name} updated its profile.",
        data.ags,
    )


def _scheduled(data: DialogueEventScheduled, name: str) -> Texts:
    return (
        ActivityKind.DIALOGUE_EVENT_SCHEDULED,
        f"{name} hat eine Dialogveranstaltung am {_day_de(data.starts_at)} angesetzt.",
        f"{name} scheduled a dialogue event on {_day_en(data.starts_at)}.",
        data.dialogue_event_id,
    )


def _rescheduled(data: DialogueEventRescheduled, name: str) -> Texts:
    return (
        ActivityKind.DIALOGUE_EVENT_RESCHEDULED,
        f"Die Dialogveranstaltung von {name} wurde auf den {_day_de(data.starts_at)} verlegt.",
        f"{name}'s dialogue event was rescheduled to {_day_en(data.starts_at)}.",
        data.dialogue_event_id,
    )


def _changed(data: DialogueEventChanged, name: str) -> Texts:
    return (
        ActivityKind.DIALOGUE_EVENT_CHANGED,
        f"Die Dialogveranstaltung von {name} am {_day_de(data.starts_at)} wurde geändert.",
        f"{name}'s dialogue event on {_day_en(data.starts_at)} was changed.",
        data.dialogue_event_id,
    )


def _cancelled(data: DialogueEventCancelled, name: str) -> Texts:
    return (
        ActivityKind.DIALOGUE_EVENT_CANCELLED,
        f"{name} hat eine Dialogveranstaltung abgesagt.",
        f"{name} cancelled a dialogue event.",
        data.dialogue_event_id,
    )


def _attended(data: AttendanceRecorded, name: str) -> Texts:
    return (
        ActivityKind.ATTENDANCE_RECORDED,
        f"{name} hat eine Dialogveranstaltung durchgeführt.",
        f"{name} held a dialogue event.",
        data.dialogue_event_id,
    )


# How a measure's new status reads: (German verb phrase, English verb).
STATUS_CHANGES = {
    MeasureStatus.RUNNING: ("hat eine Maßnahme im Handlungsfeld „{}“ begonnen", "started"),
    MeasureStatus.DONE: ("hat eine Maßnahme im Handlungsfeld „{}“ abgeschlossen", "completed"),
    MeasureStatus.DROPPED: ("hat eine Maßnahme im Handlungsfeld „{}“ aufgegeben", "dropped"),
    MeasureStatus.PLANNED: ("plant eine Maßnahme im Handlungsfeld „{}“ neu", "replanned"),
}


def _self_check_started(data: SelfCheckStarted, name: str) -> Texts:
    return (
        ActivityKind.SELF_CHECK_STARTED,
        f"{name} hat den Selbstcheck begonnen.",
        f"{name} started its self-check.",
        data.self_check_id,
    )


def _self_check_submitted(data: SelfCheckSubmitted, name: str) -> Texts:
    return (
        ActivityKind.SELF_CHECK_COMPLETED,
        f"{name} hat den Selbstcheck abgeschlossen.",
        f"{name} completed its self-check.",
        data.self_check_id,
    )


def _measure_planned(data: MeasurePlanned, name: str) -> Texts:
    field_de = FIELD_NAMES_DE[data.field]
    return (
        ActivityKind.MEASURE_PLANNED,
        f"{name} hat eine Maßnahme im Handlungsfeld „{field_de}“ geplant.",
        f"{name} planned a measure in {field_de}.",
        data.measure_id,
    )


def _measure_status_changed(data: MeasureStatusChanged, name: str) -> Texts:
    field_de = FIELD_NAMES_DE[data.field]
    german, english = STATUS_CHANGES[data.status]
    return (
        ActivityKind.MEASURE_STATUS_CHANGED,
        f"{name} {german.format(field_de)}.",
        f"{name} {english} a measure in {field_de}.",
        data.measure_id,
    )


# The payloads that have a digest, each with how its texts read.
DIGESTS: dict[type[Any], Callable[[Any, str], Texts]] = {
    MunicipalityRegistered: _joined,
    MunicipalityProfileUpdated: _profile_updated,
    DialogueEventScheduled: _scheduled,
    DialogueEventRescheduled: _rescheduled,
    DialogueEventChanged: _changed,
    DialogueEventCancelled: _cancelled,
    AttendanceRecorded: _attended,
    SelfCheckStarted: _self_check_started,
    SelfCheckSubmitted: _self_check_submitted,
    MeasurePlanned: _measure_planned,
    MeasureStatusChanged: _measure_status_changed,
}


def has_digest(envelope: Envelope[Any]) -> bool:
    """Whether the event is a municipality's activity, with a digest (cheap: no texts)."""
    return type(envelope.data) in DIGESTS


def digest_of(envelope: Envelope[Any], *, municipality_name: str) -> ActivityDigest | None:
    """The digest of a municipality's activity; None for events that have none."""
    write = DIGESTS.get(type(envelope.data))
    if write is None:
        return None
    kind, text_de, text_en, subject_id = write(envelope.data, municipality_name)
    return ActivityDigest(
        municipality=envelope.data.ags,
        municipality_name=municipality_name,
        kind=kind,
        text_de=text_de,
        text_en=text_en,
        occurred_at=as_utc(envelope.time),
        subject_id=subject_id,
        source_event_id=envelope.id,
    )
