"""Structured JSON logs on stdout (CloudWatch via awslogs), with the current job id attached."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged as a field.
_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured duplicate of msg
}


# Adds request-scoped fields (for example trace ids) to a log entry about to be written.
ContextFields = Callable[[dict[str, Any]], None]


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str, context_fields: ContextFields | None = None) -> None:
        super().__init__()
        self._service = service
        self._context_fields = context_fields

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job_id = _job_id.get()
        if job_id is not None:
            entry["job_id"] = job_id
        if self._context_fields is not None:
            self._context_fields(entry)
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(service: str, level: str, context_fields: ContextFields | None = None) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service, context_fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Per-request access lines would double the log volume of the API; errors still come through.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    for noisy in ("botocore", "boto3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)
