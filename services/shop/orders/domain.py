"""Orders as the saga sees them: statuses, the order record, and what the order's callees can answer.

Statuses (each persisted before the next remote call; see saga.py for the transitions):

    pending          created, prices quoted; stock not yet reserved
    reserved         stock held by products until `reservation_expires_at`; payment not yet taken
    payment_pending  payments could not answer; the recovery loop retries the charge (same idempotency key)
    paid             payment captured; the reservation not yet committed
    releasing        giving the held stock back (after a decline, an expiry, or products staying unavailable)
    refunding        refunding a captured payment whose stock could not be committed
    confirmed | rejected | payment_failed | cancelled   terminal
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from uuid import UUID

Status = Literal[
    "pending",
    "reserved",
    "payment_pending",
    "paid",
    "releasing",
    "refunding",
    "confirmed",
    "rejected",
    "payment_failed",
    "cancelled",
]

TERMINAL: frozenset[Status] = frozenset({"confirmed", "rejected", "payment_failed", "cancelled"})
UNFINISHED: tuple[Status, ...] = ("pending", "reserved", "payment_pending", "paid", "releasing", "refunding")

# Why an order is released decides how it ends.
RELEASE_OUTCOMES: dict[str, Status] = {
    "payment_declined": "payment_failed",
    "reservation_expired": "cancelled",
    "products_unavailable": "rejected",
}


@dataclass(frozen=True, slots=True)
class Line:
    """One order line, priced by products when the order was placed."""

    product_id: str
    quantity: int
    unit_price_cents: int

    @property
    def total_cents(self) -> int:
        return self.unit_price_cents * self.quantity

    def as_json(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "quantity": self.quantity,
            "unit_price_cents": self.unit_price_cents,
            "line_total_cents": self.total_cents,
        }


@dataclass(frozen=True, slots=True)
class Order:
    """An order row. `claim_token` identifies whoever drives it now: a step commits only under that token."""

    id: UUID
    user_id: str
    user_email: str | None
    status: Status
    currency: str
    items: list[dict[str, Any]]
    total_cents: int
    reason: str | None
    payment_id: str | None
    reservation_expires_at: datetime | None
    attempts: int
    next_attempt_at: datetime
    claim_token: UUID | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Order:
        return cls(**row)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @property
    def lines(self) -> list[tuple[str, int]]:
        """(product_id, quantity) per line: what a reservation holds."""
        return [(item["product_id"], item["quantity"]) for item in self.items]

    def event_payload(self) -> dict[str, Any]:
        """What a notification about this order needs (services/shop/notifications/messages.py)."""
        return {
            "order_id": str(self.id),
            "user_id": self.user_id,
            "email": self.user_email,
            "status": self.status,
            "reason": self.reason,
            "total_cents": self.total_cents,
            "currency": self.currency,
            "items": self.items,
        }


# --- What the callees answer (the adapters in clients.py turn HTTP into these) ---


@dataclass(frozen=True, slots=True)
class Reserved:
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OutOfStock:
    """Products refused the reservation for good: `code` says why (insufficient_stock, the order's reservation
    already ended, a product it does not know)."""

    product_id: str | None
    code: str = "insufficient_stock"

    @property
    def reason(self) -> str:
        return f"{self.code}:{self.product_id}" if self.product_id else self.code


@dataclass(frozen=True, slots=True)
class Charge:
    payment_id: str
    captured: bool
    decline_code: str | None = None


PaymentStatus = Literal["pending", "captured", "declined", "refunded"]


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """An order's payment as payments knows it; `pending`: the provider's answer is not known yet."""

    payment_id: str
    status: PaymentStatus


class Inventory(Protocol):
    """Products' reservations, all idempotent on the order id. Unreachable: raise DependencyUnavailable."""

    async def reserve(
        self, order_id: UUID, lines: list[tuple[str, int]], ttl_seconds: int
    ) -> Reserved | OutOfStock: ...

    async def commit(self, order_id: UUID) -> bool:
        """True once committed; False when products refuses (the reservation was released or expired)."""
        ...

    async def release(self, order_id: UUID) -> None: ...


class Payments(Protocol):
    """Payments, idempotent on the order id. Unreachable (or a transient provider failure): DependencyUnavailable."""

    async def charge(self, order_id: UUID, amount_cents: int, currency: str) -> Charge: ...

    async def find_payment(self, order_id: UUID) -> PaymentRecord | None:
        """The order's payment that may have taken money (else its declined one), if there is any."""
        ...

    async def refund(self, payment_id: str, order_id: UUID) -> None: ...
