"""The flows the contract drives itself, so that it never passes on an empty recording when run alone: the API
(readiness, a job through the outbox relay), the worker (DLQ sweep, receive, delete) and the scan alerts Lambda
(an alert published), each through its own code so the recorder attributes the calls as in the containers.
The rest of the session adds every other path (retries, visibility extension, poison messages, errors)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql

from services.api.app import create_app
from services.common.migrate import apply_migrations
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs
from tests.services.conftest import build_worker
from tests.services.helpers import ADMIN_DSN, drain

SCAN_EVENT = Path(__file__).resolve().parents[1] / "lambdas" / "events" / "ecr-scan-critical.json"


@contextmanager
def throwaway_database() -> Iterator[str]:
    name = f"cp_iam_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def drive_services(storage: Path) -> None:
    with Fauxqs() as fauxqs, throwaway_database() as database:
        base: dict[str, Any] = {
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DB_NAME": database,
            "DB_POOL_MAX": "4",
            "REDIS_KEY_PREFIX": f"cp-iam-{uuid.uuid4().hex[:8]}:",
            "SQS_ENDPOINT_URL": fauxqs.endpoint_url,
            "STORAGE_PATH": str(storage),
            "HEARTBEAT_FILE": str(storage / "heartbeat"),
            "RELAY_POLL_SECONDS": "0.2",
        }
        probe = Settings(**base)  # pyright: ignore[reportArgumentType]
        queues = ensure_queues(sqs_client(probe), f"iam{uuid.uuid4().hex[:8]}", 3, 30)
        settings = Settings(**base, **queues)  # pyright: ignore[reportArgumentType]
        apply_migrations(settings)
        with TestClient(create_app(settings), headers={"X-Client-Id": "iam-contract"}) as client:
            assert client.get("/ready").status_code == 200
            job = client.post("/jobs", json={"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}).json()
            worker, close = build_worker(settings)
            try:
                worker.sweep_dlq()
                drain(worker, lambda: client.get(f"/jobs/{job['id']}").json()["status"] == "succeeded")
            finally:
                close()


def drive_scan_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import mock_aws

    from lambdas.scan_alerts import handler

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    handler._client.cache_clear()
    try:
        with mock_aws():
            topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="iam-alerts")["TopicArn"]
            monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
            monkeypatch.setenv("SEVERITY_THRESHOLD", "HIGH")
            monkeypatch.setenv("ALLOWED_FINDINGS", "{}")
            monkeypatch.setenv("REPOSITORIES", "app-dev-api,app-dev-worker")
            assert handler.handler(json.loads(SCAN_EVENT.read_text()), None)["status"] == "alerted"
    finally:
        handler._client.cache_clear()
