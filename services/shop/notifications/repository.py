"""SQL of the notifications service (its own schema: search_path is pinned to it)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from pydantic import BaseModel

from services.shop.notifications.messages import Email, Template

Conn = AsyncConnection[DictRow]
Status = Literal["sent", "rejected"]

MAX_ROWS_PER_ORDER = 100

_RECORD = """
INSERT INTO notifications (event_id, order_id, topic, template, recipient, status, provider_message_id, error, sent_at)
VALUES (%(event_id)s, %(order_id)s, %(topic)s, %(template)s, %(recipient)s, %(status)s, %(provider_message_id)s,
        %(error)s, CASE WHEN %(status)s = 'sent' THEN now() END)
ON CONFLICT (event_id) DO NOTHING
"""

_FOR_ORDER = """
SELECT event_id, order_id, topic, template, recipient, status, provider_message_id, error, sent_at, created_at
FROM notifications WHERE order_id = %s ORDER BY created_at, event_id LIMIT %s
"""


class Notification(BaseModel):
    """One mailed order event and what became of it."""

    event_id: UUID
    order_id: UUID
    topic: str
    template: Template
    recipient: str
    status: Status
    provider_message_id: str | None
    error: str | None
    sent_at: datetime | None
    created_at: datetime


async def is_recorded(conn: Conn, event_id: UUID) -> bool:
    cursor = await conn.execute("SELECT 1 FROM notifications WHERE event_id = %s", (event_id,))
    return await cursor.fetchone() is not None


async def record(
    conn: Conn,
    email: Email,
    topic: str,
    status: Status,
    *,
    provider_message_id: str | None = None,
    error: str | None = None,
) -> bool:
    """Record what was done with `email`'s event; False if the event already had a row (nothing changed)."""
    cursor = await conn.execute(
        _RECORD,
        {
            "event_id": email.event_id,
            "order_id": email.order_id,
            "topic": topic,
            "template": email.template,
            "recipient": email.recipient,
            "status": status,
            "provider_message_id": provider_message_id,
            "error": error,
        },
    )
    return cursor.rowcount == 1


async def for_order(conn: Conn, order_id: UUID, limit: int = MAX_ROWS_PER_ORDER) -> list[Notification]:
    cursor = await conn.execute(_FOR_ORDER, (order_id, limit))
    return [Notification.model_validate(row) for row in await cursor.fetchall()]
