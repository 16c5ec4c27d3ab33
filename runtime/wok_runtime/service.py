"""The composition helper every service uses: lifecycle, consumers, outbox relay, HTTP basics.

Nothing here runs at import time; `ServiceRuntime` connects when `start()` is awaited (the
FastAPI lifespan does that), so tests can build an app and drive it without any server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.asynchronous.collection import AsyncCollection

from wok_contracts import EventData
from wok_contracts.topics import TopicSpec, dead_letter_topic, topic_specs
from wok_runtime.batch import (
    DEFAULT_MAX_RECORDS,
    Admit,
    BatchProcessor,
    BatchSink,
    subscribe_batches,
)
from wok_runtime.consumer import (
    EventProcessor,
    Handler,
    InOrderHandlerSink,
    ProcessedStore,
    ProcessorMetrics,
    RetryPolicy,
)
from wok_runtime.kafka import KafkaPublisher, build_broker, ensure_topics
from wok_runtime.lag import LagMonitor, PartitionLag
from wok_runtime.logging import get_logger
from wok_runtime.metrics import RuntimeMetrics
from wok_runtime.mongo import MongoProcessedStore, mongo_client
from wok_runtime.observe import ObserveRequests
from wok_runtime.outbox import MongoOutboxSource, OutboxRelay, OutboxSource
from wok_runtime.settings import WokSettings
from wok_runtime.tracing import tracer_provider

log = get_logger(__name__)

StartupHook = Callable[[], Awaitable[None]]
BackgroundTask = Callable[[], Coroutine[Any, Any, None]]


class ServiceRuntime:
    def __init__(
        self,
        *,
        name: str,
        settings: WokSettings,
        broker: KafkaBroker | None = None,
        database: Any = None,
        tracing: TracerProvider | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.metrics = RuntimeMetrics(name)
        self.tracing = tracing or tracer_provider(settings, service=name)
        middlewares: list[Any] = [
            KafkaPrometheusMiddleware(registry=self.metrics.registry, app_name=name)
        ]
        if self.tracing is not None:
            middlewares.append(KafkaTelemetryMiddleware(tracer_provider=self.tracing))
        self.broker = broker or build_broker(settings, client_id=name, middlewares=middlewares)
        self.publisher = KafkaPublisher(self.broker, settings, client_id=name)
        self._client: Any = None
        self._database = database
        self.relay = OutboxRelay(
            sources=[],
            publisher=self.publisher,
            poll_interval_s=settings.outbox_poll_interval_s,
            idle_poll_interval_s=settings.outbox_idle_poll_interval_s,
            min_round_interval_s=settings.outbox_min_round_interval_s,
            on_published=self.metrics.published,
        )
        self._startup_hooks: list[StartupHook] = []
        self._background: list[tuple[str, BackgroundTask]] = []
        self._consumers: list[str] = []
        self._consumed_topics: dict[str, tuple[str, ...]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    @property
    def database(self) -> Any:
        """This service's own database (created lazily; no I/O until first used)."""
        if self._database is None:
            self._client = mongo_client(
                self.settings.mongodb_uri, listeners=[self.metrics.mongo_commands]
            )
            self._database = self._client[f"wok_{self.name}"]
        return self._database

    def on_startup(self, hook: StartupHook) -> None:
        self._startup_hooks.append(hook)

    def run_while_started(self, task: BackgroundTask, *, name: str) -> None:
        """A long-running task started after the broker is connected, cancelled before it stops."""
        self._background.append((name, task))

    def run_every(
        self, task: Callable[[], Awaitable[object]], *, interval_s: float, name: str
    ) -> None:
        """`task` at start and then every `interval_s` while the service runs; a failed round
        is logged and the next one comes as planned (the work's state is in the database)."""

        async def repeat() -> None:
            while True:
                try:
                    await task()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    log.warning("periodic task failed; retrying", task=name, error=repr(error))
                await asyncio.sleep(interval_s)

        self.run_while_started(repeat, name=name)

    def add_outbox(self, source: OutboxSource | Any) -> None:
        """Relay the pending events of a MongoDB collection (or any `OutboxSource`)."""
        if isinstance(source, AsyncCollection):
            source = MongoOutboxSource(source)
        if isinstance(source, MongoOutboxSource):
            self.on_startup(source.ensure_indexes)
        self.relay.add_source(source)

    def consume(
        self,
        *,
        group: str,
        topics: Sequence[str],
        handlers: Mapping[type[EventData], Handler],
        processed: ProcessedStore | None = None,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> EventProcessor:
        """Register one consumer-group member; see `wok_runtime.consumer` for the guarantees.

        It takes the records in batches (`wok_runtime.batch`) and runs the handlers one event
        at a time in the batch's order (`InOrderHandlerSink`): the guarantees of a message at
        a time, with one offset commit and two processed-store round trips per batch."""
        if processed is None:
            store = MongoProcessedStore(self.database)
            self.on_startup(store.ensure_indexes)
            processed = store
        processor = self.event_processor(group=group, handlers=handlers, processed=processed)
        self.consume_batches(
            group=group,
            topics=topics,
            sink=InOrderHandlerSink(processor),
            event_types=processor.event_types,
            max_records=max_records,
        )
        return processor

    def event_processor(
        self,
        *,
        group: str,
        handlers: Mapping[type[EventData], Handler],
        processed: ProcessedStore,
    ) -> EventProcessor:
        """A processor with this runtime's retries, dead letters and metrics, for `consume`
        or a batch sink that handles events one by one (e.g. side by side per key)."""
        return EventProcessor(
            consumer=group,
            handlers=handlers,
            processed=processed,
            dead_letters=self.publisher,
            dead_letter_topic=dead_letter_topic(group),
            retry=self._retry_policy(),
            metrics=self._processor_metrics(group),
        )

    def _retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.settings.consumer_max_attempts,
            initial_backoff_s=self.settings.consumer_backoff_initial_s,
            max_backoff_s=self.settings.consumer_backoff_max_s,
        )

    def _processor_metrics(self, group: str) -> ProcessorMetrics:
        return ProcessorMetrics(
            on_outcome=lambda event_type, outcome: self.metrics.event_outcome(
                group, event_type, outcome
            ),
            on_outcomes=lambda event_type, outcome, n: self.metrics.event_outcome(
                group, event_type, outcome, n
            ),
        )

    def consume_batches(
        self,
        *,
        group: str,
        topics: Sequence[str],
        sink: BatchSink,
        event_types: Collection[str],
        max_records: int = DEFAULT_MAX_RECORDS,
        admit: Admit | None = None,
    ) -> BatchProcessor:
        """Register one consumer-group member taking batches; see `wok_runtime.batch`.
        `admit`: the consumer's own admission of each record instead of the common one."""
        processor = BatchProcessor(
            consumer=group,
            sink=sink,
            event_types=event_types,
            dead_letters=self.publisher,
            dead_letter_topic=dead_letter_topic(group),
            retry=self._retry_policy(),
            metrics=self._processor_metrics(group),
            admit=admit,
        )
        subscribe_batches(
            self.broker, processor, topics=topics, settings=self.settings, max_records=max_records
        )
        self._consumers.append(group)
        if hasattr(self, "_consumed_topics"):  # consumer lag, where the runtime measures it
            self._consumed_topics[group] = tuple(topics)
        return processor

    def topic_specs(self) -> list[TopicSpec]:
        return topic_specs(tuple(self._consumers), partitions=self.settings.topic_partitions)

    async def start(self) -> None:
        await self._with_retry(
            "kafka topics", lambda: ensure_topics(self.settings, self.topic_specs())
        )
        for hook in self._startup_hooks:
            await self._with_retry("startup", hook)
        await self.broker.start()
        await self._with_retry("outbox relay producer", self.publisher.start)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-outbox-relay"))
        for name, task in self._background:
            self._tasks.append(asyncio.create_task(task(), name=f"{self.name}-{name}"))
        if self._consumed_topics:
            monitor = LagMonitor(
                self.settings,
                groups=self._consumed_topics,
                record=self._record_lag,
                interval_s=self.settings.consumer_lag_interval_s,
            )
            self._tasks.append(asyncio.create_task(monitor.run(), name=f"{self.name}-lag"))
        self._started = True
        log.info("service started", consumers=self._consumers)

    async def stop(self) -> None:
        self._started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.publisher.stop()
        await self.broker.stop()
        if self._client is not None:
            await self._client.close()
        if self.tracing is not None:
            self.tracing.force_flush()
        log.info("service stopped")

    def _record_lag(self, lag: PartitionLag) -> None:
        self.metrics.lag(lag.consumer, lag.topic, lag.partition, lag.messages)

    async def _with_retry(self, what: str, operation: Callable[[], Awaitable[Any]]) -> None:
        for attempt in range(1, 31):
            try:
                await operation()
                return
            except Exception as error:
                if attempt == 30:
                    raise
                log.warning("start-up step failed; retrying", step=what, error=repr(error))
                await asyncio.sleep(min(2.0, 0.2 * attempt))

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {"started": "ok" if self._started else "starting"}
        try:
            await asyncio.wait_for(self.database.command("ping"), timeout=2)
            checks["mongodb"] = "ok"
        except Exception as error:
            checks["mongodb"] = f"unavailable: {type(error).__name__}"
        try:
            checks["kafka"] = (
                "ok" if await asyncio.wait_for(self.broker.ping(2), 3) else "unavailable"
            )
        except Exception as error:
            checks["kafka"] = f"unavailable: {type(error).__name__}"
        return checks

    def http_app(
        self, *, title: str, routers: Sequence[APIRouter] = (), version: str = "0.1.0"
    ) -> FastAPI:
        """A FastAPI app with the lifespan, health, readiness, metrics and correlation ids."""

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.stop()

        app = FastAPI(title=title, version=version, lifespan=lifespan)
        app.state.runtime = self
        if self.tracing is not None:
            FastAPIInstrumentor.instrument_app(
                app, tracer_provider=self.tracing, excluded_urls="healthz,readyz,metrics"
            )

        app.add_middleware(ObserveRequests, metrics=self.metrics)

        @app.get("/healthz", tags=["operations"])
        async def healthz() -> dict[str, str]:
            return {"status": "ok", "service": self.name}

        @app.get(
            "/readyz",
            tags=["operations"],
            responses={503: {"description": "MongoDB or Kafka not reachable, or still starting"}},
        )
        async def readyz() -> JSONResponse:
            checks = await self.readiness()
            ready = all(value == "ok" for value in checks.values())
            return JSONResponse(
                {"status": "ready" if ready else "not ready", "checks": checks},
                status_code=200 if ready else 503,
            )

        @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
        async def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        for router in routers:
            app.include_router(router)
        return app


def serve(app: FastAPI, *, host: str, port: int) -> None:
    """Run one service process (logging is already configured; uvicorn keeps its hands off)."""
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
