"""The limits a client should know before it sends anything (the web console shows them up front)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.api.deps import State
from services.api.routes.batches import MAX_BATCH_JOBS
from services.common.jobs import JOB_TYPES

router = APIRouter(tags=["health"])


class Limits(BaseModel):
    max_upload_bytes: int
    max_batch_jobs: int
    rate_limit_per_second: float
    rate_limit_burst: int
    job_types: list[str]


@router.get("/limits", response_model=Limits)
async def limits(state: State) -> Limits:
    """Upload size limit, batch size limit, the per-client rate limit and the job types accepted."""
    settings = state.settings
    return Limits(
        max_upload_bytes=settings.MAX_UPLOAD_BYTES,
        max_batch_jobs=MAX_BATCH_JOBS,
        rate_limit_per_second=settings.RATE_LIMIT_PER_SECOND,
        rate_limit_burst=settings.RATE_LIMIT_BURST,
        job_types=list(JOB_TYPES),
    )
