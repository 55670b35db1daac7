"""Stock reservations for orders: all or nothing, idempotent on the order id, never overselling.

Every change of available stock goes through the `adjust_stock` SQL function (migrations/0001_products.sql): one
atomic `UPDATE ... WHERE available + delta >= 0` per product, in product id order. Concurrent reservations
therefore lock stock rows in one global order (no deadlocks) and each sees the stock left by the ones before it
(no overselling). Each operation that changes stock is a single statement on an autocommit connection (one round
trip), so a hot product's row stays locked only while PostgreSQL runs it, not while the client talks to it.

Life of a reservation: `held` (stock taken) -> `committed` (the order is paid; the stock is gone for good), or
-> `released` (the order gave up) / `expired` (nobody committed it in time) with the stock returned.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, LiteralString
from uuid import UUID

from psycopg import AsyncConnection, errors, sql
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

ReservationStatus = Literal["held", "committed", "released", "expired"]
DEFAULT_TTL_SECONDS = 600
MAX_TTL_SECONDS = 3600
MAX_LINES = 100
MAX_QUANTITY = 10_000


class ReservationItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: UUID
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class ReservationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: UUID = Field(description="The order the stock is for; also the idempotency key of the reservation.")
    items: list[ReservationItem] = Field(
        min_length=1,
        max_length=MAX_LINES,
        description="Lines to reserve, all or nothing; lines naming the same product are added together.",
    )
    ttl_seconds: int = Field(
        default=DEFAULT_TTL_SECONDS,
        ge=1,
        le=MAX_TTL_SECONDS,
        description="How long the stock stays held without a commit; then it is returned.",
    )


class Reservation(BaseModel):
    order_id: UUID
    status: ReservationStatus
    expires_at: datetime
    items: list[ReservationItem] = Field(description="One line per product, in product id order.")


@dataclass(frozen=True, slots=True)
class StockChange:
    """A stock row after a change: what the cache must forget."""

    product_id: UUID
    version: int
    available: int


class InventoryError(Exception):
    """A refused reservation operation; `code` is the API's error code."""

    code = "inventory_error"


class InsufficientStock(InventoryError):
    code = "insufficient_stock"

    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"not enough stock of product {product_id} for this reservation; nothing was reserved")
        self.product_id = product_id


class UnknownProduct(InventoryError):
    code = "unknown_product"

    def __init__(self, product_id: UUID) -> None:
        super().__init__(f"product {product_id} does not exist; nothing was reserved")
        self.product_id = product_id


class ReservationMismatch(InventoryError):
    code = "reservation_mismatch"

    def __init__(self, order_id: UUID) -> None:
        super().__init__(
            f"order {order_id} already has a reservation for different items; a retry must send the same items"
        )


class ReservationNotFound(InventoryError):
    code = "reservation_not_found"

    def __init__(self, order_id: UUID) -> None:
        super().__init__(f"order {order_id} has no reservation")


class ReservationClosed(InventoryError):
    """The reservation is in a state that refuses the operation (e.g. committing a released one)."""

    def __init__(self, order_id: UUID, status: ReservationStatus, operation: str) -> None:
        super().__init__(f"cannot {operation} the reservation of order {order_id}: it is {status}")
        self.code = f"reservation_{status}"
        self.status = status


def merge_lines(items: list[ReservationItem]) -> list[ReservationItem]:
    """One line per product (quantities added up), in product id order: the order stock rows are locked in."""
    totals: dict[UUID, int] = defaultdict(int)
    for item in items:
        totals[item.product_id] += item.quantity
    return [ReservationItem(product_id=pid, quantity=qty) for pid, qty in sorted(totals.items())]


def request_hash(lines: list[ReservationItem]) -> str:
    """Fingerprint of the merged lines: tells a retry of a reservation from a different one for the same order."""
    text = ",".join(f"{line.product_id}:{line.quantity}" for line in lines)
    return hashlib.sha256(text.encode()).hexdigest()


_RESERVE = """
SELECT expires_at, product_id, version, available
FROM reserve_stock(%(order_id)s, %(hash)s, %(ttl)s, %(ids)s::uuid[], %(qty)s::integer[])
"""

_SELECT_RESERVATION = """
SELECT r.order_id, r.status, r.request_hash, r.expires_at,
       coalesce(array_agg(i.product_id ORDER BY i.product_id) FILTER (WHERE i.product_id IS NOT NULL), '{}') AS ids,
       coalesce(array_agg(i.quantity ORDER BY i.product_id) FILTER (WHERE i.product_id IS NOT NULL), '{}') AS qty
FROM reservations r LEFT JOIN reservation_items i USING (order_id)
WHERE r.order_id = %(order_id)s
GROUP BY r.order_id
"""

# Ends reservations ({ended}: an UPDATE of held ones, RETURNING order_id) and gives their stock back, in one
# statement: the stock rows stay locked only while it runs. One row per stock row changed, each with the number
# of reservations ended (one row of NULLs when none had stock to return).
_END_AND_RETURN_STOCK = sql.SQL("""
WITH ended AS ({ended}), returned AS (
    SELECT array_agg(product_id) AS ids, array_agg(quantity) AS qty
    FROM (SELECT i.product_id, sum(i.quantity)::integer AS quantity
          FROM reservation_items i JOIN ended USING (order_id) GROUP BY i.product_id) AS per_product
)
SELECT (SELECT count(*) FROM ended) AS ended, a.product_id, a.version, a.available
FROM returned LEFT JOIN LATERAL adjust_stock(returned.ids, returned.qty) AS a ON true
""")

# `past_expiry_only`: only if it is past its expiry.
_END_HELD = _END_AND_RETURN_STOCK.format(
    ended=sql.SQL("""UPDATE reservations SET status = %(status)s, updated_at = now()
    WHERE order_id = %(order_id)s AND status = 'held' AND (NOT %(past_expiry_only)s OR expires_at <= now())
    RETURNING order_id""")
)

# SKIP LOCKED: the sweepers of several processes take different reservations, and never wait for a commit or a
# release that holds one.
_EXPIRE_DUE = _END_AND_RETURN_STOCK.format(
    ended=sql.SQL("""UPDATE reservations SET status = 'expired', updated_at = now()
    WHERE order_id IN (
        SELECT order_id FROM reservations WHERE status = 'held' AND expires_at <= now()
        ORDER BY expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
    )
    RETURNING order_id""")
)

_COMMIT = """
UPDATE reservations SET status = 'committed', updated_at = now()
WHERE order_id = %(order_id)s AND status = 'held' AND expires_at > now()
RETURNING order_id
"""

# Released before it was ever reserved (the reserve call is late or lost): a tombstone keeps it from taking stock.
_TOMBSTONE = """
INSERT INTO reservations (order_id, status, expires_at) VALUES (%(order_id)s, 'released', now())
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""

Connection = AsyncConnection[Any]


def _reservation(row: dict[str, Any]) -> Reservation:
    items = [ReservationItem(product_id=pid, quantity=qty) for pid, qty in zip(row["ids"], row["qty"], strict=True)]
    return Reservation(order_id=row["order_id"], status=row["status"], expires_at=row["expires_at"], items=items)


async def _select(conn: Connection, order_id: UUID) -> dict[str, Any] | None:
    return await (await conn.execute(_SELECT_RESERVATION, {"order_id": order_id})).fetchone()


def _changes(rows: list[dict[str, Any]]) -> list[StockChange]:
    return [
        StockChange(row["product_id"], row["version"], row["available"])
        for row in rows
        if row["product_id"] is not None
    ]


async def _stock_query(
    conn: Connection, query: LiteralString | sql.Composed, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run a statement that changes stock through adjust_stock, turning its refusal into the domain's errors."""
    try:
        return await (await conn.execute(query, params)).fetchall()
    except errors.RaiseException as error:
        product_id = UUID(error.diag.message_primary or "")
        if error.diag.message_hint == "unknown_product":
            raise UnknownProduct(product_id) from None
        raise InsufficientStock(product_id) from None


async def _end_held(
    conn: Connection, order_id: UUID, status: ReservationStatus, *, past_expiry_only: bool
) -> list[StockChange]:
    params = {"order_id": order_id, "status": status, "past_expiry_only": past_expiry_only}
    return _changes(await _stock_query(conn, _END_HELD, params))


async def reserve(conn: Connection, request: ReservationRequest) -> tuple[Reservation, bool, list[StockChange]]:
    """Hold the stock of every line, or none (one statement: `conn` must be in autocommit mode). Returns the
    reservation, whether this call created it (False: a retry, answered with the existing reservation) and the
    stock it changed."""
    lines = merge_lines(request.items)
    digest = request_hash(lines)
    params = {
        "order_id": request.order_id,
        "hash": digest,
        "ttl": request.ttl_seconds,
        "ids": [line.product_id for line in lines],
        "qty": [line.quantity for line in lines],
    }
    rows = await _stock_query(conn, _RESERVE, params)
    if not rows:
        return await _existing(conn, request.order_id, digest), False, []
    reservation = Reservation(order_id=request.order_id, status="held", expires_at=rows[0]["expires_at"], items=lines)
    return reservation, True, _changes(rows)


async def _existing(conn: Connection, order_id: UUID, digest: str) -> Reservation:
    row = await _select(conn, order_id)
    assert row is not None  # reserve_stock found it (reservations are never deleted)
    if row["status"] in ("released", "expired"):
        raise ReservationClosed(order_id, row["status"], "reserve again")
    if row["request_hash"] != digest:
        raise ReservationMismatch(order_id)
    return _reservation(row)


async def get(conn: Connection, order_id: UUID) -> Reservation:
    row = await _select(conn, order_id)
    if row is None:
        raise ReservationNotFound(order_id)
    return _reservation(row)


async def commit(conn: Connection, order_id: UUID) -> tuple[ReservationStatus, list[StockChange]]:
    """Make a held reservation permanent (idempotent): the status it ends in (`committed`, or the `released` /
    `expired` that refused it) and the stock that changed. A reservation past its expiry is expired on the spot,
    its stock returned, rather than committed."""
    if await (await conn.execute(_COMMIT, {"order_id": order_id})).fetchone() is not None:
        return "committed", []
    row = await _select(conn, order_id)
    if row is None:
        raise ReservationNotFound(order_id)
    if row["status"] != "held":
        return row["status"], []
    # Held past its expiry (or expired by a sweeper since the select: then this finds nothing to do).
    return "expired", await _end_held(conn, order_id, "expired", past_expiry_only=True)


async def release(conn: Connection, order_id: UUID) -> list[StockChange]:
    """Give a held reservation's stock back (idempotent: released, expired or unknown reservations are left as
    they are, an unknown one gets a tombstone). A committed reservation is refused."""
    changes = await _end_held(conn, order_id, "released", past_expiry_only=False)
    if changes:
        return changes
    row = await _select(conn, order_id)
    if row is None:
        if await (await conn.execute(_TOMBSTONE, {"order_id": order_id})).fetchone() is None:
            return await release(conn, order_id)  # its reservation was made meanwhile: release that
    elif row["status"] == "committed":
        raise ReservationClosed(order_id, "committed", "release")
    return []


async def expire_due(conn: Connection, limit: int) -> tuple[int, list[StockChange]]:
    """Expire up to `limit` held reservations past their expiry and return their stock: (how many, changes)."""
    rows = await _stock_query(conn, _EXPIRE_DUE, {"limit": limit})
    return rows[0]["ended"], _changes(rows)
