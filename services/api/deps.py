"""Process-wide resources (created in the app lifespan) and the dependencies routes use.

The dependencies are `async def` although they never await: FastAPI runs plain `def` dependencies in its
thread pool, and three thread hand-offs per request were a measurable share of the submit path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, Header, HTTPException, Request, status
from psycopg_pool import AsyncConnectionPool

from services.api.group_commit import JobInserter
from services.api.ratelimit import RateLimiter
from services.api.relay import OutboxRelay
from services.common.redis_client import CircuitBreaker
from services.common.security_events import RATE_LIMITED, security_event
from services.common.settings import Settings
from services.common.storage import Storage

CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
IDEMPOTENCY_KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")


@dataclass
class AppState:
    settings: Settings
    pool: AsyncConnectionPool[Any]
    redis: aioredis.Redis
    redis_breaker: CircuitBreaker
    sqs: Any
    storage: Storage
    relay: OutboxRelay
    limiter: RateLimiter
    inserter: JobInserter


async def get_state(request: Request) -> AppState:
    return request.app.state.services


State = Annotated[AppState, Depends(get_state)]


async def client_id(
    request: Request,
    x_client_id: Annotated[
        str | None,
        Header(
            pattern=CLIENT_ID_PATTERN.pattern,
            description="Caller identity for rate limiting and listing; defaults to the peer address.",
        ),
    ] = None,
) -> str:
    if x_client_id is not None:
        return x_client_id
    peer = request.client.host if request.client else "unknown"
    return f"ip:{peer}"


ClientId = Annotated[str, Depends(client_id)]


async def enforce_rate_limit(state: AppState, client: str) -> None:
    """Take one token from the client's bucket, or raise 429 with Retry-After."""
    decision = await state.limiter.check(client)
    if not decision.allowed:
        security_event(RATE_LIMITED, "request refused: rate limit", limiter="api_client", client_id=client)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {state.settings.RATE_LIMIT_PER_SECOND:g} requests/s"
            f" (burst {state.settings.RATE_LIMIT_BURST}) exceeded for client {client!r}",
            headers={"Retry-After": str(decision.retry_after_seconds)},
        )


async def rate_limited_client(state: State, client: ClientId) -> str:
    await enforce_rate_limit(state, client)
    return client


RateLimitedClient = Annotated[str, Depends(rate_limited_client)]


async def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=IDEMPOTENCY_KEY_PATTERN.pattern,
            description="Client-chosen key (1-128 printable ASCII, no spaces): a retry with the same key and "
            "body returns the original instead of creating another.",
        ),
    ] = None,
) -> str | None:
    return idempotency_key


IdempotencyKey = Annotated[str | None, Depends(idempotency_key)]
