"""The orders service's settings: the shared contract (ShopSettings) plus its callees, its queue and the
saga's timings."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from services.shop.common.settings import ShopSettings


class OrdersSettings(ShopSettings):
    PORT: int = Field(default=8083, ge=1, le=65535)

    # --- Callees (Service Connect URLs in AWS) ---
    PRODUCTS_URL: str = Field(min_length=1)
    PAYMENTS_URL: str = Field(min_length=1)
    # Token keys (/.well-known/jwks.json) and the customer's email (GET /users/me).
    USERS_URL: str = Field(min_length=1)  # pyright: ignore[reportIncompatibleVariableOverride] - required here

    # --- Order events (the outbox relay sends them to the notifications queue) ---
    NOTIFICATIONS_QUEUE_URL: str = Field(min_length=1)
    SQS_ENDPOINT_URL: str | None = None
    RELAY_POLL_SECONDS: float = Field(default=0.5, gt=0, le=60)

    # --- Checkout saga ---
    # POST /orders answers within this: 201 when the saga ended, 202 (still running or parked) otherwise.
    ORDER_DEADLINE_SECONDS: float = Field(default=5.0, gt=0, le=30)
    # Whoever drives an order (a request, or a recovery loop) holds it this long between two steps; a process
    # that dies mid-saga leaves the order to another recovery loop once its lease has run out.
    ORDER_LEASE_SECONDS: float = Field(default=30.0, gt=0, le=600)
    # Stock held for an order while its payment is taken; covers a payments outage of about this long.
    RESERVATION_TTL_SECONDS: int = Field(default=900, ge=30, le=3600)
    # No charge is attempted this close to the reservation's expiry: the stock might be gone by the commit.
    RESERVATION_SAFETY_SECONDS: float = Field(default=15.0, ge=0, le=600)
    # An order that could not reserve its stock for this long (products unavailable) is given up.
    PENDING_GIVE_UP_SECONDS: float = Field(default=600.0, gt=0, le=86400)
    RECOVERY_POLL_SECONDS: float = Field(default=1.0, gt=0, le=60)
    RECOVERY_BATCH: int = Field(default=20, ge=1, le=500)
    # Parked steps are retried with exponential backoff and jitter between these bounds.
    RETRY_BASE_SECONDS: float = Field(default=1.0, gt=0, le=600)
    RETRY_MAX_SECONDS: float = Field(default=60.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _consistent_timings(self) -> Self:
        problems: list[str] = []
        if self.RETRY_BASE_SECONDS > self.RETRY_MAX_SECONDS:
            problems.append(
                f"RETRY_BASE_SECONDS={self.RETRY_BASE_SECONDS} exceeds RETRY_MAX_SECONDS={self.RETRY_MAX_SECONDS}"
            )
        if self.RESERVATION_SAFETY_SECONDS >= self.RESERVATION_TTL_SECONDS:
            problems.append(
                f"RESERVATION_SAFETY_SECONDS={self.RESERVATION_SAFETY_SECONDS} must be below "
                f"RESERVATION_TTL_SECONDS={self.RESERVATION_TTL_SECONDS}"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
