"""The checkout saga against real PostgreSQL (the orders schema, the outbox), with in-memory doubles of products'
reservations and payments that follow their contract (docs/shop.md: idempotent on the order id) and can be made
unavailable, slow to answer, declining or expiring on demand. Every branch of the saga's state machine is driven
here; tests/shop/test_orders_api.py runs it against the real products and payments apps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from services.shop.common.breaker import DependencyUnavailable
from services.shop.common.database import ServicePool, apply_service_migrations, open_service_pool
from services.shop.common.events import OUTBOX_MIGRATION
from services.shop.common.idempotency import IDEMPOTENCY_MIGRATION
from services.shop.orders.app import MIGRATIONS_DIR
from services.shop.orders.domain import Charge, Line, Order, OutOfStock, PaymentRecord, Reserved
from services.shop.orders.recovery import RecoveryLoop
from services.shop.orders.saga import Saga, SagaTimings
from services.shop.orders.settings import OrdersSettings
from services.shop.orders.store import InvalidCursorError, OrderStore, decode_cursor, encode_cursor
from tests.shop.conftest import ServiceSettingsFactory

PRODUCT_A = str(uuid.uuid4())
PRODUCT_B = str(uuid.uuid4())
EMAIL = "buyer@example.com"


# --- Doubles of the callees ---


@dataclass
class FakeInventory:
    """Products' reservations: all or nothing, idempotent on the order id, expiring on demand."""

    stock: dict[str, int]
    unavailable: bool = False
    reservations: dict[uuid.UUID, tuple[str, list[tuple[str, int]]]] = field(default_factory=dict)
    expiries: dict[uuid.UUID, datetime] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def _check(self, call: str) -> None:
        self.calls.append(call)
        if self.unavailable:
            raise DependencyUnavailable("products", "down (test)")

    async def reserve(
        self, order_id: uuid.UUID, lines: list[tuple[str, int]], ttl_seconds: int
    ) -> Reserved | OutOfStock:
        self._check("reserve")
        if order_id in self.reservations:  # as products: the original expiry, or a refusal once it has ended
            status = self.reservations[order_id][0]
            if status in ("released", "expired"):
                return OutOfStock(None, f"reservation_{status}")
            return Reserved(self.expiries[order_id])
        expires_at = datetime.now(UTC) + timedelta(seconds=ttl_seconds)
        for product_id, quantity in lines:
            if self.stock.get(product_id, 0) < quantity:
                return OutOfStock(product_id)
        for product_id, quantity in lines:
            self.stock[product_id] -= quantity
        self.reservations[order_id] = ("held", lines)
        self.expiries[order_id] = expires_at
        return Reserved(expires_at)

    async def commit(self, order_id: uuid.UUID) -> bool:
        self._check("commit")
        status, lines = self.reservations[order_id]
        if status == "held":
            self.reservations[order_id] = ("committed", lines)
        return self.reservations[order_id][0] == "committed"

    async def release(self, order_id: uuid.UUID) -> None:
        self._check("release")
        self._give_back(order_id, "released")

    def expire(self, order_id: uuid.UUID) -> None:
        """What products' sweeper does once a reservation's ttl has passed."""
        self._give_back(order_id, "expired")

    def _give_back(self, order_id: uuid.UUID, status: str) -> None:
        held = self.reservations.get(order_id)
        if held is None or held[0] != "held":
            return
        for product_id, quantity in held[1]:
            self.stock[product_id] += quantity
        self.reservations[order_id] = (status, held[1])


@dataclass
class FakePayments:
    """Payments: one charge per order (the idempotency key is the order id), refunds once."""

    unavailable: bool = False
    decline: bool = False
    # Capture, then lose the answer (a timeout after the provider charged).
    lose_answer: bool = False
    # Record the payment as pending and time out: the provider's answer is known only when charged again.
    leave_pending: bool = False
    pending: set[uuid.UUID] = field(default_factory=set)
    charges: dict[uuid.UUID, Charge] = field(default_factory=dict)
    provider_charges: int = 0
    refunds: dict[str, int] = field(default_factory=dict)

    async def charge(self, order_id: uuid.UUID, amount_cents: int, currency: str) -> Charge:
        if self.unavailable:
            raise DependencyUnavailable("payments", "down (test)")
        if order_id not in self.charges:
            self.provider_charges += 1
            self.charges[order_id] = Charge(str(uuid.uuid4()), captured=not self.decline, decline_code=None)
            if self.leave_pending:
                self.pending.add(order_id)
                raise DependencyUnavailable("payments", "provider timeout, payment pending (test)")
        self.pending.discard(order_id)
        if self.lose_answer:
            raise DependencyUnavailable("payments", "timeout (test)")
        return self.charges[order_id]

    async def find_payment(self, order_id: uuid.UUID) -> PaymentRecord | None:
        if self.unavailable:
            raise DependencyUnavailable("payments", "down (test)")
        charge = self.charges.get(order_id)
        if charge is None:
            return None
        if order_id in self.pending:
            return PaymentRecord(charge.payment_id, "pending")
        return PaymentRecord(charge.payment_id, "captured" if charge.captured else "declined")

    async def refund(self, payment_id: str, order_id: uuid.UUID) -> None:
        if self.unavailable:
            raise DependencyUnavailable("payments", "down (test)")
        self.refunds[payment_id] = 1  # like the provider: a second refund of the same charge changes nothing


# --- Fixtures ---

TIMINGS = SagaTimings(
    reservation_ttl_seconds=600,
    reservation_safety_seconds=15,
    pending_give_up_seconds=600,
    retry_base_seconds=1,
    retry_max_seconds=60,
)


@pytest.fixture
def settings(make_service_settings: ServiceSettingsFactory) -> OrdersSettings:
    settings: OrdersSettings = make_service_settings(
        "orders",
        OrdersSettings,
        schema=f"orders_{uuid.uuid4().hex[:8]}",
        PRODUCTS_URL="http://127.0.0.1:9",
        PAYMENTS_URL="http://127.0.0.1:9",
        USERS_URL="http://127.0.0.1:9",
        NOTIFICATIONS_QUEUE_URL="http://127.0.0.1:9/queue/unused",
    )
    apply_service_migrations(settings, MIGRATIONS_DIR, shared=[IDEMPOTENCY_MIGRATION, OUTBOX_MIGRATION])
    return settings


@dataclass
class World:
    pool: ServicePool
    store: OrderStore
    inventory: FakeInventory
    payments: FakePayments
    saga: Saga

    async def place(self, *lines: Line) -> Order:
        return await self.store.place("user-1", EMAIL, "USD", list(lines or [Line(PRODUCT_A, 2, 1250)]))

    async def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await (await conn.execute(query, params)).fetchall()  # pyright: ignore[reportArgumentType]

    async def transitions(self, order: Order) -> list[str]:
        rows = await self.rows("SELECT to_status FROM order_transitions WHERE order_id = %s ORDER BY id", order.id)
        return [row["to_status"] for row in rows]

    async def events(self, order: Order) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.rows("SELECT topic, payload FROM outbox WHERE payload->>'order_id' = %s", str(order.id))
        return [(row["topic"], row["payload"]) for row in rows]

    async def make_due(self, order: Order) -> None:
        """Fast-forward a parked step's backoff (or a dead driver's lease)."""
        await self.rows("UPDATE orders SET next_attempt_at = now() WHERE id = %s RETURNING id", order.id)

    async def reload(self, order: Order) -> Order:
        found = await self.store.get(order.id, order.user_id)
        assert found is not None
        return found


def run_world(
    settings: OrdersSettings,
    scenario: Callable[[World], Awaitable[None]],
    *,
    stock: int = 10,
    lease_seconds: float = 30,
    timings: SagaTimings = TIMINGS,
) -> None:
    async def main() -> None:
        async with world_of(settings, stock, lease_seconds, timings) as world:
            await scenario(world)

    asyncio.run(main())


@asynccontextmanager
async def world_of(
    settings: OrdersSettings, stock: int, lease_seconds: float, timings: SagaTimings
) -> AsyncIterator[World]:
    pool = await open_service_pool(settings)
    try:
        store = OrderStore(pool, lease_seconds)
        inventory = FakeInventory({PRODUCT_A: stock, PRODUCT_B: stock})
        payments = FakePayments()
        yield World(pool, store, inventory, payments, Saga(store, inventory, payments, timings))
    finally:
        await pool.close()


# --- The happy path and the early ends ---


def test_a_checkout_reserves_charges_commits_and_announces_the_confirmation(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        order = await world.place(Line(PRODUCT_A, 2, 1250), Line(PRODUCT_B, 1, 500))
        assert (order.status, order.total_cents) == ("pending", 3000)
        final = await world.saga.drive(order)
        assert final.status == "confirmed"
        assert final.payment_id == world.payments.charges[order.id].payment_id
        assert await world.transitions(order) == ["pending", "reserved", "paid", "confirmed"]
        assert world.inventory.reservations[order.id][0] == "committed"
        assert world.inventory.stock == {PRODUCT_A: 8, PRODUCT_B: 9}
        [(topic, payload)] = await world.events(order)
        assert topic == "order.confirmed"
        assert payload["email"] == EMAIL
        assert payload["total_cents"] == 3000
        assert payload["currency"] == "USD"
        assert payload["status"] == "confirmed"

    run_world(settings, scenario)


def test_insufficient_stock_rejects_the_order_without_charging(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        final = await world.saga.drive(await world.place(Line(PRODUCT_A, 3, 100)))
        assert final.status == "rejected"
        assert final.reason == f"insufficient_stock:{PRODUCT_A}"
        assert world.payments.provider_charges == 0
        assert world.inventory.stock[PRODUCT_A] == 2
        assert [topic for topic, _ in await world.events(final)] == ["order.rejected"]

    run_world(settings, scenario, stock=2)


def test_a_declined_payment_releases_the_stock(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        world.payments.decline = True
        final = await world.saga.drive(await world.place())
        assert final.status == "payment_failed"
        assert final.reason == "payment_declined"
        assert await world.transitions(final) == ["pending", "reserved", "releasing", "payment_failed"]
        assert world.inventory.stock[PRODUCT_A] == 10
        [(topic, payload)] = await world.events(final)
        assert (topic, payload["reason"]) == ("order.payment_failed", "payment_declined")

    run_world(settings, scenario)


def test_a_free_order_is_confirmed_without_a_charge(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        final = await world.saga.drive(await world.place(Line(PRODUCT_A, 1, 0)))
        assert (final.status, final.payment_id) == ("confirmed", None)
        assert world.payments.provider_charges == 0

    run_world(settings, scenario)


# --- Payments unavailable: parked, retried, completed or compensated ---


def test_payments_down_parks_the_order_and_the_recovery_loop_completes_it_once(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        world.payments.unavailable = True
        parked = await world.saga.drive(await world.place())
        assert (parked.status, parked.attempts) == ("payment_pending", 1)
        assert parked.next_attempt_at > datetime.now(UTC)  # backed off, not due at once
        assert world.inventory.reservations[parked.id][0] == "held"  # the stock stays the order's

        loop = RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10)
        assert await loop.run_once() == 0  # not due yet
        await world.make_due(parked)
        assert await loop.run_once() == 1  # still down: parked again, one more attempt
        again = await world.reload(parked)
        assert (again.status, again.attempts) == ("payment_pending", 2)

        world.payments.unavailable = False
        await world.make_due(parked)
        assert await loop.run_once() == 1
        final = await world.reload(parked)
        assert final.status == "confirmed"
        assert world.payments.provider_charges == 1
        assert await world.transitions(final) == ["pending", "reserved", "payment_pending", "paid", "confirmed"]
        assert [topic for topic, _ in await world.events(final)] == ["order.confirmed"]

    run_world(settings, scenario)


def test_a_reservation_about_to_expire_is_given_up_without_charging(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        world.payments.unavailable = True
        parked = await world.saga.drive(await world.place())
        assert parked.status == "payment_pending"
        # The outage outlasts the reservation: products' sweeper gives the stock back.
        world.inventory.expire(parked.id)
        await world.rows(
            "UPDATE orders SET reservation_expires_at = now() + interval '5 seconds' WHERE id = %s RETURNING id",
            parked.id,
        )
        world.payments.unavailable = False
        await world.make_due(parked)
        await RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10).run_once()
        final = await world.reload(parked)
        assert (final.status, final.reason) == ("cancelled", "reservation_expired")
        assert world.payments.provider_charges == 0
        assert world.inventory.stock[PRODUCT_A] == 10
        assert [topic for topic, _ in await world.events(final)] == ["order.cancelled"]

    run_world(settings, scenario)


def test_a_charge_whose_answer_was_lost_is_refunded_when_the_reservation_ends(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        world.payments.lose_answer = True
        parked = await world.saga.drive(await world.place())
        assert parked.status == "payment_pending"
        assert world.payments.provider_charges == 1  # money was taken; orders does not know
        world.inventory.expire(parked.id)
        await world.rows("UPDATE orders SET reservation_expires_at = now() WHERE id = %s RETURNING id", parked.id)
        await world.make_due(parked)
        await RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10).run_once()
        final = await world.reload(parked)
        assert (final.status, final.reason) == ("cancelled", "reservation_expired")
        assert world.payments.refunds == {world.payments.charges[parked.id].payment_id: 1}
        assert await world.transitions(final) == ["pending", "reserved", "payment_pending", "refunding", "cancelled"]

    run_world(settings, scenario)


def test_a_pending_payment_is_settled_under_its_key_then_refunded_when_the_reservation_ends(
    settings: OrdersSettings,
) -> None:
    async def scenario(world: World) -> None:
        world.payments.leave_pending = True
        parked = await world.saga.drive(await world.place())
        assert parked.status == "payment_pending"
        world.inventory.expire(parked.id)
        await world.rows("UPDATE orders SET reservation_expires_at = now() WHERE id = %s RETURNING id", parked.id)
        await world.make_due(parked)
        await RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10).run_once()
        final = await world.reload(parked)
        assert (final.status, final.reason) == ("cancelled", "reservation_expired")
        assert world.payments.provider_charges == 1  # the pending payment was resumed, not a new one made
        assert world.payments.refunds == {world.payments.charges[parked.id].payment_id: 1}

    run_world(settings, scenario)


def test_a_commit_refused_after_capture_refunds_and_cancels(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        order = await world.place()
        reserved = await world.saga.step(order)
        assert reserved is not None
        paid = await world.saga.step(reserved)
        assert paid is not None
        assert paid.status == "paid"
        world.inventory.expire(order.id)  # expired between the capture and the commit
        final = await world.saga.drive(paid)
        assert (final.status, final.reason) == ("cancelled", "reservation_expired")
        assert world.payments.refunds == {paid.payment_id: 1}
        assert world.inventory.stock[PRODUCT_A] == 10
        [(topic, payload)] = await world.events(final)
        assert (topic, payload["reason"]) == ("order.cancelled", "reservation_expired")

    run_world(settings, scenario)


def test_a_refund_that_cannot_be_made_yet_is_retried(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        order = await world.place()
        reserved = await world.saga.step(order)
        assert reserved is not None
        paid = await world.saga.step(reserved)
        assert paid is not None
        world.inventory.expire(order.id)
        world.payments.unavailable = True
        parked = await world.saga.drive(paid)
        assert (parked.status, parked.attempts) == ("refunding", 1)
        world.payments.unavailable = False
        await world.make_due(parked)
        await RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10).run_once()
        assert (await world.reload(parked)).status == "cancelled"
        assert world.payments.refunds == {paid.payment_id: 1}

    run_world(settings, scenario)


# --- Products unavailable ---


def test_products_down_parks_the_reservation_and_gives_up_after_the_limit(settings: OrdersSettings) -> None:
    timings = SagaTimings(600, 15, pending_give_up_seconds=5, retry_base_seconds=1, retry_max_seconds=60)

    async def scenario(world: World) -> None:
        world.inventory.unavailable = True
        parked = await world.saga.drive(await world.place())
        assert (parked.status, parked.attempts) == ("pending", 1)
        await world.rows(
            "UPDATE orders SET created_at = now() - interval '10 seconds' WHERE id = %s RETURNING id", parked.id
        )
        world.inventory.unavailable = False
        await world.make_due(parked)
        await RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10).run_once()
        final = await world.reload(parked)
        assert (final.status, final.reason) == ("rejected", "products_unavailable")
        assert world.inventory.calls == ["reserve", "release"]  # released whatever a timed-out reserve may have held
        assert world.payments.provider_charges == 0

    run_world(settings, scenario, timings=timings)


def test_a_reservation_that_ended_before_its_answer_was_recorded_rejects_the_order(settings: OrdersSettings) -> None:
    """Products reserved, the answer was lost (orders died), the reservation expired: the resumed saga is refused
    the reservation and rejects the order without charging."""

    async def scenario(world: World) -> None:
        order = await world.place()
        await world.inventory.reserve(order.id, [(PRODUCT_A, 1)], 600)  # processed; the answer never arrived
        world.inventory.expire(order.id)
        final = await world.saga.drive(order)
        assert (final.status, final.reason) == ("rejected", "reservation_expired")
        assert world.payments.provider_charges == 0
        assert world.inventory.stock[PRODUCT_A] == 10

    run_world(settings, scenario)


# --- Crashes and concurrent drivers ---


def test_an_order_whose_driver_died_is_resumed_after_its_lease(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        order = await world.place()
        reserved = await world.saga.step(order)  # the driver dies here, holding the lease
        assert reserved is not None
        assert reserved.status == "reserved"
        loop = RecoveryLoop(world.store, world.saga, poll_seconds=1, batch=10)
        assert await loop.run_once() == 0  # the lease still holds
        await world.make_due(reserved)  # ...until it runs out
        assert await loop.run_once() == 1
        assert (await world.reload(order)).status == "confirmed"
        assert world.inventory.calls == ["reserve", "commit"]
        assert world.payments.provider_charges == 1

    run_world(settings, scenario)


def test_a_driver_that_lost_its_lease_commits_nothing(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        stale = await world.place()
        await world.make_due(stale)
        [claimed] = await world.store.claim_due(10)  # a recovery loop took over
        assert claimed.claim_token != stale.claim_token
        assert await world.saga.step(stale) is None  # the old driver's step does not commit
        assert (await world.reload(stale)).status == "pending"
        final = await world.saga.drive(claimed)
        assert final.status == "confirmed"
        assert world.payments.provider_charges == 1

    run_world(settings, scenario)


def test_a_final_step_by_a_driver_that_lost_its_lease_writes_no_event(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        order = await world.place()
        reserved = await world.saga.step(order)
        assert reserved is not None
        paid = await world.saga.step(reserved)
        assert paid is not None
        await world.make_due(paid)
        [claimed] = await world.store.claim_due(10)
        assert await world.store.move(paid, "confirmed") is None
        assert await world.events(order) == []
        final = await world.saga.drive(claimed)
        assert final.status == "confirmed"
        assert [topic for topic, _ in await world.events(order)] == ["order.confirmed"]

    run_world(settings, scenario)


def test_concurrent_recovery_loops_claim_disjoint_orders(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        placed = [await world.place() for _ in range(12)]
        await world.rows("UPDATE orders SET next_attempt_at = now() RETURNING id")
        claims = await asyncio.gather(*(world.store.claim_due(5) for _ in range(4)))
        claimed = [order.id for claim in claims for order in claim]
        assert len(claimed) == len(set(claimed)) == 12
        assert set(claimed) == {order.id for order in placed}
        assert await world.store.claim_due(5) == []  # all leased now

    run_world(settings, scenario)


def test_terminal_orders_are_never_claimed(settings: OrdersSettings) -> None:
    async def scenario(world: World) -> None:
        final = await world.saga.drive(await world.place())
        assert final.status == "confirmed"
        await world.make_due(final)
        assert await world.store.claim_due(10) == []

    run_world(settings, scenario)


# --- Pure parts ---


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    timings = SagaTimings(600, 15, 600, retry_base_seconds=1, retry_max_seconds=60)
    for attempts, ceiling in ((0, 1), (1, 2), (3, 8), (6, 60), (50, 60)):
        delays = [timings.backoff(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


def test_cursors_round_trip_and_foreign_cursors_are_refused() -> None:
    order_id = uuid.uuid4()
    created_at = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    order = Order(
        order_id, "u", None, "pending", "USD", [], 0, None, None, None, 0, created_at, None, created_at, created_at
    )
    assert decode_cursor(encode_cursor(order)) == (created_at, order_id)
    for bad in ("", "not-base64!", "aGVsbG8", encode_cursor(order)[:-3]):
        with pytest.raises(InvalidCursorError, match="next_cursor"):
            decode_cursor(bad)


def test_the_schema_accepts_only_known_statuses(settings: OrdersSettings) -> None:
    conninfo = f"host=127.0.0.1 dbname={settings.DB_NAME} user={settings.DB_USER}"
    with psycopg.connect(conninfo) as conn:
        conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(settings.DB_SCHEMA)))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO orders (id, user_id, status, currency, items, total_cents)"
                " VALUES (gen_random_uuid(), 'u', 'shipped', 'USD', '[]', 0)"
            )
