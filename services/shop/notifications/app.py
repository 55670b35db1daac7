"""The notifications service: consumes order events from its queue and emails the customer.

No public routes: `/health`, `/ready` (database and queue reachable) and the internal `GET /notifications`.
Events arrive at least once; the consumer's inbox (`processed_events`, written in the same transaction as the
`notifications` row) makes each one send at most one email. On SIGTERM the long poll ends at once and the
messages in hand finish (up to SHUTDOWN_TIMEOUT_SECONDS) before the pool closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from psycopg import AsyncConnection

from services.common.sqs_async import AsyncSqsClient
from services.shop.common.app import LifespanHook, ReadinessCheck, ServiceRuntime, create_service_app
from services.shop.common.events import PROCESSED_EVENTS_MIGRATION, Event, QueueConsumer, async_sqs_client
from services.shop.common.settings import load_settings
from services.shop.notifications import routes
from services.shop.notifications.notifier import Notifier
from services.shop.notifications.senders import EmailSender, FileSender, SesSender, ses_client
from services.shop.notifications.settings import NotificationsSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def build_sender(settings: NotificationsSettings) -> EmailSender:
    """The file sink when EMAIL_SINK_DIR is set (local runs), else SES from EMAIL_FROM."""
    if settings.EMAIL_SINK_DIR is not None:
        return FileSender(settings.EMAIL_SINK_DIR, settings.sender_address)
    return SesSender(
        ses_client(settings.AWS_REGION, settings.SES_MAX_ATTEMPTS),
        settings.sender_address,
        settings.SES_CONFIGURATION_SET,
    )


def queue_check(sqs: AsyncSqsClient, queue_url: str, timeout: float) -> ReadinessCheck:
    async def check() -> None:
        await sqs.call("GetQueueAttributes", {"QueueUrl": queue_url, "AttributeNames": ["QueueArn"]}, timeout)

    return check


def consume_events(settings: NotificationsSettings, notifier: Notifier) -> LifespanHook:
    """Run the queue consumer while the app runs; register the queue's readiness check."""

    async def handle(conn: AsyncConnection[Any], event: Event) -> None:
        await notifier.handle(conn, event)

    @asynccontextmanager
    async def hook(runtime: ServiceRuntime) -> AsyncIterator[None]:
        sqs = async_sqs_client(settings.AWS_REGION, settings.SQS_ENDPOINT_URL)
        consumer = QueueConsumer(
            runtime.pool,
            sqs,
            settings.QUEUE_URL,
            handle,
            wait_seconds=settings.RECEIVE_WAIT_SECONDS,
            max_messages=settings.RECEIVE_BATCH,
            retry_delay_seconds=settings.RETRY_DELAY_SECONDS,
        )
        runtime.readiness["queue"] = queue_check(sqs, settings.QUEUE_URL, settings.READY_TIMEOUT_SECONDS)
        runtime.resources["consumer"] = consumer
        consumer.start()
        try:
            yield
        finally:
            await consumer.stop(timeout=settings.SHUTDOWN_TIMEOUT_SECONDS)
            await sqs.aclose()

    return hook


def create_app(settings: NotificationsSettings | None = None, *, sender: EmailSender | None = None) -> FastAPI:
    """The app; `sender` replaces the one the settings choose (tests)."""
    settings = settings or load_settings(NotificationsSettings)
    notifier = Notifier(sender or build_sender(settings))
    return create_service_app(
        settings,
        title="notifications",
        description="Emails customers about their orders (consumes order events). Internal only.",
        routers=[routes.router],
        migrations_dir=MIGRATIONS_DIR,
        shared_migrations=[PROCESSED_EVENTS_MIGRATION],
        lifespan_hooks=[consume_events(settings, notifier)],
    )
