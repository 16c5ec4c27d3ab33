"""Composition root of the notification service."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI

from wok_contracts.topics import ASSESSMENT_EVENTS, REGISTRATION_EVENTS
from wok_notification import domain
from wok_notification.adapters.contacts import (
    AccessDirectory,
    ContactDirectory,
    HttpAccessDirectory,
    HttpContactDirectory,
    HttpOfficeDirectory,
    HttpTaskforceDirectory,
    OfficeDirectory,
    TaskforceDirectory,
)
from wok_notification.adapters.mail import MailSender, SmtpConfig, SmtpMailSender
from wok_notification.adapters.repository import (
    InMemoryNotificationRepository,
    MongoNotificationRepository,
    NotificationRepository,
)
from wok_notification.entrypoints.consumers import CONSUMER_GROUP, event_handlers, ordering
from wok_notification.entrypoints.http import build_router
from wok_notification.handlers import NotificationHandlers
from wok_notification.rendering import MailRenderer
from wok_notification.settings import NotificationSettings
from wok_runtime.batch import KeyedHandlerSink
from wok_runtime.consumer import ProcessedStore
from wok_runtime.mongo import MongoProcessedStore
from wok_runtime.outbox import MongoOutboxSource
from wok_runtime.service import ServiceRuntime


def smtp_sender(settings: NotificationSettings) -> SmtpMailSender:
    return SmtpMailSender(
        SmtpConfig(
            host=settings.smtp_host,
            port=settings.smtp_port,
            starttls=settings.smtp_starttls,
            use_tls=settings.smtp_use_tls,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout_s=settings.smtp_timeout_s,
        ),
        connections=settings.smtp_connections,
    )


async def _close_on_stop(closers: list[Callable[[], Awaitable[None]]]) -> None:
    """Until the service stops; then close the kept SMTP and HTTP connections."""
    try:
        await asyncio.Event().wait()
    finally:
        for close in closers:
            with contextlib.suppress(Exception):
                await close()


def build_app(
    settings: NotificationSettings,
    *,
    runtime: ServiceRuntime | None = None,
    repository: NotificationRepository | None = None,
    sender: MailSender | None = None,
    contacts: ContactDirectory | None = None,
    access: AccessDirectory | None = None,
    taskforce: TaskforceDirectory | None = None,
    offices: OfficeDirectory | None = None,
    processed: ProcessedStore | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    runtime = runtime or ServiceRuntime(name="notification", settings=settings)
    if repository is None:
        mongo = MongoNotificationRepository(runtime.database)
        runtime.on_startup(mongo.ensure_indexes)
        runtime.add_outbox(MongoOutboxSource(mongo.deliveries))
        repository = mongo
    elif isinstance(repository, InMemoryNotificationRepository):
        for source in repository.outbox_sources():
            runtime.add_outbox(source)
    registration: dict[str, Any] = {
        "base_url": settings.registration_url,
        "service_key": settings.service_key.get_secret_value(),
        "timeout_s": settings.registration_timeout_s,
    }
    contacts = contacts or HttpContactDirectory(**registration)
    access = access or HttpAccessDirectory(**registration)
    taskforce = taskforce or HttpTaskforceDirectory(**registration)
    offices = offices or HttpOfficeDirectory(**registration)
    sender = sender or smtp_sender(settings)
    handlers = NotificationHandlers(
        repository=repository,
        contacts=contacts,
        access=access,
        taskforce=taskforce,
        offices=offices,
        assessment_url=settings.assessment_url,
        report_link_key=settings.service_key.get_secret_value(),
        report_link_valid=timedelta(days=settings.report_link_valid_days),
        digest_window=timedelta(seconds=settings.digest_window_s),
        taskforce_reminder_before=timedelta(seconds=settings.taskforce_reminder_before_s),
        sender=sender,
        renderer=MailRenderer(settings.template_dirs()),
        schedule_times=domain.ScheduleTimes(
            access_before=timedelta(seconds=settings.access_release_before_s),
            reminder_before=timedelta(seconds=settings.reminder_before_s),
        ),
        give_up=domain.GiveUpPolicy(
            min_attempts=settings.smtp_give_up_attempts,
            after=timedelta(seconds=settings.smtp_give_up_after_s),
        ),
        mail_from=settings.mail_from,
        public_base_url=settings.public_base_url,
        lease=timedelta(seconds=settings.delivery_lease_s),
        events_stored=runtime.relay.wake,
        clock=clock,
    )
    if processed is None:
        store = MongoProcessedStore(runtime.database)
        runtime.on_startup(store.ensure_indexes)
        processed = store
    handler_map = event_handlers(handlers)
    # Messages one at a time would leave every other person waiting for one person's mail:
    # batches are taken, different dialogue events and people handled side by side, and the
    # batch committed when all of it is done.
    processor = runtime.event_processor(
        group=CONSUMER_GROUP, handlers=handler_map, processed=processed
    )
    runtime.consume_batches(
        group=CONSUMER_GROUP,
        topics=[REGISTRATION_EVENTS, ASSESSMENT_EVENTS],
        sink=KeyedHandlerSink(
            processor=processor,
            ordering=ordering,
            concurrency=settings.notification_concurrency,
            on_reassigned=repository.forget_cached,
        ),
        event_types=processor.event_types,
        max_records=settings.notification_batch_records,
    )
    runtime.run_every(
        handlers.scheduler_round, interval_s=settings.scheduler_interval_s, name="scheduled-mail"
    )
    closers = [
        close
        for part in (sender, contacts, access, taskforce, offices)
        if (close := getattr(part, "close", None)) is not None
    ]
    runtime.run_while_started(lambda: _close_on_stop(closers), name="connections")
    app = runtime.http_app(
        title="Weltoffene Kommune: notification", routers=[build_router(handlers, settings)]
    )
    app.state.handlers = handlers
    return app
