"""Group commit for single-job submissions.

Concurrent `POST /jobs` requests hand their row to a `JobInserter`; up to `max_concurrent` flush tasks
each take everything pending (at most `max_batch` rows) and insert it with one statement, so a burst of
submissions costs one round trip, one transaction and one WAL flush instead of one of each per job.
Every request still waits until *its* row is committed: a 202 keeps meaning "committed in PostgreSQL".
Under light load a flush holds a single row, so latency is that of a plain insert.

If a multi-row insert is rejected as a whole (an unknown `input_file_id`, or a deadlock between two
batches reusing the same idempotency keys), nothing of it was committed and each row is retried alone,
so only the offending request sees the error. Any other failure (connection lost, pool exhausted) is
passed to every request of the batch unchanged, because whether that commit happened is unknown and a
retry could create a second copy of an unkeyed job.
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import errors
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from services.api import repository

RowFuture = asyncio.Future[DictRow | None]


class JobInserter:
    def __init__(self, pool: AsyncConnectionPool[Any], max_batch: int = 100, max_concurrent: int = 4) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._pending: list[tuple[dict[str, Any], RowFuture]] = []
        self._flushers: set[asyncio.Task[None]] = set()

    async def insert(self, values: dict[str, Any]) -> DictRow | None:
        """Insert one job (a `repository.job_values` dict) and its outbox row; return the committed row, or
        None when the idempotency key was already used. Raises what the insert raised."""
        future: RowFuture = asyncio.get_running_loop().create_future()
        self._pending.append((values, future))
        if len(self._flushers) < self._max_concurrent:
            task = asyncio.create_task(self._flush_pending(), name="job-group-commit")
            self._flushers.add(task)
            task.add_done_callback(self._flushers.discard)
        # A request cancelled here (client gone) cancels only its future, not the shared flush: its row
        # still commits, as a single insert already sent would.
        return await future

    async def _flush_pending(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            await self._flush(batch)

    async def _flush(self, batch: list[tuple[dict[str, Any], RowFuture]]) -> None:
        # A stable lock order on the unique key makes deadlocks between concurrent batches unlikely.
        batch.sort(key=lambda item: (item[0]["client_id"], item[0]["idempotency_key"] or ""))
        try:
            async with self._pool.connection() as conn:
                rows = await repository.insert_jobs(conn, [values for values, _ in batch])
        except (errors.IntegrityError, errors.DeadlockDetected) as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
            else:
                await self._insert_one_by_one(batch)
            return
        except Exception as exc:
            for _, future in batch:
                _settle(future, exc)
            return
        inserted = {row["id"]: row for row in rows}
        for values, future in batch:
            _settle(future, inserted.get(values["id"]))

    async def _insert_one_by_one(self, batch: list[tuple[dict[str, Any], RowFuture]]) -> None:
        for values, future in batch:
            try:
                async with self._pool.connection() as conn:
                    row = await repository.insert_job(conn, values)
            except Exception as exc:
                _settle(future, exc)
            else:
                _settle(future, row)


def _settle(future: RowFuture, outcome: DictRow | Exception | None) -> None:
    if future.done():  # the awaiting request was cancelled
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
