"""Composition root of the assessment service."""

from __future__ import annotations

from fastapi import FastAPI

from wok_assessment.adapters.repository import (
    AssessmentRepository,
    InMemoryAssessmentRepository,
    MongoAssessmentRepository,
    MongoMunicipalityDirectory,
    MunicipalityDirectory,
)
from wok_assessment.domain.catalogue import Catalogues, load_catalogues
from wok_assessment.entrypoints.http import build_router, install_error_handlers
from wok_assessment.handlers import AssessmentHandlers
from wok_assessment.settings import AssessmentSettings
from wok_contracts import MunicipalityRegistered
from wok_contracts.topics import REGISTRATION_EVENTS
from wok_runtime.consumer import ProcessedStore
from wok_runtime.municipal_keys import KeyDirectory, MongoKeyDirectory, key_event_handlers
from wok_runtime.service import ServiceRuntime

CONSUMER_GROUP = "assessment"


def build_app(
    settings: AssessmentSettings,
    *,
    runtime: ServiceRuntime | None = None,
    directory: MunicipalityDirectory | None = None,
    repository: AssessmentRepository | None = None,
    keys: KeyDirectory | None = None,
    catalogues: Catalogues | None = None,
    processed: ProcessedStore | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name="assessment", settings=settings)
    if keys is None:
        mongo_keys = MongoKeyDirectory(runtime.database)
        runtime.on_startup(mongo_keys.ensure_indexes)
        keys = mongo_keys
    if repository is None:
        mongo = MongoAssessmentRepository(runtime.database)
        runtime.on_startup(mongo.ensure_indexes)
        for collection in mongo.outbox_collections():
            runtime.add_outbox(collection)
        repository = mongo
    elif isinstance(repository, InMemoryAssessmentRepository):
        for source in repository.outbox_sources():
            runtime.add_outbox(source)
    handlers = AssessmentHandlers(
        directory=directory or MongoMunicipalityDirectory(runtime.database),
        repository=repository,
        catalogues=catalogues or load_catalogues(),
        events_stored=runtime.relay.wake,
        min_group_size=settings.workshop_min_group_size,
    )
    runtime.consume(
        group=CONSUMER_GROUP,
        topics=[REGISTRATION_EVENTS],
        handlers={
            MunicipalityRegistered: handlers.remember_municipality,
            **key_event_handlers(keys),
        },
        processed=processed,
    )
    app = runtime.http_app(
        title="Weltoffene Kommune: assessment",
        routers=[build_router(handlers, keys, service_key=settings.service_key.get_secret_value())],
    )
    install_error_handlers(app)
    app.state.handlers = handlers
    return app
