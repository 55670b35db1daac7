"""The notifications service end to end: its app (consumer, database, HTTP) against real PostgreSQL and fauxqs,
with order events put on the queue exactly as the orders service's outbox relay sends them."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from services.fauxqs import Fauxqs, free_port
from services.shop.common.events import OutboxRow
from services.shop.notifications.app import create_app
from services.shop.notifications.messages import Email
from services.shop.notifications.senders import EmailSender, FileSender, PermanentSendError, SesSender, ses_client
from services.shop.notifications.settings import NotificationsSettings
from tests.shop.conftest import settings_env

VISIBILITY_SECONDS = 1
MAX_RECEIVES = 2
WAIT_SECONDS = 20.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Queue:
    """A fresh queue with a dead-letter queue (maxReceiveCount=2, 1 s visibility) on the session's fauxqs."""

    def __init__(self, endpoint_url: str) -> None:
        self.sqs = boto3.client(
            "sqs", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        name = f"notifications-{uuid.uuid4().hex[:10]}"
        self.dlq_url = self.sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        redrive = orjson.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVES)}).decode()
        self.url = self.sqs.create_queue(
            QueueName=name, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": str(VISIBILITY_SECONDS)}
        )["QueueUrl"]

    def send_event(self, topic: str, payload: dict[str, Any], event_id: uuid.UUID | None = None) -> uuid.UUID:
        """Send an event as the outbox relay does (services.shop.common.events.OutboxRow.entry)."""
        event_id = event_id or uuid.uuid4()
        row = OutboxRow(event_id, topic, orjson.dumps(payload).decode(), None, datetime.now(UTC), 0)
        entry = row.entry()
        self.sqs.send_message(
            QueueUrl=self.url, MessageBody=entry["MessageBody"], MessageAttributes=entry["MessageAttributes"]
        )
        return event_id

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def depth(self, url: str | None = None) -> int:
        """Messages in the queue, visible or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=url or self.url, AttributeNames=names)["Attributes"]
        return sum(int(attributes[name]) for name in names)


class CountingSender:
    """The file sink, counting the send attempts per event; fails the first `failures` attempts of each event
    with `error` (a provider outage)."""

    def __init__(self, sink: Path, failures: int = 0, error: Exception | None = None) -> None:
        self.sink = FileSender(sink, "orders@shop.example.com")
        self.attempts: dict[uuid.UUID, int] = {}
        self._failures = failures
        self._error = error or ConnectionError("email provider unreachable")

    async def send(self, email: Email) -> str:
        attempt = self.attempts[email.event_id] = self.attempts.get(email.event_id, 0) + 1
        if attempt <= self._failures:
            raise self._error
        return await self.sink.send(email)


class BlockingSender:
    """The file sink, but each send waits (in a thread) until the test releases it."""

    def __init__(self, sink: Path) -> None:
        self.sink = FileSender(sink, "orders@shop.example.com")
        self.entered = threading.Event()
        self.release = threading.Event()

    async def send(self, email: Email) -> str:
        self.entered.set()
        await asyncio.to_thread(self.release.wait, WAIT_SECONDS)
        return await self.sink.send(email)


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def queue(fauxqs_server: Fauxqs) -> Queue:
    return Queue(fauxqs_server.endpoint_url)


@pytest.fixture
def settings(make_service_settings: Any, queue: Queue, fauxqs_server: Fauxqs, tmp_path: Path) -> NotificationsSettings:
    return make_service_settings(
        "notifications",
        NotificationsSettings,
        schema=f"notifications_{uuid.uuid4().hex[:8]}",
        QUEUE_URL=queue.url,
        SQS_ENDPOINT_URL=fauxqs_server.endpoint_url,
        EMAIL_SINK_DIR=tmp_path / "mail",
        RECEIVE_WAIT_SECONDS=1,
        RETRY_DELAY_SECONDS=0,
    )


@pytest.fixture
def captured() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger("services.shop.notifications")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def running(settings: NotificationsSettings, sender: EmailSender | None = None) -> TestClient:
    return TestClient(create_app(settings, sender=sender), raise_server_exceptions=True)


def order_payload(**overrides: Any) -> dict[str, Any]:
    base = {"order_id": str(uuid.uuid4()), "email": "ada@example.com", "total_cents": 4200, "currency": "EUR"}
    return base | overrides


def notifications(client: TestClient, order_id: str) -> list[dict[str, Any]]:
    response = client.get("/notifications", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    return response.json()


def test_each_event_sends_exactly_one_email_even_when_delivered_twice(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    sender = CountingSender(tmp_path / "mail")
    payload = order_payload()
    topics = ["order.confirmed", "order.cancelled", "order.payment_failed"]
    with running(settings, sender) as client:
        events = {queue.send_event(topic, payload): topic for topic in topics}
        for event_id, topic in events.items():
            queue.send_event(topic, payload, event_id)  # the relay's resend after a crash before marking
        wait_until(lambda: queue.depth() == 0, "the queue to drain")
        # Delivered again once handled: the inbox knows the event.
        first = next(iter(events))
        queue.send_event(events[first], payload, first)
        wait_until(lambda: queue.depth() == 0, "the late duplicate to be consumed")
        rows = notifications(client, payload["order_id"])
    assert sender.attempts == dict.fromkeys(events, 1)
    assert sorted(p.name for p in (tmp_path / "mail").iterdir()) == sorted(f"{e}.eml" for e in events)
    assert {(row["event_id"], row["template"], row["status"]) for row in rows} == {
        (str(first), "order_confirmed", "sent"),
        (str(list(events)[1]), "order_cancelled", "sent"),
        (str(list(events)[2]), "payment_failed", "sent"),
    }
    assert all(row["recipient"] == "ada@example.com" and row["sent_at"] for row in rows)


def test_a_malformed_event_is_logged_and_dropped_not_retried(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path, captured: Captured
) -> None:
    sender = CountingSender(tmp_path / "mail")
    with running(settings, sender):
        bad = queue.send_event("order.confirmed", order_payload(email="not an address", total_cents="lots"))
        wait_until(lambda: queue.depth() == 0, "the malformed event to be consumed")
    assert sender.attempts == {}
    assert queue.depth(queue.dlq_url) == 0  # dropped, not dead-lettered after retries
    [record] = [r for r in captured.records if r.getMessage() == "malformed order event dropped"]
    assert record.levelno == logging.ERROR and record.__dict__["event_id"] == str(bad)
    assert "email: Value error" in record.__dict__["error"] and "total_cents" in record.__dict__["error"]


def test_a_message_that_is_not_an_event_ends_in_the_dead_letter_queue(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    sender = CountingSender(tmp_path / "mail")
    with running(settings, sender):
        queue.send_raw("this is not JSON")
        wait_until(lambda: queue.depth(queue.dlq_url) == 1, "the broken message to be dead-lettered")
        assert queue.depth() == 0
    assert sender.attempts == {}


def test_topics_without_an_email_are_consumed_silently(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    sender = CountingSender(tmp_path / "mail")
    with running(settings, sender) as client:
        payload = order_payload()
        queue.send_event("order.created", payload)
        wait_until(lambda: queue.depth() == 0, "the event to be consumed")
        assert notifications(client, payload["order_id"]) == []
    assert sender.attempts == {}


def test_a_sender_failure_redelivers_the_event_and_it_is_sent_once_later(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    sender = CountingSender(tmp_path / "mail", failures=1)
    payload = order_payload()
    with running(settings, sender) as client:
        event_id = queue.send_event("order.confirmed", payload)
        wait_until(lambda: queue.depth() == 0, "the event to be sent after its redelivery")
        [row] = notifications(client, payload["order_id"])
    assert sender.attempts == {event_id: 2}
    assert row["status"] == "sent" and row["event_id"] == str(event_id)
    assert [p.name for p in (tmp_path / "mail").iterdir()] == [f"{event_id}.eml"]
    assert queue.depth(queue.dlq_url) == 0


def test_a_permanent_rejection_is_recorded_and_the_event_dropped(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    rejected = PermanentSendError("MessageRejected", "Email address is on the suppression list")
    sender = CountingSender(tmp_path / "mail", failures=99, error=rejected)
    payload = order_payload()
    with running(settings, sender) as client:
        event_id = queue.send_event("order.payment_failed", payload)
        wait_until(lambda: queue.depth() == 0, "the event to be consumed")
        [row] = notifications(client, payload["order_id"])
    assert sender.attempts == {event_id: 1}
    assert row["status"] == "rejected" and row["sent_at"] is None
    assert row["error"] == "MessageRejected: Email address is on the suppression list"
    assert queue.depth(queue.dlq_url) == 0


def test_an_order_event_becomes_an_ses_email_from_the_verified_identity(
    make_service_settings: Any, queue: Queue, fauxqs_server: Fauxqs
) -> None:
    settings = make_service_settings(
        "notifications",
        NotificationsSettings,
        schema=f"notifications_{uuid.uuid4().hex[:8]}",
        QUEUE_URL=queue.url,
        SQS_ENDPOINT_URL=fauxqs_server.endpoint_url,
        EMAIL_FROM="orders@shop.example.com",
        RECEIVE_WAIT_SECONDS=1,
    )
    payload = order_payload()
    with mock_aws():
        boto3.client("sesv2", region_name="us-east-1").create_email_identity(EmailIdentity="shop.example.com")
        sender = SesSender(ses_client("us-east-1", max_attempts=2), settings.sender_address)
        with running(settings, sender) as client:
            queue.send_event("order.confirmed", payload)
            wait_until(lambda: queue.depth() == 0, "the event to be consumed")
            [row] = notifications(client, payload["order_id"])
        [sent] = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    assert sent.source == "orders@shop.example.com" and sent.destinations == {"ToAddresses": ["ada@example.com"]}
    assert row["status"] == "sent" and row["provider_message_id"] == sent.id


def test_shutdown_finishes_the_message_in_flight(settings: NotificationsSettings, queue: Queue, tmp_path: Path) -> None:
    sender = BlockingSender(tmp_path / "mail")
    client = running(settings, sender)
    client.__enter__()
    event_id = queue.send_event("order.confirmed", order_payload())
    assert sender.entered.wait(WAIT_SECONDS), "the consumer never started sending"
    stopping = threading.Thread(target=client.__exit__, args=(None, None, None))
    stopping.start()
    stopping.join(0.3)
    assert stopping.is_alive(), "shutdown did not wait for the message in flight"
    assert not (tmp_path / "mail" / f"{event_id}.eml").exists()
    sender.release.set()
    stopping.join(WAIT_SECONDS)
    assert not stopping.is_alive()
    assert (tmp_path / "mail" / f"{event_id}.eml").exists()
    assert queue.depth() == 0  # handled and deleted before the process let go: no redelivery, no second email


def test_ready_checks_the_database_and_the_queue(settings: NotificationsSettings) -> None:
    with running(settings) as client:
        assert client.get("/health").json() == {"status": "ok"}
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": "ok", "queue": "ok"}


def test_ready_names_an_unreachable_queue(settings: NotificationsSettings, queue: Queue) -> None:
    missing = settings.model_copy(update={"QUEUE_URL": queue.url + "-missing"})
    with running(missing) as client:
        ready = client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["queue"] != "ok"
    assert "queue (" in ready.json()["detail"]


def test_listing_needs_a_valid_order_id(settings: NotificationsSettings) -> None:
    with running(settings) as client:
        missing = client.get("/notifications")
        malformed = client.get("/notifications", params={"order_id": "42"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["query", "order_id"]
    assert malformed.status_code == 422 and "UUID" in malformed.json()["detail"][0]["msg"]


def test_the_entry_point_serves_consumes_and_stops_cleanly_on_sigterm(
    settings: NotificationsSettings, queue: Queue, tmp_path: Path
) -> None:
    port = free_port()
    env = os.environ | settings_env(settings) | {"PORT": str(port), "LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.shop.notifications"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        probe = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2)
        wait_until(lambda: _answers(probe, "/ready"), "the service to be ready")
        event_id = queue.send_event("order.confirmed", order_payload())
        wait_until(lambda: (tmp_path / "mail" / f"{event_id}.eml").exists(), "the email file")
        process.send_signal(signal.SIGTERM)
        # uvicorn finishes its shutdown, then re-raises the signal it caught (its documented behaviour).
        assert process.wait(WAIT_SECONDS) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = process.stdout.read().decode() if process.stdout else ""
    logged = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(line["msg"] == "email sent" and line["event_id"] == str(event_id) for line in logged), output
    assert any(line["msg"] == "Application shutdown complete." for line in logged), output
    assert not [line for line in logged if line["level"] in ("ERROR", "CRITICAL")], output


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False
