"""Composition root: wires settings, runtime, repositories, consumers and routes. No I/O here."""

from __future__ import annotations

from fastapi import FastAPI

from wok_reporting.adapters.mongo import MongoProjectionRepository, MongoSnapshotRepository
from wok_reporting.adapters.repository import ProjectionRepository, SnapshotRepository
from wok_reporting.entrypoints.consumers import GROUP, TOPICS, event_handlers
from wok_reporting.entrypoints.http import aggregates_router
from wok_reporting.settings import ReportingSettings
from wok_reporting.snapshots import SnapshotPublisher
from wok_runtime.consumer import ProcessedStore
from wok_runtime.service import ServiceRuntime

SERVICE = "reporting"


def build_app(
    settings: ReportingSettings,
    *,
    runtime: ServiceRuntime | None = None,
    projections: ProjectionRepository | None = None,
    snapshots: SnapshotRepository | None = None,
    processed: ProcessedStore | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name=SERVICE, settings=settings)
    projections = projections or MongoProjectionRepository(runtime.database)
    snapshots = snapshots or MongoSnapshotRepository(runtime.database)
    publisher = SnapshotPublisher(
        projections=projections,
        snapshots=snapshots,
        publisher=runtime.publisher,
        interval_s=settings.snapshot_interval_s,
    )
    runtime.consume(
        group=GROUP,
        topics=TOPICS,
        handlers=event_handlers(projections, on_change=publisher.changed),
        processed=processed,
    )
    app = runtime.http_app(
        title="Weltoffene Kommune: reporting",
        routers=[aggregates_router(snapshots=publisher, federal_key=settings.federal_key)],
    )
    app.state.snapshots = publisher
    runtime.run_while_started(publisher.run, name="snapshots")
    return app

