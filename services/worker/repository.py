"""SQL used by the worker. Every transition is one statement that checks the current status (and the
lease owner), bumps `version` and appends to `job_transitions`, so two workers can never both win."""

from __future__ import annotations

from typing import Any

from psycopg import Connection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from services.common.jobs import JOB_COLUMNS

Conn = Connection[DictRow]

_RETURNING = f"{JOB_COLUMNS}, params, lease_owner"
_TRANSITION_COLUMNS = ", ".join(f"j.{column.strip()}" for column in _RETURNING.split(","))


# The f-strings below only interpolate module constants (column lists, fragments), never input.
def _transition(update: str) -> str:
    """Wrap an `UPDATE jobs ... FROM (SELECT ... status AS old_status ...) prev` in an audit insert."""
    return f"""
WITH changed AS ({update} RETURNING {_TRANSITION_COLUMNS}, prev.old_status),
logged AS (
    INSERT INTO job_transitions (job_id, from_status, to_status, version, worker, detail)
    SELECT id, old_status, status, version, %(worker)s, error FROM changed
)
SELECT changed.*, (SELECT storage_key FROM files WHERE files.id = changed.input_file_id) AS input_key
FROM changed
"""  # noqa: S608


_PREV = "FROM (SELECT id, status AS old_status FROM jobs WHERE id = %(id)s FOR UPDATE) prev WHERE j.id = prev.id"

CLAIM = _transition(f"""
UPDATE jobs j SET status = 'running', attempts = j.attempts + 1, lease_owner = %(worker)s,
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s),
    started_at = coalesce(j.started_at, now()), updated_at = now(), version = j.version + 1
{_PREV} AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < now()))
""")  # noqa: S608

SUCCEED = _transition(f"""
UPDATE jobs j SET status = 'succeeded', result_key = %(result_key)s, result_summary = %(summary)s,
    error = NULL, finished_at = now(), updated_at = now(), lease_owner = NULL, lease_expires_at = NULL,
    version = j.version + 1
{_PREV} AND j.status = 'running' AND j.lease_owner = %(worker)s
""")  # noqa: S608

FAIL = _transition(f"""
UPDATE jobs j SET status = 'failed', error = %(error)s, finished_at = now(), updated_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, version = j.version + 1
{_PREV} AND j.status = 'running' AND j.lease_owner = %(worker)s
""")  # noqa: S608

RELEASE = _transition(f"""
UPDATE jobs j SET status = 'queued', error = %(error)s, updated_at = now(),
    lease_owner = NULL, lease_expires_at = NULL, version = j.version + 1
{_PREV} AND j.status = 'running' AND j.lease_owner = %(worker)s
""")  # noqa: S608

# A dead-lettered job is failed unless it finished, or a live worker still holds its lease.
DEAD_LETTER = _transition(f"""
UPDATE jobs j SET status = 'failed', finished_at = now(), updated_at = now(),
    error = %(error)s || coalesce('; last error: ' || j.error, ''),
    lease_owner = NULL, lease_expires_at = NULL, version = j.version + 1
{_PREV} AND (j.status = 'queued' OR (j.status = 'running' AND j.lease_expires_at < now()))
""")  # noqa: S608


def run_transition(conn: Conn, statement: str, **params: Any) -> DictRow | None:
    if "summary" in params:
        params["summary"] = Jsonb(params["summary"])
    params.setdefault("error", None)
    cursor = conn.execute(statement, params)  # pyright: ignore[reportArgumentType]
    return cursor.fetchone()


def job_state(conn: Conn, job_id: str) -> DictRow | None:
    cursor = conn.execute(
        "SELECT status, greatest(0, extract(epoch FROM lease_expires_at - now()))::float AS lease_left"
        " FROM jobs WHERE id = %s",
        (job_id,),
    )
    return cursor.fetchone()


def renew_lease(conn: Conn, job_id: str, worker: str, lease_seconds: int) -> bool:
    cursor = conn.execute(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE id = %s AND status = 'running' AND lease_owner = %s",
        (lease_seconds, job_id, worker),
    )
    return cursor.rowcount == 1
