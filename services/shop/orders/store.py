"""The orders schema's SQL. A saga step is one statement (a terminal one adds its event in the same transaction),
so no connection is held while a remote call is waited for.

Every step is a compare-and-set on (id, status, claim_token): whoever drives an order (the request that placed it,
or a recovery loop once that request's lease ran out) commits a step only while it still holds the order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.shop.common.database import ServicePool, unflushed_transaction
from services.shop.common.events import add_event
from services.shop.orders.domain import TERMINAL, UNFINISHED, Line, Order, Status

_COLUMNS = (
    "id, user_id, user_email, status, currency, items, total_cents, reason, payment_id, reservation_expires_at,"
    " attempts, next_attempt_at, claim_token, created_at, updated_at"
)

_INSERT = f"""
WITH placed AS (
    INSERT INTO orders (id, user_id, user_email, status, currency, items, total_cents, next_attempt_at, claim_token)
    VALUES (%(id)s, %(user_id)s, %(user_email)s, 'pending', %(currency)s, %(items)s, %(total_cents)s,
            now() + make_interval(secs => %(lease)s), %(claim_token)s)
    RETURNING {_COLUMNS}
), logged AS (
    INSERT INTO order_transitions (order_id, from_status, to_status) SELECT id, NULL, status FROM placed
)
SELECT {_COLUMNS} FROM placed
"""  # noqa: S608 - only the static column list is interpolated

# `attempts` counts failed tries of the current step; a step that moves on resets it.
_MOVE = f"""
WITH moved AS (
    UPDATE orders SET
        status = %(to)s,
        reason = COALESCE(%(reason)s, reason),
        payment_id = COALESCE(%(payment_id)s, payment_id),
        reservation_expires_at = COALESCE(%(expires_at)s, reservation_expires_at),
        attempts = %(attempts)s,
        next_attempt_at = now() + make_interval(secs => %(delay)s),
        updated_at = now()
    WHERE id = %(id)s AND status = %(from)s AND claim_token = %(claim_token)s
    RETURNING {_COLUMNS}
), logged AS (
    INSERT INTO order_transitions (order_id, from_status, to_status, reason)
    SELECT id, %(from)s, status, %(reason)s FROM moved WHERE status <> %(from)s
)
SELECT {_COLUMNS} FROM moved
"""  # noqa: S608

# Due orders nobody holds: each gets a new claim token and a lease, so a second loop skips it.
_CLAIM_DUE = f"""
UPDATE orders SET claim_token = gen_random_uuid(), next_attempt_at = now() + make_interval(secs => %(lease)s)
WHERE id IN (
    SELECT id FROM orders
    WHERE status = ANY(%(unfinished)s) AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING {_COLUMNS}
"""  # noqa: S608

_GET = f"SELECT {_COLUMNS} FROM orders WHERE id = %s AND user_id = %s"  # noqa: S608

_LIST_FIRST = f"""
SELECT {_COLUMNS} FROM orders WHERE user_id = %(user_id)s
ORDER BY created_at DESC, id DESC LIMIT %(limit)s
"""  # noqa: S608

_LIST_AFTER = f"""
SELECT {_COLUMNS} FROM orders WHERE user_id = %(user_id)s AND (created_at, id) < (%(created_at)s, %(id)s)
ORDER BY created_at DESC, id DESC LIMIT %(limit)s
"""  # noqa: S608


class InvalidCursorError(ValueError):
    """A `cursor` this service did not hand out."""


@dataclass(frozen=True, slots=True)
class Page:
    orders: list[Order]
    next_cursor: str | None


def encode_cursor(order: Order) -> str:
    raw = f"{order.created_at.isoformat()}|{order.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, order_id = raw.split("|")
        position = datetime.fromisoformat(created_at), UUID(order_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError("cursor is not one this API returned; pass next_cursor from a previous page") from None
    if position[0].tzinfo is None:
        raise InvalidCursorError("cursor is not one this API returned; pass next_cursor from a previous page")
    return position


# Runs inside the transaction that inserts an order (the idempotency key's completion commits with the order).
PlacedHook = Callable[[AsyncConnection[DictRow], Order], Awaitable[None]]


def _order(row: dict[str, Any] | None) -> Order:
    assert row is not None  # INSERT ... RETURNING always returns the row
    return Order.from_row(row)


class OrderStore:
    def __init__(self, pool: ServicePool, lease_seconds: float) -> None:
        self._pool = pool
        self._lease_seconds = lease_seconds

    async def place(
        self,
        user_id: str,
        user_email: str | None,
        currency: str,
        lines: list[Line],
        *,
        within: PlacedHook | None = None,
    ) -> Order:
        """A new `pending` order, held by the caller (its claim token) for one lease; `within` runs in the same
        transaction."""
        params = {
            "id": uuid4(),
            "user_id": user_id,
            "user_email": user_email,
            "currency": currency,
            "items": Jsonb([line.as_json() for line in lines]),
            "total_cents": sum(line.total_cents for line in lines),
            "lease": self._lease_seconds,
            "claim_token": uuid4(),
        }
        async with self._pool.connection() as conn:
            if within is None:
                return _order(await (await conn.execute(_INSERT, params)).fetchone())
            async with conn.transaction():
                order = _order(await (await conn.execute(_INSERT, params)).fetchone())
                await within(conn, order)
        return order

    async def move(
        self,
        order: Order,
        to: Status,
        *,
        retry_in: float | None = None,
        reason: str | None = None,
        payment_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> Order | None:
        """Commit one step: `to` (with `retry_in`, a failed try to be retried then; without, the next step is due at
        once under a fresh lease). A terminal status writes its `order.<status>` event in the same transaction.
        None when the order is no longer ours (another driver took it over)."""
        params = {
            "id": order.id,
            "from": order.status,
            "claim_token": order.claim_token,
            "to": to,
            "reason": reason,
            "payment_id": payment_id,
            "expires_at": expires_at,
            "attempts": order.attempts + 1 if retry_in is not None else 0,
            "delay": retry_in if retry_in is not None else self._lease_seconds,
        }
        async with self._pool.connection() as conn:
            if to not in TERMINAL:
                # Not flushed: after a database crash that lost it, the saga redoes the step from the status
                # before, and every step is idempotent on the order id. Terminal ones (the answer, the event) are.
                async with unflushed_transaction(conn):
                    row = await (await conn.execute(_MOVE, params)).fetchone()
                return Order.from_row(row) if row else None
            # Pipeline mode: BEGIN and the UPDATE go in one round trip, the event and COMMIT in another.
            async with conn.pipeline(), conn.transaction():
                row = await (await conn.execute(_MOVE, params)).fetchone()
                if row is None:
                    return None
                moved = Order.from_row(row)
                await add_event(conn, f"order.{to}", moved.event_payload())
        return moved

    async def claim_due(self, limit: int) -> list[Order]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _CLAIM_DUE, {"lease": self._lease_seconds, "unfinished": list(UNFINISHED), "limit": limit}
            )
            rows = await cursor.fetchall()
        return [Order.from_row(row) for row in rows]

    async def get(self, order_id: UUID, user_id: str) -> Order | None:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_GET, (order_id, user_id))).fetchone()
        return Order.from_row(row) if row else None

    async def list(self, user_id: str, limit: int, cursor: str | None) -> Page:
        params: dict[str, Any] = {"user_id": user_id, "limit": limit + 1}
        query = _LIST_FIRST
        if cursor:
            params["created_at"], params["id"] = decode_cursor(cursor)
            query = _LIST_AFTER
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(query, params)).fetchall()
        orders = [Order.from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(orders[-1]) if len(rows) > limit else None
        return Page(orders, next_cursor)
