"""Fixtures of the reporting tests: settings, a service wired to in-memory stores, ids."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from wok_contracts import (
    AttendanceRecorded,
    CancellationReason,
    DialogueEventCancelled,
    DialogueEventRescheduled,
    DialogueEventScheduled,
    Envelope,
    EventData,
    EventFormat,
    MunicipalityKind,
    MunicipalityProfileUpdated,
    MunicipalityRegistered,
    NotificationKind,
    NotificationSent,
    ParticipantCancelled,
    ParticipantErased,
    ParticipantPromoted,
    ParticipantRegistered,
    RegistrationStatus,
    Sector,
    new_envelope,
)
from wok_reporting.adapters.repository import (
    InMemoryActivityRepository,
    InMemoryProjectionRepository,
    InMemorySnapshotRepository,
)
from wok_reporting.app import SERVICE, build_app
from wok_reporting.settings import ReportingSettings
from wok_reporting.snapshots import SnapshotPublisher
from wok_runtime.service import ServiceRuntime

FEDERAL_KEY = "federal-test-key"
KAISERSLAUTERN = "07312000"
MAINZ = "07315000"


def random_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings() -> ReportingSettings:
    return ReportingSettings(
        federal_key=SecretStr(FEDERAL_KEY),
        snapshot_interval_s=0.05,
        consumer_max_attempts=2,
        consumer_backoff_initial_s=0.01,
        consumer_backoff_max_s=0.02,
        kafka_session_timeout_ms=2000,
    )


@dataclass
class ReportingService:
    app: FastAPI
    runtime: ServiceRuntime
    projections: InMemoryProjectionRepository
    snapshots: InMemorySnapshotRepository
    activities: InMemoryActivityRepository

    federal_key: str = FEDERAL_KEY

    @property
    def publisher(self) -> SnapshotPublisher:
        publisher: SnapshotPublisher = self.app.state.snapshots
        return publisher


@pytest.fixture
def service(settings: ReportingSettings) -> ReportingService:
    runtime = ServiceRuntime(name=SERVICE, settings=settings)
    projections = InMemoryProjectionRepository()
    snapshots = InMemorySnapshotRepository()
    activities = InMemoryActivityRepository()
    app = build_app(
        settings,
        runtime=runtime,
        projections=projections,
        snapshots=snapshots,
        activities=activities,
    )
    return ReportingService(
        app=app,
        runtime=runtime,
        projections=projections,
        snapshots=snapshots,
        activities=activities,
    )


class Events:
    """Event payloads as the registration and notification services publish them."""

    KAISERSLAUTERN = KAISERSLAUTERN
    MAINZ = MAINZ

    @staticmethod
    def municipality_registered(
        ags: str = KAISERSLAUTERN, *, name: str | None = None
    ) -> MunicipalityRegistered:
        return MunicipalityRegistered(
            ags=ags, name=name or f"Gemeinde {ags}", kind=MunicipalityKind.CITY, land=ags[:2]
        )

    @staticmethod
    def profile_updated(
        ags: str = KAISERSLAUTERN, *, name: str, kind: MunicipalityKind
    ) -> MunicipalityProfileUpdated:
        return MunicipalityProfileUpdated(ags=ags, name=name, kind=kind, land=ags[:2])

    @staticmethod
    def dialogue_event_cancelled(
        scheduled: DialogueEventScheduled,
    ) -> DialogueEventCancelled:
        return DialogueEventCancelled(
            dialogue_event_id=scheduled.dialogue_event_id, ags=scheduled.ags, revision=1
        )

    @staticmethod
    def dialogue_event_rescheduled(
        scheduled: DialogueEventScheduled, *, starts_at: datetime
    ) -> DialogueEventRescheduled:
        return DialogueEventRescheduled(
            dialogue_event_id=scheduled.dialogue_event_id,
            ags=scheduled.ags,
            title=scheduled.title,
            starts_at=starts_at,
            ends_at=starts_at + (scheduled.ends_at - scheduled.starts_at),
            previous_starts_at=scheduled.starts_at,
            format=scheduled.format,
            registration_deadline=scheduled.registration_deadline,
            revision=1,
        )

    @staticmethod
    def attendance_recorded(scheduled: DialogueEventScheduled, attended: int) -> AttendanceRecorded:
        return AttendanceRecorded(
            dialogue_event_id=scheduled.dialogue_event_id, ags=scheduled.ags, attended=attended
        )

    @staticmethod
    def participant_cancelled(registered: ParticipantRegistered) -> ParticipantCancelled:
        return ParticipantCancelled(
            registration_id=registered.registration_id,
            dialogue_event_id=registered.dialogue_event_id,
            ags=registered.ags,
            previous_status=registered.status,
            reason=CancellationReason.BY_PARTICIPANT,
        )

    @staticmethod
    def participant_promoted(registered: ParticipantRegistered) -> ParticipantPromoted:
        return ParticipantPromoted(
            registration_id=registered.registration_id,
            dialogue_event_id=registered.dialogue_event_id,
            ags=registered.ags,
        )

    @staticmethod
    def participant_erased(registered: ParticipantRegistered) -> ParticipantErased:
        return ParticipantErased(
            registration_id=registered.registration_id,
            dialogue_event_id=registered.dialogue_event_id,
            ags=registered.ags,
        )

    @staticmethod
    def dialogue_event_scheduled(ags: str = KAISERSLAUTERN) -> DialogueEventScheduled:
        return DialogueEventScheduled(
            dialogue_event_id=random_ref("event"),
            ags=ags,
            title="Dialog: Zusammenhalt in der Stadt",
            starts_at=datetime(2026, 12, 10, 17, 0, tzinfo=UTC),
            ends_at=datetime(2026, 12, 10, 19, 30, tzinfo=UTC),
            format=EventFormat.ONLINE,
            capacity=30,
            registration_deadline=datetime(2026, 11, 30, 23, 0, tzinfo=UTC),
        )

    @staticmethod
    def participant_registered(
        *,
        dialogue_event_id: str,
        ags: str = KAISERSLAUTERN,
        status: RegistrationStatus = RegistrationStatus.CONFIRMED,
        registration_id: str | None = None,
        sector: Sector = Sector.RESIDENT,
    ) -> ParticipantRegistered:
        return ParticipantRegistered(
            registration_id=registration_id or random_ref("registration"),
            dialogue_event_id=dialogue_event_id,
            ags=ags,
            status=status,
            sector=sector,
        )

    @staticmethod
    def notification_sent(
        *, registration_id: str, dialogue_event_id: str, ags: str = KAISERSLAUTERN
    ) -> NotificationSent:
        return NotificationSent(
            notification_id=random_ref("notification"),
            kind=NotificationKind.CONFIRMATION,
            registration_id=registration_id,
            dialogue_event_id=dialogue_event_id,
            ags=ags,
            language="de",
            sent_at=datetime.now(UTC),
        )

    @staticmethod
    def envelope(data: EventData, *, time: datetime | None = None) -> Envelope[Any]:
        """As the producers wrap it; a given `time` stands for when the fact happened."""
        envelope = new_envelope(data, source="/test", municipality=getattr(data, "ags", None))
        return envelope if time is None else envelope.model_copy(update={"time": time})


@pytest.fixture
def events() -> type[Events]:
    return Events
