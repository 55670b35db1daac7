"""Property-based fuzzing of the notifications service from its own OpenAPI schema (schemathesis), served by
uvicorn against real PostgreSQL and fauxqs: no input may produce a 5xx, and responses must match the documented
status codes, content types and schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import schemathesis

from services.fauxqs import Fauxqs
from services.shop.notifications.app import create_app
from services.shop.notifications.settings import NotificationsSettings
from tests.shop.serving import fuzz, served


@pytest.fixture
def service_settings(make_service_settings: Any, fauxqs_server: Fauxqs, tmp_path: Path) -> NotificationsSettings:
    sqs = boto3.client(
        "sqs",
        endpoint_url=fauxqs_server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    queue_url = sqs.create_queue(QueueName=f"notifications-fuzz-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    return make_service_settings(
        "notifications",
        NotificationsSettings,
        schema=f"notifications_{uuid.uuid4().hex[:8]}",
        QUEUE_URL=queue_url,
        SQS_ENDPOINT_URL=fauxqs_server.endpoint_url,
        EMAIL_SINK_DIR=tmp_path / "mail",
        RECEIVE_WAIT_SECONDS=1,
    )


@pytest.fixture
def api_schema(service_settings: NotificationsSettings) -> Iterator[Any]:
    with served(create_app(service_settings)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


@pytest.mark.timeout(150)
def test_notifications_conforms_to_its_schema_and_never_fails(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert sorted(f"{op.method.upper()} {op.path}" for op in operations) == [
        "GET /health",
        "GET /notifications",
        "GET /ready",
    ]
    for operation in operations:
        fuzz(operation)
