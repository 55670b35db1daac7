"""The order-events outbox, relay and consumer (services/shop/common/events.py) against fauxqs and a throwaway
PostgreSQL database."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from services.common.sqs_async import AsyncSqsClient
from services.fauxqs import Fauxqs
from services.shop.common.events import (
    HOUSEKEEPING_BATCH,
    LOCAL_CREDENTIALS,
    MAX_PAYLOAD_BYTES,
    OUTBOX_DDL,
    PROCESSED_EVENTS_DDL,
    Event,
    OutboxRelay,
    QueueConsumer,
    add_event,
    async_sqs_client,
    purge_in_batches,
)
from services.shop.common.observability import TraceContext, current_trace, reset_trace, use_trace
from tests.services.helpers import TcpProxy, throwaway_database

RECEIVED_DDL = "CREATE TABLE received (event_id uuid NOT NULL, topic text NOT NULL, payload jsonb NOT NULL)"
DRAIN_TIMEOUT = 30.0


class Crash(Exception):
    """Raised to end a transaction the way a process dying would: nothing after it commits."""


@pytest.fixture(scope="module")
def fauxqs() -> Iterator[Fauxqs]:
    with Fauxqs() as server:
        yield server


@pytest.fixture(scope="module")
def dsn() -> Iterator[str]:
    with throwaway_database(f"shop_events_{uuid.uuid4().hex[:10]}") as name:
        yield f"host=127.0.0.1 port=5432 user=postgres dbname={name}"


@pytest.fixture
def tables(dsn: str) -> str:
    """Fresh outbox, processed_events and a `received` table (the handler's effects) for each test."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS outbox, processed_events, received")
        conn.execute(OUTBOX_DDL)  # twice: the DDL is idempotent
        conn.execute(OUTBOX_DDL)
        conn.execute(PROCESSED_EVENTS_DDL)
        conn.execute(RECEIVED_DDL)
    return dsn


@dataclass
class Harness:
    """Everything a test needs inside its event loop: a pool, an SQS client, a fresh queue."""

    pool: AsyncConnectionPool[Any]
    sqs: AsyncSqsClient
    queue_url: str
    handled: list[uuid.UUID] = field(default_factory=list)

    async def add(self, topic: str = "order.confirmed", payload: dict[str, Any] | None = None) -> uuid.UUID:
        async with self.pool.connection() as conn, conn.transaction():
            return await add_event(conn, topic, payload or {"order_id": str(uuid.uuid4())})

    async def record(self, conn: AsyncConnection[Any], event: Event) -> None:
        """The handler under test: its effect is a row in `received`, committed with the dedupe record."""
        self.handled.append(event.event_id)
        await conn.execute(
            "INSERT INTO received (event_id, topic, payload) VALUES (%s, %s, %s)",
            (event.event_id, event.topic, orjson.dumps(event.payload).decode()),
        )

    def relay(self, **options: Any) -> OutboxRelay:
        options.setdefault("poll_seconds", 0.05)
        return OutboxRelay(self.pool, self.sqs, self.queue_url, **options)

    def consumer(self, handler: Any = None, **options: Any) -> QueueConsumer:
        options.setdefault("wait_seconds", 0)
        options.setdefault("retry_delay_seconds", 0)
        return QueueConsumer(self.pool, self.sqs, self.queue_url, handler or self.record, **options)

    async def received(self) -> list[uuid.UUID]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT event_id FROM received ORDER BY event_id")
            return [row[0] for row in await cursor.fetchall()]

    async def unsent(self) -> int:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            row = await cursor.fetchone()
            return row[0] if row else 0

    async def queue_depth(self) -> int:
        attributes = await self.sqs.call(
            "GetQueueAttributes",
            {
                "QueueUrl": self.queue_url,
                "AttributeNames": ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            },
        )
        return sum(int(value) for value in attributes["Attributes"].values())

    async def queue_depth_is(self, depth: int) -> bool:
        return await self.queue_depth() == depth

    async def unsent_is(self, count: int) -> bool:
        return await self.unsent() == count

    async def received_count_is(self, count: int) -> bool:
        return len(await self.received()) == count

    async def attempts_at_least(self, event_id: uuid.UUID, attempts: int) -> bool:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT attempts FROM outbox WHERE id = %s", (event_id,))
            row = await cursor.fetchone()
            return row is not None and row[0] >= attempts

    async def receive_raw(self) -> list[dict[str, Any]]:
        response = await self.sqs.call(
            "ReceiveMessage",
            {
                "QueueUrl": self.queue_url,
                "MaxNumberOfMessages": 10,
                "WaitTimeSeconds": 0,
                "MessageAttributeNames": ["All"],
            },
        )
        return response.get("Messages", [])


async def until(condition: Callable[[], Awaitable[bool]], what: str, step: Callable[[], Awaitable[Any]]) -> None:
    """Run `step` until `condition()` holds (bounded, so a bug fails the test instead of hanging it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_TIMEOUT
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {DRAIN_TIMEOUT}s waiting for {what}")
        await step()


def run(dsn: str, endpoint: str, scenario: Callable[[Harness], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        sqs = AsyncSqsClient(endpoint, "us-east-1", LOCAL_CREDENTIALS, timeout_seconds=5.0, max_attempts=1)
        created = await sqs.call(
            "CreateQueue", {"QueueName": f"events-{uuid.uuid4().hex[:12]}", "Attributes": {"VisibilityTimeout": "30"}}
        )
        async with AsyncConnectionPool(dsn, kwargs={"autocommit": True}, min_size=1, max_size=6) as pool:
            try:
                return await scenario(Harness(pool, sqs, created["QueueUrl"]))
            finally:
                await sqs.aclose()

    return asyncio.run(main())


# --- the outbox ---


def test_an_event_added_in_a_rolled_back_transaction_is_never_sent(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        async def rolled_back() -> None:
            async with h.pool.connection() as conn, conn.transaction():
                await add_event(conn, "order.confirmed", {"order_id": "rolled-back"})
                raise Crash

        with pytest.raises(Crash):
            await rolled_back()
        kept = await h.add(payload={"order_id": "kept"})
        assert await h.relay().relay_once() == 1
        consumer = h.consumer()
        await until(lambda: h.queue_depth_is(0), "the queue to drain", consumer.poll_once)
        assert await h.received() == [kept]

    run(tables, fauxqs.endpoint_url, scenario)


def test_committed_events_reach_the_handler_exactly_once_despite_a_resend(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        events = sorted([await h.add() for _ in range(3)])
        relay = h.relay()

        async def send_then_die() -> None:
            async with h.pool.connection() as conn, conn.transaction():
                sent, _ = await relay.publish(await relay.claim(conn))
                assert len(sent) == 3
                raise Crash

        # A relay that dies after SendMessageBatch and before its commit: the rows stay unsent...
        with pytest.raises(Crash):
            await send_then_die()
        assert await h.unsent() == 3
        # ...so the next round sends them again.
        assert await relay.relay_once() == 3
        assert await h.unsent() == 0
        assert await h.queue_depth() == 6
        consumer = h.consumer()
        await until(lambda: h.queue_depth_is(0), "the queue to drain", consumer.poll_once)
        assert await h.received() == events
        assert sorted(h.handled) == events  # duplicates were skipped before the handler ran

    run(tables, fauxqs.endpoint_url, scenario)


def test_a_handler_that_fails_once_gets_the_event_again(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        event_id = await h.add()
        await h.relay().relay_once()
        calls: list[uuid.UUID] = []

        async def flaky(conn: AsyncConnection[Any], event: Event) -> None:
            calls.append(event.event_id)
            await h.record(conn, event)  # written, then rolled back with the failure
            if len(calls) == 1:
                raise RuntimeError("SES is down")

        consumer = h.consumer(flaky)
        await until(lambda: h.queue_depth_is(0), "the queue to drain", consumer.poll_once)
        assert calls == [event_id, event_id]
        assert await h.received() == [event_id]

    run(tables, fauxqs.endpoint_url, scenario)


def test_the_relay_survives_an_unreachable_queue_and_delivers_when_it_returns(tables: str, fauxqs: Fauxqs) -> None:
    proxy = TcpProxy(fauxqs.port)
    proxy.start()

    async def scenario(h: Harness) -> None:
        cut_sqs = AsyncSqsClient(f"http://127.0.0.1:{proxy.port}", "us-east-1", LOCAL_CREDENTIALS, max_attempts=1)
        relay = OutboxRelay(h.pool, cut_sqs, h.queue_url, poll_seconds=0.05, max_backoff_seconds=0.2)
        proxy.stop()
        relay.start()
        try:
            event_id = await h.add()  # an order still commits while SQS is unreachable
            relay.wake()
            await until(lambda: h.attempts_at_least(event_id, 2), "failed sends", lambda: asyncio.sleep(0.05))
            assert not relay.last_round_ok
            assert await h.unsent() == 1
            proxy.start()
            await until(lambda: h.unsent_is(0), "the event to be sent", lambda: asyncio.sleep(0.05))
            assert relay.last_round_ok
        finally:
            await relay.stop()
            await cut_sqs.aclose()
        consumer = h.consumer()
        await until(lambda: h.queue_depth_is(0), "the queue to drain", consumer.poll_once)
        assert await h.received() == [event_id]

    try:
        run(tables, fauxqs.endpoint_url, scenario)
    finally:
        proxy.stop()


def test_concurrent_relays_send_each_event_once(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        events = sorted([await h.add() for _ in range(40)])
        relays = [h.relay(batch_size=5) for _ in range(3)]

        async def drain(relay: OutboxRelay) -> None:
            while await relay.relay_once():
                pass

        await asyncio.gather(*(drain(relay) for relay in relays))
        assert await h.unsent() == 0
        sent: list[uuid.UUID] = []
        while messages := await h.receive_raw():
            sent += [uuid.UUID(m["MessageAttributes"]["event_id"]["StringValue"]) for m in messages]
        assert sorted(sent) == events

    run(tables, fauxqs.endpoint_url, scenario)


def test_the_message_carries_the_envelope_and_the_trace(tables: str, fauxqs: Fauxqs) -> None:
    trace = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", sampled=True)

    async def scenario(h: Harness) -> None:
        token = use_trace(trace)
        try:
            event_id = await h.add("order.confirmed", {"order_id": "o-1", "total": Decimal("12.30"), "items": [1, 2]})
        finally:
            reset_trace(token)
        await h.relay().relay_once()
        (message,) = await h.receive_raw()
        body = orjson.loads(message["Body"])
        assert body["event_id"] == str(event_id)
        assert body["topic"] == "order.confirmed"
        assert body["payload"] == {"order_id": "o-1", "total": "12.30", "items": [1, 2]}
        assert body["occurred_at"]
        assert body["traceparent"].startswith(f"00-{trace.trace_id}-")
        assert message["MessageAttributes"]["event_id"]["StringValue"] == str(event_id)
        assert message["MessageAttributes"]["topic"]["StringValue"] == "order.confirmed"

        seen: list[str | None] = []

        async def handler(conn: AsyncConnection[Any], event: Event) -> None:
            context = current_trace()
            seen.append(context.trace_id if context else None)

        assert await h.consumer(handler).handle(message)
        assert seen == [trace.trace_id]  # the handler's logs join the order's trace

    run(tables, fauxqs.endpoint_url, scenario)


# --- the consumer ---


def test_a_malformed_message_is_left_for_the_dead_letter_queue(
    tables: str, fauxqs: Fauxqs, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(h: Harness) -> None:
        await h.sqs.call("SendMessage", {"QueueUrl": h.queue_url, "MessageBody": '{"event_id": "not-a-uuid"}'})
        good = await h.add()
        await h.relay().relay_once()
        consumer = h.consumer()
        with caplog.at_level(logging.ERROR, logger="services.shop.common.events"):
            await until(lambda: h.received_count_is(1), "the good event", consumer.poll_once)
        assert await h.received() == [good]
        assert await h.queue_depth() == 1  # the bad one: not deleted, redelivered until the DLQ takes it
        assert "malformed event message" in caplog.text

    run(tables, fauxqs.endpoint_url, scenario)


def test_stop_ends_the_long_poll_and_finishes_the_message_in_hand(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        entered, release = asyncio.Event(), asyncio.Event()

        async def slow(conn: AsyncConnection[Any], event: Event) -> None:
            entered.set()
            await release.wait()
            await h.record(conn, event)

        consumer = h.consumer(slow, wait_seconds=20)
        consumer.start()
        event_id = await h.add()
        await h.relay().relay_once()
        await asyncio.wait_for(entered.wait(), DRAIN_TIMEOUT)
        stopping = asyncio.create_task(consumer.stop(timeout=DRAIN_TIMEOUT))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the handler in progress
        release.set()
        await stopping
        assert await h.received() == [event_id]
        assert await h.queue_depth() == 0

        idle = h.consumer(wait_seconds=20)
        idle.start()
        await asyncio.sleep(0.1)  # inside its 20 s long poll
        await idle.stop(timeout=5)  # far less than the poll's 20 s: only ending the poll stops it in time

    with_no_forced_stop(lambda: run(tables, fauxqs.endpoint_url, scenario))


def with_no_forced_stop(body: Callable[[], Any]) -> None:
    handler = _Collect()
    logger = logging.getLogger("services.shop.common.events")
    logger.addHandler(handler)
    try:
        body()
    finally:
        logger.removeHandler(handler)
    assert not [r for r in handler.records if "did not stop in time" in r.getMessage()]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_consumer_keeps_polling_through_an_outage(tables: str, fauxqs: Fauxqs) -> None:
    proxy = TcpProxy(fauxqs.port)
    proxy.start()

    async def scenario(h: Harness) -> None:
        cut_sqs = AsyncSqsClient(f"http://127.0.0.1:{proxy.port}", "us-east-1", LOCAL_CREDENTIALS, max_attempts=1)
        consumer = QueueConsumer(h.pool, cut_sqs, h.queue_url, h.record, wait_seconds=1, max_backoff_seconds=0.2)
        proxy.stop()
        consumer.start()
        try:
            await until(lambda: _false_after(consumer), "a failed receive", lambda: asyncio.sleep(0.05))
            event_id = await h.add()
            await h.relay().relay_once()
            proxy.start()
            await until(lambda: h.received_count_is(1), "the event", lambda: asyncio.sleep(0.05))
            assert consumer.last_receive_ok
            assert await h.received() == [event_id]
        finally:
            await consumer.stop()
            await cut_sqs.aclose()

    try:
        run(tables, fauxqs.endpoint_url, scenario)
    finally:
        proxy.stop()


async def _false_after(consumer: QueueConsumer) -> bool:
    return not consumer.last_receive_ok


# --- housekeeping ---


def test_old_sent_events_and_old_dedupe_records_are_purged(tables: str, fauxqs: Fauxqs) -> None:
    async def scenario(h: Harness) -> None:
        old, recent = await h.add(), await h.add()
        await h.relay().relay_once()
        consumer = h.consumer()
        await until(lambda: h.queue_depth_is(0), "the queue to drain", consumer.poll_once)
        async with h.pool.connection() as conn:
            await conn.execute("UPDATE outbox SET sent_at = now() - interval '8 days' WHERE id = %s", (old,))
            await conn.execute(
                "UPDATE processed_events SET processed_at = now() - interval '15 days' WHERE event_id = %s", (old,)
            )
        assert await h.relay().purge_sent() == 1
        assert await consumer.purge_processed() == 1
        assert await consumer.purge_processed(older_than=timedelta(0)) == 1
        async with h.pool.connection() as conn:
            cursor = await conn.execute("SELECT id FROM outbox")
            assert [row[0] for row in await cursor.fetchall()] == [recent]

    run(tables, fauxqs.endpoint_url, scenario)


def test_a_row_failing_for_a_very_long_time_keeps_backing_off_without_jamming_the_relay(
    tables: str, fauxqs: Fauxqs
) -> None:
    """power(2, attempts) overflows PostgreSQL's double after ~1,000 failures: the error would roll back every round."""

    async def scenario(h: Harness) -> None:
        poison = await h.add()
        async with h.pool.connection() as conn, conn.transaction():
            await conn.execute("UPDATE outbox SET attempts = 5000 WHERE id = %s", (poison,))
            await h.relay().mark(conn, [], [poison])
            cursor = await conn.execute("SELECT attempts, next_attempt_at > now() FROM outbox WHERE id = %s", (poison,))
            assert await cursor.fetchone() == (5001, True)

    run(tables, fauxqs.endpoint_url, scenario)


def test_housekeeping_purges_in_batches_until_one_comes_back_short() -> None:
    remaining = [2 * HOUSEKEEPING_BATCH + 7]

    async def purge() -> int:
        deleted = min(HOUSEKEEPING_BATCH, remaining[0])
        remaining[0] -= deleted
        return deleted

    assert asyncio.run(purge_in_batches(purge)) == 2 * HOUSEKEEPING_BATCH + 7
    assert remaining == [0]
    remaining[0] = 10 * HOUSEKEEPING_BATCH
    assert asyncio.run(purge_in_batches(purge, max_batches=3)) == 3 * HOUSEKEEPING_BATCH


# --- bad input ---


@pytest.mark.parametrize(
    ("topic", "payload", "error", "message"),
    [
        ("", {}, ValueError, "event topic must be"),
        ("Order.Confirmed", {}, ValueError, "event topic must be"),
        ("order..confirmed", {}, ValueError, "event topic must be"),
        ("order.confirmed", {"when": object()}, ValueError, "not JSON-serialisable"),
        ("order.confirmed", {"blob": "x" * MAX_PAYLOAD_BYTES}, ValueError, "fit an SQS message"),
        ("order.confirmed", ["not", "a", "mapping"], TypeError, "must be a JSON object"),
    ],
)
def test_add_event_rejects_bad_input(
    tables: str, topic: str, payload: Any, error: type[Exception], message: str
) -> None:
    async def scenario() -> None:
        async with await AsyncConnection.connect(tables, autocommit=True) as conn, conn.transaction():
            with pytest.raises(error, match=message):
                await add_event(conn, topic, payload)

    asyncio.run(scenario())


def test_add_event_refuses_to_commit_on_its_own(tables: str) -> None:
    async def scenario() -> None:
        async with await AsyncConnection.connect(tables, autocommit=True) as conn:
            with pytest.raises(RuntimeError, match="inside the business transaction"):
                await add_event(conn, "order.confirmed", {"order_id": "x"})

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue_url": ""}, "needs the queue URL"),
        ({"batch_size": 0}, "batch_size must be 1-1000"),
        ({"poll_seconds": 0}, "poll_seconds must be > 0"),
    ],
)
def test_relay_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"pool": None, "sqs": None, "queue_url": "http://q"} | options
    with pytest.raises(ValueError, match=message):
        OutboxRelay(**arguments)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"queue_url": ""}, "needs the queue URL"),
        ({"wait_seconds": 21}, "wait_seconds must be 0-20"),
        ({"max_messages": 11}, "max_messages must be 1-10"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"retry_delay_seconds": -1}, "retry_delay_seconds must be 0-43200"),
    ],
)
def test_consumer_rejects_bad_options(options: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"pool": None, "sqs": None, "queue_url": "http://q", "handler": None} | options
    with pytest.raises(ValueError, match=message):
        QueueConsumer(**arguments)


def test_a_local_endpoint_uses_local_credentials(fauxqs: Fauxqs) -> None:
    async def scenario() -> None:
        client = async_sqs_client("us-east-1", fauxqs.endpoint_url)
        name = f"creds-{uuid.uuid4().hex[:12]}"
        try:
            created = await client.call("CreateQueue", {"QueueName": name})
            assert created["QueueUrl"].endswith(f"/{name}")
        finally:
            await client.aclose()

    asyncio.run(scenario())
