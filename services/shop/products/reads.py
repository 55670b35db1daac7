"""Catalog reads: a process-local cache, then Redis, then PostgreSQL; the stale Redis entry when PostgreSQL fails.

- The local cache keeps fresh product JSON and page compositions for CACHE_LOCAL_SECONDS (1 s): a hit costs no
  round trip at all, which is what lets one process answer a thousand browsing users (a Redis hit parsed by
  redis-py costs ~0.3 ms of CPU per command). Stock changes made by this process drop the products' local
  entries at once; those made by another process show here within CACHE_LOCAL_SECONDS.

- Stampedes: concurrent misses of one key in a process share one PostgreSQL query (`SingleFlight`), so a hot
  product that expires or changes costs one query per process, not one per waiting request.
- Degradation: a PostgreSQL read that fails or takes longer than DB_READ_TIMEOUT_SECONDS is answered from the
  stale entry when there is one (`X-Cache: stale`); repeated failures open a breaker, so during an outage reads
  answer from the cache at once instead of each waiting for the timeout. Without a stale entry: 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from uuid import UUID

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.shop.common.breaker import BreakerPolicy, CircuitBreaker, DependencyUnavailable
from services.shop.products import catalog
from services.shop.products.cache import CatalogCache, Entry
from services.shop.products.catalog import PageQuery, ProductRow
from services.shop.products.inventory import StockChange

log = logging.getLogger(__name__)

T = TypeVar("T")
# Products and page compositions kept in a process (a few MB at most).
LOCAL_MAX_ENTRIES = 20_000
CacheState = Literal["hit", "miss", "stale"]


@dataclass(frozen=True, slots=True)
class Served:
    """A response body (JSON) and where it came from."""

    body: bytes
    cache: CacheState


class DatabaseUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"the catalog database is unavailable ({reason}) and nothing cached can stand in for it")


class LocalCache:
    """Fresh values for a short time, in this process: bounded (least recently stored go first), and a
    `generation` that every invalidation bumps, so a read that started before an invalidation cannot store what
    it read after it."""

    def __init__(self, ttl_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.generation = 0

    def get(self, key: Hashable) -> Any:
        item = self._entries.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._entries[key]
            return None
        return item[1]

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Store `value`, read at `generation`, unless something was invalidated since."""
        if self._ttl <= 0 or generation != self.generation:
            return
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        if len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, keys: Iterable[Hashable]) -> None:
        self.generation += 1
        for key in keys:
            self._entries.pop(key, None)

    def invalidate_where(self, matches: Callable[[Hashable], bool]) -> None:
        self.generation += 1
        for key in [key for key in self._entries if matches(key)]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class SingleFlight:
    """Concurrent calls with the same key share one execution of the first caller's function.

    The function runs in its own task: a waiter that is cancelled (its client went away) cancels neither the
    others nor the shared work."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Task[Any]] = {}

    async def run(self, key: Hashable, function: Callable[[], Awaitable[T]]) -> T:
        task = self._flights.get(key)
        if task is None:
            task = asyncio.ensure_future(function())
            self._flights[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._flights.get(key) is task:
            del self._flights[key]
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited any more is not logged as "never retrieved"

    def __len__(self) -> int:
        return len(self._flights)


def render_page(bodies: Sequence[bytes], next_cursor: str | None) -> bytes:
    """The ProductPage JSON, assembled from the products' JSON as cached (no parse and re-serialise)."""
    return b'{"items":[' + b",".join(bodies) + b'],"next_cursor":' + orjson.dumps(next_cursor) + b"}"


Pool = AsyncConnectionPool[AsyncConnection[Any]]


class CatalogReader:
    def __init__(
        self,
        pool: Pool,
        cache: CatalogCache,
        *,
        read_timeout: float,
        breaker_failures: int,
        breaker_cooldown: float,
        local_seconds: float,
        local_max_entries: int = LOCAL_MAX_ENTRIES,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._read_timeout = read_timeout
        self.breaker = CircuitBreaker(
            "products-database",
            BreakerPolicy(window_seconds=10.0, failure_threshold=breaker_failures, cooldown_seconds=breaker_cooldown),
        )
        self.local = LocalCache(local_seconds, local_max_entries)
        self._flights = SingleFlight()

    async def product(self, product_id: UUID) -> Served | None:
        """The product's JSON, or None if there is no such product."""
        body = self.local.get(("product", product_id))
        if body is not None:
            return Served(body, "hit")
        generation = self.local.generation
        [entry] = await self._cache.products([product_id])
        if entry is not None and _fresh(entry):
            self.local.put(("product", product_id), entry.data, generation)
            return Served(entry.data, "hit")
        body = self.local.get(("product", product_id))  # a flight that ended while Redis answered us stored it
        if body is not None:
            return Served(body, "hit")
        try:
            rows = await self._flights.run(("product", product_id), lambda: self._load_products([product_id]))
        except DatabaseUnavailable:
            if entry is not None and entry.usable:
                return Served(entry.data, "stale")
            raise
        row = rows.get(product_id)
        return Served(row.json, "miss") if row is not None else None

    async def page(self, query: PageQuery) -> Served:
        """A page of the listing or search; raises catalog.InvalidCursor for a cursor not from this query."""
        catalog.decode_cursor(query)  # a bad cursor is a 400 whether or not the page is cached
        composition = self.local.get(("page", query.cache_id))
        if composition is not None:
            return await self._assemble(*composition, page_fresh=True)
        generation = self.local.generation
        catalog_version, cached = await self._cache.page(query)
        if cached is not None and cached.fresh:
            self.local.put(("page", query.cache_id), (cached.ids, cached.next_cursor), generation)
            return await self._assemble(cached.ids, cached.next_cursor, page_fresh=True)
        composition = self.local.get(("page", query.cache_id))  # a flight that ended while Redis answered us
        if composition is not None:
            return await self._assemble(*composition, page_fresh=True)
        try:
            page = await self._flights.run(("page", query.cache_id), lambda: self._load_page(query, catalog_version))
        except DatabaseUnavailable:
            if cached is None:
                raise
            return await self._assemble(cached.ids, cached.next_cursor, page_fresh=False)
        return Served(render_page([row.json for row in page.rows], page.next_cursor), "miss")

    async def stock_changed(self, changes: Sequence[StockChange]) -> None:
        """Forget the products whose stock changed, here and in Redis."""
        if changes:
            self.local.invalidate(("product", change.product_id) for change in changes)
            await self._cache.mark_stale(changes)

    async def catalog_changed(self) -> None:
        """Products were created: every cached page is stale, here and in Redis."""
        self.local.invalidate_where(lambda key: isinstance(key, tuple) and key[0] == "page")
        await self._cache.bump_catalog_version()

    async def _assemble(self, ids: list[UUID], next_cursor: str | None, *, page_fresh: bool) -> Served:
        """A cached page's products: fresh ones from the caches, the rest from PostgreSQL, or the stale ones from
        Redis if that fails. A product that a successful load no longer finds is left out."""
        bodies: dict[UUID, bytes] = {}
        for pid in ids:
            body = self.local.get(("product", pid))
            if body is not None:
                bodies[pid] = body
        missing = [pid for pid in ids if pid not in bodies]
        wanted: list[UUID] = []
        load_failed = False
        if missing:
            generation = self.local.generation
            entries = dict(zip(missing, await self._cache.products(missing), strict=True))
            for pid, entry in entries.items():
                if entry is not None and _fresh(entry):
                    bodies[pid] = entry.data
                    self.local.put(("product", pid), entry.data, generation)
                else:
                    wanted.append(pid)
            if wanted:
                try:
                    loaded = await self._flights.run(("products", *wanted), lambda: self._load_products(wanted))
                    bodies.update((pid, row.json) for pid, row in loaded.items())
                except DatabaseUnavailable:
                    fallback = {pid: entries[pid] for pid in wanted}
                    if not all(entry is not None and entry.usable for entry in fallback.values()):
                        raise
                    bodies.update((pid, entry.data) for pid, entry in fallback.items() if entry is not None)
                    load_failed = True
        state: CacheState = "stale" if load_failed or not page_fresh else "miss" if wanted else "hit"
        return Served(render_page([bodies[pid] for pid in ids if pid in bodies], next_cursor), state)

    async def _load_products(self, ids: list[UUID]) -> dict[UUID, ProductRow]:
        generation = self.local.generation
        rows = await self._read(lambda conn: catalog.fetch_products(conn, ids))
        await self._cache.store_products(list(rows.values()))
        for row in rows.values():
            self.local.put(("product", row.id), row.json, generation)
        return rows

    async def _load_page(self, query: PageQuery, catalog_version: int) -> catalog.Page:
        generation = self.local.generation
        page = await self._read(lambda conn: catalog.fetch_page(conn, query))
        await self._cache.store_page(query, catalog_version, page)
        self.local.put(("page", query.cache_id), ([row.id for row in page.rows], page.next_cursor), generation)
        for row in page.rows:
            self.local.put(("product", row.id), row.json, generation)
        return page

    async def _read(self, query: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `query` on a pooled connection within DB_READ_TIMEOUT_SECONDS, through the breaker."""
        try:
            permit = self.breaker.acquire()
        except DependencyUnavailable as error:
            raise DatabaseUnavailable(error.reason) from error
        try:
            async with asyncio.timeout(self._read_timeout):
                async with self._pool.connection() as conn:
                    result = await query(conn)
        except (TimeoutError, PoolTimeout, psycopg.OperationalError) as error:
            self.breaker.record(permit, success=False)
            reason = f"no answer within {self._read_timeout:g}s" if isinstance(error, TimeoutError) else str(error)
            log.warning("catalog read failed; serving from the cache", extra={"error": reason})
            raise DatabaseUnavailable(reason) from error
        except BaseException:
            self.breaker.release(permit)
            raise
        self.breaker.record(permit, success=True)
        return result


def _fresh(entry: Entry) -> bool:
    return entry.fresh and entry.usable
