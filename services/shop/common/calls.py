"""Calls between services: one `ServiceClient` per callee, on one keep-alive connection pool (the shop's lean
HTTP/1.1 client, services/shop/common/http1.py), with timeouts on every attempt, bounded retries with jitter for
idempotent calls only, a circuit breaker, and the W3C `traceparent` (and the caller's Authorization header, when
given) on every request.

    products = ServiceClient("products", settings.PRODUCTS_URL, traceparent=current_traceparent)
    try:
        response = await products.get(f"/products/{product_id}")
    except DependencyUnavailable:
        ...  # degrade, or answer 503

What is retried: connect errors, timeouts, 429, 502, 503 and 504, and only for GET, HEAD, OPTIONS, PUT and
DELETE, and POST with an Idempotency-Key. A 429's or 503's Retry-After is honoured while it fits the call's
budget; a wait that would not fit ends the call at once. Other 4xx responses are returned to the caller (they
are answers, not failures); any 5xx left after retries, a transport error or an open circuit raises
`DependencyUnavailable`. For the breaker, transport errors, timeouts, 5xx and 429 count as failures; every other
answer counts as a success.

Responses are `http1.Response`: `status_code`, `headers` (case-insensitive), `content`, `json()`, `text`, `url`.
Measured here against a local uvicorn callee, a call costs the caller 35-45 µs of CPU with several in flight and
75-90 µs one at a time (most of it the socket calls), where httpx.AsyncClient cost 0.7-1.2 ms; stamina's retry
loop (about 35 µs to set up) is entered only after a failed first attempt.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

import orjson
import stamina

from services.shop.common.breaker import CircuitBreaker, DependencyUnavailable
from services.shop.common.http1 import BaseUrl, ConnectionPool, HttpError, HttpTimeoutError, PreparedRequest, Response

__all__ = [
    "DependencyUnavailable",
    "PoolLimits",
    "Response",
    "RetryPolicy",
    "ServiceClient",
    "Timeouts",
    "TraceparentProvider",
    "retry_after_seconds",
]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Characters a path keeps as they are; anything else (spaces, non-ASCII, CR/LF) is percent-encoded, as httpx did.
PATH_SAFE_CHARACTERS = "/?&=%:@!$'()*+,;~"

TraceparentProvider = Callable[[], str | None]


@dataclass(frozen=True)
class Timeouts:
    """Seconds. `connect` bounds opening a connection; `read` each wait for the next bytes of the response;
    `total` bounds one attempt end to end (waiting for a free connection included), so a response that trickles
    in byte by byte is cut too."""

    connect: float = 0.5
    read: float = 2.0
    total: float = 3.0

    def __post_init__(self) -> None:
        for name in ("connect", "read", "total"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"Timeouts.{name} must be > 0 seconds, got {value}")


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` attempts within `budget_seconds` for the whole call (attempts and waits). Waits grow
    exponentially from `wait_initial` up to `wait_max`, with full jitter."""

    attempts: int = 3
    budget_seconds: float = 5.0
    wait_initial: float = 0.05
    wait_max: float = 1.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if not self.budget_seconds > 0:
            raise ValueError(f"RetryPolicy.budget_seconds must be > 0, got {self.budget_seconds}")
        if not 0 <= self.wait_initial <= self.wait_max:
            raise ValueError(
                f"RetryPolicy needs 0 <= wait_initial <= wait_max, got {self.wait_initial} and {self.wait_max}"
            )


@dataclass(frozen=True)
class PoolLimits:
    """The keep-alive pool to one callee, per process. Sized for 1,000 concurrent users spread over a few tasks:
    500 calls in flight per task before new ones wait for a connection. Idle connections are dropped after
    4 s, before uvicorn's default 5 s keep-alive timeout closes them from the other end mid-request."""

    max_connections: int = 500
    max_keepalive_connections: int = 100
    keepalive_expiry: float = 4.0


class _AttemptFailed(Exception):
    """One attempt failed in a way worth retrying (if the call may be retried). The message names the call, for
    stamina's retry log."""

    def __init__(self, call: str, reason: str, retry_after: float | None = None) -> None:
        super().__init__(f"{call}: {reason}")
        self.reason = reason
        self.retry_after = retry_after


class _RetryDecision:
    """stamina's backoff hook for one call: how long to wait before the next attempt, or False to stop: the
    failure is not retryable, the call is not idempotent, or the wait would end after the call's deadline."""

    def __init__(self, policy: RetryPolicy, deadline: float, *, retryable: bool) -> None:
        self._policy = policy
        self._deadline = deadline
        self._retryable = retryable
        self._retries = 0

    def __call__(self, error: Exception) -> bool | float:
        if not (self._retryable and isinstance(error, _AttemptFailed)):
            return False
        wait = error.retry_after if error.retry_after is not None else self._backoff()
        if asyncio.get_running_loop().time() + wait >= self._deadline:
            return False
        self._retries += 1
        return wait

    def _backoff(self) -> float:
        ceiling = min(self._policy.wait_max, self._policy.wait_initial * 2**self._retries)
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret


class ServiceClient:
    """Calls to one callee (`name`, for logs and errors) at `base_url`. Create one per callee at start-up and
    share it; `aclose()` at shutdown. `traceparent` returns the current W3C traceparent, or None."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        limits: PoolLimits | None = None,
        traceparent: TraceparentProvider | None = None,
    ) -> None:
        if not name:
            raise ValueError("ServiceClient needs the callee's name")
        self.name = name
        parsed = _checked_base_url(name, base_url)
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(name)
        self._traceparent = traceparent
        pool = limits or PoolLimits()
        self._pool = ConnectionPool(
            parsed,
            max_connections=pool.max_connections,
            max_idle_connections=min(pool.max_keepalive_connections, pool.max_connections),
            idle_seconds=pool.keepalive_expiry,
            connect_timeout=self.timeouts.connect,
            read_timeout=self.timeouts.read,
        )

    @property
    def http(self) -> ConnectionPool:
        """The underlying connection pool."""
        return self._pool

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        return await self.request("GET", path, params=params, headers=headers, authorization=authorization)

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        """Retried only with an `idempotency_key` (sent as the Idempotency-Key header)."""
        return await self.request(
            "POST", path, json=json, idempotency_key=idempotency_key, headers=headers, authorization=authorization
        )

    async def put(
        self,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        return await self.request("PUT", path, json=json, headers=headers, authorization=authorization)

    async def delete(
        self,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        return await self.request("DELETE", path, headers=headers, authorization=authorization)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        authorization: str | None = None,
    ) -> Response:
        """The response (2xx-4xx), or `DependencyUnavailable`. `path` is relative to the base URL."""
        method = method.upper()
        _check_path(path)
        body = None if json is None else orjson.dumps(json)
        all_headers = self._headers(headers, authorization, idempotency_key, json=body is not None)
        prepared = self._pool.prepare(method, _target(path, params), headers=all_headers, body=body)
        deadline = asyncio.get_running_loop().time() + self.retry.budget_seconds
        try:
            return await self._attempt(prepared, path, deadline)
        except _AttemptFailed as failure:
            first_failure = failure
        retryable = method in IDEMPOTENT_METHODS or idempotency_key is not None
        return await self._retry(prepared, path, deadline, first_failure, retryable=retryable)

    async def _retry(
        self, request: PreparedRequest, path: str, deadline: float, first_failure: _AttemptFailed, *, retryable: bool
    ) -> Response:
        """Retries after a failed first attempt. Most calls succeed at once, and setting up stamina's loop costs
        about 35 µs of CPU, so the first attempt runs before it; stamina's loop then starts by replaying that
        failure, so its decisions, limits and hooks see every attempt."""
        decide = _RetryDecision(self.retry, deadline, retryable=retryable)
        attempts = 0
        try:
            async for attempt in stamina.retry_context(on=decide, attempts=self.retry.attempts, timeout=None):
                with attempt:
                    attempts += 1
                    if attempts == 1:
                        raise first_failure
                    return await self._attempt(request, path, deadline)
        except _AttemptFailed as failure:
            tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
            raise DependencyUnavailable(self.name, f"{failure.reason} ({request.method} {path}, {tries})") from failure
        raise AssertionError("unreachable: stamina either returns a response or raises")

    def snapshot(self) -> dict[str, Any]:
        """The breaker's state, for /ready and metrics logs."""
        return self.breaker.snapshot()

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _attempt(self, request: PreparedRequest, path: str, deadline: float) -> Response:
        method = request.method
        permit = self.breaker.acquire()  # DependencyUnavailable when open: no network call, no retry
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            response = await self._pool.send(request, timeout=min(self.timeouts.total, remaining))
        except HttpError as error:
            self.breaker.record(permit, success=False)
            raise _AttemptFailed(f"{self.name} {method} {path}", _describe(error)) from error
        except BaseException:
            self.breaker.release(permit)
            raise
        status = response.status_code
        self.breaker.record(permit, success=status < 500 and status != 429)
        if status in RETRYABLE_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
            raise _AttemptFailed(f"{self.name} {method} {path}", f"HTTP {status}", retry_after)
        if status >= 500:
            raise DependencyUnavailable(self.name, f"HTTP {status} ({method} {path})")
        return response

    def _headers(
        self, extra: Mapping[str, str] | None, authorization: str | None, idempotency_key: str | None, *, json: bool
    ) -> dict[str, str]:
        headers = dict(extra or {})
        if json:
            headers["Content-Type"] = "application/json"
        traceparent = self._traceparent() if self._traceparent else None
        if traceparent:
            headers["traceparent"] = traceparent
        if authorization:
            headers["Authorization"] = authorization
        if idempotency_key is not None:
            headers["Idempotency-Key"] = _checked_idempotency_key(idempotency_key)
        return headers


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header (delta-seconds or an HTTP date) as seconds from `now`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _describe(error: HttpError) -> str:
    if isinstance(error, HttpTimeoutError):
        return f"timeout ({type(error).__name__})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _target(path: str, params: Mapping[str, Any] | None) -> str:
    """The path percent-encoded, with `params` as its query (values as str; a sequence repeats its name)."""
    target = quote(path, safe=PATH_SAFE_CHARACTERS)
    if params:
        target += ("&" if "?" in target else "?") + urlencode(params, doseq=True)
    return target


def _checked_base_url(name: str, base_url: str) -> BaseUrl:
    try:
        return BaseUrl.parse(base_url)
    except ValueError as error:
        raise ValueError(
            f"{name}: base URL must be http(s)://host[:port][/prefix] without query, fragment or credentials, "
            f"got {base_url!r}"
        ) from error


def _check_path(path: str) -> None:
    # Only paths below the callee's base URL: an absolute URL here would send the caller's token elsewhere.
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"path must start with a single '/' (relative to the callee's base URL), got {path!r}")


def _checked_idempotency_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ValueError(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters, got {key!r}"
        )
    return key
