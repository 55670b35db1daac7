"""Per-client token bucket in Redis (the clock is Redis's, so every API task shares one bucket per client).
Fails open: without Redis, submissions are still accepted.

Concurrent checks are coalesced (services/api/coalesce.py) into one script call that takes a token from
each bucket in turn: under load one command carries many checks, where a call per request cost a
connection checkout, a round trip and a command to pack and parse each. (The cache is a replication group
without cluster mode, so one script may touch many keys.)"""

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

# KEYS = buckets, in request order (a key may repeat: each occurrence takes its own token); ARGV = refill
# rate per second, burst capacity. Returns {allowed, seconds until a token} for each key, flattened.
BUCKETS_LUA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl = math.ceil(burst / rate * 1000) + 1000
local results = {}
for _, key in ipairs(KEYS) do
  local state = redis.call('HMGET', key, 'tokens', 'ts')
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
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, ttl)
  results[#results + 1] = allowed
  results[#results + 1] = tostring(wait)
end
return results
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
        """Take a token from each key's bucket with one script call; returns [allowed, wait] per key. An
        error (say, a key of the wrong type) fails the whole batch, which then fails open like any Redis
        error; scripts do not roll back, so buckets before the bad key keep their decrement."""
        rate, burst = self._settings.RATE_LIMIT_PER_SECOND, self._settings.RATE_LIMIT_BURST
        # EVAL, not a registered Script (whose first use per connection costs a SCRIPT LOAD round trip):
        # Redis caches an EVAL'd script by its hash anyway.
        flat = await self._redis.eval(BUCKETS_LUA, len(keys), *keys, rate, burst)
        return [[flat[index], flat[index + 1]] for index in range(0, len(flat), 2)]
