"""The products service's app: `create_app(settings)`; `python -m services.shop.products` runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.shop.common.app import LifespanHook, ServiceRuntime, create_service_app
from services.shop.products.cache import CatalogCache
from services.shop.products.reads import CatalogReader
from services.shop.products.routes import ProductsState, catalog_router, reservations_router
from services.shop.products.settings import ProductsSettings
from services.shop.products.sweeper import ExpirySweeper

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Redis connections per process: a command takes one for about a round trip, so this carries thousands of requests
# per second; beyond it commands queue for a connection.
REDIS_MAX_CONNECTIONS = 32


def redis_client(settings: ProductsSettings) -> aioredis.Redis:
    """Like services.common.redis_client.async_client (no retries: PostgreSQL is the fallback), but with a blocking
    pool: with a thousand requests in flight, a command waits for a free connection (up to REDIS_TIMEOUT_SECONDS)
    instead of failing with "Too many connections" and opening the cache's breaker."""
    password = settings.REDIS_AUTH_TOKEN.get_secret_value() if settings.REDIS_AUTH_TOKEN else None
    pool = aioredis.BlockingConnectionPool(
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=settings.REDIS_TIMEOUT_SECONDS,
        connection_class=aioredis.SSLConnection if settings.REDIS_TLS else aioredis.Connection,
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        db=settings.REDIS_DB,
        password=password,
        socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
    )
    return aioredis.Redis(connection_pool=pool)


def _products_hook(settings: ProductsSettings) -> LifespanHook:
    """Builds the cache, the reader and the expiry sweeper once the pool is open; stops them before it closes."""

    @asynccontextmanager
    async def hook(runtime: ServiceRuntime) -> AsyncIterator[None]:
        redis = redis_client(settings)
        cache = CatalogCache(
            redis, settings.REDIS_KEY_PREFIX, settings.CACHE_FRESH_SECONDS, settings.CACHE_STALE_SECONDS
        )
        reader = CatalogReader(
            runtime.pool,
            cache,
            read_timeout=settings.DB_READ_TIMEOUT_SECONDS,
            breaker_failures=settings.DB_BREAKER_FAILURES,
            breaker_cooldown=settings.DB_BREAKER_COOLDOWN_SECONDS,
            local_seconds=settings.CACHE_LOCAL_SECONDS,
        )
        sweeper = ExpirySweeper(
            runtime.pool, reader.stock_changed, settings.RESERVATION_SWEEP_SECONDS, settings.RESERVATION_SWEEP_BATCH
        )
        runtime.app.state.products = ProductsState(settings, runtime.pool, cache, reader, sweeper)
        sweeper.start()
        try:
            yield
        finally:
            await sweeper.stop()
            await redis.aclose()

    return hook


def create_app(settings: ProductsSettings | None = None) -> FastAPI:
    settings = settings or ProductsSettings()  # pyright: ignore[reportCallIssue]
    return create_service_app(
        settings,
        title="products",
        description="The shop's catalog (cached in Redis, degrading to stale data) and stock reservations.",
        routers=[catalog_router, reservations_router],
        migrations_dir=MIGRATIONS_DIR,
        lifespan_hooks=[_products_hook(settings)],
    )
