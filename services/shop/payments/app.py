"""The payments service application: `create_app(settings)`; run with `python -m services.shop.payments`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.shop.common.app import LifespanHook, ServiceRuntime, create_service_app
from services.shop.common.idempotency import IDEMPOTENCY_MIGRATION, expired_key_purging
from services.shop.payments import routes
from services.shop.payments.provider import SimulatedProvider
from services.shop.payments.service import PaymentService
from services.shop.payments.settings import PaymentsSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _payments_resources(settings: PaymentsSettings) -> LifespanHook:
    @asynccontextmanager
    async def hook(runtime: ServiceRuntime) -> AsyncIterator[None]:
        provider = SimulatedProvider(runtime.pool, settings.simulation())
        runtime.app.state.provider = provider
        runtime.app.state.payments = PaymentService(
            runtime.pool, provider, provider_timeout_seconds=settings.PROVIDER_TIMEOUT_SECONDS
        )
        yield

    return hook


def create_app(settings: PaymentsSettings) -> FastAPI:
    return create_service_app(
        settings,
        title="payments",
        description="Charges and refunds for orders, idempotent per Idempotency-Key and per order. Internal: "
        "called by orders over Service Connect.",
        routers=[routes.router],
        migrations_dir=MIGRATIONS_DIR,
        shared_migrations=[IDEMPOTENCY_MIGRATION],
        lifespan_hooks=[_payments_resources(settings), expired_key_purging()],
    )
