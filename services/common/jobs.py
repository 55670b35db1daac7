"""Job model: request schemas per job type, the status state machine and the public snapshot."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal, Self
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.settings import Priority

Status = Literal["queued", "running", "succeeded", "failed"]
STATUSES: tuple[Status, ...] = ("queued", "running", "succeeded", "failed")
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed"})

# The only legal edges. `running -> queued` is a release (retry with backoff, or SIGTERM before finishing);
# `queued -> failed` is the dead-letter path for a job whose worker died on every attempt.
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "failed"}),
    "running": frozenset({"succeeded", "failed", "queued"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
}

MAX_INLINE_BYTES = 64 * 1024


class InvalidTransitionError(ValueError):
    def __init__(self, current: str, target: str) -> None:
        allowed = ", ".join(sorted(TRANSITIONS.get(current, ()))) or "none (terminal)"
        super().__init__(f"job cannot go from {current!r} to {target!r}; allowed from {current!r}: {allowed}")


def check_transition(current: str, target: str) -> None:
    if target not in TRANSITIONS.get(current, frozenset()):
        raise InvalidTransitionError(current, target)


# --- Job type parameters ---


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThumbnailParams(_Params):
    width: int = Field(default=256, ge=1, le=4096, description="Maximum width in pixels.")
    height: int = Field(default=256, ge=1, le=4096, description="Maximum height in pixels.")
    format: Literal["png", "jpeg", "webp"] = "png"


class CsvInputParams(_Params):
    csv: str | None = Field(
        default=None,
        max_length=MAX_INLINE_BYTES,
        description="Inline CSV text (with a header row); alternative to input_file_id.",
    )


class JsonInputParams(_Params):
    json_text: str | None = Field(
        default=None,
        max_length=MAX_INLINE_BYTES,
        description="Inline JSON array of flat objects; alternative to input_file_id.",
    )


class _JobBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority = "normal"
    input_file_id: UUID | None = Field(default=None, description="Id returned by POST /files.")


class ThumbnailJob(_JobBase):
    type: Literal["image.thumbnail"]
    input_file_id: UUID = Field(description="The image, uploaded with POST /files.")  # pyright: ignore[reportIncompatibleVariableOverride]
    params: ThumbnailParams = ThumbnailParams()


def _exactly_one_input(job: _JobBase, inline: str | None, inline_name: str, job_type: str) -> None:
    if (job.input_file_id is None) == (inline is None):
        raise ValueError(f"{job_type} needs exactly one of input_file_id or params.{inline_name}")


class CsvSummaryJob(_JobBase):
    type: Literal["data.csv_summary"]
    params: CsvInputParams = CsvInputParams()

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        _exactly_one_input(self, self.params.csv, "csv", self.type)
        return self


class CsvToJsonJob(_JobBase):
    type: Literal["convert.csv_to_json"]
    params: CsvInputParams = CsvInputParams()

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        _exactly_one_input(self, self.params.csv, "csv", self.type)
        return self


class JsonToCsvJob(_JobBase):
    type: Literal["convert.json_to_csv"]
    params: JsonInputParams = JsonInputParams()

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        _exactly_one_input(self, self.params.json_text, "json_text", self.type)
        return self


AnyJob = ThumbnailJob | CsvSummaryJob | CsvToJsonJob | JsonToCsvJob
JobRequest = Annotated[AnyJob, Field(discriminator="type")]
JOB_TYPES: tuple[str, ...] = (
    "image.thumbnail",
    "data.csv_summary",
    "convert.csv_to_json",
    "convert.json_to_csv",
)
PARAMS_MODELS: dict[str, type[_Params]] = {
    "image.thumbnail": ThumbnailParams,
    "data.csv_summary": CsvInputParams,
    "convert.csv_to_json": CsvInputParams,
    "convert.json_to_csv": JsonInputParams,
}


def fingerprint(payload: Any) -> str:
    """Stable hash of a request, to tell a retried request from a different one reusing the key."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


# --- Public snapshot ---


class JobResult(BaseModel):
    location: str = Field(description="Path of the result relative to the shared storage root.")
    summary: dict[str, Any] | None = None


class JobPublic(BaseModel):
    id: UUID
    type: str
    priority: Priority
    status: Status
    version: int = Field(description="Increases with every status change.")
    attempts: int
    input_file_id: UUID | None
    batch_id: UUID | None
    result: JobResult | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobPublic:
        result = None
        if row["result_key"] is not None:
            result = JobResult(location=row["result_key"], summary=row["result_summary"])
        return cls(
            id=row["id"],
            type=row["type"],
            priority=row["priority"],
            status=row["status"],
            version=row["version"],
            attempts=row["attempts"],
            input_file_id=row["input_file_id"],
            batch_id=row["batch_id"],
            result=result,
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )


JOB_COLUMNS = (
    "id, type, priority, status, version, attempts, input_file_id, batch_id, result_key, result_summary,"
    " error, created_at, updated_at, started_at, finished_at"
)
