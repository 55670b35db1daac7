"""SQL of the users service: one statement per call, on the service's own schema (search_path)."""

from __future__ import annotations

import uuid

from psycopg import AsyncConnection
from psycopg.rows import DictRow

Conn = AsyncConnection[DictRow]

USER_COLUMNS = "id, email, name, created_at"


async def insert_user(conn: Conn, email: str, name: str, password_hash: str) -> DictRow | None:
    """The new user, or None when the email is taken."""
    cursor = await conn.execute(
        f"INSERT INTO users (id, email, name, password_hash) VALUES (%s, %s, %s, %s)"  # noqa: S608 - constant columns
        f" ON CONFLICT (email) DO NOTHING RETURNING {USER_COLUMNS}",
        (uuid.uuid4(), email, name, password_hash),
    )
    return await cursor.fetchone()


async def credentials_by_email(conn: Conn, email: str) -> DictRow | None:
    """id and password_hash of the user with this (normalised) email."""
    cursor = await conn.execute("SELECT id, password_hash FROM users WHERE email = %s", (email,))
    return await cursor.fetchone()


async def user_by_id(conn: Conn, user_id: uuid.UUID) -> DictRow | None:
    cursor = await conn.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = %s", (user_id,))  # noqa: S608
    return await cursor.fetchone()


async def replace_password_hash(conn: Conn, user_id: uuid.UUID, old_hash: str, new_hash: str) -> bool:
    """Swap in a rehashed password, unless the password changed meanwhile (compare-and-set on the old hash)."""
    cursor = await conn.execute(
        "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s", (new_hash, user_id, old_hash)
    )
    return cursor.rowcount == 1
