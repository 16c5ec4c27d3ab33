"""Composition root of the exchange service: dependencies in, no I/O until started."""

from __future__ import annotations

from fastapi import FastAPI

from wok_contracts import (
    ActivityDigest,
    AssessmentScored,
    MeasurePlanned,
    MeasureStatusChanged,
    MunicipalityRegistered,
)
from wok_contracts.topics import ASSESSMENT_EVENTS, EXCHANGE_ACTIVITY, REGISTRATION_EVENTS
from wok_exchange.adapters import (
    ExchangeRepository,
    InMemoryExchangeRepository,
    MongoExchangeRepository,
)
from wok_exchange.entrypoints import build_router
from wok_exchange.handlers import ExchangeHandlers
from wok_exchange.settings import ExchangeSettings
from wok_runtime.consumer import ProcessedStore
from wok_runtime.municipal_keys import KeyDirectory, MongoKeyDirectory, key_event_handlers
from wok_runtime.service import ServiceRuntime

CONSUMER_GROUP = "exchange"


def build_app(
    settings: ExchangeSettings,
    *,
    runtime: ServiceRuntime | None = None,
    repository: ExchangeRepository | None = None,
    keys: KeyDirectory | None = None,
    processed: ProcessedStore | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name="exchange", settings=settings)
    if keys is None:
        mongo_keys = MongoKeyDirectory(runtime.database)
        runtime.on_startup(mongo_keys.ensure_indexes)
        keys = mongo_keys
    if repository is None:
        mongo = MongoExchangeRepository(runtime.database)
        runtime.on_startup(mongo.ensure_indexes)
        for collection in mongo.outbox_collections():
            runtime.add_outbox(collection)
        repository = mongo
    elif isinstance(repository, InMemoryExchangeRepository):
        for source in repository.outbox_sources():
            runtime.add_outbox(source)
    handlers = ExchangeHandlers(repository=repository, events_stored=runtime.relay.wake)
    # One consumer group over the three topics: few subscribers keep start-up quick.
    runtime.consume(
        group=CONSUMER_GROUP,
        topics=[REGISTRATION_EVENTS, ASSESSMENT_EVENTS, EXCHANGE_ACTIVITY],
        handlers={
            MunicipalityRegistered: handlers.remember_municipality,
            **key_event_handlers(keys),
            AssessmentScored: handlers.record_scoring,
            MeasurePlanned: handlers.record_measure_planned,
            MeasureStatusChanged: handlers.record_measure_status,
            ActivityDigest: handlers.record_activity,
        },
        processed=processed,
    )
    app = runtime.http_app(
        title="Weltoffene Kommune: exchange", routers=[build_router(handlers, keys)]
    )
    app.state.handlers = handlers
    return app
