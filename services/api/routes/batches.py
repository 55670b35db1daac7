"""Batch submission: up to MAX_BATCH_JOBS jobs accepted (or rejected) together in one transaction."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response, status
from psycopg import errors
from pydantic import BaseModel, Field

from services.api import repository
from services.api.deps import IdempotencyKey, RateLimitedClient, State
from services.api.routes.jobs import idempotency_conflict, input_file_missing
from services.common.jobs import JobPublic, JobRequest, fingerprint

MAX_BATCH_JOBS = 100

router = APIRouter(prefix="/batches", tags=["batches"])


class BatchRequest(BaseModel):
    jobs: list[JobRequest] = Field(min_length=1, max_length=MAX_BATCH_JOBS)


class BatchPublic(BaseModel):
    id: uuid.UUID
    jobs: list[JobPublic]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchPublic,
    responses={
        200: {"description": "Replay of an earlier request with the same Idempotency-Key."},
        409: {"description": "The Idempotency-Key was already used with a different body."},
        422: {"description": f"Invalid job, unknown input file, or more than {MAX_BATCH_JOBS} jobs."},
        429: {"description": "Rate limit exceeded; see Retry-After."},
        503: {"description": "PostgreSQL unavailable; nothing was accepted."},
    },
)
async def submit_batch(
    batch: BatchRequest, state: State, client: RateLimitedClient, key: IdempotencyKey, response: Response
) -> BatchPublic:
    """Accept all jobs of the batch atomically: either every job is committed (202) or none is."""
    requests: list[dict[str, Any]] = [job.model_dump(mode="json") for job in batch.jobs]
    digest = fingerprint(requests)
    batch_id = uuid.uuid4()
    rows: list[Any] = []
    async with state.pool.connection() as conn:
        async with conn.transaction():
            created = await repository.insert_batch(conn, batch_id, client, key, digest, len(requests))
            if created:
                for index, request in enumerate(requests):
                    values = repository.job_values(client, request, fingerprint(request), None, batch_id)
                    try:
                        row = await repository.insert_job(conn, values)
                    except errors.ForeignKeyViolation as exc:
                        raise input_file_missing(exc, f"{request['input_file_id']} (jobs[{index}])") from exc
                    assert row is not None  # unkeyed inserts cannot conflict
                    rows.append(row)
        if not created:
            assert key is not None
            existing = await repository.find_by_idempotency_key(conn, "batches", client, key)
            if existing is None or existing["fingerprint"] != digest:
                raise idempotency_conflict(key)
            batch_id = existing["id"]
            rows = await repository.batch_jobs(conn, batch_id)
            response.status_code = status.HTTP_200_OK
            response.headers["Idempotent-Replayed"] = "true"
    state.relay.wake()
    return BatchPublic(id=batch_id, jobs=[JobPublic.from_row(row) for row in rows])
