"""FastAPI application factory. Run with `python -m services.api` (reads PORT) or
`uvicorn --factory services.api.app:create_app`."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from services.api.deps import AppState
from services.api.fast_submit import mount_fast_submit
from services.api.group_commit import JobInserter
from services.api.middleware import BodyLimitMiddleware, BodyTooLargeError
from services.api.ratelimit import RateLimiter
from services.api.relay import OutboxRelay
from services.api.routes import batches, files, health, jobs, limits
from services.common.db import async_pool
from services.common.logging import configure_logging
from services.common.migrate import apply_migrations
from services.common.redis_client import CircuitBreaker, async_client
from services.common.settings import Settings, load_settings
from services.common.sqs import async_sqs_client, sqs_client
from services.common.storage import Storage
from services.common.tracing import Tracing, tracing_from_environment

log = logging.getLogger(__name__)


def _lifespan(settings: Settings, tracing: Tracing | None):
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(apply_migrations, settings)
        storage = Storage(settings.STORAGE_PATH)
        storage.ensure_layout()
        pool = async_pool(settings)
        await pool.open()
        await pool.wait(timeout=settings.DB_POOL_TIMEOUT_SECONDS * 2)  # DB_POOL_MIN connections ready
        redis = async_client(settings)
        breaker = CircuitBreaker()
        sqs = sqs_client(settings)
        relay = OutboxRelay(pool, async_sqs_client(settings, sqs), settings)
        app.state.services = AppState(
            settings=settings,
            pool=pool,
            redis=redis,
            redis_breaker=breaker,
            sqs=sqs,
            storage=storage,
            relay=relay,
            limiter=RateLimiter(redis, settings, breaker),
            inserter=JobInserter(pool, max_concurrent=max(1, settings.DB_POOL_MAX // 2)),
        )
        relay.start()
        # Everything allocated so far lives as long as the process: keep it out of the collector's full
        # passes, which otherwise walk every imported module, model and route on the request path.
        gc.collect()
        gc.freeze()
        log.info("api started", extra={"app_env": settings.APP_ENV})
        try:
            yield
        finally:
            await relay.stop()
            await pool.close()
            await redis.aclose()
            if tracing:
                tracing.shutdown()  # export the last batched spans
            log.info("api stopped")

    return lifespan


def _check_pool_soon(app: FastAPI) -> None:
    """A failover or a restart of PostgreSQL kills every pooled connection. Check the idle ones now (the dead are
    discarded and replaced once the server answers) instead of handing each to a request after recovery."""
    services: AppState | None = getattr(app.state, "services", None)
    running: asyncio.Task[None] | None = getattr(app.state, "pool_check", None)
    if services is None or (running is not None and not running.done()):
        return
    app.state.pool_check = asyncio.create_task(services.pool.check(), name="pool-check")


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable", extra={"error": str(exc), "path": request.url.path})
    _check_pool_soon(request.app)
    return JSONResponse(
        {"detail": "database unavailable; nothing was changed, retry shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


class _AsciiJSONResponse(JSONResponse):
    """JSON with everything outside ASCII escaped: a validation error echoes the input, and an input holding
    a lone surrogate (valid JSON, not valid UTF-8) would otherwise fail to render and become a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def _body_too_large(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_413_CONTENT_TOO_LARGE)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    configure_logging("api", settings.LOG_LEVEL)
    tracing = tracing_from_environment()  # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    app = FastAPI(
        title="Job processing platform",
        version="1.0.0",
        description="Submit file-processing jobs, follow their status, fetch result locations.",
        lifespan=_lifespan(settings, tracing),
    )
    app.add_middleware(BodyLimitMiddleware, limit=settings.MAX_JSON_BODY_BYTES, exempt_paths=frozenset({"/files"}))
    app.add_exception_handler(psycopg.OperationalError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
    app.add_exception_handler(BodyTooLargeError, _body_too_large)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    for module in (health, limits, files, jobs, batches):
        app.include_router(module.router)
    mount_fast_submit(app)
    if tracing:
        tracing.instrument_app(app)
        tracing.instrument_psycopg()
    return app
