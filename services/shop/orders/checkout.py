"""Placing an order: price it from products (never from the client), record it `pending`, and drive the saga
within the request's deadline. What the deadline cuts short goes on in the background under the order's lease
(and after a crash, in some task's recovery loop); the caller gets 202 and polls `GET /orders/{id}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from services.shop.common.app import ServiceError
from services.shop.common.auth import Principal
from services.shop.common.breaker import DependencyUnavailable
from services.shop.common.calls import ServiceClient
from services.shop.orders.clients import ProductsClient, Quote, UnknownProductError, json_object
from services.shop.orders.domain import Line, Order
from services.shop.orders.models import OrderRequest
from services.shop.orders.saga import Saga
from services.shop.orders.store import OrderStore, PlacedHook

log = logging.getLogger(__name__)


class UserDirectory:
    """The customer's email (notifications need a recipient; tokens carry only the user id), from users'
    `GET /users/me` with the caller's own token, remembered for `ttl_seconds` so a returning customer costs no call.
    Users unavailable: None (the order goes on; its notification cannot be addressed)."""

    def __init__(self, client: ServiceClient, *, ttl_seconds: float = 600.0, max_entries: int = 50_000) -> None:
        self.client = client
        self._ttl_seconds = ttl_seconds
        self._max_entries = max_entries
        self._emails: dict[str, tuple[float, str]] = {}

    async def email(self, user_id: str, authorization: str) -> str | None:
        cached = self._emails.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            response = await self.client.get("/users/me", authorization=authorization)
            body = json_object(self.client, response) if response.status_code == 200 else {}
        except DependencyUnavailable as unavailable:
            log.warning("users unavailable; order placed without an email", extra={"error": unavailable.reason})
            return None
        email = body.get("email") if str(body.get("id")) == user_id else None
        if not isinstance(email, str):
            log.warning("users did not return the caller's email", extra={"status": response.status_code})
            return None
        self._remember(user_id, email)
        return email

    def _remember(self, user_id: str, email: str) -> None:
        if len(self._emails) >= self._max_entries:
            self._emails.pop(next(iter(self._emails)))  # the oldest entry
        self._emails[user_id] = (time.monotonic() + self._ttl_seconds, email)


@dataclass(frozen=True, slots=True)
class Placed:
    order: Order
    finished: bool


# The largest amount payments charges (1,000,000.00): a larger order could never be paid.
MAX_TOTAL_CENTS = 100_000_000


def price_lines(request: OrderRequest, quotes: dict[str, Quote]) -> list[Line]:
    """The order's lines at products' prices; 422 if a product is not sold in the order's currency or the total
    is more than payments can charge."""
    lines: list[Line] = []
    for item in request.items:
        quote = quotes[str(item.product_id)]
        if quote.currency != request.currency:
            raise ServiceError(
                422,
                "currency_mismatch",
                f"product {item.product_id} is priced in {quote.currency}, not {request.currency}; "
                f"order it in {quote.currency}",
            )
        lines.append(Line(str(item.product_id), item.quantity, quote.price_cents))
    total = sum(line.total_cents for line in lines)
    if total > MAX_TOTAL_CENTS:
        raise ServiceError(
            422,
            "order_total_too_large",
            f"the order totals {total} cents; at most {MAX_TOTAL_CENTS} cents can be paid in one order: split it",
        )
    return lines


class Checkout:
    def __init__(
        self,
        store: OrderStore,
        saga: Saga,
        products: ProductsClient,
        users: UserDirectory,
        *,
        deadline_seconds: float,
    ) -> None:
        self._store = store
        self._saga = saga
        self._products = products
        self._users = users
        self._deadline_seconds = deadline_seconds
        self._running: set[asyncio.Task[Order]] = set()

    async def place(
        self, principal: Principal, authorization: str, request: OrderRequest, *, within: PlacedHook | None = None
    ) -> Placed:
        """Place and drive an order until it finishes or the deadline passes (then `finished` is False); `within`
        runs in the transaction that records the order."""
        deadline = asyncio.get_running_loop().time() + self._deadline_seconds
        lines, email = await self._prepare(principal, authorization, request, deadline)
        order = await self._store.place(principal.user_id, email, request.currency, lines, within=within)
        log.info("order placed", extra={"order_id": str(order.id), "total_cents": order.total_cents})
        driving = asyncio.create_task(self._saga.drive(order), name=f"order-{order.id}")
        self._running.add(driving)
        driving.add_done_callback(self._finished)
        done, _ = await asyncio.wait({driving}, timeout=max(0.0, deadline - asyncio.get_running_loop().time()))
        if done:
            final = driving.result()
            return Placed(final, final.finished)
        current = await self._store.get(order.id, principal.user_id)
        return Placed(current or order, finished=False)

    async def _prepare(
        self, principal: Principal, authorization: str, request: OrderRequest, deadline: float
    ) -> tuple[list[Line], str | None]:
        product_ids = [str(item.product_id) for item in request.items]
        try:
            async with asyncio.timeout_at(deadline):
                quotes, email = await asyncio.gather(
                    self._products.quote(product_ids), self._users.email(principal.user_id, authorization)
                )
        except UnknownProductError as unknown:
            raise ServiceError(
                422, "unknown_product", f"product {unknown.product_id} does not exist; see GET /products"
            ) from None
        except (DependencyUnavailable, TimeoutError):
            raise ServiceError(
                503,
                "products_unavailable",
                "cannot price the order: products is unavailable; nothing was ordered, retry shortly",
                {"Retry-After": "2"},
            ) from None
        return price_lines(request, quotes), email

    def _finished(self, task: asyncio.Task[Order]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The order keeps its lease; a recovery loop resumes it when the lease runs out.
            log.error("driving an order failed", exc_info=task.exception())

    async def drain(self, timeout: float) -> None:
        """At shutdown: let sagas in flight finish their steps; what is left after `timeout` is cancelled and
        resumed by a recovery loop once its lease runs out."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
