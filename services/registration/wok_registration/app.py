"""Composition root of the registration service."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from wok_contracts.events.registration import REGISTRATION_COMMANDS
from wok_registration import domain
from wok_registration.adapters.repository import (
    InMemoryRegistrationRepository,
    MongoRegistrationRepository,
    RegistrationRepository,
)
from wok_registration.entrypoints.commands import COMMAND_GROUP, CommandProcessor, command_topics
from wok_registration.entrypoints.http import build_router, install_error_handlers
from wok_registration.entrypoints.limits import RequestLimits
from wok_registration.handlers import RegistrationHandlers
from wok_registration.settings import RegistrationSettings
from wok_runtime.consumer import (
    InMemoryProcessedStore,
    InOrderHandlerSink,
    ProcessedStore,
    RetryPolicy,
)
from wok_runtime.kafka import ensure_topics
from wok_runtime.mongo import MongoProcessedStore
from wok_runtime.outbox import MongoOutboxSource, OutboxWriter
from wok_runtime.service import ServiceRuntime

CONTACT_RECOVERY_INTERVAL_S = 60.0
"""How often contacts of interrupted registrations are looked for (and at every start)."""


def _nothing() -> None:
    """A place write hands its events to the outbox relay itself: no wake-up needed."""


def build_handlers(
    settings: RegistrationSettings, *, repository: RegistrationRepository, runtime: ServiceRuntime
) -> RegistrationHandlers:
    places_stored = None
    if isinstance(repository, MongoRegistrationRepository) and repository.outbox:
        places_stored = _nothing  # the place write handed its events to the relay itself
    return RegistrationHandlers(
        repository=repository,
        events_stored=runtime.relay.wake,
        places_stored=places_stored,
        link_secret=domain.link_secret(
            configured=settings.registration_link_secret.get_secret_value(),
            service_key=settings.service_key.get_secret_value(),
        ),
        public_url=settings.public_url(),
        erasure_link_ttl=timedelta(days=settings.erasure_link_ttl_days),
        online_link_release=timedelta(hours=settings.online_link_release_hours),
    )


def consume_commands(
    runtime: ServiceRuntime,
    handlers: RegistrationHandlers,
    settings: RegistrationSettings,
    *,
    processed: ProcessedStore,
) -> CommandProcessor:
    """Municipal systems' commands from `registration.commands.v1` (see entrypoints.commands)."""
    processor = CommandProcessor(
        handlers=handlers,
        processed=processed,
        publisher=runtime.publisher,
        retry=RetryPolicy(
            max_attempts=settings.consumer_max_attempts,
            initial_backoff_s=settings.consumer_backoff_initial_s,
            max_backoff_s=settings.consumer_backoff_max_s,
        ),
    )

    async def provision() -> None:
        await ensure_topics(settings, command_topics(settings.topic_partitions))

    runtime.on_startup(provision)
    # In batches, like every consumer: one offset commit and two processed-store round trips
    # per batch, the commands carried out one at a time in order.
    runtime.consume_batches(
        group=COMMAND_GROUP,
        topics=[REGISTRATION_COMMANDS],
        sink=InOrderHandlerSink(processor),
        event_types=processor.event_types,
        admit=processor.admit,
    )
    return processor


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
        runtime.add_outbox(mongo.taskforce)
        events = MongoOutboxSource(mongo.dialogue_events)
        runtime.add_outbox(events)
        # A place write hands its events to the relay and removes the published ones: no
        # read and fewer writes of the (big) dialogue event documents.
        mongo.outbox = OutboxWriter(runtime.relay, events)
        repository = mongo
    elif isinstance(repository, InMemoryRegistrationRepository):
        for source in repository.outbox_sources():
            runtime.add_outbox(source)
    handlers = build_handlers(settings, repository=repository, runtime=runtime)
    processed: ProcessedStore
    if isinstance(repository, MongoRegistrationRepository):
        store = MongoProcessedStore(runtime.database)
        runtime.on_startup(store.ensure_indexes)
        processed = store
    else:
        processed = InMemoryProcessedStore()
    app_commands = consume_commands(runtime, handlers, settings, processed=processed)
    runtime.run_every(
        handlers.keep_contacts_of_taken_places,
        interval_s=CONTACT_RECOVERY_INTERVAL_S,
        name="contact-recovery",
    )
    app = runtime.http_app(
        title="Weltoffene Kommune: registration",
        routers=[build_router(handlers, settings)],
    )
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes)
    app.state.handlers = handlers
    app.state.commands = app_commands
    install_error_handlers(app)
    return app
