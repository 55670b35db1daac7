"""The FastAPI application every shop service is built from, and the uvicorn runner its `__main__` calls.

    app = create_service_app(
        settings,
        title="orders",
        routers=[routes.router],
        migrations_dir=Path(__file__).parent / "migrations",
        shared_migrations=[IDEMPOTENCY_MIGRATION],
        lifespan_hooks=[token_verification, start_outbox_relay],
    )
    run(app, settings)

What every service gets:
- `/health`: liveness, answers while the process serves, touches no dependency (a database outage must not make
  ECS kill every task); `/ready`: the pool answers `SELECT 1` and every readiness check passes, else 503 naming
  what failed. Readiness never includes other services: their outage degrades a feature, it does not take this
  service out of rotation.
- Start-up: migrations (as the service's role, under the schema's advisory lock), then the pool (DB_POOL_MIN
  connections made), then the lifespan hooks in order; shutdown in reverse.
- Errors: `{"error": <code>, "detail": <text>}` for every status (validation keeps FastAPI's 422 `detail` list),
  a database outage is a 503 with Retry-After, an unhandled error a 500 with the trace id to search the logs for.
- W3C trace context on every request and every log line (services.shop.common.observability), a request body
  limit (MAX_REQUEST_BODY_BYTES) and, with OTEL_EXPORTER_OTLP_ENDPOINT set, exported spans.

Responses: declare a return type or `response_model` on routes; FastAPI then serializes with pydantic straight to
JSON bytes (its ORJSONResponse is deprecated in favour of that). Error bodies are rendered with orjson.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

import orjson
import psycopg
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.tracing import Tracing, tracing_from_environment
from services.shop.common.database import ServicePool, SharedMigration, apply_service_migrations, open_service_pool
from services.shop.common.observability import TraceContextMiddleware, configure_service_logging, current_trace
from services.shop.common.settings import ShopSettings

log = logging.getLogger(__name__)

# Raises (any exception) when the dependency is not usable; its message goes into /ready's 503 body.
ReadinessCheck = Callable[[], Awaitable[None]]

# Behind the load balancer and Service Connect's Envoy (idle timeouts of 60 s): keep connections open longer than
# they do, so they, not we, close idle ones and a request never races our close.
KEEP_ALIVE_SECONDS = 65


@dataclass
class ServiceRuntime:
    """What a running service holds; `app.state.runtime`, and the argument of every lifespan hook.

    Hooks may put what they start into `resources` (a Redis client, an HTTP client) and register readiness
    checks for it in `readiness`."""

    app: FastAPI
    settings: ShopSettings
    pool: ServicePool
    tracing: Tracing | None
    readiness: dict[str, ReadinessCheck] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)


# Entered after the pool opens, in order; exited before it closes, in reverse (background tasks, clients).
LifespanHook = Callable[[ServiceRuntime], AbstractAsyncContextManager[None]]


class ServiceError(Exception):
    """An error with a status and a stable code, rendered as `{"error": code, "detail": detail}`."""

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


class BodyTooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")


class OrjsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return OrjsonResponse({"error": code, "detail": detail}, status_code=status, headers=dict(headers or {}))


def error_code(status: int) -> str:
    """`not_found` for 404: the status phrase in snake case."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return f"http_{status}"


# Dependencies are `async def`: FastAPI runs a plain `def` one in its thread pool, a thread hand-off per request
# (8 % of orders' CPU under the load benchmark, and a wait for a free core when the machine is busy).
async def runtime_of(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


async def pool_of(request: Request) -> ServicePool:
    return request.app.state.runtime.pool


Runtime = Annotated[ServiceRuntime, Depends(runtime_of)]
Pool = Annotated[ServicePool, Depends(pool_of)]


def create_service_app(
    settings: ShopSettings,
    *,
    title: str | None = None,
    version: str = "1.0.0",
    description: str = "",
    routers: Iterable[APIRouter] = (),
    migrations_dir: Path | None = None,
    shared_migrations: Sequence[SharedMigration] = (),
    lifespan_hooks: Sequence[LifespanHook] = (),
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """The service's app; logging is configured here, so build the app before anything logs."""
    configure_service_logging(settings.SERVICE_NAME, settings.LOG_LEVEL)
    tracing = tracing_from_environment()  # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = FastAPI(
        title=title or settings.SERVICE_NAME,
        version=version,
        description=description,
        lifespan=_lifespan(
            settings,
            tracing,
            _migrator(settings, migrations_dir, shared_migrations),
            lifespan_hooks,
            dict(readiness_checks or {}),
        ),
    )
    app.include_router(_health_router())
    for router in routers:
        app.include_router(router)
    _add_error_handlers(app)
    # add_middleware puts each one outside the previous: the trace context wraps everything, errors included.
    app.add_middleware(BodyLimitMiddleware, limit=settings.MAX_REQUEST_BODY_BYTES)
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(TraceContextMiddleware, opentelemetry=tracing is not None)
    if tracing:
        tracing.instrument_app(app)
        tracing.instrument_psycopg()
    return app


def _migrator(
    settings: ShopSettings, migrations_dir: Path | None, shared: Sequence[SharedMigration]
) -> Callable[[], object] | None:
    if migrations_dir is None and not shared:
        return None
    return functools.partial(apply_service_migrations, settings, migrations_dir, shared=shared)


def _lifespan(
    settings: ShopSettings,
    tracing: Tracing | None,
    migrate: Callable[[], object] | None,
    hooks: Sequence[LifespanHook],
    readiness: dict[str, ReadinessCheck],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate is not None:
            await asyncio.to_thread(migrate)  # blocking psycopg, and before the pool: a failed migration stops here
        async with AsyncExitStack() as stack:
            if tracing:
                stack.callback(tracing.shutdown)  # last: export the spans of everything that closes before it
            pool = await open_service_pool(settings)
            stack.push_async_callback(pool.close)
            runtime = ServiceRuntime(app, settings, pool, tracing, readiness=dict(readiness))
            app.state.runtime = runtime
            for hook in hooks:
                await stack.enter_async_context(hook(runtime))
            # What was allocated so far lives as long as the process: keep it out of the collector's full passes.
            gc.collect()
            gc.freeze()
            log.info("service started", extra={"app_env": settings.APP_ENV, "port": settings.PORT})
            yield
            log.info("service stopping")

    return lifespan


def _health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process serves requests. Checks no dependency."""
        return {"status": "ok"}

    @router.get("/ready", responses={503: {"description": "a dependency is not usable; the body names it"}})
    async def ready(runtime: Runtime) -> JSONResponse:
        """Readiness: the database answers and every registered check passes."""
        checks: dict[str, ReadinessCheck] = {"database": _pool_check(runtime.pool), **runtime.readiness}
        results = await asyncio.gather(
            *(_run_check(check, runtime.settings.READY_TIMEOUT_SECONDS) for check in checks.values())
        )
        report = dict(zip(checks, results, strict=True))
        failed = [f"{name} ({result})" for name, result in report.items() if result != "ok"]
        if failed:
            return OrjsonResponse(
                {"error": "not_ready", "detail": f"not ready: {'; '.join(failed)}", "checks": report}, status_code=503
            )
        return OrjsonResponse({"status": "ready", "checks": report})

    return router


def _pool_check(pool: ServicePool) -> ReadinessCheck:
    async def check() -> None:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")

    return check


async def _run_check(check: ReadinessCheck, timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            await check()
    except TimeoutError:
        return f"timed out after {timeout:g}s"
    except Exception as error:  # a readiness check reports every failure; it never raises
        return f"{type(error).__name__}: {error}"[:300]
    return "ok"


def _add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.code, exc.detail, exc.headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, error_code(exc.status_code), exc.detail, exc.headers)


class _AsciiJSONResponse(JSONResponse):
    """A validation error echoes the input, and an input holding a lone surrogate (valid JSON, not valid UTF-8)
    would fail to render as UTF-8 and become a 500: escape everything outside ASCII."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Without the rejected input: a too-short password must not come back in the response (or a proxy's logs).
    errors = [{key: value for key, value in error.items() if key != "input"} for error in exc.errors()]
    return _AsciiJSONResponse({"error": "invalid_request", "detail": jsonable_encoder(errors)}, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", extra={"error": str(exc), "path": request.url.path})
    return error_response(
        503, "database_unavailable", "database unavailable; nothing was changed, retry shortly", {"Retry-After": "1"}
    )


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes with 413: by Content-Length before reading, or once the stream passes it
    (then whatever the app answers, e.g. FastAPI's 400 for a body it could not read, is replaced)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        if not chunked:
            # No body, or one whose length the server already holds to Content-Length: nothing to count.
            await self.app(scope, receive, send)
            return
        received = 0
        exceeded = started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                exceeded = True
                raise BodyTooLargeError(self.limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it could not read; ours follows
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if started:
                raise
        if exceeded and not started:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, "body_too_large", str(BodyTooLargeError(self.limit)))(scope, receive, send)


class UnhandledErrorMiddleware:
    """A bug becomes a logged error (with the request's trace id) and a JSON 500 naming that trace id, inside the
    trace context (Starlette's own last-resort handler sits outside every middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error", extra={"method": scope["method"], "path": scope["path"]})
            if started:
                raise  # the status line is out: let the server drop the connection
            trace = current_trace()
            detail = f"internal error; trace id {trace.trace_id}" if trace else "internal error"
            await error_response(500, "internal_error", detail)(scope, receive, send)


def run(app: FastAPI, settings: ShopSettings) -> None:
    """Serve `app` on 0.0.0.0:PORT until SIGTERM, then finish in-flight requests (SHUTDOWN_TIMEOUT_SECONDS)."""
    config = uvicorn.Config(
        app,
        host="0.0.0.0",  # noqa: S104 - inside the task; security groups and Service Connect decide who reaches it
        port=settings.PORT,
        loop="auto",  # uvloop and httptools when installed (they are in the images)
        http="auto",
        log_config=None,  # JSON logging is configured by create_service_app
        access_log=False,  # one log call per request costs throughput; the gateway logs access
        proxy_headers=False,  # nothing here acts on client addresses; never trust a forwarded header
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=round(settings.SHUTDOWN_TIMEOUT_SECONDS),
    )
    uvicorn.Server(config).run()
