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
        self._set_if_newer = client.register_script(SET_IF_NEWER_LUA)

    def publish(self, row: dict[str, Any]) -> None:
        if not self._breaker.closed:
            return
        job = JobPublic.from_row(row)
        job_id = str(job.id)
        try:
            pipe = self._client.pipeline(transaction=False)
            self._set_if_newer(keys=[cache_key(self._settings, job_id)], args=list(cache_args(job)), client=pipe)
            pipe.publish(events_channel(self._settings, job_id), job.model_dump_json())
            pipe.execute()
        except RedisError as exc:
            self._breaker.trip()
            log.warning("could not publish job snapshot to redis", extra={"error": str(exc)})
