"""Failure injection on the whole shop as real processes (services/shop/local.ShopProcesses: five services and the
gateway), each scenario bounded to seconds:

- payments down: orders end `payment_pending` and complete when payments returns;
- notifications down: orders still complete, their events wait in the queue and are mailed once it returns;
- products' database slow: catalog reads through the gateway degrade to cached data, orders' breaker on products
  opens (new orders fail fast or park), and everything parked completes once the database is fast again;
- orders SIGKILLed mid-checkout (payments slow): after a restart the recovery loop finishes or compensates every
  order; no stock leaks (available + committed = initial) and no order is captured twice.

Only what these tests start is disturbed: a throwaway database, loopback proxies, the shop's own processes.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.fauxqs import Fauxqs, free_port
from services.shop.local import ShopProcesses
from tests.services.helpers import wait_until
from tests.shop.conftest import ADMIN_DSN
from tests.shop.test_orders_api import PASSWORD, LatencyProxy, local_sqs

FINAL = ("confirmed", "rejected", "payment_failed", "cancelled")
SERVICES = ("users", "products", "orders", "payments", "notifications")


@dataclass
class Chaos:
    shop: ShopProcesses
    database: str
    payments_proxy: LatencyProxy
    products_db_proxy: LatencyProxy
    http: httpx.Client

    # --- Acting as customers ---

    def customer(self) -> dict[str, str]:
        email = f"chaos-{uuid.uuid4().hex[:10]}@example.com"
        created = self.http.post("/users", json={"email": email, "password": PASSWORD, "name": "Chaos"})
        assert created.status_code == 201, created.text
        token = self.http.post("/auth/token", json={"email": email, "password": PASSWORD})
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    def place(self, customer: dict[str, str], product_id: str, quantity: int = 1) -> httpx.Response:
        body = {"items": [{"product_id": product_id, "quantity": quantity}], "currency": "USD"}
        return self.http.post("/orders", json=body, headers=customer | {"Idempotency-Key": str(uuid.uuid4())})

    def order(self, customer: dict[str, str], order_id: str) -> dict[str, Any]:
        response = self.http.get(f"/orders/{order_id}", headers=customer)
        assert response.status_code == 200, response.text
        return response.json()

    # --- Looking behind the services (the throwaway database, as an administrator) ---

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(make_conninfo(ADMIN_DSN, dbname=self.database), autocommit=True) as conn:
            yield conn

    def new_product(self, stock: int, price_cents: int = 1500) -> str:
        with self.admin() as conn:
            row = conn.execute(
                "WITH p AS (INSERT INTO products.products (sku, name, category, price_cents, currency)"
                " VALUES (%s, 'Chaos Lamp', 'home', %s, 'USD') RETURNING id)"
                " INSERT INTO products.stock (product_id, available) SELECT id, %s FROM p RETURNING product_id",
                (f"CHAOS-{uuid.uuid4().hex[:10]}", price_cents, stock),
            ).fetchone()
        assert row is not None
        return str(row[0])

    def statuses(self, order_ids: list[str]) -> dict[str, str]:
        with self.admin() as conn:
            rows = conn.execute("SELECT id::text, status FROM orders.orders WHERE id = ANY(%s::uuid[])", (order_ids,))
            return dict(rows.fetchall())

    def orders_of_product(self, product_id: str) -> dict[str, str]:
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT id::text, status FROM orders.orders WHERE items @> %s::jsonb",
                (orjson.dumps([{"product_id": product_id}]).decode(),),
            )
            return dict(rows.fetchall())

    def all_final(self, order_ids: list[str]) -> bool:
        statuses = self.statuses(order_ids)
        return len(statuses) == len(order_ids) and all(status in FINAL for status in statuses.values())

    def assert_no_stock_leaked(self, product_id: str, initial: int) -> None:
        """available + committed = initial, and nothing is still held."""
        with self.admin() as conn:
            row = conn.execute(
                "SELECT s.available,"
                " COALESCE(SUM(i.quantity) FILTER (WHERE r.status = 'committed'), 0) AS committed,"
                " COALESCE(SUM(i.quantity) FILTER (WHERE r.status = 'held'), 0) AS held"
                " FROM products.stock s"
                " LEFT JOIN products.reservation_items i ON i.product_id = s.product_id"
                " LEFT JOIN products.reservations r ON r.order_id = i.order_id"
                " WHERE s.product_id = %s GROUP BY s.available",
                (product_id,),
            ).fetchone()
        assert row is not None
        available, committed, held = row
        assert (available + committed, held) == (initial, 0)

    def assert_charged_at_most_once(self, order_statuses: dict[str, str]) -> None:
        """The provider's ledger: at most one capture per order; exactly one, unrefunded, per confirmed order; any
        capture of an order that did not end confirmed refunded."""
        with self.admin() as conn:
            rows = conn.execute(
                "SELECT c.reference, count(*) AS captures, count(r.id) AS refunds FROM payments.provider_charges c"
                " LEFT JOIN payments.provider_refunds r ON r.charge_id = c.id"
                " WHERE c.status = 'captured' AND c.reference = ANY(%s) GROUP BY c.reference",
                (list(order_statuses),),
            ).fetchall()
        ledger = {reference: (captures, refunds) for reference, captures, refunds in rows}
        for order_id, status in order_statuses.items():
            captures, refunds = ledger.get(order_id, (0, 0))
            assert captures <= 1, f"order {order_id} captured {captures} times"
            if status == "confirmed":
                assert (captures, refunds) == (1, 0), (
                    f"confirmed order {order_id}: {captures} captures, {refunds} refunds"
                )
            else:
                assert captures == refunds, f"{status} order {order_id}: {captures} captures, {refunds} refunds"

    def log(self, service: str) -> list[dict[str, Any]]:
        """The service's JSON log lines so far."""
        path = self.shop.log_file(service)
        assert path is not None
        lines = path.read_bytes().splitlines()
        return [orjson.loads(line) for line in lines if line.startswith(b"{")]

    def breaker_opened(self, service: str, callee: str) -> bool:
        return any(line.get("callee") == callee and line.get("to_state") == "open" for line in self.log(service))

    def queued_events(self) -> int:
        """Messages in the notifications queue, visible or in flight."""
        sqs = local_sqs(self.shop.environment("orders")["SQS_ENDPOINT_URL"])
        attributes = sqs.get_queue_attributes(
            QueueUrl=self.shop.environment("notifications")["QUEUE_URL"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture(scope="module")
def chaos(fauxqs_server: Fauxqs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    tag = uuid.uuid4().hex[:8]
    database, redis_prefix = f"shop_chaos_{tag}", f"shop-chaos-{tag}"
    ports = {name: free_port() for name in SERVICES}
    payments_proxy = LatencyProxy(ports["payments"])
    products_db_proxy = LatencyProxy(5432)
    payments_proxy.start()
    products_db_proxy.start()
    scratch = tmp_path_factory.mktemp("chaos")
    shop = ShopProcesses(
        database=database,
        redis_prefix=redis_prefix,
        port=0,
        service_ports=ports,
        local_dir=scratch,
        log_dir=scratch / "logs",
        sqs_endpoint_url=fauxqs_server.endpoint_url,
        throttling=False,
        stop_grace=5,
        service_env={
            "orders": {
                "PAYMENTS_URL": f"http://127.0.0.1:{payments_proxy.port}",
                "ORDER_LEASE_SECONDS": "3",
                "RECOVERY_POLL_SECONDS": "0.3",
                "RETRY_BASE_SECONDS": "0.3",
                "RETRY_MAX_SECONDS": "1.5",
                "RELAY_POLL_SECONDS": "0.2",
            },
            "products": {
                "DB_PORT": str(products_db_proxy.port),
                "CACHE_FRESH_SECONDS": "1",
                "DB_READ_TIMEOUT_SECONDS": "0.5",
                "RESERVATION_SWEEP_SECONDS": "1",
            },
            "payments": {"PROVIDER_LATENCY_MS": "5"},
            "notifications": {"RECEIVE_WAIT_SECONDS": "1", "RETRY_DELAY_SECONDS": "1"},
        },
    )
    try:
        with shop, httpx.Client(base_url=shop.url, timeout=30) as http:
            # A receive still open when a consumer dies takes the next message with it (invisible until the
            # visibility timeout, then redelivered): keep that wait to seconds, not the stack's 60.
            local_sqs(fauxqs_server.endpoint_url).set_queue_attributes(
                QueueUrl=shop.environment("notifications")["QUEUE_URL"], Attributes={"VisibilityTimeout": "5"}
            )
            yield Chaos(shop, database, payments_proxy, products_db_proxy, http)
    finally:
        payments_proxy.stop()
        products_db_proxy.stop()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        redis = sync_client(Settings())
        delete_prefix(redis, f"{redis_prefix}:")
        redis.close()


@pytest.mark.timeout(120)
def test_payments_down_parks_orders_until_payments_returns(chaos: Chaos) -> None:
    lamp, buyer = chaos.new_product(stock=10), chaos.customer()
    chaos.shop.stop_service("payments")
    try:
        responses = [chaos.place(buyer, lamp) for _ in range(3)]
        assert [response.status_code for response in responses] == [202, 202, 202], [r.text for r in responses]
        placed = [response.json()["id"] for response in responses]
        assert {chaos.order(buyer, order_id)["status"] for order_id in placed} == {"payment_pending"}
    finally:
        chaos.shop.start_service("payments")
    wait_until(
        lambda: set(chaos.statuses(placed).values()) == {"confirmed"},
        timeout=30,
        what="the parked orders to be paid once payments is back",
        interval=0.2,
    )
    chaos.assert_charged_at_most_once(chaos.statuses(placed))
    chaos.assert_no_stock_leaked(lamp, initial=10)


@pytest.mark.timeout(120)
def test_notifications_down_never_blocks_orders_and_mail_follows_later(chaos: Chaos) -> None:
    lamp, buyer = chaos.new_product(stock=10), chaos.customer()
    chaos.shop.stop_service("notifications")
    try:
        responses = [chaos.place(buyer, lamp) for _ in range(2)]
        assert [(r.status_code, r.json()["status"]) for r in responses] == [(201, "confirmed")] * 2
        placed = [response.json()["id"] for response in responses]
        wait_until(lambda: chaos.queued_events() >= 2, timeout=15, what="the order events to wait in the queue")
    finally:
        chaos.shop.start_service("notifications")

    def mailed() -> bool:
        with httpx.Client(base_url=chaos.shop.service_url("notifications")) as notifications:
            sent = [notifications.get("/notifications", params={"order_id": order_id}).json() for order_id in placed]
        return all(len(rows) == 1 and rows[0]["status"] == "sent" for rows in sent)

    wait_until(mailed, timeout=30, what="each confirmation to be mailed once notifications is back", interval=0.2)


@pytest.mark.timeout(150)
def test_a_slow_products_database_opens_the_breaker_and_reads_degrade_to_the_cache(chaos: Chaos) -> None:
    lamp, buyer = chaos.new_product(stock=20), chaos.customer()
    fresh = chaos.http.get(f"/products/{lamp}")
    assert fresh.status_code == 200, fresh.text

    chaos.products_db_proxy.delay = 2.0
    try:
        # A few reads wait for PostgreSQL (and for their cancellation through the slow link), then products' own
        # breaker opens and every read is answered from the cache at once.
        wait_until(
            lambda: (
                chaos.http.get(f"/products/{lamp}").headers.get("X-Cache") == "stale"
                and chaos.breaker_opened("products", "products-database")
            ),
            timeout=30,
            what="catalog reads through the gateway to be served from the cache",
            interval=0.2,
        )
        stale = chaos.http.get(f"/products/{lamp}")
        assert (stale.status_code, stale.headers["X-Cache"], stale.json()["id"]) == (200, "stale", lamp)
        assert "Warning" in stale.headers

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda _: chaos.place(buyer, lamp), range(8)))
        # Priced from the cache, then parked (the reservation timed out, or orders' breaker refused it at once), or
        # refused before anything was recorded: never a hung request or a 5xx other than 503.
        outcomes = [(response.status_code, response.text[:200]) for response in responses]
        assert {status for status, _ in outcomes} <= {202, 503}, outcomes
        assert chaos.breaker_opened("orders", "products"), "orders' breaker on products never opened"
        while_open = chaos.place(buyer, lamp)
        assert while_open.status_code in (202, 503), while_open.text
    finally:
        chaos.products_db_proxy.delay = 0.0

    parked = [response.json()["id"] for response in [*responses, while_open] if response.status_code == 202]
    assert parked, f"no order was parked: {outcomes}"
    wait_until(
        lambda: set(chaos.orders_of_product(lamp).values()) == {"confirmed"},
        timeout=60,
        what="every parked order to complete once products' database is fast again",
        interval=0.3,
    )
    statuses = chaos.orders_of_product(lamp)
    assert set(parked) <= set(statuses)
    chaos.assert_charged_at_most_once(statuses)
    chaos.assert_no_stock_leaked(lamp, initial=20)


@pytest.mark.timeout(150)
def test_orders_killed_mid_checkout_recovers_without_leaking_stock_or_charging_twice(chaos: Chaos) -> None:
    lamp, buyer = chaos.new_product(stock=6), chaos.customer()
    chaos.payments_proxy.delay = 1.5  # charges in flight long enough to be caught mid-way
    outcomes: list[httpx.Response | Exception] = []

    killed = threading.Event()

    def checkout() -> None:
        """One customer, retrying a refusal before the kill (503: a breaker still open from an earlier scenario)
        as clients do; nothing new is ordered once orders has been killed."""
        deadline = time.monotonic() + 20
        while True:
            try:
                response = chaos.place(buyer, lamp)
            except httpx.HTTPError as error:
                outcomes.append(error)
                return
            if response.status_code != 503 or killed.is_set() or time.monotonic() > deadline:
                outcomes.append(response)
                return
            time.sleep(float(response.headers.get("Retry-After", "1")))

    customers = [threading.Thread(target=checkout) for _ in range(4)]
    try:
        for thread in customers:
            thread.start()
        wait_until(
            lambda: "reserved" in chaos.orders_of_product(lamp).values(),
            timeout=20,
            what="a checkout to be waiting for its charge",
            interval=0.02,
        )
        killed.set()
        chaos.shop.kill_service("orders")
    finally:
        chaos.payments_proxy.delay = 0.0
    for thread in customers:
        thread.join(timeout=30)
    interrupted = chaos.orders_of_product(lamp)
    assert any(status not in FINAL for status in interrupted.values())  # killed mid-saga: nothing recorded an end

    chaos.shop.start_service("orders")
    wait_until(
        lambda: chaos.all_final(list(interrupted)),
        timeout=60,
        what="the recovery loop to finish or compensate every interrupted order",
        interval=0.2,
    )
    statuses = chaos.orders_of_product(lamp)
    assert set(statuses) == set(interrupted)
    chaos.assert_charged_at_most_once(statuses)
    chaos.assert_no_stock_leaked(lamp, initial=6)
    resumed = [line for line in chaos.log("orders") if line.get("msg") == "resuming order"]
    assert {line["order_id"] for line in resumed} >= {i for i, s in interrupted.items() if s not in FINAL}
