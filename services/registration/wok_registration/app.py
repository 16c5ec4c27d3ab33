"""Composition root of the registration service."""

from __future__ import annotations

from fastapi import FastAPI

from wok_registration.adapters.repository import (
    InMemoryRegistrationRepository,
    MongoRegistrationRepository,
    RegistrationRepository,
)
from wok_registration.entrypoints.http import build_router
from wok_registration.handlers import RegistrationHandlers
from wok_registration.settings import RegistrationSettings
from wok_runtime.service import ServiceRuntime


def build_app(
    settings: RegistrationSettings,
    *,
    runtime: ServiceRuntime | None = None,
    repository: RegistrationRepository | None = None,
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name="registration", settings=settings)
    if repository is None:
        mongo = MongoRegistrationRepository(runtime.database)
        runtime.on_startup(mongo.ensure_indexes)
        runtime.add_outbox(mongo.municipalities)
        runtime.add_outbox(mongo.dialogue_events)
        repository = mongo
    elif isinstance(repository, InMemoryRegistrationRepository):
        for source in repository.outbox_sources():
            runtime.add_outbox(source)
    handlers = RegistrationHandlers(repository=repository, events_stored=runtime.relay.wake)
    app = runtime.http_app(
        title="Weltoffene Kommune: registration",
        routers=[build_router(handlers, settings)],
    )
    app.state.handlers = handlers
    return app
