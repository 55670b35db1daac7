"""SQL used by the API. Every write that accepts a job also writes its outbox row in the same statement
or transaction: a 202 means both are committed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Json, Jsonb

from services.common.jobs import JOB_COLUMNS

Conn = AsyncConnection[DictRow]

# Static SQL: only the JOB_COLUMNS constant is interpolated.
_INSERT_JOB = f"""
WITH job AS (
    INSERT INTO jobs (id, client_id, idempotency_key, fingerprint, type, priority, params, input_file_id,
                      batch_id, status)
    VALUES (%(id)s, %(client_id)s, %(idempotency_key)s, %(fingerprint)s, %(type)s, %(priority)s, %(params)s,
            %(input_file_id)s, %(batch_id)s, 'queued')
    ON CONFLICT (client_id, idempotency_key) DO NOTHING
    RETURNING {JOB_COLUMNS}
), outboxed AS (
    INSERT INTO outbox (job_id, priority) SELECT id, priority FROM job
)
SELECT {JOB_COLUMNS} FROM job
"""  # noqa: S608

# The multi-row form for group commit (services/api/group_commit.py): one statement, one transaction and
# one WAL flush for many concurrent submissions. The rows travel as one JSON document (serialised by orjson,
# where nine typed arrays cost psycopg's Python array dumper more than the rest of the request); ON
# CONFLICT skips a reused key, as above.
_INSERT_JOBS = f"""
WITH job AS (
    INSERT INTO jobs (id, client_id, idempotency_key, fingerprint, type, priority, params, input_file_id,
                      batch_id, status)
    SELECT id, client_id, idempotency_key, fingerprint, type, priority, params, input_file_id, batch_id, 'queued'
    FROM json_to_recordset(%s::json)
        AS v(id uuid, client_id text, idempotency_key text, fingerprint text, type text, priority text,
             params jsonb, input_file_id uuid, batch_id uuid)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING
    RETURNING {JOB_COLUMNS}
), outboxed AS (
    INSERT INTO outbox (job_id, priority) SELECT id, priority FROM job
)
SELECT {JOB_COLUMNS} FROM job
"""  # noqa: S608


def job_values(
    client_id: str,
    request: dict[str, Any],
    fingerprint: str,
    idempotency_key: str | None,
    batch_id: uuid.UUID | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "client_id": client_id,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "type": request["type"],
        "priority": request["priority"],
        "params": request["params"],
        "input_file_id": request["input_file_id"],
        "batch_id": batch_id,
    }


async def insert_job(conn: Conn, values: dict[str, Any]) -> DictRow | None:
    """Insert a job and its outbox row; None when the idempotency key was already used."""
    cursor = await conn.execute(_INSERT_JOB, {**values, "params": Jsonb(values["params"])})
    return await cursor.fetchone()


async def insert_jobs(conn: Conn, rows: list[dict[str, Any]]) -> list[DictRow]:
    """Insert many jobs (each a `job_values` dict) and their outbox rows in one statement; returns the
    inserted rows (a row whose idempotency key was already used is skipped). All or nothing on error."""
    cursor = await conn.execute(_INSERT_JOBS, (Json(rows, dumps=orjson.dumps),))
    return await cursor.fetchall()


async def find_by_idempotency_key(conn: Conn, table: str, client_id: str, key: str) -> DictRow | None:
    columns = f"{JOB_COLUMNS}, fingerprint" if table == "jobs" else "id, fingerprint"
    query = f"SELECT {columns} FROM {table} WHERE client_id = %s AND idempotency_key = %s"  # noqa: S608 - table is one of two literals
    cursor = await conn.execute(query, (client_id, key))  # pyright: ignore[reportArgumentType]
    return await cursor.fetchone()


async def insert_batch(
    conn: Conn, batch_id: uuid.UUID, client_id: str, key: str | None, fingerprint: str, count: int
) -> bool:
    cursor = await conn.execute(
        "INSERT INTO batches (id, client_id, idempotency_key, fingerprint, job_count)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (client_id, idempotency_key) DO NOTHING RETURNING id",
        (batch_id, client_id, key, fingerprint, count),
    )
    return await cursor.fetchone() is not None


async def batch_jobs(conn: Conn, batch_id: uuid.UUID) -> list[DictRow]:
    cursor = await conn.execute(
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE batch_id = %s ORDER BY created_at, id",  # noqa: S608
        (batch_id,),
    )
    return await cursor.fetchall()


async def get_job(conn: Conn, job_id: uuid.UUID) -> DictRow | None:
    cursor = await conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,))  # noqa: S608
    return await cursor.fetchone()


async def list_jobs(
    conn: Conn,
    client_id: str,
    status: str | None,
    job_type: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[DictRow]:
    clauses = ["client_id = %(client_id)s"]
    params: dict[str, Any] = {"client_id": client_id, "limit": limit}
    if status is not None:
        clauses.append("status = %(status)s")
        params["status"] = status
    if job_type is not None:
        clauses.append("type = %(type)s")
        params["type"] = job_type
    if after is not None:
        clauses.append("(created_at, id) < (%(after_ts)s, %(after_id)s)")
        params["after_ts"], params["after_id"] = after
    query = (
        f"SELECT {JOB_COLUMNS} FROM jobs WHERE {' AND '.join(clauses)}"  # noqa: S608 - clauses are literals
        " ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    )
    cursor = await conn.execute(query, params)  # pyright: ignore[reportArgumentType]
    return await cursor.fetchall()


async def insert_file(conn: Conn, values: dict[str, Any]) -> DictRow:
    cursor = await conn.execute(
        "INSERT INTO files (id, client_id, storage_key, filename, content_type, size_bytes, sha256)"
        " VALUES (%(id)s, %(client_id)s, %(storage_key)s, %(filename)s, %(content_type)s, %(size_bytes)s,"
        " %(sha256)s) RETURNING id, filename, content_type, size_bytes, sha256, created_at",
        values,
    )
    row = await cursor.fetchone()
    assert row is not None
    return row
