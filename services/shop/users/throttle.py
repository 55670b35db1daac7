"""Per-email login throttling in Redis: after LOGIN_MAX_FAILURES failed logins within LOGIN_FAILURE_WINDOW_SECONDS
(counted from the first failure), further attempts for that email get 429 until the window ends.

Keyed by a hash of the normalised email (no addresses in Redis), and applied to unknown emails too, so it tells
an attacker nothing about which accounts exist. A throttled attempt is refused before any hashing, so a
password-guessing run also stops costing CPU. A successful login clears the count.

Fails open, like every Redis use in this project: when Redis is unreachable logins go on unthrottled (logged,
and a circuit breaker keeps the outage to one timeout per cooldown) rather than nobody being able to log in; the
gateway's route throttling and the hashing queue still bound the guessing rate.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.common.redis_client import CircuitBreaker
from services.shop.common.settings import ShopSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ThrottleState:
    failures: int
    retry_after_seconds: int  # 0: allowed


ALLOWED = ThrottleState(failures=0, retry_after_seconds=0)


def redis_client(settings: ShopSettings) -> aioredis.Redis:
    """A client with no retries (every caller fails open; a retry only adds latency)."""
    return aioredis.Redis(
        host=settings.REDIS_HOST,
        port=settings.REDIS_PORT,
        db=settings.REDIS_DB,
        password=settings.REDIS_AUTH_TOKEN.get_secret_value() if settings.REDIS_AUTH_TOKEN else None,
        ssl=settings.REDIS_TLS,
        socket_timeout=settings.REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=settings.REDIS_TIMEOUT_SECONDS,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
    )


class LoginThrottle:
    def __init__(
        self,
        redis: aioredis.Redis,
        settings: ShopSettings,
        max_failures: int,
        window_seconds: int,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._redis = redis
        self._settings = settings
        self._max_failures = max_failures
        self._window_seconds = window_seconds
        self._breaker = breaker or CircuitBreaker()

    def _key(self, email: str) -> str:
        return self._settings.redis_key("login-failures", hashlib.sha256(email.encode()).hexdigest()[:32])

    async def begin(self, email: str) -> ThrottleState:
        """Count this attempt as a failure before the password is checked, and say whether it may go on.

        Counting first means concurrent guesses cannot all read a count under the limit and slip past it; a
        successful login then clears the count (`clear`), an attempt never judged gives it back (`give_back`)."""
        if not self._breaker.closed:
            return ALLOWED
        key = self._key(email)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                # NX: the window runs from the first failure; later failures do not extend it.
                pipe.expire(key, self._window_seconds, nx=True)
                pipe.ttl(key)
                count, _, ttl = await pipe.execute()
        except RedisError as error:
            self._fail_open("count an attempt", error)
            return ALLOWED
        if int(count) <= self._max_failures:
            return ThrottleState(int(count), 0)
        return ThrottleState(int(count), max(1, int(ttl)))

    async def give_back(self, email: str) -> None:
        """Un-count an attempt that was never judged (the hashing pool was full)."""
        if not self._breaker.closed:
            return
        try:
            await self._redis.decr(self._key(email))
        except RedisError as error:
            self._fail_open("give back an attempt", error)

    async def clear(self, email: str) -> None:
        if not self._breaker.closed:
            return
        try:
            await self._redis.delete(self._key(email))
        except RedisError as error:
            self._fail_open("clear", error)

    def _fail_open(self, action: str, error: RedisError) -> None:
        self._breaker.trip()
        log.warning(
            "login throttle unavailable; logins are not throttled", extra={"action": action, "error": str(error)}
        )
