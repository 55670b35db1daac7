"""Returns the stock of reservations nobody committed in time. Every products process runs one: they claim
expired reservations with SKIP LOCKED, so several sweepers share the work and never wait for each other."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.shop.products import inventory
from services.shop.products.inventory import StockChange

log = logging.getLogger(__name__)


class ExpirySweeper:
    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        on_stock_change: Callable[[list[StockChange]], Awaitable[None]],
        interval: float,
        batch: int,
    ) -> None:
        self._pool = pool
        self._on_stock_change = on_stock_change
        self._interval = interval
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> int:
        """Expire every held reservation past its expiry (in batches); return how many."""
        total = 0
        while True:
            async with self._pool.connection() as conn:
                count, changes = await inventory.expire_due(conn, self._batch)
            await self._on_stock_change(changes)
            total += count
            if count < self._batch:
                break
        if total:
            log.info("expired reservations returned their stock", extra={"reservations": total})
        return total

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reservation-expiry")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            # Jitter keeps the sweepers of tasks started together from polling in lockstep.
            await asyncio.sleep(self._interval * random.uniform(0.8, 1.2))  # noqa: S311 - not security
            try:
                await self.sweep()
            except (psycopg.OperationalError, PoolTimeout) as error:
                log.warning("reservation sweep failed; retrying next round", extra={"error": str(error)})
            except Exception:  # a sweeper that died would leak every expired reservation's stock
                log.exception("reservation sweep failed unexpectedly; retrying next round")
