"""The catalog cache in Redis (cache-aside): products, and pages as lists of product ids.

An entry is `<fresh-until ms>|<version>|<json>`. Until fresh-until it is served as is; after that it is stale,
kept for CACHE_STALE_SECONDS as what reads fall back to while PostgreSQL is down. Versions order the writers:
- a product's version is its stock row's, bumped by every stock change. A stock change marks the product's entry
  stale at the new version (keeping the old JSON as the fallback), and a store is refused when the cached version
  is newer, so a read that fetched the row before the change cannot put the old stock back as fresh;
- a page holds product ids only (stock changes do not touch it) and is fresh only while its version is the
  current catalog version, which creating products bumps. Listing pages are kept for the stale window like
  products; search pages only while fresh (see `_page_ttl`).

Redis is an accelerator, never the source of truth: every Redis error opens a short breaker and the caller goes
to PostgreSQL. The page keys and the catalog version share a hash tag, so their MGET also works on a cluster.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.common.redis_client import CircuitBreaker
from services.shop.products.catalog import Page, PageQuery, ProductRow
from services.shop.products.inventory import StockChange

log = logging.getLogger(__name__)

# KEYS: entries; ARGV[1]: fresh-until ms, ARGV[2]: ttl seconds, then version and json per key.
_STORE_IF_NOT_OLDER = """
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[2 * i + 1])
  local current = redis.call('GET', key)
  local cached = current and tonumber(string.match(current, '^%d+|(%d+)|'))
  if not cached or cached <= version then
    redis.call('SET', key, ARGV[1] .. '|' .. ARGV[2 * i + 1] .. '|' .. ARGV[2 * i + 2], 'EX', ARGV[2])
  end
end
return 0
"""

# KEYS: product entries; ARGV[1]: ttl seconds, then the new stock version per key. Marks each entry stale at that
# version, keeping its JSON for outages; an entry already at or past the version reflects the change and stays.
_MARK_STALE = """
for i, key in ipairs(KEYS) do
  local version = tonumber(ARGV[i + 1])
  local current = redis.call('GET', key)
  local cached, data = nil, ''
  if current then
    cached, data = string.match(current, '^%d+|(%d+)|(.*)$')
    cached = tonumber(cached)
  end
  if not cached or cached < version then
    redis.call('SET', key, '0|' .. ARGV[i + 1] .. '|' .. (data or ''), 'EX', ARGV[1])
  end
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Entry:
    fresh: bool
    version: int
    data: bytes  # empty for a product marked stale before it was ever cached

    @property
    def usable(self) -> bool:
        """Has data to fall back to."""
        return bool(self.data)


def decode_entry(raw: bytes, now_ms: int) -> Entry | None:
    fresh_until, _, rest = raw.partition(b"|")
    version, _, data = rest.partition(b"|")
    try:
        return Entry(int(fresh_until) > now_ms, int(version), data)
    except ValueError:
        return None  # not ours (a foreign value under our prefix): a miss


@dataclass(frozen=True, slots=True)
class CachedPage:
    fresh: bool
    ids: list[UUID]
    next_cursor: str | None


def now_ms() -> int:
    return int(time.time() * 1000)


class CatalogCache:
    def __init__(self, redis: aioredis.Redis, key_prefix: str, fresh_seconds: float, stale_seconds: int) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._fresh_ms = int(fresh_seconds * 1000)
        self._stale_seconds = stale_seconds
        self._breaker = CircuitBreaker()
        self._store_script = redis.register_script(_STORE_IF_NOT_OLDER)
        self._mark_stale_script = redis.register_script(_MARK_STALE)

    def product_key(self, product_id: UUID) -> str:
        return f"{self._prefix}product:{product_id}"

    def page_key(self, query: PageQuery) -> str:
        return f"{self._prefix}{{catalog}}:page:{query.cache_id}"

    @property
    def version_key(self) -> str:
        return f"{self._prefix}{{catalog}}:version"

    async def products(self, ids: Sequence[UUID]) -> list[Entry | None]:
        """The cached entry of each product (None: not cached, or Redis unavailable)."""
        raws = await self._call("read products", self._redis.mget, [self.product_key(pid) for pid in ids])
        if raws is None:
            return [None] * len(ids)
        now = now_ms()
        return [decode_entry(raw, now) if raw is not None else None for raw in raws]

    async def page(self, query: PageQuery) -> tuple[int, CachedPage | None]:
        """The current catalog version and the cached page (None: not cached, or Redis unavailable)."""
        raws = await self._call("read page", self._redis.mget, [self.version_key, self.page_key(query)])
        if raws is None:
            return 0, None
        version = int(raws[0] or 0)
        entry = decode_entry(raws[1], now_ms()) if raws[1] is not None else None
        if entry is None:
            return version, None
        ids, next_cursor = orjson.loads(entry.data)
        fresh = entry.fresh and entry.version >= version
        return version, CachedPage(fresh, [UUID(pid) for pid in ids], next_cursor)

    async def store_products(self, rows: Sequence[ProductRow]) -> None:
        if not rows:
            return
        args: list[Any] = [now_ms() + self._fresh_ms, self._stale_seconds]
        for row in rows:
            args += [row.version, row.json]
        await self._call("store products", self._store_script, [self.product_key(row.id) for row in rows], args)

    async def store_page(self, query: PageQuery, catalog_version: int, page: Page) -> None:
        """Store the page and its products in one round trip."""
        data = orjson.dumps([[str(row.id) for row in page.rows], page.next_cursor])
        value = b"%d|%d|%s" % (now_ms() + self._fresh_ms, catalog_version, data)
        if not self._breaker.closed:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self.page_key(query), value, ex=self._page_ttl(query))
                if page.rows:
                    args: list[Any] = [now_ms() + self._fresh_ms, self._stale_seconds]
                    for row in page.rows:
                        args += [row.version, row.json]
                    keys = [self.product_key(row.id) for row in page.rows]
                    await self._store_script(keys, args, client=pipe)  # queued: runs in execute()
                await pipe.execute()
        except RedisError as error:
            self._unavailable("store page", error)

    def _page_ttl(self, query: PageQuery) -> int:
        # Searches are as many as the texts people type: kept only while fresh, so unique queries cannot crowd the
        # listings (a bounded set) out of Redis. A search therefore has no stale fallback during an outage.
        return self._stale_seconds if query.q is None else max(1, math.ceil(self._fresh_ms / 1000))

    async def mark_stale(self, changes: Sequence[StockChange]) -> None:
        """The products' stock changed: their entries must be refreshed before being served as fresh again."""
        if not changes:
            return
        keys = [self.product_key(change.product_id) for change in changes]
        args = [self._stale_seconds, *(change.version for change in changes)]
        await self._call("invalidate products", self._mark_stale_script, keys, args)

    async def bump_catalog_version(self) -> None:
        """Products were created: every cached page is stale."""
        await self._call("bump catalog version", self._redis.incr, self.version_key)

    async def ping(self) -> None:
        await self._redis.ping()  # pyright: ignore[reportGeneralTypeIssues] - redis.asyncio returns an awaitable

    async def _call(self, what: str, command: Any, *args: Any) -> Any:
        if not self._breaker.closed:
            return None
        try:
            return await command(*args)
        except RedisError as error:
            self._unavailable(what, error)
            return None

    def _unavailable(self, what: str, error: RedisError) -> None:
        self._breaker.trip()
        log.warning("redis unavailable; catalog reads go to PostgreSQL", extra={"operation": what, "error": str(error)})
