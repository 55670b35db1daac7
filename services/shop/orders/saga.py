"""The checkout saga: reserve stock, take the payment, commit the stock; compensate when a later step fails.

    pending --reserved--> reserved --captured--> paid --committed--> confirmed
       |                     |   \\--declined--> releasing --released--> payment_failed
       |                     |    \\-payments unavailable--> payment_pending (retried with backoff, same key)
       |                     \\-reservation about to expire, no capture--> releasing --> cancelled
       |                      \\-reservation about to expire, captured--> refunding --refunded--> cancelled
       |--insufficient stock--> rejected             paid --commit refused (expired)--> refunding --> cancelled
       \\--products unavailable for PENDING_GIVE_UP_SECONDS--> releasing --> rejected

Every remote call is idempotent on the order id (the reservation is the order's; the charge's Idempotency-Key is
the order id; the refund's is derived from it), so repeating a step after a crash, a timeout or a lost lease is
harmless: a resumed order can neither hold stock twice nor be charged twice. A step whose callee is unavailable
is parked with exponential backoff and jitter; the recovery loop (recovery.py) picks it up when due.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.shop.common.breaker import DependencyUnavailable
from services.shop.orders.domain import RELEASE_OUTCOMES, Inventory, Order, OutOfStock, PaymentRecord, Payments
from services.shop.orders.store import OrderStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SagaTimings:
    reservation_ttl_seconds: int
    reservation_safety_seconds: float
    pending_give_up_seconds: float
    retry_base_seconds: float
    retry_max_seconds: float

    def backoff(self, attempts: int) -> float:
        """Seconds before try `attempts + 1` of a parked step: exponential, capped, with "equal jitter"."""
        ceiling = min(self.retry_max_seconds, self.retry_base_seconds * 2 ** min(attempts, 30))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


def utc_now() -> datetime:
    return datetime.now(UTC)


class Saga:
    def __init__(
        self,
        store: OrderStore,
        inventory: Inventory,
        payments: Payments,
        timings: SagaTimings,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._store = store
        self._inventory = inventory
        self._payments = payments
        self._timings = timings
        self._clock = clock

    async def drive(self, order: Order) -> Order:
        """Run steps until the order is finished, parked for a retry, or taken over by another driver; return
        the last state this driver committed."""
        while not order.finished:
            moved = await self.step(order)
            if moved is None:
                log.info("order taken over by another driver", extra={"order_id": str(order.id)})
                return order
            parked = moved.attempts > 0
            order = moved
            if parked:
                return order
        return order

    async def step(self, order: Order) -> Order | None:
        """One step for the order's status (see the module docstring); None if the order is no longer ours."""
        try:
            match order.status:
                case "pending":
                    return await self._reserve(order)
                case "reserved" | "payment_pending":
                    return await self._pay(order)
                case "paid":
                    return await self._commit(order)
                case "refunding":
                    if order.payment_id is not None:  # None: nothing was charged (a free order)
                        await self._payments.refund(order.payment_id, order.id)
                    return await self._store.move(order, "cancelled")
                case "releasing":
                    await self._inventory.release(order.id)
                    return await self._store.move(order, RELEASE_OUTCOMES[order.reason or "payment_declined"])
                case _:
                    return order
        except DependencyUnavailable as unavailable:
            return await self._park(order, unavailable)

    async def _park(self, order: Order, unavailable: DependencyUnavailable) -> Order | None:
        # Reserved but the charge could not be made: the customer sees `payment_pending`.
        to = "payment_pending" if order.status == "reserved" else order.status
        delay = self._timings.backoff(order.attempts)
        log.warning(
            "order step parked",
            extra={
                "order_id": str(order.id),
                "status": order.status,
                "dependency": unavailable.service,
                "error": unavailable.reason,
                "attempts": order.attempts + 1,
                "retry_in_seconds": round(delay, 2),
            },
        )
        return await self._store.move(order, to, retry_in=delay)

    async def _reserve(self, order: Order) -> Order | None:
        if (self._clock() - order.created_at).total_seconds() > self._timings.pending_give_up_seconds:
            # A reservation that timed out may still have been made: release whatever is there.
            return await self._store.move(order, "releasing", reason="products_unavailable")
        result = await self._inventory.reserve(order.id, order.lines, self._timings.reservation_ttl_seconds)
        if isinstance(result, OutOfStock):
            return await self._store.move(order, "rejected", reason=result.reason)
        return await self._store.move(order, "reserved", expires_at=result.expires_at)

    async def _pay(self, order: Order) -> Order | None:
        if self._reservation_ending(order):
            return await self._abandon_expiring(order)
        if order.total_cents == 0:
            return await self._store.move(order, "paid")  # nothing to charge: payments refuses zero amounts
        charge = await self._payments.charge(order.id, order.total_cents, order.currency)
        if charge.captured:
            return await self._store.move(order, "paid", payment_id=charge.payment_id)
        reason = "payment_declined"
        log.info("payment declined", extra={"order_id": str(order.id), "decline_code": charge.decline_code})
        return await self._store.move(order, "releasing", reason=reason, payment_id=charge.payment_id)

    def _reservation_ending(self, order: Order) -> bool:
        expires_at = order.reservation_expires_at
        if expires_at is None:
            return False
        return (expires_at - self._clock()).total_seconds() <= self._timings.reservation_safety_seconds

    async def _abandon_expiring(self, order: Order) -> Order | None:
        """No new charge this close to the expiry. A charge an earlier try made (its answer lost) is refunded; one
        whose outcome payments does not know yet (`pending`) is first settled under the same idempotency key,
        which resumes that payment and never starts another."""
        payment = await self._payments.find_payment(order.id)
        if payment is not None and payment.status == "pending":
            charge = await self._payments.charge(order.id, order.total_cents, order.currency)
            payment = PaymentRecord(charge.payment_id, "captured" if charge.captured else "declined")
        if payment is not None and payment.status in ("captured", "refunded"):
            return await self._store.move(
                order, "refunding", reason="reservation_expired", payment_id=payment.payment_id
            )
        return await self._store.move(order, "releasing", reason="reservation_expired")

    async def _commit(self, order: Order) -> Order | None:
        if await self._inventory.commit(order.id):
            return await self._store.move(order, "confirmed")
        return await self._store.move(order, "refunding", reason="reservation_expired")
