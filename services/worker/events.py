"""Publishes job snapshots to Redis (versioned cache + pub/sub) after every transition. Best effort:
PostgreSQL already holds the truth, so a Redis outage only costs freshness of the cache and live events."""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.exceptions import RedisError

from services.common.cache import SET_IF_NEWER_LUA, cache_args, cache_key, events_channel
from services.common.jobs import JobPublic
from services.common.redis_client import CircuitBreaker
from services.common.settings import Settings

log = logging.getLogger(__name__)


class SnapshotPublisher:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._breaker = CircuitBreaker()

    def publish(self, row: dict[str, Any]) -> None:
        if not self._breaker.closed:
            return
        job = JobPublic.from_row(row)
        job_id = str(job.id)
        try:
            pipe = self._client.pipeline(transaction=False)
            # EVAL, not a registered Script, which costs a SCRIPT EXISTS round trip per pipeline.
            pipe.eval(SET_IF_NEWER_LUA, 1, cache_key(self._settings, job_id), *cache_args(job))
            pipe.publish(events_channel(self._settings, job_id), job.model_dump_json())
            pipe.execute()
        except RedisError as exc:
            self._breaker.trip()
            log.warning("could not publish job snapshot to redis", extra={"error": str(exc)})
