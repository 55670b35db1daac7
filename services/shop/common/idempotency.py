"""Server-side idempotency keys for POST endpoints (orders, payments): a retried request never runs twice.

The client sends `Idempotency-Key: <1-255 printable ASCII characters>`. Per (scope, key), where the scope is the
caller and the operation (e.g. `user:42:POST /orders`):

- the first request claims the key (a committed `in_progress` row with a lease) and runs;
- the same key with the same body, once that finished, gets the stored response back without running again;
- the same key with a different body is refused with 422 naming the key (a client bug, never a retry);
- the same key while the first is still running gets 409 with Retry-After;
- a claim whose holder failed (an exception, or a 5xx it chose not to keep) is released so a retry can run, and
  one whose process died is taken over after its lease (LEASE_SECONDS, far longer than any request);
- keys expire after 24 hours (`purge_expired`, or taken over on their next use).

The table lives in each service's schema: pass `IDEMPOTENCY_MIGRATION` in `shared_migrations` of
create_service_app. Store the response in the same transaction as the request's own writes, so an order and the
response that reports it commit together:

    async with idempotent(pool, scope=f"user:{user.user_id}:POST /orders", key=key, request=body) as attempt:
        if attempt.replay:
            return attempt.replay.response()
        ...                                           # calls to other services, outside any transaction
        async with pool.connection() as conn, conn.transaction():
            ...                                       # the order's rows
            await attempt.complete(conn, 201, order)  # the stored response
        return JSONResponse(order, status_code=201)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.shop.common.app import ServiceError, ServiceRuntime
from services.shop.common.database import ServicePool, SharedMigration, unflushed_transaction

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
RETENTION_HOURS = 24
# A claim older than this whose holder never finished is taken to be orphaned (its process died).
LEASE_SECONDS = 60
# What a duplicate of a running request is told: the first one is usually done within a second or two (the lease
# is only the bound for a holder that died).
IN_PROGRESS_RETRY_AFTER_SECONDS = 1
REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_DDL = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status text NOT NULL CHECK (status IN ('in_progress', 'done')),
    owner uuid,
    locked_until timestamptz,
    response_status smallint,
    response_body jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key),
    CHECK ((status = 'done') = (response_status IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created_at ON idempotency_keys (created_at);
"""
IDEMPOTENCY_MIGRATION: SharedMigration = ("shop-common/0001_idempotency_keys.sql", IDEMPOTENCY_DDL)

# One statement: insert the claim, or take over a row that is expired or orphaned with the same request.
_CLAIM = """
INSERT INTO idempotency_keys AS k (scope, key, request_hash, status, owner, locked_until)
VALUES (%(scope)s, %(key)s, %(hash)s, 'in_progress', %(owner)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (scope, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, status = 'in_progress', owner = EXCLUDED.owner,
    locked_until = EXCLUDED.locked_until, response_status = NULL, response_body = NULL, created_at = now()
WHERE k.created_at < now() - make_interval(hours => %(retention)s)
   OR (k.status = 'in_progress' AND k.locked_until < now() AND k.request_hash = EXCLUDED.request_hash)
RETURNING owner
"""
_EXISTING = (
    "SELECT request_hash, status, response_status, response_body FROM idempotency_keys WHERE scope = %s AND key = %s"
)
# A claim may vanish (released) between the INSERT that found it and the SELECT that reads it: try again.
_CLAIM_ATTEMPTS = 3


class IdempotencyKeyReusedError(ServiceError):
    def __init__(self, key: str) -> None:
        super().__init__(
            422,
            "idempotency_key_reused",
            f"Idempotency-Key {key!r} was already used with a different request body; "
            "use a new key for a different request",
        )


class IdempotencyInProgressError(ServiceError):
    def __init__(self, key: str, retry_after: int) -> None:
        super().__init__(
            409,
            "idempotency_key_in_progress",
            f"a request with Idempotency-Key {key!r} is still being processed; retry after {retry_after}s",
            {"Retry-After": str(retry_after)},
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored response of the request that used this key first."""

    status: int
    body: Any

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers={REPLAYED_HEADER: "true"})


@dataclass(frozen=True, slots=True)
class Fresh:
    """This request holds the key: run it, then `complete` (or `release`)."""

    scope: str
    key: str
    owner: uuid.UUID


def validate_key(key: str | None) -> str:
    """The key from the Idempotency-Key header, or 422 saying what a key must be."""
    if key is None or not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise ServiceError(
            422,
            "invalid_idempotency_key",
            f"the {HEADER} header must be 1 to {MAX_KEY_LENGTH} printable ASCII characters (a UUID is ideal)",
        )
    return key


def request_hash(request: bytes | Mapping[str, Any]) -> bytes:
    """SHA-256 of the raw body, or of a parsed body with its keys sorted (so key order does not matter)."""
    raw = request if isinstance(request, bytes) else orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(raw).digest()


async def begin(
    conn: AsyncConnection[DictRow], scope: str, key: str, request: bytes | Mapping[str, Any]
) -> Fresh | Replay:
    """Claim `key` in `scope` (autocommit connection: the claim commits at once), or return the stored response.

    Raises IdempotencyKeyReusedError (422) for a different body, IdempotencyInProgressError (409) while the first
    request runs."""
    digest = request_hash(request)
    owner = uuid.uuid4()
    params = {"scope": scope, "key": key, "hash": digest, "owner": owner, "lease": LEASE_SECONDS}
    for _ in range(_CLAIM_ATTEMPTS):
        # Not flushed: a claim lost in a database crash is made again by the retry; the request's own writes and
        # `complete` commit after it, flushing it with them.
        async with unflushed_transaction(conn):
            claimed = await (await conn.execute(_CLAIM, params | {"retention": RETENTION_HOURS})).fetchone()
        if claimed is not None:
            return Fresh(scope, key, owner)
        row = await (await conn.execute(_EXISTING, (scope, key))).fetchone()
        if row is None:
            continue
        if bytes(row["request_hash"]) != digest:
            raise IdempotencyKeyReusedError(key)
        if row["status"] == "done":
            return Replay(row["response_status"], row["response_body"])
        raise IdempotencyInProgressError(key, IN_PROGRESS_RETRY_AFTER_SECONDS)
    raise IdempotencyInProgressError(key, IN_PROGRESS_RETRY_AFTER_SECONDS)


async def complete(conn: AsyncConnection[DictRow], claim: Fresh, status: int, body: Any) -> None:
    """Store the response (inside the transaction of the request's own writes). Raises if the claim was lost."""
    result = await conn.execute(
        "UPDATE idempotency_keys SET status = 'done', response_status = %s, response_body = %s, locked_until = NULL"
        " WHERE scope = %s AND key = %s AND owner = %s AND status = 'in_progress'",
        (status, Jsonb(body, dumps=_dumps), claim.scope, claim.key, claim.owner),
    )
    if result.rowcount != 1:
        raise RuntimeError(f"the claim on Idempotency-Key {claim.key!r} expired before the request completed")


async def release(conn: AsyncConnection[DictRow], claim: Fresh) -> None:
    """Give the key back (the request failed without a response worth keeping): a retry may run."""
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE scope = %s AND key = %s AND owner = %s AND status = 'in_progress'",
        (claim.scope, claim.key, claim.owner),
    )


async def purge_expired(conn: AsyncConnection[DictRow]) -> int:
    """Delete keys older than RETENTION_HOURS; returns how many."""
    result = await conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => %s)", (RETENTION_HOURS,)
    )
    return result.rowcount


PURGE_INTERVAL_SECONDS = 600.0


def expired_key_purging(
    interval_seconds: float = PURGE_INTERVAL_SECONDS,
) -> Callable[[ServiceRuntime], AbstractAsyncContextManager[None]]:
    """Lifespan hook: delete expired keys every `interval_seconds` while the service runs (every task does it; the
    DELETE is harmless twice). Without it the table keeps a row and its stored answer per request, forever."""

    @asynccontextmanager
    async def hook(runtime: ServiceRuntime) -> AsyncIterator[None]:
        task = asyncio.create_task(_purge_periodically(runtime.pool, interval_seconds), name="idempotency-purge")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return hook


async def _purge_periodically(pool: ServicePool, interval_seconds: float) -> None:
    while True:
        try:
            async with pool.connection() as conn:
                deleted = await purge_expired(conn)
            if deleted:
                log.info("purged expired idempotency keys", extra={"deleted": deleted})
        except Exception:
            log.exception("purging expired idempotency keys failed; will try again")
        await asyncio.sleep(interval_seconds)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Attempt:
    """One request under an idempotency key: either `replay` is set, or the caller runs and calls `complete`."""

    def __init__(self, outcome: Fresh | Replay) -> None:
        self.replay = outcome if isinstance(outcome, Replay) else None
        self._claim = outcome if isinstance(outcome, Fresh) else None

    @property
    def claim(self) -> Fresh | None:
        return self._claim

    async def complete(self, conn: AsyncConnection[DictRow], status: int, body: Any) -> None:
        if self._claim is None:
            raise RuntimeError("a replayed request has nothing to complete")
        await complete(conn, self._claim, status, body)


@asynccontextmanager
async def idempotent(
    pool: ServicePool, *, scope: str, key: str, request: bytes | Mapping[str, Any]
) -> AsyncIterator[Attempt]:
    """`begin`, and release the claim if the block ends without a committed `attempt.complete` (an exception, or
    a transaction rolled back after it): releasing only ever deletes a claim still `in_progress`."""
    async with pool.connection() as conn:
        attempt = Attempt(await begin(conn, scope, validate_key(key), request))
    try:
        yield attempt
    finally:
        if attempt.claim is not None:
            async with pool.connection() as conn:
                await release(conn, attempt.claim)
