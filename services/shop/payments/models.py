"""Request and response bodies of the payments API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

PaymentStatus = Literal["pending", "captured", "declined", "refunded"]
# 1 cent to 1,000,000.00: an order total, never anything near bigint's range.
MAX_AMOUNT_CENTS = 100_000_000


class PaymentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: UUID = Field(description="The order being paid: at most one captured payment per order.")
    amount_cents: int = Field(ge=1, le=MAX_AMOUNT_CENTS, description="Amount in the currency's minor unit.")
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case (e.g. USD).")


class Payment(BaseModel):
    id: UUID
    order_id: UUID
    status: PaymentStatus = Field(
        description="pending: the provider's answer is not known yet (retry with the same Idempotency-Key); "
        "captured; declined (see decline_code); refunded."
    )
    amount_cents: int
    currency: str
    decline_code: str | None = Field(description="Why the provider declined the charge, when it did.")
    created_at: datetime
    updated_at: datetime


class PaymentList(BaseModel):
    items: list[Payment] = Field(description="The order's payments, oldest first.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code.")
    detail: str = Field(description="What was wrong and what is allowed.")
    payment_id: UUID | None = Field(default=None, description="The payment the error is about, when there is one.")


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description='Where: e.g. ["body", "email"].')
    msg: str
    type: str


class InvalidRequestBody(BaseModel):
    """422: `invalid_request` lists the schema violations; other codes explain one problem in `detail`."""

    error: str = Field(description="`invalid_request`, or a specific code.")
    detail: str | list[ValidationIssue]
