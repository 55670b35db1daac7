"""The orders API: place an order (the checkout saga), list the caller's orders, read one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response

from services.shop.common.app import ServiceError
from services.shop.common.auth import CurrentUser
from services.shop.common.idempotency import HEADER, MAX_KEY_LENGTH, idempotent
from services.shop.orders.checkout import Checkout
from services.shop.orders.domain import Order
from services.shop.orders.models import MAX_PAGE, ErrorBody, OrderPage, OrderRequest, OrderResponse
from services.shop.orders.store import InvalidCursorError, OrderStore

IDEMPOTENCY_SCOPE = "POST /orders"
MAX_CURSOR_LENGTH = 200


@dataclass(frozen=True)
class OrdersServices:
    """What the routes use; built by the lifespan hook in app.py (`runtime.resources["orders"]`)."""

    store: OrderStore
    checkout: Checkout


async def _services(request: Request) -> OrdersServices:  # async: no thread-pool hand-off (common/app.py)
    return request.app.state.runtime.resources["orders"]


Services = Annotated[OrdersServices, Depends(_services)]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "No valid access token.",
        404: "No such order of the caller's.",
        409: "A request with this Idempotency-Key is still being processed; retry after Retry-After.",
        413: "The body is too large.",
        422: "Invalid request: the body names what was wrong and what is allowed.",
        503: "A dependency (products, the database, token keys) is unavailable; nothing was ordered; retry.",
    }
    return {status: {"model": ErrorBody, "description": descriptions[status]} for status in statuses}


router = APIRouter(tags=["orders"])


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderResponse,
    responses={
        202: {
            "model": OrderResponse,
            "description": "Accepted; not finished yet (e.g. payment_pending): poll Location.",
        },
        **_errors(401, 409, 413, 422, 503),
    },
)
async def place_order(
    body: OrderRequest,
    user: CurrentUser,
    services: Services,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str,
        Header(
            alias=HEADER,
            min_length=1,
            max_length=MAX_KEY_LENGTH,
            description="Unique per order attempt (a UUID): a retry with the same key never orders twice.",
        ),
    ],
) -> OrderResponse:
    """Place an order: prices come from products; the saga reserves stock, takes the payment and confirms.
    201 once the order is final (confirmed, rejected, payment_failed or cancelled: see `status`), 202 if it is
    still in progress when the deadline passes (payments unavailable: `payment_pending`, retried automatically)."""
    scope = f"user:{user.user_id}:{IDEMPOTENCY_SCOPE}"
    pool = request.app.state.runtime.pool
    async with idempotent(pool, scope=scope, key=idempotency_key, request=body.model_dump(mode="json")) as attempt:
        if attempt.replay is not None:
            order = await services.store.get(UUID(attempt.replay.body["order_id"]), user.user_id)
            if order is None:
                raise ServiceError(404, "not_found", "the order placed with this Idempotency-Key no longer exists")
            return _answer(response, order, finished=order.finished)

        async def remember(conn: Any, order: Order) -> None:
            # Committed with the order: a retry of this request answers with this order, never a second one.
            await attempt.complete(conn, 202, {"order_id": str(order.id)})

        authorization = request.headers.get("authorization", "")
        placed = await services.checkout.place(user, authorization, body, within=remember)
    return _answer(response, placed.order, finished=placed.finished)


def _answer(response: Response, order: Order, *, finished: bool) -> OrderResponse:
    response.status_code = 201 if finished else 202
    response.headers["Location"] = f"/orders/{order.id}"
    return OrderResponse.of(order)


@router.get("/orders", response_model=OrderPage, responses=_errors(401, 422, 503))
async def list_orders(
    user: CurrentUser,
    services: Services,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"Orders per page, 1-{MAX_PAGE}.")] = 20,
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_LENGTH, description="`next_cursor` of the previous page.")
    ] = None,
) -> OrderPage:
    """The caller's orders, newest first."""
    try:
        page = await services.store.list(user.user_id, limit, cursor)
    except InvalidCursorError as error:
        raise ServiceError(422, "invalid_cursor", str(error)) from None
    return OrderPage(items=[OrderResponse.of(order) for order in page.orders], next_cursor=page.next_cursor)


@router.get("/orders/{order_id}", response_model=OrderResponse, responses=_errors(401, 404, 422, 503))
async def get_order(order_id: UUID, user: CurrentUser, services: Services) -> OrderResponse:
    """One of the caller's orders (another user's order is not found, as is an unknown id)."""
    order = await services.store.get(order_id, user.user_id)
    if order is None:
        raise ServiceError(404, "not_found", f"order {order_id} not found among your orders")
    return OrderResponse.of(order)
