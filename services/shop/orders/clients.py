"""The orders service's callees over HTTP (services/shop/common/calls.ServiceClient: timeouts, retries for
idempotent calls only, a breaker per callee, traceparent), turned into the answers the saga understands.

An answer outside a callee's contract (docs/shop.md) is logged and raised as DependencyUnavailable: the step is
parked and retried with backoff, and the saga's own bounds (the reservation's expiry, PENDING_GIVE_UP_SECONDS)
end the order rather than retrying for ever.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import orjson

from services.shop.common.breaker import DependencyUnavailable
from services.shop.common.calls import Response, ServiceClient
from services.shop.orders.domain import Charge, OutOfStock, PaymentRecord, Reserved

log = logging.getLogger(__name__)


def _unexpected(client: ServiceClient, response: Response) -> DependencyUnavailable:
    detail = response.text[:300]
    log.error(
        "unexpected answer from a dependency",
        extra={
            "dependency": client.name,
            "status": response.status_code,
            "path": urlsplit(response.url).path,
            "body": detail,
        },
    )
    return DependencyUnavailable(client.name, f"unexpected HTTP {response.status_code}: {detail}")


def json_object(client: ServiceClient, response: Response) -> dict[str, Any]:
    """The response's JSON object; DependencyUnavailable (logged) if it is not one."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise _unexpected(client, response) from None
    if not isinstance(body, dict):
        raise _unexpected(client, response)
    return body


@dataclass(frozen=True, slots=True)
class Quote:
    """A product's price as products states it: the only price an order uses."""

    product_id: str
    price_cents: int
    currency: str


class UnknownProductError(LookupError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id} does not exist")
        self.product_id = product_id


class ProductsClient:
    """Products' catalog (prices) and reservations (the Inventory of the saga)."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def quote(self, product_ids: list[str]) -> dict[str, Quote]:
        """Current prices of `product_ids`, fetched concurrently; UnknownProductError for one that does not exist."""
        quotes = await asyncio.gather(*(self._quote(product_id) for product_id in product_ids))
        return {quote.product_id: quote for quote in quotes}

    async def _quote(self, product_id: str) -> Quote:
        response = await self.client.get(f"/products/{product_id}")
        if response.status_code == 404:
            raise UnknownProductError(product_id)
        if response.status_code != 200:
            raise _unexpected(self.client, response)
        body = json_object(self.client, response)
        try:
            return Quote(product_id, int(body["price_cents"]), str(body["currency"]))
        except (KeyError, TypeError, ValueError):
            raise _unexpected(self.client, response) from None

    async def reserve(self, order_id: UUID, lines: list[tuple[str, int]], ttl_seconds: int) -> Reserved | OutOfStock:
        body = {
            "order_id": str(order_id),
            "items": [{"product_id": product_id, "quantity": quantity} for product_id, quantity in lines],
            "ttl_seconds": ttl_seconds,
        }
        # Idempotent on order_id (the same order gets the same reservation), so it may be retried.
        response = await self.client.post("/reservations", json=body, idempotency_key=str(order_id))
        if response.status_code in (200, 201):
            try:
                return Reserved(datetime.fromisoformat(json_object(self.client, response)["expires_at"]))
            except (KeyError, TypeError, ValueError):
                raise _unexpected(self.client, response) from None
        # 409: insufficient stock, or the order's reservation already ended; 422: a product unknown to products.
        if response.status_code in (409, 422):
            answer = json_object(self.client, response)
            product_id = answer.get("product_id")
            return OutOfStock(str(product_id) if product_id else None, str(answer.get("error") or "insufficient_stock"))
        raise _unexpected(self.client, response)

    async def commit(self, order_id: UUID) -> bool:
        response = await self.client.post(f"/reservations/{order_id}/commit", idempotency_key=f"commit-{order_id}")
        if response.status_code == 200:
            return True
        if response.status_code in (404, 409, 410):  # released or expired: the stock is no longer the order's
            return False
        raise _unexpected(self.client, response)

    async def release(self, order_id: UUID) -> None:
        response = await self.client.delete(f"/reservations/{order_id}")
        if response.status_code in (200, 204, 404):
            return
        if response.status_code == 409:
            # Committed: nothing of the order's is held any more, so nothing is left to release.
            log.error("release refused: the reservation was committed", extra={"order_id": str(order_id)})
            return
        raise _unexpected(self.client, response)


class PaymentsClient:
    """Payments (the Payments of the saga). The charge's Idempotency-Key is the order id: one charge per order,
    however often it is retried or resumed."""

    def __init__(self, client: ServiceClient) -> None:
        self.client = client

    async def charge(self, order_id: UUID, amount_cents: int, currency: str) -> Charge:
        body = {"order_id": str(order_id), "amount_cents": amount_cents, "currency": currency}
        response = await self.client.post("/payments", json=body, idempotency_key=str(order_id))
        if response.status_code == 409:  # the same charge is in progress (an earlier try): ask again later
            raise DependencyUnavailable(self.client.name, "the payment for this order is in progress")
        if response.status_code not in (200, 201):
            raise _unexpected(self.client, response)
        payment = json_object(self.client, response)
        status = payment.get("status")
        if status not in ("captured", "declined"):
            raise _unexpected(self.client, response)
        return Charge(str(payment["id"]), status == "captured", payment.get("decline_code"))

    async def find_payment(self, order_id: UUID) -> PaymentRecord | None:
        response = await self.client.get("/payments", params={"order_id": str(order_id)})
        if response.status_code != 200:
            raise _unexpected(self.client, response)
        try:
            records = [PaymentRecord(str(p["id"]), p["status"]) for p in json_object(self.client, response)["items"]]
        except (KeyError, TypeError):
            raise _unexpected(self.client, response) from None
        # At most one payment per order may take money; declined attempts do not.
        live = [record for record in records if record.status != "declined"]
        return (live or records or [None])[-1]

    async def refund(self, payment_id: str, order_id: UUID) -> None:
        response = await self.client.post(f"/payments/{payment_id}/refund", idempotency_key=f"refund-{order_id}")
        if response.status_code not in (200, 201):
            raise _unexpected(self.client, response)
