"""The flows the contract drives itself, so that it never passes on an empty recording when run alone: the API
(readiness, a job through the outbox relay), the worker (DLQ sweep, receive, delete), the shop (the orders relay
sends an order event; notifications reads its queue for /ready, receives the event, emails it through SES, deletes
it) and the scan alerts Lambda (an alert published), each through its own code so the recorder attributes the
calls as in the containers. The rest of the session adds every other path (retries, visibility extension, poison
messages, errors)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.api.app import create_app
from services.common.migrate import apply_migrations
from services.common.settings import Settings
from services.common.sqs import ensure_queues, sqs_client
from services.fauxqs import Fauxqs
from services.shop.common.database import ensure_service_role, search_path_option
from services.shop.common.events import add_event
from services.shop.notifications.app import create_app as create_notifications_app
from services.shop.notifications.settings import NotificationsSettings
from services.shop.orders.app import create_app as create_orders_app
from services.shop.orders.settings import OrdersSettings
from tests.services.conftest import build_worker
from tests.services.helpers import ADMIN_DSN, drain, throwaway_database

SCAN_EVENT = Path(__file__).resolve().parents[1] / "lambdas" / "events" / "ecr-scan-critical.json"
# The orders flow places no order: its callees are never called, so they may point at a closed port.
UNCALLED = "http://127.0.0.1:9"
SHOP_SENDER_DOMAIN = "iam-contract.example.com"
"""The SES identity the shop flow verifies in moto and sends from (as orders@ it)."""
SHOP_WAIT_SECONDS = 20.0


@contextmanager
def throwaway_roles(*services: str) -> Iterator[dict[str, str]]:
    """Service -> a fresh role name; the roles are dropped at the end (after the databases they own objects in)."""
    tag = uuid.uuid4().hex[:8]
    roles = {service: f"{service}_iam{tag}" for service in services}
    try:
        yield roles
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            for role in roles.values():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = SHOP_WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def drive_services(storage: Path, fauxqs: Fauxqs) -> None:
    with throwaway_database(f"cp_iam_{uuid.uuid4().hex[:10]}") as database:
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


def drive_shop(fauxqs: Fauxqs) -> None:
    """One order event from the orders relay to an email sent by notifications, through both apps' own start-up."""
    with (
        throwaway_roles("orders", "notifications") as roles,
        throwaway_database(f"cp_iam_{uuid.uuid4().hex[:10]}") as database,
    ):
        for service, role in roles.items():
            ensure_service_role(ADMIN_DSN, database, role, service)
        local_sqs = boto3.client(
            "sqs",
            endpoint_url=fauxqs.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        queue_url = local_sqs.create_queue(QueueName=f"iam-shop-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        base: dict[str, Any] = {
            "DB_NAME": database,
            "DB_POOL_MIN": 1,
            "DB_POOL_MAX": 2,
            "LOG_LEVEL": "WARNING",
            "SQS_ENDPOINT_URL": fauxqs.endpoint_url,
        }
        orders = OrdersSettings(
            SERVICE_NAME="orders",
            DB_USER=roles["orders"],
            NOTIFICATIONS_QUEUE_URL=queue_url,
            PRODUCTS_URL=UNCALLED,
            PAYMENTS_URL=UNCALLED,
            USERS_URL=UNCALLED,
            RELAY_POLL_SECONDS=0.1,
            **base,
        )
        order_id = relay_one_order_event(orders)
        notifications = NotificationsSettings(
            SERVICE_NAME="notifications",
            DB_USER=roles["notifications"],
            QUEUE_URL=queue_url,
            EMAIL_FROM=f"orders@{SHOP_SENDER_DOMAIN}",
            RECEIVE_WAIT_SECONDS=1,
            **base,
        )
        email_the_order_event(notifications, order_id, lambda: _depth(local_sqs, queue_url))


def relay_one_order_event(settings: OrdersSettings) -> str:
    """Start orders (its relay starts with it), commit an order event to its outbox, wait until the relay sent it;
    returns the order id."""
    order_id = str(uuid.uuid4())
    payload = {"order_id": order_id, "email": "ada@example.com", "total_cents": 4200, "currency": "EUR"}
    conninfo = make_conninfo(ADMIN_DSN, dbname=settings.DB_NAME, options=search_path_option(settings.DB_SCHEMA))
    with TestClient(create_orders_app(settings)):
        event_id = asyncio.run(_commit_event(conninfo, "order.confirmed", payload))
        wait_until(lambda: _sent(conninfo, event_id), "the orders relay to send the order event")
    return order_id


def email_the_order_event(settings: NotificationsSettings, order_id: str, depth: Callable[[], int]) -> None:
    """Start notifications against SES (moto, the sender's domain verified): /ready reads the queue, the consumer
    receives the event, emails it and deletes it."""
    from moto import mock_aws

    with mock_aws():
        boto3.client("sesv2", region_name=settings.AWS_REGION).create_email_identity(EmailIdentity=SHOP_SENDER_DOMAIN)
        with TestClient(create_notifications_app(settings)) as client:
            ready = client.get("/ready")
            assert ready.status_code == 200, ready.text
            wait_until(lambda: depth() == 0 and _emailed(client, order_id), "notifications to email the order event")


async def _commit_event(conninfo: str, topic: str, payload: dict[str, Any]) -> uuid.UUID:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn, conn.transaction():
        return await add_event(conn, topic, payload)


def _sent(conninfo: str, event_id: uuid.UUID) -> bool:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT sent_at FROM outbox WHERE id = %s", (event_id,)).fetchone()
    return row is not None and row[0] is not None


def _emailed(client: TestClient, order_id: str) -> bool:
    rows = client.get("/notifications", params={"order_id": order_id}).json()
    return [row["status"] for row in rows] == ["sent"]


def _depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue, visible or in flight."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


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


def drive_deploy_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment hook reads its test token (Secrets Manager in moto) and checks a local stand-in route."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from moto import mock_aws

    from lambdas.deploy_hook import handler

    class Healthy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    handler._secrets.cache_clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        with mock_aws():
            secrets = boto3.client("secretsmanager", region_name="us-east-1")
            arn = secrets.create_secret(Name="iam-deploy-test-token", SecretString="token")["ARN"]
            monkeypatch.setenv("TEST_TOKEN_SECRET_ARN", arn)
            details = {"baseUrl": f"http://127.0.0.1:{server.server_address[1]}", "checks": [{"path": "/health"}]}
            assert handler.handler({"hookDetails": details}, None) == {"hookStatus": "SUCCEEDED"}
    finally:
        server.shutdown()
        server.server_close()
        handler._secrets.cache_clear()
