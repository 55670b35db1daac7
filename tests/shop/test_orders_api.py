"""The orders API end to end in one process: the real users, products and payments apps under uvicorn on loopback
ports, real PostgreSQL, Redis and fauxqs; orders calls them over HTTP exactly as in production.

`shop_stack` and its helpers are reused by tests/shop/test_orders_schema.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.conninfo import make_conninfo

from services.fauxqs import Fauxqs, free_port
from services.shop.common.database import open_service_pool
from services.shop.orders.app import create_app
from services.shop.orders.settings import OrdersSettings
from services.shop.payments.app import create_app as create_payments_app
from services.shop.payments.settings import PaymentsSettings
from services.shop.products.app import create_app as create_products_app
from services.shop.products.seed import NewProduct, insert_products
from services.shop.products.settings import ProductsSettings
from services.shop.users.app import create_app as create_users_app
from services.shop.users.settings import UsersSettings
from tests.services.helpers import TcpProxy, wait_until
from tests.shop.conftest import ADMIN_DSN, ServiceSettingsFactory
from tests.shop.serving import served

PASSWORD = "correct horse battery staple"


class LatencyProxy(TcpProxy):
    """A loopback TCP proxy that holds every chunk coming back from the target for `delay` seconds (0: none):
    a slow dependency on demand. `stop()`/`start()` cut it and bring it back, as TcpProxy."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.delay = 0.0

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:  # pyright: ignore[reportIncompatibleMethodOverride]
        from_target = _peer_port(source) == self.target[1]
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if from_target and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _peer_port(sock: socket.socket) -> int | None:
    try:
        return sock.getpeername()[1]
    except OSError:
        return None


def local_sqs(endpoint_url: str) -> Any:
    """A boto3 SQS client for fauxqs (which takes any credentials)."""
    return boto3.client(
        "sqs",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def create_queue(fauxqs: Fauxqs, name: str) -> str:
    return local_sqs(fauxqs.endpoint_url).create_queue(QueueName=name)["QueueUrl"]


def receive_events(fauxqs: Fauxqs, queue_url: str, *, wait_seconds: int = 1) -> list[dict[str, Any]]:
    sqs = local_sqs(fauxqs.endpoint_url)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds)
    return [orjson.loads(message["Body"]) for message in messages.get("Messages", [])]


@dataclass(frozen=True)
class Customer:
    email: str
    authorization: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization}


@dataclass
class ShopStack:
    """users, products and payments serving on loopback; settings for an orders app that calls them."""

    database: str
    users_url: str
    products_url: str
    payments_url: str
    products: ProductsSettings
    payments: PaymentsSettings
    fauxqs: Fauxqs
    make_settings: ServiceSettingsFactory

    def orders_settings(self, **overrides: Any) -> OrdersSettings:
        """Settings for an orders app in a fresh schema, with its own queue; keyword arguments override."""
        tag = uuid.uuid4().hex[:8]
        values: dict[str, Any] = {
            "PRODUCTS_URL": self.products_url,
            "PAYMENTS_URL": self.payments_url,
            "USERS_URL": self.users_url,
            "NOTIFICATIONS_QUEUE_URL": create_queue(self.fauxqs, f"orders-events-{tag}"),
            "SQS_ENDPOINT_URL": self.fauxqs.endpoint_url,
            "RELAY_POLL_SECONDS": 0.2,
            "RECOVERY_POLL_SECONDS": 0.2,
            "RETRY_BASE_SECONDS": 0.2,
            "RETRY_MAX_SECONDS": 1.0,
        } | overrides
        return self.make_settings("orders", OrdersSettings, schema=f"orders_{tag}", **values)

    def new_product(self, price_cents: int, stock: int, currency: str = "USD") -> str:
        product = NewProduct(
            sku=f"T-{uuid.uuid4().hex[:12]}",
            name="Test Kettle",
            description="for the orders tests",
            category="kitchen",
            price_cents=price_cents,
            stock=stock,
            currency=currency,
        )

        async def insert() -> list[uuid.UUID]:
            pool = await open_service_pool(self.products)
            try:
                async with pool.connection() as conn, conn.transaction():
                    return await insert_products(conn, [product])
            finally:
                await pool.close()

        [product_id] = asyncio.run(insert())
        return str(product_id)

    def customer(self) -> Customer:
        """A newly registered user, logged in."""
        email = f"buyer-{uuid.uuid4().hex[:10]}@example.com"
        with httpx.Client(base_url=self.users_url) as users:
            created = users.post("/users", json={"email": email, "password": PASSWORD, "name": "Buyer"})
            assert created.status_code == 201, created.text
            token = users.post("/auth/token", json={"email": email, "password": PASSWORD})
            assert token.status_code == 200, token.text
        return Customer(email, f"Bearer {token.json()['access_token']}")

    def available(self, product_id: str) -> int:
        """Stock left, from products' database (the cache may lag a moment behind)."""
        with self.admin() as conn:
            query = sql.SQL("SELECT available FROM {}.stock WHERE product_id = %s")
            row = conn.execute(query.format(sql.Identifier(self.products.DB_SCHEMA)), (product_id,)).fetchone()
        assert row is not None
        return row[0]

    def provider_captures(self, order_id: str) -> int:
        """Captures in the simulated provider's ledger for the order: "charged twice" is this count > 1."""
        with self.admin() as conn:
            query = sql.SQL("SELECT count(*) FROM {}.provider_charges WHERE reference = %s AND status = 'captured'")
            row = conn.execute(query.format(sql.Identifier(self.payments.DB_SCHEMA)), (order_id,)).fetchone()
        assert row is not None
        return row[0]

    def payments_of(self, order_id: str) -> list[dict[str, Any]]:
        with httpx.Client(base_url=self.payments_url) as payments:
            return payments.get("/payments", params={"order_id": order_id}).json()["items"]

    @contextmanager
    def admin(self) -> Iterator[psycopg.Connection[Any]]:
        with psycopg.connect(make_conninfo(ADMIN_DSN, dbname=self.database)) as conn:
            yield conn


@contextmanager
def shop_stack(make_settings: ServiceSettingsFactory, database: str, fauxqs: Fauxqs) -> Iterator[ShopStack]:
    """users, products and payments (in fresh schemas) served on loopback for as long as the block runs."""
    tag = uuid.uuid4().hex[:6]
    users: UsersSettings = make_settings("users", UsersSettings, schema=f"users_{tag}")
    products: ProductsSettings = make_settings("products", ProductsSettings, schema=f"products_{tag}", DB_POOL_MAX=8)
    payments: PaymentsSettings = make_settings(
        "payments", PaymentsSettings, schema=f"payments_{tag}", PROVIDER_LATENCY_MS=5, DB_POOL_MAX=8
    )
    with (
        served(create_users_app(users)) as users_url,
        served(create_products_app(products)) as products_url,
        served(create_payments_app(payments)) as payments_url,
    ):
        yield ShopStack(database, users_url, products_url, payments_url, products, payments, fauxqs, make_settings)


@pytest.fixture(scope="module")
def shop(
    make_service_settings: ServiceSettingsFactory, shop_database: str, fauxqs_server: Fauxqs
) -> Iterator[ShopStack]:
    with shop_stack(make_service_settings, shop_database, fauxqs_server) as stack:
        yield stack


@contextmanager
def orders_client(settings: OrdersSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def order_body(*lines: tuple[str, int], currency: str = "USD") -> dict[str, Any]:
    return {
        "items": [{"product_id": product, "quantity": quantity} for product, quantity in lines],
        "currency": currency,
    }


def place(client: TestClient, customer: Customer, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = customer.headers | {"Idempotency-Key": key or str(uuid.uuid4())}
    return client.post("/orders", json=body, headers=headers)


def status_of(client: TestClient, customer: Customer, order_id: str) -> str:
    response = client.get(f"/orders/{order_id}", headers=customer.headers)
    assert response.status_code == 200, response.text
    return response.json()["status"]


@pytest.fixture(scope="module")
def orders(shop: ShopStack) -> Iterator[tuple[TestClient, OrdersSettings]]:
    """One orders app for the tests that need no special settings."""
    settings = shop.orders_settings()
    with orders_client(settings) as client:
        yield client, settings


# --- Checkout ---


def test_an_order_is_priced_by_products_charged_once_and_confirmed(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, settings = orders
    kettle, mug = shop.new_product(2599, stock=10), shop.new_product(450, stock=5)
    buyer = shop.customer()
    response = place(client, buyer, order_body((kettle, 2), (mug, 3)))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "confirmed"
    assert order["total_cents"] == 2 * 2599 + 3 * 450
    assert {line["product_id"]: line["unit_price_cents"] for line in order["items"]} == {kettle: 2599, mug: 450}
    assert response.headers["Location"] == f"/orders/{order['id']}"
    assert response.headers["traceparent"]
    assert (shop.available(kettle), shop.available(mug)) == (8, 2)
    [payment] = shop.payments_of(order["id"])
    assert (payment["status"], payment["amount_cents"]) == ("captured", order["total_cents"])
    assert shop.provider_captures(order["id"]) == 1

    events = receive_events(shop.fauxqs, settings.NOTIFICATIONS_QUEUE_URL, wait_seconds=5)
    [event] = [event for event in events if event["payload"]["order_id"] == order["id"]]
    assert event["topic"] == "order.confirmed"
    assert event["payload"]["email"] == buyer.email
    assert event["payload"]["total_cents"] == order["total_cents"]
    assert event["traceparent"].split("-")[1] == response.headers["traceparent"].split("-")[1]  # one trace


def test_a_client_cannot_set_prices(shop: ShopStack, orders: tuple[TestClient, OrdersSettings]) -> None:
    client, _ = orders
    kettle = shop.new_product(2599, stock=10)
    body = {"items": [{"product_id": kettle, "quantity": 1, "unit_price_cents": 1}], "currency": "USD"}
    response = place(client, shop.customer(), body)
    assert response.status_code == 422
    assert "unit_price_cents" in response.text


def test_insufficient_stock_rejects_without_charging(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    scarce = shop.new_product(1000, stock=1)
    response = place(client, shop.customer(), order_body((scarce, 2)))
    assert response.status_code == 201
    order = response.json()
    assert (order["status"], order["reason"]) == ("rejected", f"insufficient_stock:{scarce}")
    assert shop.available(scarce) == 1
    assert shop.payments_of(order["id"]) == []


def test_a_declined_payment_gives_the_stock_back(shop: ShopStack, orders: tuple[TestClient, OrdersSettings]) -> None:
    client, _ = orders
    declined = shop.new_product(1013, stock=4)  # the simulated provider declines amounts ending in 13 cents
    response = place(client, shop.customer(), order_body((declined, 1)))
    order = response.json()
    assert (response.status_code, order["status"], order["reason"]) == (201, "payment_failed", "payment_declined")
    assert shop.available(declined) == 4
    assert shop.provider_captures(order["id"]) == 0


# --- Idempotency ---


def test_a_retried_request_returns_the_same_order_and_never_charges_twice(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    kettle = shop.new_product(2599, stock=10)
    buyer, key = shop.customer(), str(uuid.uuid4())
    first = place(client, buyer, order_body((kettle, 1)), key)
    again = place(client, buyer, order_body((kettle, 1)), key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "confirmed"
    assert shop.available(kettle) == 9
    assert shop.provider_captures(first.json()["id"]) == 1

    reused = place(client, buyer, order_body((kettle, 2)), key)
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"

    stranger = place(client, shop.customer(), order_body((kettle, 1)), key)  # keys are per user
    assert stranger.status_code == 201
    assert stranger.json()["id"] != first.json()["id"]


# --- Bad input ---


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"items": [], "currency": "USD"}, "items"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}] * 51, "currency": "USD"}, "items"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 0}], "currency": "USD"}, "quantity"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 101}], "currency": "USD"}, "quantity"),
        ({"items": [{"product_id": "nope", "quantity": 1}], "currency": "USD"}, "product_id"),
        ({"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}], "currency": "usd"}, "currency"),
    ],
)
def test_invalid_orders_are_refused_naming_the_field(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings], body: dict[str, Any], named: str
) -> None:
    client, _ = orders
    response = place(client, shop.customer(), body)
    assert response.status_code == 422
    assert named in response.text


def test_a_product_listed_twice_is_refused(shop: ShopStack, orders: tuple[TestClient, OrdersSettings]) -> None:
    client, _ = orders
    product = str(uuid.uuid4())
    response = place(client, shop.customer(), order_body((product, 1), (product, 2)))
    assert response.status_code == 422
    assert f"product {product} appears in more than one line" in response.text


def test_unknown_products_and_other_currencies_are_refused(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    buyer, missing = shop.customer(), str(uuid.uuid4())
    unknown = place(client, buyer, order_body((missing, 1)))
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_product")
    assert missing in unknown.json()["detail"]

    euro = shop.new_product(999, stock=3, currency="EUR")
    mismatch = place(client, buyer, order_body((euro, 1), currency="USD"))
    assert (mismatch.status_code, mismatch.json()["error"]) == (422, "currency_mismatch")
    assert "priced in EUR" in mismatch.json()["detail"]
    assert shop.available(euro) == 3


def test_an_order_payments_could_not_charge_is_refused(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    jewel = shop.new_product(5_000_000, stock=100)  # 50,000.00 each
    response = place(client, shop.customer(), order_body((jewel, 21)))
    assert (response.status_code, response.json()["error"]) == (422, "order_total_too_large")
    assert "105000000 cents" in response.json()["detail"]
    assert shop.available(jewel) == 100


def test_an_idempotency_key_and_a_token_are_required(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    body = order_body((str(uuid.uuid4()), 1))
    no_key = client.post("/orders", json=body, headers=shop.customer().headers)
    assert no_key.status_code == 422
    assert "Idempotency-Key" in no_key.text
    no_token = client.post("/orders", json=body, headers={"Idempotency-Key": "k"})
    assert no_token.status_code == 401
    assert no_token.headers["WWW-Authenticate"].startswith("Bearer")


# --- Reading orders ---


def test_orders_are_listed_newest_first_in_stable_pages_and_only_to_their_owner(
    shop: ShopStack, orders: tuple[TestClient, OrdersSettings]
) -> None:
    client, _ = orders
    kettle = shop.new_product(100, stock=100)
    buyer, other = shop.customer(), shop.customer()
    placed = [place(client, buyer, order_body((kettle, 1))).json()["id"] for _ in range(5)]
    foreign = place(client, other, order_body((kettle, 1))).json()["id"]

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/orders", params=params, headers=buyer.headers).json()
        seen += [order["id"] for order in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(placed))

    mine = client.get(f"/orders/{placed[0]}", headers=buyer.headers)
    assert (mine.status_code, mine.json()["status"]) == (200, "confirmed")
    theirs = client.get(f"/orders/{foreign}", headers=buyer.headers)
    assert (theirs.status_code, theirs.json()["error"]) == (404, "not_found")
    bad_cursor = client.get("/orders", params={"cursor": "forged"}, headers=buyer.headers)
    assert (bad_cursor.status_code, bad_cursor.json()["error"]) == (422, "invalid_cursor")


# --- Dependencies failing ---


def test_payments_unreachable_parks_the_order_and_it_completes_when_payments_returns(shop: ShopStack) -> None:
    proxy = TcpProxy(int(shop.payments_url.rsplit(":", 1)[1]))
    proxy.start()
    settings = shop.orders_settings(PAYMENTS_URL=f"http://127.0.0.1:{proxy.port}")
    kettle = shop.new_product(2000, stock=5)
    buyer = shop.customer()
    try:
        with orders_client(settings) as client:
            proxy.stop()  # payments unreachable
            response = place(client, buyer, order_body((kettle, 1)))
            assert response.status_code == 202, response.text
            order = response.json()
            assert order["status"] == "payment_pending"
            assert response.headers["Location"] == f"/orders/{order['id']}"
            assert shop.available(kettle) == 4  # the reservation is kept

            proxy.start()
            wait_until(
                lambda: status_of(client, buyer, order["id"]) == "confirmed",
                timeout=20,
                what="the recovery loop to complete the payment",
                interval=0.1,
            )
        assert shop.provider_captures(order["id"]) == 1
        assert shop.available(kettle) == 4
    finally:
        proxy.stop()


def test_a_slow_payment_answers_202_at_the_deadline_and_finishes_in_the_background(shop: ShopStack) -> None:
    proxy = LatencyProxy(int(shop.payments_url.rsplit(":", 1)[1]))
    proxy.start()
    settings = shop.orders_settings(PAYMENTS_URL=f"http://127.0.0.1:{proxy.port}", ORDER_DEADLINE_SECONDS=1.0)
    kettle = shop.new_product(3000, stock=5)
    buyer = shop.customer()
    try:
        with orders_client(settings) as client:
            proxy.delay = 1.5  # within the call's timeout, beyond the request's deadline
            response = place(client, buyer, order_body((kettle, 1)))
            assert response.status_code == 202, response.text
            assert response.json()["status"] in ("reserved", "payment_pending")
            order_id = response.json()["id"]
            wait_until(
                lambda: status_of(client, buyer, order_id) == "confirmed",
                timeout=20,
                what="the saga to finish after the response",
                interval=0.1,
            )
        assert shop.provider_captures(order_id) == 1
    finally:
        proxy.stop()


def test_products_unreachable_refuses_the_order_with_503_and_nothing_is_recorded(shop: ShopStack) -> None:
    settings = shop.orders_settings(PRODUCTS_URL=f"http://127.0.0.1:{free_port()}")
    buyer = shop.customer()
    with orders_client(settings) as client:
        response = place(client, buyer, order_body((str(uuid.uuid4()), 1)))
        assert response.status_code == 503
        assert response.json()["error"] == "products_unavailable"
        assert response.headers["Retry-After"]
        listed = client.get("/orders", headers=buyer.headers).json()
        assert listed["items"] == []


def test_users_unreachable_still_places_the_order_and_its_event_lacks_only_the_email(shop: ShopStack) -> None:
    buyer = shop.customer()  # registered while users is up
    jwks = httpx.get(f"{shop.users_url}/.well-known/jwks.json").text
    settings = shop.orders_settings(USERS_URL=f"http://127.0.0.1:{free_port()}", JWT_PUBLIC_KEY=jwks)
    kettle = shop.new_product(1200, stock=3)
    with orders_client(settings) as client:
        response = place(client, buyer, order_body((kettle, 1)))
        assert (response.status_code, response.json()["status"]) == (201, "confirmed")
        events = receive_events(shop.fauxqs, settings.NOTIFICATIONS_QUEUE_URL, wait_seconds=5)
    [event] = [event for event in events if event["payload"]["order_id"] == response.json()["id"]]
    assert event["payload"]["email"] is None
    assert event["payload"]["user_id"]
