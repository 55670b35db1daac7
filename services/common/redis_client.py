"""Redis connections (cache, pub/sub, rate limiting). Redis is an accelerator, never the source of truth:
callers treat every Redis error as "cache unavailable" and fall back to PostgreSQL."""

from __future__ import annotations

import time

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.settings import Settings


def _connection_kwargs(settings: Settings) -> dict[str, object]:
    return {
        "host": settings.REDIS_HOST,
        "port": settings.REDIS_PORT,
        "db": settings.REDIS_DB,
        "password": settings.REDIS_AUTH_TOKEN.get_secret_value() if settings.REDIS_AUTH_TOKEN else None,
        "ssl": settings.REDIS_TLS,
        "socket_timeout": settings.REDIS_TIMEOUT_SECONDS,
        "socket_connect_timeout": settings.REDIS_TIMEOUT_SECONDS,
        "health_check_interval": 30,
    }


def async_client(settings: Settings) -> aioredis.Redis:
    # No client-side retries: every caller has a PostgreSQL fallback, so a retry only adds latency.
    return aioredis.Redis(
        **_connection_kwargs(settings),  # pyright: ignore[reportArgumentType]
        retry=AsyncRetry(NoBackoff(), 0),
        max_connections=64,
    )


def sync_client(settings: Settings) -> redis.Redis:
    return redis.Redis(**_connection_kwargs(settings), retry=Retry(NoBackoff(), 0))  # pyright: ignore[reportArgumentType]


def delete_prefix(client: redis.Redis, prefix: str) -> int:
    """Delete every key under `prefix` (tests, benchmark and local runs clean up after themselves)."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) == 500:
            deleted += int(client.delete(*batch))  # pyright: ignore[reportArgumentType]
            batch.clear()
    if batch:
        deleted += int(client.delete(*batch))  # pyright: ignore[reportArgumentType]
    return deleted


class CircuitBreaker:
    """Skips Redis for `cooldown` seconds after a failure: an outage costs one timeout, not one per call."""

    def __init__(self, cooldown: float = 2.0) -> None:
        self._cooldown = cooldown
        self._open_until = 0.0

    @property
    def closed(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self) -> None:
        self._open_until = time.monotonic() + self._cooldown
