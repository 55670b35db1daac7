"""Liveness (`/health`, used by the ALB target group and the container health check) and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Response, status
from pydantic import BaseModel
from redis.exceptions import RedisError

from services.api.deps import AppState, State

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0

CheckState = Literal["ok", "failed"]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "unavailable"]
    checks: dict[str, CheckState]


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the process serves HTTP. Deliberately checks no dependency, so a database outage does not
    make ECS replace every healthy task."""
    return Health(status="ok")


async def _postgres(state: AppState) -> None:
    async with state.pool.connection(timeout=CHECK_TIMEOUT_SECONDS) as conn:
        await conn.execute("SELECT 1")


async def _redis(state: AppState) -> None:
    await state.redis.ping()


async def _queue(state: AppState) -> None:
    url = state.settings.queue_urls["normal"]
    await asyncio.to_thread(state.sqs.get_queue_attributes, QueueUrl=url, AttributeNames=["QueueArn"])


async def _storage(state: AppState) -> None:
    if not await asyncio.to_thread(state.storage.is_writable):
        raise OSError("storage is not writable")


async def _run(check: Callable[[AppState], Awaitable[None]], state: AppState) -> CheckState:
    try:
        await asyncio.wait_for(check(state), timeout=CHECK_TIMEOUT_SECONDS)
    except (Exception, RedisError):
        return "failed"
    return "ok"


@router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(state: State, response: Response) -> Readiness:
    """Readiness: PostgreSQL, queue and storage are required; Redis only accelerates (cache, events, rate
    limits), so without it the API still accepts work and reports `degraded`."""
    names: tuple[str, ...] = ("postgres", "redis", "queue", "storage")
    results = await asyncio.gather(*(_run(check, state) for check in (_postgres, _redis, _queue, _storage)))
    checks: dict[str, CheckState] = dict(zip(names, results, strict=True))
    required_ok = all(checks[name] == "ok" for name in ("postgres", "queue", "storage"))
    if not required_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(status="unavailable", checks=checks)
    return Readiness(status="ready" if checks["redis"] == "ok" else "degraded", checks=checks)
