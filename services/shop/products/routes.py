"""HTTP routes: the public catalog (`GET /products`, `GET /products/{id}`) and the internal reservations that
only orders calls (reachable over Service Connect; the gateway routes none of them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from services.shop.common.app import OrjsonResponse, error_response
from services.shop.common.database import ServicePool
from services.shop.products import catalog, inventory
from services.shop.products.cache import CatalogCache
from services.shop.products.catalog import PageQuery, Product, ProductPage
from services.shop.products.inventory import (
    InsufficientStock,
    InventoryError,
    Reservation,
    ReservationRequest,
    ReservationStatus,
    UnknownProduct,
)
from services.shop.products.reads import CatalogReader, DatabaseUnavailable, Served
from services.shop.products.settings import ProductsSettings
from services.shop.products.sweeper import ExpirySweeper

JSON = "application/json"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
# Search text: anything printable (PostgreSQL text cannot hold NUL; other control characters are never meant).
SEARCH_PATTERN = r"^[^\x00-\x1f\x7f]*$"
MAX_SEARCH_LENGTH = 200
MAX_CURSOR_LENGTH = 400


@dataclass
class ProductsState:
    settings: ProductsSettings
    pool: ServicePool
    cache: CatalogCache
    reader: CatalogReader
    sweeper: ExpirySweeper


async def products_state(request: Request) -> ProductsState:
    return request.app.state.products


State = Annotated[ProductsState, Depends(products_state)]


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. insufficient_stock (invalid_request: bad input).")
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong; for invalid_request, FastAPI's list of validation errors."
    )
    product_id: UUID | None = Field(default=None, description="The product the error is about, if any.")


class CommitResult(BaseModel):
    order_id: UUID
    status: ReservationStatus


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The cursor is not one this query issued.",
        404: "No such product or reservation.",
        409: "Refused by the state of the stock or the reservation (the error code says which).",
        422: "The request is invalid (unknown product, different items for an existing reservation, bad input).",
        503: "PostgreSQL is unavailable and nothing cached can answer; retry after Retry-After.",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}


_CACHE_HEADERS = {
    "X-Cache": {
        "description": "hit, miss, or stale (PostgreSQL unavailable: the last cached copy, with a Warning header).",
        "schema": {"type": "string", "enum": ["hit", "miss", "stale"]},
    },
}

catalog_router = APIRouter(tags=["catalog"])
reservations_router = APIRouter(prefix="/reservations", tags=["reservations (internal)"])


def _served(served: Served) -> Response:
    headers = {"X-Cache": served.cache}
    if served.cache == "stale":
        headers["Warning"] = '110 - "Response is Stale"'
    return Response(served.body, media_type=JSON, headers=headers)


def _database_unavailable(error: DatabaseUnavailable) -> JSONResponse:
    return error_response(503, "database_unavailable", str(error), {"Retry-After": "1"})


@catalog_router.get(
    "/products",
    response_model=ProductPage,
    responses={200: {"headers": _CACHE_HEADERS}, **_errors(400, 503)},
)
async def list_products(
    state: State,
    q: Annotated[
        str | None,
        Query(max_length=MAX_SEARCH_LENGTH, pattern=SEARCH_PATTERN, description="Full-text search (web syntax)."),
    ] = None,
    category: Annotated[str | None, Query(pattern=CATEGORY_PATTERN)] = None,
    cursor: Annotated[str | None, Query(max_length=MAX_CURSOR_LENGTH, description="next_cursor of a page.")] = None,
    limit: Annotated[int, Query(ge=1, le=catalog.MAX_PAGE_SIZE)] = catalog.DEFAULT_PAGE_SIZE,
) -> Response:
    """Products by name, or by relevance to `q`, optionally in one category; keyset-paged with `cursor`."""
    search = q.strip() if q is not None else None
    query = PageQuery(q=search or None, category=category, cursor=cursor or None, limit=limit)
    try:
        return _served(await state.reader.page(query))
    except catalog.InvalidCursor as error:
        return error_response(400, "invalid_cursor", str(error))
    except DatabaseUnavailable as error:
        return _database_unavailable(error)


@catalog_router.get(
    "/products/{product_id}",
    response_model=Product,
    responses={200: {"headers": _CACHE_HEADERS}, **_errors(404, 503)},
)
async def get_product(product_id: UUID, state: State) -> Response:
    """One product with its available stock."""
    try:
        served = await state.reader.product(product_id)
    except DatabaseUnavailable as error:
        return _database_unavailable(error)
    if served is None:
        return error_response(404, "product_not_found", f"product {product_id} does not exist")
    return _served(served)


def inventory_error(error: InventoryError) -> JSONResponse:
    status_code = 409
    if isinstance(error, inventory.ReservationNotFound):
        status_code = 404
    elif isinstance(error, UnknownProduct | inventory.ReservationMismatch):
        status_code = 422
    body = {"error": error.code, "detail": str(error)}
    if isinstance(error, InsufficientStock | UnknownProduct):
        body["product_id"] = str(error.product_id)
    return OrjsonResponse(body, status_code=status_code)


@reservations_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Reservation,
    responses={200: {"model": Reservation, "description": "A retry: the order's existing reservation."}}
    | _errors(409, 422, 503),
)
async def reserve(request: ReservationRequest, state: State) -> Response:
    """Hold stock for an order, all lines or none; idempotent on order_id. 409 `insufficient_stock` names the
    product short of stock; 409 `reservation_released`/`reservation_expired` when the order's reservation ended."""
    try:
        async with state.pool.connection() as conn:
            reservation, created, changes = await inventory.reserve(conn, request)
    except InventoryError as error:
        return inventory_error(error)
    await state.reader.stock_changed(changes)
    return Response(reservation.model_dump_json(), status_code=201 if created else 200, media_type=JSON)


@reservations_router.get("/{order_id}", response_model=Reservation, responses=_errors(404, 503))
async def get_reservation(order_id: UUID, state: State) -> Reservation | JSONResponse:
    """The order's reservation and its status."""
    try:
        async with state.pool.connection() as conn:
            return await inventory.get(conn, order_id)
    except InventoryError as error:
        return inventory_error(error)


@reservations_router.post("/{order_id}/commit", response_model=CommitResult, responses=_errors(404, 409, 503))
async def commit_reservation(order_id: UUID, state: State) -> CommitResult | JSONResponse:
    """The order is paid: its held stock is sold (idempotent). 409 `reservation_released`/`reservation_expired`
    if it is no longer held: the order must compensate (refund)."""
    async with state.pool.connection() as conn:
        try:
            outcome, changes = await inventory.commit(conn, order_id)
        except InventoryError as error:
            return inventory_error(error)
    await state.reader.stock_changed(changes)
    if outcome != "committed":
        return inventory_error(inventory.ReservationClosed(order_id, outcome, "commit"))
    return CommitResult(order_id=order_id, status=outcome)


@reservations_router.delete(
    "/{order_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_errors(409, 503),
)
async def release_reservation(order_id: UUID, state: State) -> Response:
    """Return the held stock (idempotent; an unknown order is remembered as released, so a late reservation for it
    takes nothing). 409 `reservation_committed`: a sold reservation is not released."""
    try:
        async with state.pool.connection() as conn:
            changes = await inventory.release(conn, order_id)
    except InventoryError as error:
        return inventory_error(error)
    await state.reader.stock_changed(changes)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
