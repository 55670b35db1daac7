"""Each security alarm's metric filter matches the JSON line the code logs (the line as the services' formatter
writes it, evaluated with tests/cloudwatch_patterns.py), and no other security line. The job platform API and AWS
calls here; the shop's login and token checks in tests/shop/test_security_events.py."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fastapi import HTTPException

from components.runtime_security import SECURITY_SIGNALS
from services.api.deps import enforce_rate_limit
from services.api.ratelimit import Decision
from services.api.routes.files import validate_filename
from services.common.logging import JsonFormatter
from services.common.security_events import watch_access_denied
from tests.cloudwatch_patterns import matches

PATTERNS = {signal.key: signal.pattern for signal in SECURITY_SIGNALS}


@contextmanager
def security_lines(service: str = "api") -> Iterator[list[str]]:
    """The JSON lines the `security` logger writes, formatted as in production (services/common/logging.py)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service))
    logger = logging.getLogger("security")
    logger.addHandler(handler)
    lines: list[str] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        lines.extend(line for line in stream.getvalue().splitlines() if line)


def only_signal(lines: list[str]) -> str:
    """The one signal whose pattern matches the one logged line (and no other signal does)."""
    (line,) = lines
    matched = [key for key, pattern in PATTERNS.items() if matches(pattern, line)]
    assert len(matched) == 1, (line, matched)
    return matched[0]


@pytest.mark.parametrize("filename", ["../../etc/passwd", "a/b.txt", "..hidden", "x\\y", "line\nbreak"])
def test_a_path_trick_upload_is_a_rejected_upload_and_the_name_is_not_logged(filename: str) -> None:
    with security_lines() as lines, pytest.raises(HTTPException):
        validate_filename(filename)
    assert only_signal(lines) == "rejected-uploads"
    entry = json.loads(lines[0])
    assert entry["reason"] == "path_like_filename"
    assert filename not in lines[0] and json.dumps(filename)[1:-1] not in lines[0]


def test_a_plain_filename_logs_nothing() -> None:
    with security_lines() as lines:
        assert validate_filename("report-2026.csv") == "report-2026.csv"
    assert lines == []


def test_a_request_over_the_rate_limit_is_rate_limited() -> None:
    class Refusing:
        async def check(self, client_id: str) -> Decision:
            return Decision(allowed=False, retry_after_seconds=2)

    state: Any = SimpleNamespace(
        limiter=Refusing(), settings=SimpleNamespace(RATE_LIMIT_PER_SECOND=5.0, RATE_LIMIT_BURST=10)
    )
    with security_lines() as lines, pytest.raises(HTTPException) as refused:
        asyncio.run(enforce_rate_limit(state, "client-42"))
    assert refused.value.status_code == 429
    assert only_signal(lines) == "rate-limit-storms"
    assert json.loads(lines[0])["client_id"] == "client-42"


@pytest.mark.parametrize(
    ("code", "logged"),
    [("AccessDenied", True), ("AccessDeniedException", True), ("QueueDoesNotExist", False)],
)
def test_a_refused_aws_call_is_logged_as_access_denied(code: str, logged: bool) -> None:
    client = watch_access_denied(
        boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    )
    with Stubber(client) as stubber, security_lines("worker") as lines:
        stubber.add_client_error("send_message", service_error_code=code, http_status_code=400)
        with pytest.raises(ClientError):
            client.send_message(QueueUrl="https://sqs.us-east-1.amazonaws.com/123456789012/q", MessageBody="{}")
    if not logged:
        assert lines == []
        return
    assert only_signal(lines) == "aws-access-denied"
    entry = json.loads(lines[0])
    assert (entry["aws_service"], entry["aws_operation"], entry["error_code"]) == ("sqs", "SendMessage", code)
    assert entry["service"] == "worker" and entry["level"] == "WARNING"


def test_a_refused_call_of_the_async_sqs_client_is_logged_as_access_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.credentials import Credentials

    from services.common.sqs_async import AsyncSqsClient, SqsError

    async def refused(self: AsyncSqsClient, action: str, body: bytes, timeout: float) -> dict[str, Any]:
        raise SqsError("AccessDenied", "not authorized to perform sqs:SendMessageBatch", 403)

    monkeypatch.setattr(AsyncSqsClient, "_call_once", refused)
    client = AsyncSqsClient("https://sqs.us-east-1.amazonaws.com", "us-east-1", Credentials("x", "y"))
    with security_lines() as lines, pytest.raises(SqsError):
        asyncio.run(client.send_message_batch("https://sqs.us-east-1.amazonaws.com/123456789012/q", []))
    assert only_signal(lines) == "aws-access-denied"
    assert json.loads(lines[0])["aws_operation"] == "SendMessageBatch"
