"""SQS clients. In AWS the default endpoint and the task role's credentials are used; `SQS_ENDPOINT_URL`
points the same code at a local endpoint (fauxqs) for tests and the local runner.

The hot paths (the API's outbox relay, the worker's receive/delete/visibility calls) use the lean client of
services/common/sqs_async.py; boto3 serves the rest (queue set-up, the readiness probe)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import botocore.session
import orjson
from botocore.config import Config
from botocore.credentials import Credentials

from services.common.security_events import watch_access_denied
from services.common.settings import Settings
from services.common.sqs_async import AsyncSqsClient, BlockingSqsClient

SQS_BATCH_LIMIT = 10  # SendMessageBatch / DeleteMessageBatch / ReceiveMessage maximum
# Local endpoints accept any credentials; never reach for real ones when pointed at one.
LOCAL_CREDENTIALS = Credentials("local", "local")


def sqs_client(settings: Settings) -> Any:
    config = Config(
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=3,
        read_timeout=25,  # above the 20 s long-poll maximum
        max_pool_connections=16,
    )
    kwargs: dict[str, Any] = {"region_name": settings.AWS_REGION, "config": config}
    if settings.SQS_ENDPOINT_URL:
        kwargs["endpoint_url"] = settings.SQS_ENDPOINT_URL
        kwargs["aws_access_key_id"] = LOCAL_CREDENTIALS.access_key
        kwargs["aws_secret_access_key"] = LOCAL_CREDENTIALS.secret_key
    return watch_access_denied(boto3.client("sqs", **kwargs))


def async_sqs_client(settings: Settings, boto_client: Any) -> AsyncSqsClient:
    """The lean asyncio client (services/common/sqs_async.py) at the endpoint `boto_client` resolved, with
    the same credentials: the default chain (the task role) in AWS, dummy ones for a local endpoint."""
    return AsyncSqsClient(boto_client.meta.endpoint_url, boto_client.meta.region_name, _credentials(settings))


def blocking_sqs_client(settings: Settings) -> BlockingSqsClient:
    """The lean client for synchronous code (the worker), with boto3's method names."""
    return BlockingSqsClient(async_sqs_client(settings, sqs_client(settings)))


def _credentials(settings: Settings) -> Credentials:
    if settings.SQS_ENDPOINT_URL:
        return LOCAL_CREDENTIALS
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise RuntimeError(
            "no AWS credentials found for SQS (in ECS they come from the task role); "
            "set SQS_ENDPOINT_URL to use a local endpoint instead"
        )
    return credentials


def job_message(job_id: str) -> str:
    return orjson.dumps({"job_id": job_id}).decode()


def parse_job_message(body: str) -> str | None:
    """Return the job id of a well-formed message, or None for anything else (a poison message)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if not isinstance(job_id, str):
        return None
    try:
        return str(uuid.UUID(job_id))
    except ValueError:
        return None


def ensure_queues(client: Any, prefix: str, max_receives: int, visibility_timeout: int) -> dict[str, str]:
    """Create `<prefix>-high|normal|low` with a redrive policy to `<prefix>-dlq` (local runs and tests;
    in AWS the Pulumi queue_worker component owns the queues). Returns env var name -> URL."""
    dlq_url = client.create_queue(QueueName=f"{prefix}-dlq", Attributes={"MessageRetentionPeriod": "1209600"})[
        "QueueUrl"
    ]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = orjson.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)}).decode()
    urls = {"DLQ_URL": dlq_url}
    for priority in ("high", "normal", "low"):
        urls[f"QUEUE_URL_{priority.upper()}"] = client.create_queue(
            QueueName=f"{prefix}-{priority}",
            Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(visibility_timeout)},
        )["QueueUrl"]
    return urls
