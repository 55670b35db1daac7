"""Stopping background loops (outbox relays, consumers, recovery loops) without cutting a round in half."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

log = logging.getLogger(__name__)


async def finish_or_cancel(task: asyncio.Task[Any], timeout: float, what: str) -> None:
    """Wait up to `timeout` for `task`, already asked to stop, to end on its own; cancel it only then (cancelling
    mid-round interrupts psycopg inside a transaction, which can leave the pool unable to close)."""
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning(f"{what} did not stop in time; cancelling it")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
