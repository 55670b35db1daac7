"""Internal HTTP API (not routed by the gateway): what was sent for an order, for tests and operators."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query
from pydantic import BaseModel

from services.shop.common.app import Pool
from services.shop.notifications import repository
from services.shop.notifications.repository import MAX_ROWS_PER_ORDER, Notification

router = APIRouter(tags=["notifications"])


class ErrorBody(BaseModel):
    """The shop's error body (services.shop.common.app)."""

    error: str
    detail: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "The database is unavailable; retry shortly (Retry-After)."},
}


@router.get("/notifications", responses=ERROR_RESPONSES)
async def notifications_for_order(
    pool: Pool,
    order_id: Annotated[UUID, Query(description="The order whose emails to list.")],
) -> list[Notification]:
    """The emails sent (or rejected for good) for one order's events, oldest first, at most 100."""
    async with pool.connection() as conn:
        return await repository.for_order(conn, order_id, MAX_ROWS_PER_ORDER)
