"""Coalesce concurrent calls into batches: one round trip for many requests.

`Coalescer.submit(item)` queues the item and returns its own outcome. Up to `max_concurrent` flush tasks
each take everything pending (at most `max_batch` items) and hand it to `flush`, which returns one outcome
per item, in order: a value, or an exception that only that item's caller receives. Under light load a
flush holds a single item, so latency is that of a direct call; under load the batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        max_batch: int,
        max_concurrent: int,
        name: str,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._name = name
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._flushers) < self._max_concurrent:
            task = asyncio.create_task(self._flush_pending(), name=self._name)
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        # A caller cancelled here (client gone) cancels only its own future, never the shared flush.
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                outcomes = await self._flush([item for item, _ in batch])
            except Exception as exc:  # the whole batch failed the same way
                outcomes = [exc] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                _settle(future, outcome)


def _settle(future: asyncio.Future[R], outcome: R | BaseException) -> None:
    if future.done():  # its caller was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
