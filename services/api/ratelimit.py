"""Per-client token bucket in Redis (one Lua call per request; the clock is Redis's, so every API task
shares one bucket per client). Fails open: without Redis, submissions are still accepted.

Concurrent checks are coalesced into one pipeline (services/api/coalesce.py): under load one round trip
carries many script calls, where a call per request cost a connection checkout and a round trip each."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.api.coalesce import Coalescer
from services.common.redis_client import CircuitBreaker
from services.common.settings import Settings

# KEYS[1] = bucket; ARGV = refill rate per second, burst capacity. Returns {allowed, seconds until a token}.
BUCKET_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, settings: Settings, breaker: CircuitBreaker) -> None:
        self._redis = redis
        self._settings = settings
        self._breaker = breaker
        self._coalescer = Coalescer[str, list[Any]](
            self._run_scripts, max_batch=100, max_concurrent=2, name="rate-limit"
        )

    async def check(self, client_id: str) -> Decision:
        if not self._breaker.closed:
            return Decision(allowed=True, retry_after_seconds=0)
        try:
            allowed, wait = await self._coalescer.submit(self._settings.redis_key("ratelimit", client_id))
        except RedisError as exc:
            self._breaker.trip()
            log.warning("rate limiter unavailable, allowing request", extra={"error": str(exc)})
            return Decision(allowed=True, retry_after_seconds=0)
        return Decision(allowed=bool(allowed), retry_after_seconds=max(1, math.ceil(float(wait))))

    async def _run_scripts(self, keys: list[str]) -> list[list[Any] | BaseException]:
        """One bucket script per key, sent as one pipeline; a failed call is returned as its exception."""
        rate, burst = self._settings.RATE_LIMIT_PER_SECOND, self._settings.RATE_LIMIT_BURST
        # EVAL, not a registered Script: redis-py precedes a pipeline holding Scripts with a SCRIPT EXISTS
        # round trip every time, while Redis caches an EVAL'd script by its hash anyway.
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.eval(BUCKET_LUA, 1, key, rate, burst)
            return await pipe.execute(raise_on_error=False)
