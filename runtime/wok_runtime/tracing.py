"""Optional OpenTelemetry tracing: spans for HTTP requests and for every Kafka message.

Off unless `WOK_OTEL_ENABLED=true`; then spans go to the OTLP/HTTP endpoint of
`WOK_OTEL_EXPORTER_OTLP_ENDPOINT` (a collector, Jaeger or Tempo), named after the service.
"""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from wok_runtime.settings import WokSettings


def tracer_provider(settings: WokSettings, *, service: str) -> TracerProvider | None:
    """The service's tracer provider, or None when tracing is off (nothing is exported)."""
    if not settings.otel_enabled:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": f"wok-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_exporter_otlp_endpoint))
    )
    return provider
