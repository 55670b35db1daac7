"""Order events: a transactional outbox on the sending side, a de-duplicating consumer on the receiving side.

Sending (orders): `add_event(conn, topic, payload)` inside the business transaction writes an `outbox` row that
commits or rolls back with the order. `OutboxRelay` (one per task; rows are claimed with `FOR UPDATE SKIP
LOCKED`) sends unsent rows with SendMessageBatch and marks them sent in the claiming transaction. A send that
fails leaves its rows for a later round with exponential backoff, so an SQS outage delays events and never
blocks an order. A crash between the send and the commit sends those events again: delivery is at least once.

Receiving (notifications): `QueueConsumer` long-polls the queue and runs the handler for each event inside a
transaction that also records the event id in `processed_events`, so a duplicate (a re-sent or re-delivered
message) is skipped and the handler's database writes happen exactly once. A handler that fails leaves the
message for redelivery; a malformed message is left too, for the queue's dead-letter redrive.

Message body (JSON): {"event_id", "topic", "occurred_at", "payload", "traceparent"}; the message attributes
`event_id` and `topic` repeat the first two.

Both tables live in the service's schema: pass `OUTBOX_MIGRATION` / `PROCESSED_EVENTS_MIGRATION` in the
service's shared migrations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import botocore.session
import orjson
from botocore.credentials import Credentials
from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, ValidationError

from services.common.sqs_async import AsyncSqsClient
from services.common.tasks import finish_or_cancel
from services.shop.common.database import SharedMigration
from services.shop.common.observability import continue_or_start, current_trace, reset_trace, use_trace

log = logging.getLogger(__name__)

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS outbox (
    id uuid PRIMARY KEY,
    topic text NOT NULL,
    payload jsonb NOT NULL,
    -- The trace of the transaction that wrote the event, carried to the consumer.
    traceparent text,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (next_attempt_at) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
"""

PROCESSED_EVENTS_DDL = """
CREATE TABLE IF NOT EXISTS processed_events (
    event_id uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS processed_events_by_age ON processed_events (processed_at);
"""

OUTBOX_MIGRATION: SharedMigration = ("shop-common/0002_outbox.sql", OUTBOX_DDL)
PROCESSED_EVENTS_MIGRATION: SharedMigration = ("shop-common/0003_processed_events.sql", PROCESSED_EVENTS_DDL)

TOPIC_PATTERN = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*")
MAX_TOPIC_LENGTH = 100
SQS_BATCH_ENTRIES = 10
# SQS's limit for one message and for a whole batch (bodies and attributes). The envelope and attributes take
# well under 1 KiB, which MAX_PAYLOAD_BYTES leaves for them.
SQS_MAX_BATCH_BYTES = 256 * 1024
MAX_PAYLOAD_BYTES = SQS_MAX_BATCH_BYTES - 2048
# Keep duplicates out for as long as SQS can hold a message (its maximum retention is 14 days).
PROCESSED_EVENTS_RETENTION = timedelta(days=14)
SENT_EVENTS_RETENTION = timedelta(days=7)
HOUSEKEEPING_INTERVAL_SECONDS = 600.0
HOUSEKEEPING_BATCH = 1000
# Batches per housekeeping round: up to 100,000 rows per 10 minutes, far above the orders the gateway admits.
HOUSEKEEPING_MAX_BATCHES = 100
LONG_POLL_MARGIN_SECONDS = 10.0
# Local endpoints (fauxqs) accept any credentials; never reach for real ones when pointed at one.
LOCAL_CREDENTIALS = Credentials("local", "local")


class Event(BaseModel):
    """An order event as the consumer's handler receives it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: uuid.UUID
    topic: str
    occurred_at: datetime
    payload: dict[str, Any]
    traceparent: str | None = None


# What it returns is ignored: returning means "done with this event", raising means "deliver it again".
EventHandler = Callable[[AsyncConnection[Any], Event], Awaitable[object]]


def async_sqs_client(region: str, endpoint_url: str | None = None, *, timeout_seconds: float = 5.0) -> AsyncSqsClient:
    """The lean asyncio SQS client (services/common/sqs_async.py): at `endpoint_url` with dummy credentials
    (fauxqs, locally), or at the region's endpoint with the default credential chain (the task role, in AWS)."""
    if endpoint_url:
        return AsyncSqsClient(endpoint_url, region, LOCAL_CREDENTIALS, timeout_seconds=timeout_seconds)
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise RuntimeError(
            "no AWS credentials found for SQS (in ECS they come from the task role); "
            "set the SQS endpoint URL to use a local endpoint instead"
        )
    endpoint = boto3.client("sqs", region_name=region).meta.endpoint_url  # botocore's resolution, partitions included
    return AsyncSqsClient(endpoint, region, credentials, timeout_seconds=timeout_seconds)


async def add_event(
    conn: AsyncConnection[Any], topic: str, payload: Mapping[str, Any], *, traceparent: str | None = None
) -> uuid.UUID:
    """Write an event to the outbox inside the caller's open transaction; return its id. `traceparent` defaults
    to the current trace's (services/shop/common/observability.py), so the consumer's logs join the same trace."""
    _check_topic(topic)
    encoded = _encode_payload(topic, payload)
    if conn.autocommit and conn.info.transaction_status is not TransactionStatus.INTRANS:
        raise RuntimeError(
            "add_event must run inside the business transaction (async with conn.transaction(): ...), "
            "or the event would commit without it"
        )
    if traceparent is None and (trace := current_trace()) is not None:
        traceparent = trace.child_traceparent()
    event_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO outbox (id, topic, payload, traceparent) VALUES (%s, %s, %s::jsonb, %s)",
        (event_id, topic, encoded.decode(), traceparent),
    )
    return event_id


@dataclass(frozen=True)
class OutboxRow:
    id: uuid.UUID
    topic: str
    payload: str  # the jsonb as text: put into the message as it is
    traceparent: str | None
    created_at: datetime
    attempts: int

    def entry(self) -> dict[str, Any]:
        """A SendMessageBatch entry. The payload is re-encoded compactly (jsonb's text form has spaces)."""
        body = orjson.dumps(
            {
                "event_id": str(self.id),
                "topic": self.topic,
                "occurred_at": self.created_at.isoformat(),
                "payload": orjson.loads(self.payload),
                "traceparent": self.traceparent,
            }
        )
        return {
            "Id": str(self.id),
            "MessageBody": body.decode(),
            "MessageAttributes": {
                "event_id": {"DataType": "String", "StringValue": str(self.id)},
                "topic": {"DataType": "String", "StringValue": self.topic},
            },
        }


_CLAIM = """
SELECT id, topic, payload::text AS payload, traceparent, created_at, attempts FROM outbox
WHERE sent_at IS NULL AND next_attempt_at <= now()
ORDER BY next_attempt_at
LIMIT %s
FOR UPDATE SKIP LOCKED
"""
_MARK_SENT = "UPDATE outbox SET sent_at = now(), attempts = attempts + 1 WHERE id = ANY(%s)"
# Exponential backoff per row with jitter (50-100% of the step), capped; the exponent too, or power() overflows
# after ~1,000 failures and the error would roll back every round (a poison row jamming the relay).
_MARK_FAILED = """
UPDATE outbox SET attempts = attempts + 1,
    next_attempt_at = now() + make_interval(
        secs => least(%(cap)s, %(base)s * power(2, least(attempts, 30))) * (0.5 + random() / 2)
    )
WHERE id = ANY(%(ids)s)
"""
_PURGE_SENT = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE sent_at < now() - %s ORDER BY sent_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""
_PURGE_PROCESSED = """
DELETE FROM processed_events WHERE event_id IN (
    SELECT event_id FROM processed_events WHERE processed_at < now() - %s LIMIT %s FOR UPDATE SKIP LOCKED
)
"""


class OutboxRelay:
    """Sends committed outbox rows to `queue_url`. `start()` runs it as a task until `stop()`; `wake()` after a
    commit sends at once rather than at the next poll. The caller owns (and closes) the SQS client."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        sqs: AsyncSqsClient,
        queue_url: str,
        *,
        batch_size: int = 100,
        poll_seconds: float = 1.0,
        send_timeout_seconds: float = 5.0,
        max_backoff_seconds: float = 60.0,
    ) -> None:
        if not queue_url:
            raise ValueError("OutboxRelay needs the queue URL the events go to")
        if not 1 <= batch_size <= 1000:
            raise ValueError(f"batch_size must be 1-1000 rows per round, got {batch_size}")
        for name, value in (
            ("poll_seconds", poll_seconds),
            ("send_timeout_seconds", send_timeout_seconds),
            ("max_backoff_seconds", max_backoff_seconds),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self._pool = pool
        self._sqs = sqs
        self._queue_url = queue_url
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._send_timeout = send_timeout_seconds
        self._max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._next_housekeeping = 0.0
        self.last_round_ok = True

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the outbox relay is already running")
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, timeout: float = 10.0) -> None:
        """Let the current round finish (cancelling inside a transaction can leave the pool unable to close),
        then end the loop; cancel it only if it does not end within `timeout`."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        await finish_or_cancel(self._task, timeout, "outbox relay")
        self._task = None

    async def relay_once(self) -> int:
        """One round: claim due rows, send them, mark the outcome, all in one transaction; return how many were
        sent."""
        async with self._pool.connection() as conn, conn.transaction():
            rows = await self.claim(conn)
            if not rows:
                return 0
            sent, failed = await self.publish(rows)
            await self.mark(conn, sent, failed)
        self.last_round_ok = not failed
        return len(sent)

    async def claim(self, conn: AsyncConnection[Any]) -> list[OutboxRow]:
        """Lock up to `batch_size` due, unsent rows that no other relay holds."""
        async with conn.cursor(row_factory=class_row(OutboxRow)) as cursor:
            await cursor.execute(_CLAIM, (self._batch_size,))
            return await cursor.fetchall()

    async def publish(self, rows: list[OutboxRow]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """Send `rows` in SendMessageBatch calls; return (sent ids, failed ids). Never raises for SQS errors."""
        entries = [row.entry() for row in rows]
        results = await asyncio.gather(*(self._send_batch(batch) for batch in _batches(entries)))
        sent = [event_id for batch_sent, _ in results for event_id in batch_sent]
        failed = [event_id for _, batch_failed in results for event_id in batch_failed]
        return sent, failed

    async def mark(self, conn: AsyncConnection[Any], sent: list[uuid.UUID], failed: list[uuid.UUID]) -> None:
        if sent:
            await conn.execute(_MARK_SENT, (sent,))
        if failed:
            await conn.execute(_MARK_FAILED, {"ids": failed, "base": self._poll_seconds, "cap": self._max_backoff})

    async def purge_sent(self, older_than: timedelta = SENT_EVENTS_RETENTION) -> int:
        """Delete up to HOUSEKEEPING_BATCH rows sent more than `older_than` ago; return how many."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_PURGE_SENT, (older_than, HOUSEKEEPING_BATCH))
            return cursor.rowcount

    async def _send_batch(self, entries: list[dict[str, Any]]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        ids = [uuid.UUID(entry["Id"]) for entry in entries]
        try:
            async with asyncio.timeout(self._send_timeout):
                response = await self._sqs.send_message_batch(self._queue_url, entries)
        except Exception as error:
            log.warning(
                "SendMessageBatch failed; the events stay in the outbox",
                extra={"queue_url": self._queue_url, "events": len(entries), "error": repr(error)},
            )
            return [], ids
        sent = {uuid.UUID(entry["Id"]) for entry in response.get("Successful", [])}
        for failure in response.get("Failed", []):
            log.warning("SQS rejected an event; it stays in the outbox", extra={"failure": failure})
        return [i for i in ids if i in sent], [i for i in ids if i not in sent]

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                await self._housekeeping()
                sent = await self.relay_once()
                failures = 0
            except Exception:
                failures += 1
                sent = 0
                self.last_round_ok = False
                log.exception("outbox relay round failed; retrying", extra={"consecutive_failures": failures})
            if sent >= self._batch_size:
                continue  # more are probably waiting
            await self._idle(min(self._max_backoff, self._poll_seconds * 2**failures))

    async def _idle(self, seconds: float) -> None:
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        self._wake.clear()

    async def _housekeeping(self) -> None:
        if time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL_SECONDS
            await purge_in_batches(self.purge_sent)


async def purge_in_batches(purge: Callable[[], Awaitable[int]], max_batches: int = HOUSEKEEPING_MAX_BATCHES) -> int:
    """Run `purge` (which deletes up to HOUSEKEEPING_BATCH rows) until a batch comes back short; return the total."""
    total = 0
    for _ in range(max_batches):
        deleted = await purge()
        total += deleted
        if deleted < HOUSEKEEPING_BATCH:
            break
    return total


class QueueConsumer:
    """Long-polls `queue_url` and runs `handler(conn, event)` for each event inside a transaction that also records
    the event id, so each event's effects commit once. Up to `concurrency` messages of a batch are handled at once,
    each on its own pool connection. `start()` runs it as a task; `stop()` ends the poll at once and lets the
    messages in hand finish. The caller owns (and closes) the SQS client.

    A handler that may run longer than the queue's visibility timeout gets its message redelivered meanwhile; the
    duplicate then waits on the first one's `processed_events` row and is skipped once it commits."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        sqs: AsyncSqsClient,
        queue_url: str,
        handler: EventHandler,
        *,
        wait_seconds: int = 20,
        max_messages: int = 10,
        concurrency: int = 4,
        retry_delay_seconds: int = 10,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        if not queue_url:
            raise ValueError("QueueConsumer needs the queue URL to consume")
        if not 0 <= wait_seconds <= 20:
            raise ValueError(f"wait_seconds must be 0-20 (the SQS long-poll maximum), got {wait_seconds}")
        if not 1 <= max_messages <= SQS_BATCH_ENTRIES:
            raise ValueError(f"max_messages must be 1-{SQS_BATCH_ENTRIES}, got {max_messages}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if not 0 <= retry_delay_seconds <= 43200:
            raise ValueError(f"retry_delay_seconds must be 0-43200 (SQS visibility), got {retry_delay_seconds}")
        if not max_backoff_seconds > 0:
            raise ValueError(f"max_backoff_seconds must be > 0, got {max_backoff_seconds}")
        self._pool = pool
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._wait_seconds = wait_seconds
        self._max_messages = max_messages
        self._slots = asyncio.Semaphore(concurrency)
        self._retry_delay = retry_delay_seconds
        self._max_backoff = max_backoff_seconds
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._receiving: asyncio.Task[list[dict[str, Any]]] | None = None
        self._next_housekeeping = 0.0
        self.last_receive_ok = True

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("the queue consumer is already running")
        self._task = asyncio.create_task(self._run(), name="queue-consumer")

    async def stop(self, timeout: float = 30.0) -> None:
        """End the long poll now and let the messages being handled finish (for up to `timeout` seconds)."""
        if self._task is None:
            return
        self._stopping.set()
        if self._receiving is not None:
            self._receiving.cancel()
        await finish_or_cancel(self._task, timeout, "queue consumer")
        self._task = None

    async def poll_once(self) -> int:
        """Receive one batch and handle it; return how many messages were done with (handled or duplicates)."""
        return await self._handle_batch(await self._receive())

    async def handle(self, message: Mapping[str, Any]) -> bool:
        """Handle one received message; True when it may be deleted (handled now or before)."""
        try:
            event = Event.model_validate_json(message["Body"])
        except ValidationError as error:
            log.error(
                "malformed event message; left for the dead-letter queue",
                extra={"message_id": message.get("MessageId"), "errors": error.errors(include_url=False)},
            )
            return False
        token = use_trace(continue_or_start(event.traceparent))
        try:
            async with self._slots:
                return await self._handle_event(event, message)
        finally:
            reset_trace(token)

    async def purge_processed(self, older_than: timedelta = PROCESSED_EVENTS_RETENTION) -> int:
        """Forget up to HOUSEKEEPING_BATCH event ids recorded more than `older_than` ago; return how many."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_PURGE_PROCESSED, (older_than, HOUSEKEEPING_BATCH))
            return cursor.rowcount

    async def _handle_event(self, event: Event, message: Mapping[str, Any]) -> bool:
        fields = {"event_id": str(event.event_id), "topic": event.topic}
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cursor = await conn.execute(
                    "INSERT INTO processed_events (event_id) VALUES (%s) ON CONFLICT DO NOTHING", (event.event_id,)
                )
                if cursor.rowcount == 0:
                    log.info("duplicate event skipped", extra=fields)
                    return True
                await self._handler(conn, event)
        except Exception:
            log.exception("event handler failed; the message will be redelivered", extra=fields)
            await self._retry_later(message)
            return False
        return True

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            await self._housekeeping()
            self._receiving = asyncio.create_task(self._receive())
            if self._stopping.is_set():
                self._receiving.cancel()  # stop() came during the housekeeping, before there was a poll to cancel
            await asyncio.wait({self._receiving})
            receiving, self._receiving = self._receiving, None
            if receiving.cancelled():
                break  # stop() ended the long poll
            if (error := receiving.exception()) is not None:
                failures += 1
                self.last_receive_ok = False
                log.warning(
                    "ReceiveMessage failed; retrying",
                    extra={"queue_url": self._queue_url, "error": repr(error), "consecutive_failures": failures},
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(self._max_backoff, 0.5 * 2**failures))
                continue
            failures = 0
            self.last_receive_ok = True
            await self._handle_batch(receiving.result())

    async def _receive(self) -> list[dict[str, Any]]:
        response = await self._sqs.call(
            "ReceiveMessage",
            {
                "QueueUrl": self._queue_url,
                "MaxNumberOfMessages": self._max_messages,
                "WaitTimeSeconds": self._wait_seconds,
                "MessageAttributeNames": ["All"],
            },
            self._wait_seconds + LONG_POLL_MARGIN_SECONDS,
        )
        return response.get("Messages", [])

    async def _handle_batch(self, messages: list[dict[str, Any]]) -> int:
        if not messages:
            return 0
        outcomes = await asyncio.gather(*(self.handle(message) for message in messages))
        done = [message for message, ok in zip(messages, outcomes, strict=True) if ok]
        await self._delete(done)
        return len(done)

    async def _delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        try:
            response = await self._sqs.call("DeleteMessageBatch", {"QueueUrl": self._queue_url, "Entries": entries})
        except Exception as error:
            # The events are recorded as processed: their redelivery will be skipped as duplicates.
            log.warning("DeleteMessageBatch failed", extra={"error": repr(error), "messages": len(entries)})
            return
        for failure in response.get("Failed", []):
            log.warning("SQS did not delete a handled message", extra={"failure": failure})

    async def _retry_later(self, message: Mapping[str, Any]) -> None:
        """Make the message visible again after `retry_delay_seconds` instead of the queue's whole visibility
        timeout; if that fails, the visibility timeout applies, which is fine too."""
        try:
            await self._sqs.call(
                "ChangeMessageVisibility",
                {
                    "QueueUrl": self._queue_url,
                    "ReceiptHandle": message["ReceiptHandle"],
                    "VisibilityTimeout": self._retry_delay,
                },
            )
        except Exception as error:
            log.warning("ChangeMessageVisibility failed", extra={"error": repr(error)})

    async def _housekeeping(self) -> None:
        if time.monotonic() < self._next_housekeeping:
            return
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_INTERVAL_SECONDS
        try:
            await purge_in_batches(self.purge_processed)
        except Exception:
            log.exception("purging old processed_events failed; will try again later")


def _check_topic(topic: str) -> None:
    if not (0 < len(topic) <= MAX_TOPIC_LENGTH and TOPIC_PATTERN.fullmatch(topic)):
        raise ValueError(
            f"event topic must be 1-{MAX_TOPIC_LENGTH} characters of dot-separated lower-case words "
            f"(a-z, 0-9, '_' or '-', starting with a letter), e.g. 'order.confirmed'; got {topic!r}"
        )


def _encode_payload(topic: str, payload: Mapping[str, Any]) -> bytes:
    if not isinstance(payload, Mapping):
        raise TypeError(f"event payload must be a JSON object (a mapping), got {type(payload).__name__}")
    try:
        encoded = orjson.dumps(payload, default=_json_default)
    except TypeError as error:
        raise ValueError(f"event payload for {topic!r} is not JSON-serialisable: {error}") from error
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"event payload for {topic!r} is {len(encoded)} bytes; at most {MAX_PAYLOAD_BYTES} fit an SQS message"
        )
    return encoded


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: money must not become a float
    raise TypeError(f"type {type(value).__name__} is not JSON-serialisable")


def _batches(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """SendMessageBatch calls of at most 10 entries and SQS_MAX_BATCH_BYTES each."""
    batches: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_size(entry)
        if current and (len(current) == SQS_BATCH_ENTRIES or size + entry_size > SQS_MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(entry)
        size += entry_size
    if current:
        batches.append(current)
    return batches


def _entry_size(entry: dict[str, Any]) -> int:
    """What SQS counts: the body, and each attribute's name, type and value."""
    attributes = sum(
        len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
        for name, value in entry["MessageAttributes"].items()
    )
    return len(entry["MessageBody"].encode()) + attributes
