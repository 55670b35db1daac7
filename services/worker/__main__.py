"""Container entry point: `python -m services.worker`. SIGTERM/SIGINT stop it gracefully."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from services.common.db import sync_pool
from services.common.logging import configure_logging
from services.common.migrate import apply_migrations
from services.common.redis_client import sync_client
from services.common.settings import load_settings
from services.common.sqs import blocking_sqs_client
from services.common.tracing import tracing_from_environment
from services.worker.events import SnapshotPublisher
from services.worker.runner import Worker


def main() -> int:
    settings = load_settings()
    configure_logging("worker", settings.LOG_LEVEL)
    tracing = tracing_from_environment()  # None unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    if tracing:
        tracing.instrument_psycopg()
    apply_migrations(settings)
    redis = sync_client(settings)
    sqs = blocking_sqs_client(settings)
    with sync_pool(settings) as pool:
        worker = Worker(settings, pool, sqs, SnapshotPublisher(redis, settings))

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            worker.request_stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        worker.run()
    sqs.close()
    redis.close()
    if tracing:
        tracing.shutdown()  # export the last batched spans
    return 0


if __name__ == "__main__":
    sys.exit(main())
