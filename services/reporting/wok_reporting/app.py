"""Composition root: wires settings, runtime, repositories, consumers and routes. No I/O here."""

from __future__ import annotations

from fastapi import FastAPI

from wok_reporting.adapters.mongo import (
    MongoActivityRepository,
    MongoProjectionRepository,
    MongoSnapshotRepository,
)
from wok_reporting.adapters.repository import (
    ActivityRepository,
    InMemoryActivityRepository,
    ProjectionRepository,
    SnapshotRepository,
)
from wok_reporting.batches import ProjectionSink
from wok_reporting.entrypoints.consumers import GROUP, TOPICS, event_handlers
from wok_reporting.entrypoints.http import aggregates_router
from wok_reporting.handlers import Projector
from wok_reporting.settings import ReportingSettings
from wok_reporting.snapshots import SnapshotPublisher
from wok_runtime.outbox import InMemoryOutboxSource
from wok_runtime.service import ServiceRuntime

SERVICE = "reporting"


def build_app(
    settings: ReportingSettings,
    *,
    runtime: ServiceRuntime | None = None,
    projections: ProjectionRepository | None = None,
    snapshots: SnapshotRepository | None = None,
    activities: ActivityRepository | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name=SERVICE, settings=settings)
    if projections is None:
        projections = MongoProjectionRepository(runtime.database)
        runtime.on_startup(projections.ensure_ready)
    snapshots = snapshots or MongoSnapshotRepository(runtime.database)
    if activities is None:
        activities = MongoActivityRepository(runtime.database)
    if isinstance(activities, MongoActivityRepository):
        runtime.add_outbox(activities.collection)
    elif isinstance(activities, InMemoryActivityRepository):
        runtime.add_outbox(InMemoryOutboxSource(activities.documents))
    publisher = SnapshotPublisher(
        projections=projections,
        snapshots=snapshots,
        publisher=runtime.publisher,
        interval_s=settings.snapshot_interval_s,
    )

    # The relay looks for pending digests only when some were stored (a look per batch
    # otherwise: one database read per batch for nothing, most events having no digest).
    projector = Projector(
        projections=projections,
        activities=activities,
        on_change=publisher.changed,
        on_digests=runtime.relay.wake,
    )
    # In batches: one write per partition and batch, the offsets stored with the facts.
    runtime.consume_batches(
        group=GROUP,
        topics=TOPICS,
        sink=ProjectionSink(projector),
        event_types=[event_type.event_type for event_type in event_handlers(projector)],
        max_records=settings.batch_max_records,
    )
    app = runtime.http_app(
        title="Weltoffene Kommune: reporting",
        routers=[aggregates_router(snapshots=publisher, federal_key=settings.federal_key)],
    )
    app.state.snapshots = publisher
    app.state.projector = projector
    runtime.run_while_started(publisher.run, name="snapshots")
    return app
