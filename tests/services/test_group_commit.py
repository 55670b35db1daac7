"""Group commit of single-job submissions (services/api/group_commit.py) against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import DictRow

from services.api import repository
from services.api.group_commit import JobInserter
from services.common.db import async_pool
from services.common.settings import Settings

REQUEST = {"type": "data.csv_summary", "priority": "normal", "params": {"csv": "a\n1\n"}, "input_file_id": None}


def job(client: str, key: str | None = None, input_file_id: str | None = None) -> dict[str, Any]:
    return repository.job_values(client, REQUEST | {"input_file_id": input_file_id}, "fp", key, None)


def run_with_inserter(settings: Settings, scenario: Callable[[JobInserter], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        pool = async_pool(settings)
        await pool.open()
        try:
            return await scenario(JobInserter(pool, max_batch=50, max_concurrent=1))
        finally:
            await pool.close()

    return asyncio.run(main())


def gather_outcomes(inserter: JobInserter, jobs: list[dict[str, Any]]) -> Awaitable[list[Any]]:
    return asyncio.gather(*(inserter.insert(values) for values in jobs), return_exceptions=True)


@pytest.fixture
def batch_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    original = repository.insert_jobs

    async def recording(conn: Any, rows: list[dict[str, Any]]) -> list[DictRow]:
        sizes.append(len(rows))
        return await original(conn, rows)

    monkeypatch.setattr(repository, "insert_jobs", recording)
    return sizes


def test_concurrent_submissions_share_one_insert_and_each_gets_its_committed_row(
    settings: Settings, db: psycopg.Connection[DictRow], batch_sizes: list[int]
) -> None:
    client = f"gc-{uuid.uuid4().hex[:8]}"
    jobs = [job(client) for _ in range(20)] + [job(client, "same-key"), job(client, "same-key")]

    outcomes = run_with_inserter(settings, lambda inserter: gather_outcomes(inserter, jobs))

    assert max(batch_sizes) > 1, "concurrent inserts were not grouped"
    assert [row["id"] for row in outcomes[:20]] == [values["id"] for values in jobs[:20]]
    assert all(row["status"] == "queued" for row in outcomes[:20])
    keyed = outcomes[20:]
    assert sorted(row is None for row in keyed) == [False, True]  # the reused key is not inserted twice
    counts = db.execute(
        "SELECT count(*) AS jobs, count(o.id) AS outboxed FROM jobs j LEFT JOIN outbox o ON o.job_id = j.id"
        " WHERE j.client_id = %s",
        (client,),
    ).fetchone()
    assert counts == {"jobs": 21, "outboxed": 21}


def test_unknown_input_file_fails_only_its_own_request(settings: Settings, db: psycopg.Connection[DictRow]) -> None:
    client = f"gc-{uuid.uuid4().hex[:8]}"
    jobs = [job(client) for _ in range(4)] + [job(client, input_file_id=str(uuid.uuid4()))]

    outcomes = run_with_inserter(settings, lambda inserter: gather_outcomes(inserter, jobs))

    assert isinstance(outcomes[4], errors.ForeignKeyViolation)
    assert [row["id"] for row in outcomes[:4]] == [values["id"] for values in jobs[:4]]
    committed = db.execute("SELECT count(*) AS n FROM jobs WHERE client_id = %s", (client,)).fetchone()
    assert committed == {"n": 4}


def test_connection_failure_reaches_every_request_and_is_not_retried(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a commit whose connection dropped happened is unknown: retrying row by row could create a
    second copy of an unkeyed job, so every request gets the error (and the API answers 503)."""
    single_inserts: list[dict[str, Any]] = []

    async def dropped(conn: Any, rows: list[dict[str, Any]]) -> list[DictRow]:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    async def single(conn: Any, values: dict[str, Any]) -> DictRow | None:
        single_inserts.append(values)
        return None

    monkeypatch.setattr(repository, "insert_jobs", dropped)
    monkeypatch.setattr(repository, "insert_job", single)
    client = f"gc-{uuid.uuid4().hex[:8]}"

    outcomes = run_with_inserter(settings, lambda inserter: gather_outcomes(inserter, [job(client) for _ in range(5)]))

    assert all(isinstance(outcome, psycopg.OperationalError) for outcome in outcomes)
    assert single_inserts == []
