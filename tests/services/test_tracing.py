"""One trace across two services (two FastAPI apps calling each other through httpx, in process), and nothing at all
when tracing is off."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind

from services.common.tracing import UNTRACED_PATHS, Tracing, tracing_from_environment

T = TypeVar("T")
SAMPLED = 0x01  # W3C trace-flags bit

ON = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    "OTEL_TRACES_SAMPLER_ARG": "1",
    "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop-dev",
}


def orders_service(tracing: Tracing | None) -> FastAPI:
    """The callee: reports the trace header it received."""
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: str, request: Request) -> dict[str, str | None]:
        return {"id": order_id, "traceparent": request.headers.get("traceparent")}

    if tracing:
        tracing.instrument_app(app)
    return app


class OtherProcess:
    """Runs an ASGI app in an empty context, as if in another process: only the request's headers carry the trace
    (in process, the caller's current span would otherwise leak to the callee through the context variables)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await asyncio.create_task(self.app(scope, receive, send), context=contextvars.Context())


def gateway_service(tracing: Tracing | None, orders: FastAPI) -> FastAPI:
    """The caller: one request becomes one call to `orders` through an httpx client."""
    app = FastAPI()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=OtherProcess(orders)), base_url="http://orders:8080")
    if tracing:
        tracing.instrument_client(client)

    @app.get("/checkout/{order_id}")
    async def checkout(order_id: str) -> dict[str, str | None]:
        response = await client.get(f"/orders/{order_id}")
        response.raise_for_status()
        return response.json()

    if tracing:
        tracing.instrument_app(app)
    return app


def service_tracing(name: str, exporter: InMemorySpanExporter, environ: dict[str, str]) -> Tracing | None:
    return tracing_from_environment({**environ, "OTEL_SERVICE_NAME": name}, exporter=exporter, set_global=False)


async def call_checkout(environ: dict[str, str], exporter: InMemorySpanExporter) -> dict[str, str | None]:
    orders_tracing = service_tracing("orders", exporter, environ)
    gateway_tracing = service_tracing("gateway", exporter, environ)
    orders = orders_service(orders_tracing)
    gateway = gateway_service(gateway_tracing, orders)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://gateway") as client:
        response = await client.get("/checkout/42")
    for tracing in (orders_tracing, gateway_tracing):
        if tracing:
            tracing.provider.force_flush()
    assert response.status_code == 200
    return response.json()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """A private loop: asyncio.run would leave the main thread without one, which later Pulumi mock runs need."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        loop.close()


def context_of(span: ReadableSpan) -> SpanContext:
    assert span.context is not None
    return span.context


def by_service(spans: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(str(span.resource.attributes["service.name"]), []).append(span)
    return found


def test_one_trace_spans_both_services_through_the_traceparent_header():
    exporter = InMemorySpanExporter()
    body = run(call_checkout(ON, exporter))
    spans = exporter.get_finished_spans()
    services = by_service(spans)
    assert set(services) == {"gateway", "orders"}
    assert len({context_of(span).trace_id for span in spans}) == 1

    gateway_server = next(s for s in services["gateway"] if s.kind is SpanKind.SERVER)
    gateway_client = next(s for s in services["gateway"] if s.kind is SpanKind.CLIENT)
    orders_server = next(s for s in services["orders"] if s.kind is SpanKind.SERVER)
    assert gateway_server.parent is None
    assert gateway_client.parent is not None and gateway_client.parent.span_id == context_of(gateway_server).span_id
    assert orders_server.parent is not None and orders_server.parent.span_id == context_of(gateway_client).span_id
    assert orders_server.parent.is_remote

    # The header the callee received is W3C trace context naming the caller's client span.
    trace_id, span_id = f"{context_of(gateway_client).trace_id:032x}", f"{context_of(gateway_client).span_id:016x}"
    version, sent_trace_id, sent_span_id, flags = str(body["traceparent"]).split("-")
    assert (version, sent_trace_id, sent_span_id) == ("00", trace_id, span_id)
    assert int(flags, 16) & SAMPLED
    assert orders_server.resource.attributes["service.namespace"] == "shop-dev"


def test_nothing_is_traced_exported_or_propagated_when_tracing_is_off():
    exporter = InMemorySpanExporter()
    off = {k: v for k, v in ON.items() if k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    assert service_tracing("orders", exporter, off) is None
    assert service_tracing("orders", exporter, {**off, "OTEL_EXPORTER_OTLP_ENDPOINT": "  "}) is None
    body = run(call_checkout(off, exporter))
    assert body == {"id": "42", "traceparent": None}
    assert exporter.get_finished_spans() == ()


def test_an_unsampled_caller_makes_an_unsampled_callee():
    exporter = InMemorySpanExporter()
    body = run(call_checkout({**ON, "OTEL_TRACES_SAMPLER_ARG": "0"}, exporter))
    assert exporter.get_finished_spans() == ()
    flags = str(body["traceparent"]).split("-")[-1]
    assert not int(flags, 16) & SAMPLED


def test_a_bad_sample_ratio_is_refused_naming_the_variable():
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1, got '2'"):
        tracing_from_environment({**ON, "OTEL_TRACES_SAMPLER_ARG": "2"}, set_global=False)


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, str | None, int]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        self.received.append((self.path, self.headers.get("Content-Type"), length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def collector() -> Iterator[str]:
    _Collector.received = []
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_spans_go_to_the_endpoint_as_otlp_http_protobuf(collector: str):
    tracing = tracing_from_environment({**ON, "OTEL_EXPORTER_OTLP_ENDPOINT": collector}, set_global=False)
    assert tracing is not None
    with tracing.provider.get_tracer("test").start_as_current_span("work"):
        pass
    tracing.shutdown()
    ((path, content_type, length),) = _Collector.received
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    assert length > 0


@pytest.mark.parametrize(
    ("url", "untraced"),
    [
        ("http://10.0.1.5:8080/health", True),
        ("http://10.0.1.5:8080/ready?deep=1", True),
        ("http://orders:8081/orders/already-paid", False),
        ("http://orders:8081/orders/health-report", False),
    ],
)
def test_only_the_probe_paths_go_untraced(url: str, untraced: bool):
    from opentelemetry.util.http import ExcludeList, parse_excluded_urls

    excluded: ExcludeList = parse_excluded_urls(UNTRACED_PATHS)
    assert excluded.url_disabled(url) is untraced
