"""Metrics and traces a service gives its operator, without a broker (FastStream's test broker).

The twin on real Kafka is tests/e2e/test_observability.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import structlog
from aiokafka import TopicPartition
from fastapi import APIRouter
from faststream.kafka import TestKafkaBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from wok_contracts import Envelope, MunicipalityKind, MunicipalityRegistered, new_envelope
from wok_runtime.consumer import InMemoryProcessedStore
from wok_runtime.lag import lag_of
from wok_runtime.logging import configure_logging, current_correlation_id, get_logger
from wok_runtime.outbox import PendingMessage
from wok_runtime.service import ServiceRuntime
from wok_runtime.settings import WokSettings

TOPIC = "registration.events.v1"


def registered() -> Envelope[MunicipalityRegistered]:
    return new_envelope(
        MunicipalityRegistered(
            ags="07312000", name="Kaiserslautern", kind=MunicipalityKind.CITY, land="07"
        ),
        source="registration",
        municipality="07312000",
    )


def test_lag_counts_the_messages_after_the_committed_offset() -> None:
    zero, one, two = (TopicPartition("t", n) for n in range(3))
    lags = lag_of(
        end={zero: 10, one: 5, two: 7},
        committed={zero: 4, one: 5},  # partition two: the group never committed
        beginning={zero: 0, one: 0, two: 3},
    )
    assert lags == {zero: 6, one: 0, two: 4}


def test_domain_counters_count_the_published_events_by_kind() -> None:
    runtime = ServiceRuntime(name="registration", settings=WokSettings())

    def message(event_type: str) -> PendingMessage:
        return PendingMessage(
            document_id="d",
            event_id="e",
            topic=TOPIC,
            key="k",
            value=b"{}",
            correlation_id="",
            order=0,
            event_type=event_type,
        )

    for _ in range(3):
        runtime.metrics.published(message("registration.participant.registered.v1"))
    runtime.metrics.published(message("notification.message.failed.v1"))
    runtime.metrics.published(message("registration.municipality.registered.v1"))
    registry = runtime.metrics.registry

    assert registry.get_sample_value("wok_registrations_total", {"service": "registration"}) == 3
    assert registry.get_sample_value("wok_emails_failed_total", {"service": "registration"}) == 1
    assert registry.get_sample_value("wok_emails_sent_total", {"service": "registration"}) == 0
    assert (
        registry.get_sample_value(
            "wok_outbox_published_total", {"service": "registration", "topic": TOPIC}
        )
        == 5
    )


async def test_consumed_messages_are_counted_and_traced_and_http_requests_traced() -> None:
    exporter = InMemorySpanExporter()
    tracing = TracerProvider()
    tracing.add_span_processor(SimpleSpanProcessor(exporter))
    runtime = ServiceRuntime(
        name="assessment", settings=WokSettings(otel_enabled=True), tracing=tracing
    )
    seen: list[str] = []

    async def on_registered(envelope: Envelope[MunicipalityRegistered]) -> None:
        seen.append(envelope.data.ags)

    runtime.consume(
        group="assessment",
        topics=[TOPIC],
        handlers={MunicipalityRegistered: on_registered},
        processed=InMemoryProcessedStore(),
    )
    router = APIRouter()

    @router.get("/v1/ping")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app = runtime.http_app(title="probe", routers=[router])

    async with TestKafkaBroker(runtime.broker) as broker:
        await broker.publish(registered().to_json_bytes(), topic=TOPIC, key=b"07312000")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            assert (await client.get("/v1/ping")).status_code == 200
            assert (await client.get("/healthz")).status_code == 200

    assert seen == ["07312000"]
    exposition = generate_latest(runtime.metrics.registry).decode()
    assert 'faststream_received_messages_total{app_name="assessment"' in exposition
    spans = exporter.get_finished_spans()
    messaging = [s for s in spans if (s.attributes or {}).get("messaging.system") == "kafka"]
    assert any(
        (s.attributes or {}).get("messaging.destination.name") == TOPIC for s in messaging
    ), [s.attributes for s in spans]
    http = [s for s in spans if (s.attributes or {}).get("http.route") == "/v1/ping"]
    assert http, [s.name for s in spans]
    # probes are not traced
    assert not [s for s in spans if (s.attributes or {}).get("http.route") == "/healthz"]


def test_tracing_is_off_unless_enabled() -> None:
    runtime = ServiceRuntime(name="reporting", settings=WokSettings())
    assert runtime.tracing is None


async def test_each_request_carries_its_correlation_id_and_is_counted_by_route_and_status() -> None:
    runtime = ServiceRuntime(name="registration", settings=WokSettings())
    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str | None]:
        if thing_id == "broken":
            raise RuntimeError("a bug")
        return {"correlation_id": current_correlation_id()}

    app = runtime.http_app(title="probe", routers=[router])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        given = await client.get("/v1/things/1", headers={"X-Correlation-ID": "c-42"})
        made = await client.get("/v1/things/2")
        broken = await client.get("/v1/things/broken")
        assert (await client.get("/healthz")).status_code == 200

    # the caller's id reaches the handler (its log lines and events) and comes back
    assert given.headers["x-correlation-id"] == "c-42"
    assert given.json() == {"correlation_id": "c-42"}
    # without one, the request gets its own
    assert made.headers["x-correlation-id"] == made.json()["correlation_id"] != "c-42"
    assert broken.status_code == 500
    exposition = generate_latest(runtime.metrics.registry).decode()
    for status, count in (("200", 2), ("500", 1)):
        assert any(
            'route="/v1/things/{thing_id}"' in line
            and f'status="{status}"' in line
            and line.endswith(f" {count}.0")
            for line in exposition.splitlines()
            if line.startswith("wok_http_requests_total")
        ), exposition


async def test_a_periodic_task_runs_at_start_and_goes_on_after_a_failed_round() -> None:
    runtime = ServiceRuntime(name="registration", settings=WokSettings())
    rounds: list[int] = []

    async def work() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise ConnectionError("the database is away")

    runtime.run_every(work, interval_s=0.01, name="probe")
    [(name, repeat)] = runtime._background
    task = asyncio.create_task(repeat())
    try:
        for _ in range(200):
            if len(rounds) >= 4:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert name == "probe" and len(rounds) >= 4  # the failed second round stopped nothing


@pytest.fixture
def service_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The JSON lines a service process writes (`configure_logging` as in __main__), caught
    in a buffer; the test session's logging is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    config = structlog.get_config()
    stderr = io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    configure_logging(service="registration")
    try:
        yield stderr
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**config)
        structlog.contextvars.clear_contextvars()


def _probe_app() -> tuple[ServiceRuntime, object]:
    runtime = ServiceRuntime(name="registration", settings=WokSettings())
    router = APIRouter()

    @router.post("/v1/events/{event_id}/things")
    async def thing(event_id: str) -> dict[str, str]:
        get_logger("probe").info("thing made", event_id=event_id)
        return {"made": event_id}

    return runtime, runtime.http_app(title="probe", routers=[router])


async def test_each_request_leaves_one_access_line_in_the_services_json_log(
    service_log: io.StringIO,
) -> None:
    _, app = _probe_app()
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        made = await client.post("/v1/events/e-7/things", headers={"X-Correlation-ID": "c-7"})
        missing = await client.get("/v1/nothing/here")
        assert (await client.get("/healthz")).status_code == 200

    lines = [json.loads(line) for line in service_log.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "http request"]
    assert [(a["method"], a["route"], a["status"]) for a in access] == [
        ("POST", "/v1/events/{event_id}/things", 200),  # the route, never the path's ids
        ("GET", "unmatched", 404),
    ], "one line per request; the probes are not logged"
    assert [a["correlation_id"] for a in access] == [
        made.headers["x-correlation-id"],
        missing.headers["x-correlation-id"],
    ]
    assert access[0]["correlation_id"] == "c-7"
    for line in access:
        assert (line["service"], line["level"], line["logger"]) == (
            "registration",
            "info",
            "wok_runtime.service",
        )
        assert isinstance(line["ms"], float) and line["ms"] >= 0
        assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo
    # the same form as every other line the structlog pipeline writes
    [handler_line] = [line for line in lines if line["event"] == "thing made"]
    assert handler_line["correlation_id"] == "c-7"
    assert set(access[0]) - {"method", "route", "status", "ms"} == set(handler_line) - {"event_id"}


def test_a_batchs_outcomes_reach_metrics_with_their_counts() -> None:
    """A batch counts its outcomes once per type and outcome (`count(..., n)`): /metrics
    shows every event all the same, dead letters in their own counter too."""
    runtime = ServiceRuntime(name="reporting", settings=WokSettings())
    metrics = runtime._processor_metrics("reporting")

    metrics.count("wok.registration.participant.registered.v1", "processed", 3)
    metrics.count("undecodable", "dead_lettered", 2)
    metrics.count("wok.registration.participant.registered.v1", "processed", 1)

    exposed = generate_latest(runtime.metrics.registry).decode()
    assert (
        'wok_events_consumed_total{consumer="reporting",outcome="processed",service="reporting",'
        'type="wok.registration.participant.registered.v1"} 4.0'
    ) in exposed
    assert 'wok_dead_letters_total{consumer="reporting",service="reporting"} 2.0' in exposed
