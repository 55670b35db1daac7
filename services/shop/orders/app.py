"""The orders service: `create_app(settings)`; `python -m services.shop.orders` serves it (see __main__.py).

Each process runs, besides the API: the outbox relay (order events to NOTIFICATIONS_QUEUE_URL) and the saga's
recovery loop (parked and orphaned orders).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import cast

from fastapi import FastAPI

from services.shop.common.app import ServiceRuntime, create_service_app
from services.shop.common.auth import token_verification
from services.shop.common.breaker import BreakerPolicy, CircuitBreaker
from services.shop.common.calls import RetryPolicy, ServiceClient, Timeouts
from services.shop.common.events import OUTBOX_MIGRATION, OutboxRelay, async_sqs_client
from services.shop.common.idempotency import IDEMPOTENCY_MIGRATION, expired_key_purging
from services.shop.common.observability import outgoing_traceparent
from services.shop.orders.checkout import Checkout, UserDirectory
from services.shop.orders.clients import PaymentsClient, ProductsClient
from services.shop.orders.recovery import RecoveryLoop
from services.shop.orders.routes import OrdersServices, router
from services.shop.orders.saga import Saga, SagaTimings
from services.shop.orders.settings import OrdersSettings
from services.shop.orders.store import OrderStore

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Opens after 10 failures within 10 s, or half of at least 10 calls failing; trial calls after 5 s.
BREAKER_POLICY = BreakerPolicy(window_seconds=10.0, failure_ratio=0.5, minimum_calls=10, failure_threshold=10)
# One saga step's call, retries included, stays well inside ORDER_DEADLINE_SECONDS.
STEP_TIMEOUTS = Timeouts(connect=0.5, read=2.0, total=2.5)
STEP_RETRIES = RetryPolicy(attempts=3, budget_seconds=3.0)


def service_client(name: str, base_url: str) -> ServiceClient:
    return ServiceClient(
        name,
        base_url,
        timeouts=STEP_TIMEOUTS,
        retry=STEP_RETRIES,
        breaker=CircuitBreaker(name, BREAKER_POLICY),
        traceparent=outgoing_traceparent,
    )


def saga_timings(settings: OrdersSettings) -> SagaTimings:
    return SagaTimings(
        reservation_ttl_seconds=settings.RESERVATION_TTL_SECONDS,
        reservation_safety_seconds=settings.RESERVATION_SAFETY_SECONDS,
        pending_give_up_seconds=settings.PENDING_GIVE_UP_SECONDS,
        retry_base_seconds=settings.RETRY_BASE_SECONDS,
        retry_max_seconds=settings.RETRY_MAX_SECONDS,
    )


@asynccontextmanager
async def orders_runtime(runtime: ServiceRuntime) -> AsyncIterator[None]:
    """Lifespan hook: the callees' clients, the outbox relay, the saga and its recovery loop."""
    settings = cast(OrdersSettings, runtime.settings)
    async with AsyncExitStack() as stack:
        products = service_client("products", settings.PRODUCTS_URL)
        payments = service_client("payments", settings.PAYMENTS_URL)
        users = service_client("users", settings.USERS_URL)
        for client in (products, payments, users):
            stack.push_async_callback(client.aclose)
        sqs = async_sqs_client(settings.AWS_REGION, settings.SQS_ENDPOINT_URL)
        stack.push_async_callback(sqs.aclose)

        # Not woken per order: a round every RELAY_POLL_SECONDS carries all the events committed meanwhile, where
        # a wake-up per commit costs a claim, a signed SendMessageBatch and an UPDATE for every order under load.
        relay = OutboxRelay(
            runtime.pool, sqs, settings.NOTIFICATIONS_QUEUE_URL, poll_seconds=settings.RELAY_POLL_SECONDS
        )
        store = OrderStore(runtime.pool, settings.ORDER_LEASE_SECONDS)
        catalog = ProductsClient(products)
        saga = Saga(store, catalog, PaymentsClient(payments), saga_timings(settings))
        checkout = Checkout(
            store, saga, catalog, UserDirectory(users), deadline_seconds=settings.ORDER_DEADLINE_SECONDS
        )
        recovery = RecoveryLoop(store, saga, poll_seconds=settings.RECOVERY_POLL_SECONDS, batch=settings.RECOVERY_BATCH)
        runtime.resources["orders"] = OrdersServices(store, checkout)

        relay.start()
        stack.push_async_callback(relay.stop)
        recovery.start()
        stack.push_async_callback(recovery.stop)
        # Sagas still running stop before the loop and the relay do (the stack unwinds in reverse).
        stack.push_async_callback(checkout.drain, settings.SHUTDOWN_TIMEOUT_SECONDS / 2)
        yield


def create_app(settings: OrdersSettings) -> FastAPI:
    return create_service_app(
        settings,
        title="orders",
        description="Orders and the checkout saga: reserve stock, take the payment, confirm; compensate on failure.",
        routers=[router],
        migrations_dir=MIGRATIONS_DIR,
        shared_migrations=[IDEMPOTENCY_MIGRATION, OUTBOX_MIGRATION],
        lifespan_hooks=[token_verification, orders_runtime, expired_key_purging()],
    )
