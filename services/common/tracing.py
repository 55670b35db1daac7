"""Distributed tracing with OpenTelemetry, on only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

In ECS the platform sets it (components/tracing.py) to the ADOT collector sidecar on the task's loopback, with the
standard OpenTelemetry variables: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`,
`OTEL_PROPAGATORS` (W3C `traceparent`). Without it nothing is set up: no provider, no exporter, no patched client,
and calls to other services carry no trace headers.

    tracing = tracing_from_environment()
    app = FastAPI(...)
    if tracing:
        tracing.instrument_app(app)          # a server span per request, continuing the caller's trace
        tracing.instrument_client(client)    # httpx calls to other services carry `traceparent`
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio, Sampler

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
# Health checks run every few seconds on every task: tracing them would only cost. The instrumentation searches
# each full URL with these regexes (comma-separated), so they are anchored: `/orders/already-paid` stays traced.
UNTRACED_PATHS = r"^https?://[^/]+/(health|healthz|ready)/?(\?.*)?$"
DEFAULT_SAMPLE_RATIO = 0.05


@dataclass(frozen=True)
class Tracing:
    """A service's tracer provider and the instrumentation that uses it."""

    provider: TracerProvider

    def instrument_app(self, app: FastAPI) -> None:
        FastAPIInstrumentor.instrument_app(app, tracer_provider=self.provider, excluded_urls=UNTRACED_PATHS)

    def instrument_client(self, client: httpx.Client | httpx.AsyncClient) -> None:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)

    def instrument_psycopg(self) -> None:
        """Spans for every PostgreSQL statement (process-wide: psycopg's connect is patched once)."""
        PsycopgInstrumentor().instrument(tracer_provider=self.provider, skip_dep_check=True)

    def shutdown(self) -> None:
        """Export what is still batched; call at process exit."""
        self.provider.shutdown()


def tracing_from_environment(
    environ: Mapping[str, str] | None = None,
    *,
    exporter: SpanExporter | None = None,
    set_global: bool = True,
) -> Tracing | None:
    """Tracing as the environment asks, or None when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset or empty.

    `exporter` replaces the OTLP exporter (tests); `set_global` makes the provider the process's default (one per
    process: False lets a test run several services in one process)."""
    environ = os.environ if environ is None else environ
    endpoint = environ.get(ENDPOINT_VARIABLE, "").strip()
    if not endpoint:
        return None
    provider = TracerProvider(resource=_resource(environ), sampler=_sampler(environ))
    provider.add_span_processor(BatchSpanProcessor(exporter or OTLPSpanExporter(endpoint=_traces_url(endpoint))))
    if set_global:
        trace.set_tracer_provider(provider)
    return Tracing(provider)


def _resource(environ: Mapping[str, str]) -> Resource:
    """`OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` from `environ` (the SDK itself reads os.environ)."""
    attributes: dict[str, str] = {}
    for pair in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() and value.strip():
            attributes[key.strip()] = value.strip()
    if environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = environ["OTEL_SERVICE_NAME"]
    return Resource.create(attributes)


def _sampler(environ: Mapping[str, str]) -> Sampler:
    """Always parent-based ratio sampling (`OTEL_TRACES_SAMPLER` is not read): a call that arrives in a sampled trace is always recorded, so a trace is whole
    across services; new traces are recorded at `OTEL_TRACES_SAMPLER_ARG`."""
    raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else DEFAULT_SAMPLE_RATIO
    except ValueError as error:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1, got {raw!r}") from error
    if not 0 <= ratio <= 1:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1, got {raw!r}")
    return ParentBasedTraceIdRatio(ratio)


def _traces_url(endpoint: str) -> str:
    """OTLP/HTTP: the base endpoint variable means `<endpoint>/v1/traces` (OpenTelemetry exporter spec)."""
    return endpoint.rstrip("/") + "/v1/traces"
