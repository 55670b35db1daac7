"""Request and response bodies of the orders API."""

from __future__ import annotations

from datetime import datetime
from typing import Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.shop.orders.domain import Order, Status

MAX_LINES = 50
MAX_QUANTITY = 100
MAX_PAGE = 100


class OrderLineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: UUID = Field(description="A product of the catalog (GET /products).")
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description=f"Units of the product, 1-{MAX_QUANTITY}.")


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    items: list[OrderLineRequest] = Field(
        min_length=1, max_length=MAX_LINES, description=f"1-{MAX_LINES} lines, each product at most once."
    )
    currency: str = Field(
        pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case; every product must be priced in it."
    )

    @model_validator(mode="after")
    def _each_product_once(self) -> Self:
        seen: set[UUID] = set()
        for line in self.items:
            if line.product_id in seen:
                raise ValueError(f"product {line.product_id} appears in more than one line; list each product once")
            seen.add(line.product_id)
        return self


class OrderLine(BaseModel):
    product_id: UUID
    quantity: int
    unit_price_cents: int = Field(description="The product's price when the order was placed.")
    line_total_cents: int


class OrderResponse(BaseModel):
    id: UUID
    status: Status = Field(
        description="pending, reserved, payment_pending (payments unavailable: retried automatically), paid, "
        "releasing, refunding; final: confirmed, rejected (insufficient stock), payment_failed, cancelled."
    )
    items: list[OrderLine]
    currency: str
    total_cents: int
    reason: str | None = Field(description="Why the order did not end confirmed, when it did not.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: Order) -> OrderResponse:
        return cls(
            id=order.id,
            status=order.status,
            items=[OrderLine(**item) for item in order.items],
            currency=order.currency,
            total_cents=order.total_cents,
            reason=order.reason,
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


class OrderPage(BaseModel):
    items: list[OrderResponse] = Field(description="The caller's orders, newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    detail: str = Field(description="What was wrong and what is allowed.")
