"""Transactional-outbox relay: moves committed outbox rows to SQS in batches of 10, then deletes them.

Rows are claimed with `FOR UPDATE SKIP LOCKED`, so every API task can run a relay without coordination.
A crash between the SQS send and the DELETE re-sends those messages: workers process idempotently, so a
duplicate is harmless, while a lost job is impossible (the row stays until SQS acknowledged it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

from psycopg_pool import AsyncConnectionPool

from services.common.settings import Priority, Settings
from services.common.sqs import SQS_BATCH_LIMIT, job_message
from services.common.sqs_async import AsyncSqsClient
from services.common.tasks import finish_or_cancel

CLAIM_LIMIT = 100

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, pool: AsyncConnectionPool[Any], sqs: AsyncSqsClient, settings: Settings) -> None:
        self._pool = pool
        self._sqs = sqs
        self._queue_urls = settings.queue_urls
        self._poll_seconds = settings.RELAY_POLL_SECONDS
        self._linger_seconds = settings.RELAY_LINGER_SECONDS
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the current round finish, then end the loop. Cancelling mid-round would interrupt psycopg
        inside a transaction and the pool, which can leave the pool unable to close."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        await finish_or_cancel(self._task, timeout, "outbox relay")
        await self._sqs.aclose()

    def wake(self) -> None:
        """Called after a commit so new jobs go out at once instead of at the next poll."""
        self._wake.set()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.relay_once()
            except Exception:
                log.exception("outbox relay round failed; retrying")
                sent = 0
                await asyncio.sleep(1)
            if sent < CLAIM_LIMIT and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
                if self._wake.is_set() and not self._stopping:
                    await asyncio.sleep(self._linger_seconds)  # let concurrent commits fill the batch
                self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one claim of outbox rows; return how many were published (and deleted)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT id, job_id, priority FROM outbox ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                (CLAIM_LIMIT,),
            )
            rows = await cursor.fetchall()
            if not rows:
                return 0
            by_priority: dict[Priority, list[Any]] = defaultdict(list)
            for row in rows:
                by_priority[row["priority"]].append(row)
            sends = [
                self._send_batch(self._queue_urls[priority], chunk)
                for priority, group in by_priority.items()
                for chunk in _chunks(group, SQS_BATCH_LIMIT)
            ]
            published = [outbox_id for ids in await asyncio.gather(*sends) for outbox_id in ids]
            await conn.execute("DELETE FROM outbox WHERE id = ANY(%s)", (published,))
        return len(published)

    async def _send_batch(self, queue_url: str, rows: list[Any]) -> list[int]:
        try:
            response = await self._sqs.send_message_batch(
                queue_url,
                [{"Id": str(row["id"]), "MessageBody": job_message(str(row["job_id"]))} for row in rows],
            )
        except Exception:
            log.exception("SendMessageBatch failed; rows stay in the outbox", extra={"queue_url": queue_url})
            return []
        for failure in response.get("Failed", []):
            log.warning("SQS rejected an outbox entry; it will be retried", extra={"failure": failure})
        return [int(entry["Id"]) for entry in response.get("Successful", [])]


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
