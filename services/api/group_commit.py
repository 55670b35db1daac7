"""Group commit for single-job submissions.

Concurrent `POST /jobs` requests hand their row to the `JobInserter`, which coalesces them
(services/api/coalesce.py) into one multi-row statement: a burst of submissions costs one round trip, one
transaction and one WAL flush instead of one of each per job. Every request still waits until *its* row
is committed, so a 202 keeps meaning "committed in PostgreSQL". Under light load a batch holds a single
row and latency is that of a plain insert.

If a multi-row insert is rejected as a whole (an unknown `input_file_id`, or a deadlock between two
batches reusing the same idempotency keys), nothing of it was committed and each row is retried alone,
so only the offending request sees the error. Any other failure (connection lost, pool exhausted) goes to
every request of the batch unchanged: whether that commit happened is unknown, and a retry could create a
second copy of an unkeyed job.
"""

from __future__ import annotations

from typing import Any

from psycopg import errors
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from services.api import repository
from services.api.coalesce import Coalescer

Outcome = DictRow | None | BaseException


class JobInserter:
    def __init__(self, pool: AsyncConnectionPool[Any], max_batch: int = 100, max_concurrent: int = 4) -> None:
        self._pool = pool
        self._coalescer = Coalescer[dict[str, Any], DictRow | None](
            self._insert_batch, max_batch=max_batch, max_concurrent=max_concurrent, name="job-group-commit"
        )

    async def insert(self, values: dict[str, Any]) -> DictRow | None:
        """Insert one job (a `repository.job_values` dict) and its outbox row; return the committed row, or
        None when the idempotency key was already used. Raises what the insert raised."""
        return await self._coalescer.submit(values)

    async def _insert_batch(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        # A stable lock order on the unique key makes deadlocks between concurrent batches unlikely.
        ordered = sorted(batch, key=lambda values: (values["client_id"], values["idempotency_key"] or ""))
        try:
            async with self._pool.connection() as conn:
                rows = await repository.insert_jobs(conn, ordered)
        except (errors.IntegrityError, errors.DeadlockDetected):
            if len(batch) == 1:
                raise
            return [await self._insert_alone(values) for values in batch]
        inserted = {row["id"]: row for row in rows}
        return [inserted.get(values["id"]) for values in batch]

    async def _insert_alone(self, values: dict[str, Any]) -> Outcome:
        try:
            async with self._pool.connection() as conn:
                return await repository.insert_job(conn, values)
        except Exception as exc:
            return exc
