"""Resumes orders nobody is driving: parked steps whose retry is due, and orders whose driver died mid-saga
(their lease ran out). Every orders task runs one loop; claims use `FOR UPDATE SKIP LOCKED` and give each order
a new claim token and lease, so two loops never drive the same order at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.common.tasks import finish_or_cancel
from services.shop.common.observability import continue_or_start, reset_trace, use_trace
from services.shop.orders.saga import Order, Saga
from services.shop.orders.store import OrderStore

log = logging.getLogger(__name__)


class RecoveryLoop:
    def __init__(self, store: OrderStore, saga: Saga, *, poll_seconds: float, batch: int) -> None:
        self._store = store
        self._saga = saga
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="orders-recovery")

    async def stop(self, timeout: float = 10.0) -> None:
        """Finish the current round (its steps are short and bounded by call timeouts), then end the loop; a round
        still running after `timeout` is cancelled and its orders wait for their leases to run out."""
        if self._task is None:
            return
        self._stopping.set()
        await finish_or_cancel(self._task, timeout, "recovery loop")

    async def run_once(self) -> int:
        """Claim the due orders (at most `batch`) and drive each as far as it goes; return how many were claimed."""
        orders = await self._store.claim_due(self._batch)
        if orders:
            await asyncio.gather(*(self._resume(order) for order in orders))
        return len(orders)

    async def _resume(self, order: Order) -> None:
        token = use_trace(continue_or_start(None))  # each resumed order gets its own trace in logs and calls
        try:
            log.info("resuming order", extra={"order_id": str(order.id), "status": order.status})
            final = await self._saga.drive(order)
            log.info("order resumed", extra={"order_id": str(order.id), "status": final.status})
        except Exception:
            # Its lease runs out and a later round retries it; one bad order must not stop the others.
            log.exception("resuming an order failed", extra={"order_id": str(order.id)})
        finally:
            reset_trace(token)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("recovery round failed; retrying")
                claimed = 0
            if claimed < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._poll_seconds)
