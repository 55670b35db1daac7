"""Taking payments for orders: never twice for one key, never twice for one order.

A payment row is written (`pending`) before the provider is called, keyed by the caller's Idempotency-Key; the
provider is then called with a key derived from the payment id. So every retry of a request, and every concurrent
duplicate of it, lands on the same row and the same provider key, and the provider's own idempotency turns them
into one charge. If the provider fails transiently the row stays `pending` and the next retry with the same key
completes it. A partial unique index allows one live (pending, captured or refunded) payment per order.

No database transaction is held open across a provider call: the call takes tens of milliseconds or more, and a
pool connection pinned for that long would cap throughput at DB_POOL_MAX concurrent payments.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from services.shop.common.database import ServicePool, unflushed_transaction
from services.shop.payments.models import Payment, PaymentRequest
from services.shop.payments.provider import PaymentProvider, ProviderUnavailableError

PAYMENT_COLUMNS = "id, order_id, status, amount_cents, currency, decline_code, created_at, updated_at"

# ON CONFLICT with no target: either unique key (the idempotency key, or one live payment per order) skips.
_INSERT = f"""
INSERT INTO payments (id, order_id, idempotency_key, request_fingerprint, amount_cents, currency)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING {PAYMENT_COLUMNS}, provider_charge_id
"""  # noqa: S608 - only the column list constant is interpolated
_BY_KEY = f"SELECT {PAYMENT_COLUMNS}, provider_charge_id, request_fingerprint FROM payments WHERE idempotency_key = %s"  # noqa: S608
_LIVE_FOR_ORDER = f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = %s AND status <> 'declined'"  # noqa: S608
_BY_ID = f"SELECT {PAYMENT_COLUMNS}, provider_charge_id FROM payments WHERE id = %s"  # noqa: S608
_FOR_ORDER = f"SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = %s ORDER BY created_at, id"  # noqa: S608
_RESOLVE = f"""
UPDATE payments SET status = %s, provider_charge_id = %s, decline_code = %s, updated_at = now()
WHERE id = %s AND status = 'pending'
RETURNING {PAYMENT_COLUMNS}, provider_charge_id
"""  # noqa: S608
_REFUNDED = f"""
UPDATE payments SET status = 'refunded', provider_refund_id = %s, updated_at = now()
WHERE id = %s AND status = 'captured'
RETURNING {PAYMENT_COLUMNS}, provider_charge_id
"""  # noqa: S608


class IdempotencyKeyReusedError(Exception):
    """The Idempotency-Key was first used with a different request body."""

    def __init__(self, payment_id: uuid.UUID) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a payment with a different order_id, amount_cents or "
            "currency; use a new key for a new payment"
        )
        self.payment_id = payment_id


class OrderAlreadyPaidError(Exception):
    """The order already has a pending, captured or refunded payment under another key."""

    def __init__(self, payment: Payment) -> None:
        super().__init__(
            f"order {payment.order_id} already has a {payment.status} payment {payment.id}; "
            "a new payment is allowed only after a decline"
        )
        self.payment = payment


class NotRefundableError(Exception):
    def __init__(self, payment: Payment) -> None:
        super().__init__(f"payment {payment.id} is {payment.status}; only captured payments can be refunded")
        self.payment = payment


class PaymentNotFoundError(Exception):
    def __init__(self, payment_id: uuid.UUID) -> None:
        super().__init__(f"payment {payment_id} does not exist")
        self.payment_id = payment_id


def request_fingerprint(request: PaymentRequest) -> str:
    """What makes two requests "the same request" for an idempotency key."""
    canonical = f"{request.order_id}|{request.amount_cents}|{request.currency}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def provider_charge_key(payment_id: uuid.UUID) -> str:
    return f"charge-{payment_id}"


def provider_refund_key(payment_id: uuid.UUID) -> str:
    # One refund per payment whatever key the caller sends: a refund is all-or-nothing.
    return f"refund-{payment_id}"


class PaymentService:
    def __init__(self, pool: ServicePool, provider: PaymentProvider, *, provider_timeout_seconds: float) -> None:
        self._pool = pool
        self._provider = provider
        self._provider_timeout_seconds = provider_timeout_seconds

    async def pay(self, idempotency_key: str, request: PaymentRequest) -> Payment:
        """The payment for this key: created, or the existing one (a pending one is completed first).

        Raises IdempotencyKeyReusedError, OrderAlreadyPaidError, or the provider's errors (the payment then stays
        pending, and a retry with the same key completes it)."""
        row = await self._claim(idempotency_key, request)
        if row["status"] == "pending":
            row = await self._capture(row)
        return Payment.model_validate(row)

    async def refund(self, payment_id: uuid.UUID) -> Payment:
        """Refund a captured payment in full; a refunded one is returned as it is (refunds are idempotent)."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_BY_ID, (payment_id,))).fetchone()
        if row is None:
            raise PaymentNotFoundError(payment_id)
        if row["status"] == "refunded":
            return Payment.model_validate(row)
        if row["status"] != "captured":
            raise NotRefundableError(Payment.model_validate(row))
        async with self._provider_deadline():
            result = await self._provider.refund(row["provider_charge_id"], provider_refund_key(payment_id))
        async with self._pool.connection() as conn:
            updated = await (await conn.execute(_REFUNDED, (result.refund_id, payment_id))).fetchone()
            if updated is None:  # a concurrent refund got there first
                updated = await (await conn.execute(_BY_ID, (payment_id,))).fetchone()
        assert updated is not None
        return Payment.model_validate(updated)

    async def get(self, payment_id: uuid.UUID) -> Payment:
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_BY_ID, (payment_id,))).fetchone()
        if row is None:
            raise PaymentNotFoundError(payment_id)
        return Payment.model_validate(row)

    async def for_order(self, order_id: uuid.UUID) -> list[Payment]:
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_FOR_ORDER, (order_id,))).fetchall()
        return [Payment.model_validate(row) for row in rows]

    @asynccontextmanager
    async def _provider_deadline(self) -> AsyncIterator[None]:
        """A provider call that outlives PROVIDER_TIMEOUT_SECONDS is a transient failure (its outcome unknown)."""
        try:
            async with asyncio.timeout(self._provider_timeout_seconds):
                yield
        except TimeoutError:
            raise ProviderUnavailableError(
                f"no answer from the payment provider within {self._provider_timeout_seconds:g} s"
            ) from None

    async def _claim(self, idempotency_key: str, request: PaymentRequest) -> dict[str, Any]:
        """Insert the pending payment, or find the one this key (or this order) already has."""
        fingerprint = request_fingerprint(request)
        values = (uuid.uuid4(), request.order_id, idempotency_key, fingerprint, request.amount_cents, request.currency)
        async with self._pool.connection() as conn:
            # Twice at most: a live payment that blocked the insert may turn out declined by the time we look.
            for _ in range(2):
                row = await (await conn.execute(_INSERT, values)).fetchone()
                if row is not None:
                    return row
                existing = await (await conn.execute(_BY_KEY, (idempotency_key,))).fetchone()
                if existing is not None:
                    if existing["request_fingerprint"] != fingerprint:
                        raise IdempotencyKeyReusedError(existing["id"])
                    return existing
                live = await (await conn.execute(_LIVE_FOR_ORDER, (request.order_id,))).fetchone()
                if live is not None:
                    raise OrderAlreadyPaidError(Payment.model_validate(live))
        raise RuntimeError(f"could not claim a payment for order {request.order_id}: conflicting writes kept racing")

    async def _capture(self, row: dict[str, Any]) -> dict[str, Any]:
        async with self._provider_deadline():
            result = await self._provider.charge(
                provider_charge_key(row["id"]), row["amount_cents"], row["currency"], str(row["order_id"])
            )
        async with self._pool.connection() as conn:
            values = (result.status, result.charge_id, result.decline_code, row["id"])
            # Not flushed: lost in a database crash, the payment is `pending` again and the same key resolves it
            # from the provider's idempotent answer; the stored response, committed next, flushes it anyway.
            async with unflushed_transaction(conn):
                resolved = await (await conn.execute(_RESOLVE, values)).fetchone()
            if resolved is None:  # a concurrent duplicate resolved it first (with the same provider answer)
                resolved = await (await conn.execute(_BY_ID, (row["id"],))).fetchone()
        assert resolved is not None
        return resolved
