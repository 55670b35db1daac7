"""Job reads: Redis cache first, PostgreSQL as the source of truth (and the fallback when Redis is down)."""

from __future__ import annotations

import logging
import uuid

from redis.exceptions import RedisError

from services.api import repository
from services.api.deps import AppState
from services.common.cache import SET_IF_NEWER_LUA, cache_args, cache_key, decode_cached
from services.common.jobs import JobPublic

log = logging.getLogger(__name__)


async def _cached(state: AppState, job_id: uuid.UUID) -> JobPublic | None:
    if not state.redis_breaker.closed:
        return None
    try:
        raw = await state.redis.get(cache_key(state.settings, str(job_id)))
    except RedisError as exc:
        state.redis_breaker.trip()
        log.warning("redis cache read failed; reading PostgreSQL", extra={"error": str(exc)})
        return None
    return decode_cached(raw) if raw is not None else None


async def store(state: AppState, job: JobPublic) -> None:
    if not state.redis_breaker.closed:
        return
    try:
        await state.redis.eval(SET_IF_NEWER_LUA, 1, cache_key(state.settings, str(job.id)), *cache_args(job))
    except RedisError as exc:
        state.redis_breaker.trip()
        log.warning("redis cache write failed", extra={"error": str(exc)})


async def load_from_db(state: AppState, job_id: uuid.UUID) -> JobPublic | None:
    async with state.pool.connection() as conn:
        row = await repository.get_job(conn, job_id)
    return JobPublic.from_row(row) if row is not None else None


async def load(state: AppState, job_id: uuid.UUID) -> JobPublic | None:
    cached = await _cached(state, job_id)
    if cached is not None:
        return cached
    job = await load_from_db(state, job_id)
    if job is not None:
        await store(state, job)
    return job
