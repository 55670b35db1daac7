"""The products service's settings: the shop's common contract plus its cache and reservation knobs."""

from __future__ import annotations

from pydantic import Field

from services.shop.common.settings import SERVICE_NAME_PATTERN, ShopSettings


class ProductsSettings(ShopSettings):
    SERVICE_NAME: str = Field(default="products", pattern=SERVICE_NAME_PATTERN)
    PORT: int = Field(default=8082, ge=1, le=65535)

    # --- Cache (Redis) ---
    # How long a cached product or page is served without asking PostgreSQL. Stock changes invalidate a product
    # at once; this bounds staleness only for changes made behind the service's back.
    CACHE_FRESH_SECONDS: float = Field(default=30.0, gt=0, le=3600)
    # How long this process keeps what it read (no round trip at all); stock changes by other processes show here
    # within this time, this process's own at once. 0 turns the local cache off.
    CACHE_LOCAL_SECONDS: float = Field(default=1.0, ge=0, le=60)
    # How long an entry is kept after it went stale: what reads fall back to while PostgreSQL is down.
    CACHE_STALE_SECONDS: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    # A catalog read slower than this counts as a database failure and is answered from the cache, if it can be.
    DB_READ_TIMEOUT_SECONDS: float = Field(default=1.0, gt=0, le=30)
    # After this many failed catalog reads within 10 s, reads skip PostgreSQL for DB_BREAKER_COOLDOWN_SECONDS.
    DB_BREAKER_FAILURES: int = Field(default=3, ge=1, le=1000)
    DB_BREAKER_COOLDOWN_SECONDS: float = Field(default=2.0, gt=0, le=300)

    # --- Reservations ---
    # Every process sweeps expired reservations this often (SKIP LOCKED: the sweepers of several tasks share work).
    RESERVATION_SWEEP_SECONDS: float = Field(default=5.0, gt=0, le=3600)
    RESERVATION_SWEEP_BATCH: int = Field(default=200, ge=1, le=10_000)
