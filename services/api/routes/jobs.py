"""Job submission, status, listing and live events."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from psycopg import errors
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from services.api import repository, snapshots
from services.api.deps import AppState, ClientId, IdempotencyKey, RateLimitedClient, State
from services.api.shutdown import draining
from services.common.cache import events_channel
from services.common.jobs import JOB_TYPES, TERMINAL, AnyJob, JobPublic, JobRequest, Status, fingerprint

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger(__name__)

SSE_MAX_SECONDS = 600
SSE_KEEPALIVE_SECONDS = 15
SSE_RECHECK_SECONDS = 5
JobType = Literal["image.thumbnail", "data.csv_summary", "convert.csv_to_json", "convert.json_to_csv"]
assert set(JobType.__args__) == set(JOB_TYPES)

_REPLAY_HEADER = "Idempotent-Replayed"
JSON = "application/json"
_CONFLICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "The Idempotency-Key was already used with a different request body."},
    422: {"description": "The request body or an input_file_id is invalid."},
    429: {"description": "Rate limit exceeded; see Retry-After."},
    503: {"description": "PostgreSQL unavailable; nothing was accepted. Retry after Retry-After seconds."},
}


def input_file_missing(exc: errors.ForeignKeyViolation, file_id: object) -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        f"input_file_id {file_id} does not exist; upload the file with POST /files first",
    )


def idempotency_conflict(key: str) -> HTTPException:
    return HTTPException(
        status.HTTP_409_CONFLICT,
        f"Idempotency-Key {key!r} was already used with a different request body; use a new key",
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses={200: {"description": "Replay of an earlier request with the same Idempotency-Key."}}
    | _CONFLICT_RESPONSES,
)
async def submit_job(job: JobRequest, state: State, client: RateLimitedClient, key: IdempotencyKey) -> Response:
    """Accept a job. 202 means it is committed in PostgreSQL and will be queued (transactional outbox)."""
    return await accept_job(state, job, client, key)


async def accept_job(state: AppState, job: AnyJob, client: str, key: str | None) -> Response:
    """Commit a validated job (group commit) and build the 202, or the 200 of an idempotent replay.
    Shared by the FastAPI route and the lean path (services/api/fast_submit.py)."""
    request = job.model_dump(mode="json")
    digest = fingerprint(request)
    values = repository.job_values(client, request, digest, key, batch_id=None)
    status_code = status.HTTP_202_ACCEPTED
    headers: dict[str, str] = {}
    try:
        row = await state.inserter.insert(values)  # group commit: returns once this row is committed
    except errors.ForeignKeyViolation as exc:
        raise input_file_missing(exc, job.input_file_id) from exc
    if row is None:
        assert key is not None  # only a keyed insert can conflict
        async with state.pool.connection() as conn:
            existing = await repository.find_by_idempotency_key(conn, "jobs", client, key)
        if existing is None or existing["fingerprint"] != digest:
            raise idempotency_conflict(key)
        status_code = status.HTTP_200_OK
        headers[_REPLAY_HEADER] = "true"
        row = existing
    state.relay.wake()
    created = JobPublic.from_row(row)
    headers["Location"] = f"/jobs/{created.id}"
    # Serialised once here: returning the model would make FastAPI validate it again (response_model).
    return Response(created.model_dump_json(), status_code=status_code, headers=headers, media_type=JSON)


class JobPage(BaseModel):
    items: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def _encode_cursor(job: JobPublic) -> str:
    return base64.urlsafe_b64encode(f"{job.created_at.isoformat()}|{job.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "cursor is not valid; use the next_cursor of a previous page"
        ) from exc


@router.get("", response_model=JobPage, responses={400: {"description": "Invalid cursor."}})
async def list_jobs(
    state: State,
    client: ClientId,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    type_filter: Annotated[JobType | None, Query(alias="type")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JobPage:
    """The caller's jobs, newest first, filtered by status and type (keyset pagination)."""
    after = _decode_cursor(cursor) if cursor else None
    async with state.pool.connection() as conn:
        rows = await repository.list_jobs(conn, client, status_filter, type_filter, after, limit + 1)
    items = [JobPublic.from_row(row) for row in rows[:limit]]
    next_cursor = _encode_cursor(items[-1]) if len(rows) > limit else None
    return JobPage(items=items, next_cursor=next_cursor)


async def _require_job(state: AppState, job_id: uuid.UUID) -> JobPublic:
    job = await snapshots.load(state, job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.get("/{job_id}", response_model=JobPublic, responses={404: {"description": "No such job."}})
async def get_job(job_id: uuid.UUID, state: State) -> JobPublic:
    """Status and result location (Redis cache in front of PostgreSQL)."""
    return await _require_job(state, job_id)


RESULT_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
}


@router.get(
    "/{job_id}/result",
    response_class=FileResponse,
    responses={
        200: {"description": "The result file (JSON, CSV or an image)."},
        404: {"description": "No such job, or it has no result (not finished, or failed)."},
        410: {"description": "The job's result file has expired from storage."},
    },
)
async def job_result(job_id: uuid.UUID, state: State) -> FileResponse:
    """The result file of a succeeded job, as a download."""
    job = await _require_job(state, job_id)
    if job.result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no result (status {job.status})")
    path = Path(state.storage.path(job.result.location))
    if not await asyncio.to_thread(path.is_file):
        raise HTTPException(status.HTTP_410_GONE, f"the result of job {job_id} has expired from storage")
    extension = path.suffix.removeprefix(".")
    media_type = RESULT_MEDIA_TYPES.get(extension, "application/octet-stream")
    return FileResponse(
        path, media_type=media_type, filename=f"{job_id}.{extension}", content_disposition_type="inline"
    )


def _sse(job: JobPublic) -> bytes:
    return f"id: {job.version}\nevent: status\ndata: {job.model_dump_json()}\n\n".encode()


async def _subscribe(state: AppState, job_id: uuid.UUID) -> Any:
    if not state.redis_breaker.closed:
        return None
    pubsub = state.redis.pubsub()
    try:
        await pubsub.subscribe(events_channel(state.settings, str(job_id)))
    except RedisError as exc:
        state.redis_breaker.trip()
        log.warning("redis pub/sub unavailable; SSE falls back to polling", extra={"error": str(exc)})
        await pubsub.aclose()
        return None
    return pubsub


async def _next_snapshot(state: AppState, pubsub: Any, job_id: uuid.UUID, recheck_due: bool) -> JobPublic | None:
    if pubsub is not None:
        try:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        except RedisError:
            message = None
            recheck_due = True
        if message is not None:
            return JobPublic.model_validate_json(message["data"])
    else:
        await asyncio.sleep(1.0)
        recheck_due = True
    # Pub/sub is fire-and-forget; re-reading PostgreSQL now and then covers a message lost in a Redis blip.
    return await snapshots.load_from_db(state, job_id) if recheck_due else None


async def _event_stream(
    state: AppState, job: JobPublic, pubsub: Any, last_event_id: int | None = None
) -> AsyncIterator[bytes]:
    try:
        # Subscribed before this read, so no transition after it can be missed.
        current = await snapshots.load_from_db(state, job.id) or job
        # A reconnecting client (EventSource sends Last-Event-ID) gets only what it has not seen.
        if last_event_id is None or current.version > last_event_id:
            yield _sse(current)
        started = last_recheck = last_sent = time.monotonic()
        # On SIGTERM the stream ends within a second; the client reconnects to another task.
        while current.status not in TERMINAL and time.monotonic() - started < SSE_MAX_SECONDS and not draining():
            now = time.monotonic()
            recheck_due = now - last_recheck >= SSE_RECHECK_SECONDS
            if recheck_due:
                last_recheck = now
            snapshot = await _next_snapshot(state, pubsub, job.id, recheck_due)
            if snapshot is not None and snapshot.version > current.version:
                current = snapshot
                last_sent = time.monotonic()
                yield _sse(current)
            elif time.monotonic() - last_sent >= SSE_KEEPALIVE_SECONDS:
                last_sent = time.monotonic()
                yield b": keepalive\n\n"
    finally:
        if pubsub is not None:
            await pubsub.aclose()


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent `status` events, in version order.",
        },
        404: {"description": "No such job."},
    },
)
async def job_events(
    job_id: uuid.UUID, state: State, last_event_id: Annotated[str | None, Header()] = None
) -> StreamingResponse:
    """Live status changes (server-sent events fed by Redis pub/sub); the stream ends at a final status, or when
    the task shuts down (reconnect with `Last-Event-ID` to get only newer events)."""
    job = await _require_job(state, job_id)
    pubsub = await _subscribe(state, job_id)
    seen = int(last_event_id) if last_event_id is not None and last_event_id.isdigit() else None
    return StreamingResponse(
        _event_stream(state, job, pubsub, seen),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
