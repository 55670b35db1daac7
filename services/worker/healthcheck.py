"""Container HEALTHCHECK for the worker: healthy while the heartbeat file is fresh.

The worker touches it on every loop iteration (at least every IDLE_WAIT_SECONDS) and, during a long job,
whenever it extends the message visibility. Exit 0 = healthy, 1 = unhealthy (Docker's convention)."""

from __future__ import annotations

import sys
import time

from services.common.settings import load_settings


def heartbeat_age(path_mtime: float, now: float) -> float:
    return now - path_mtime


def main() -> int:
    settings = load_settings()
    try:
        mtime = settings.HEARTBEAT_FILE.stat().st_mtime
    except FileNotFoundError:
        print(f"unhealthy: no heartbeat file at {settings.HEARTBEAT_FILE}", file=sys.stderr)  # noqa: T201
        return 1
    age = heartbeat_age(mtime, time.time())
    if age > settings.HEARTBEAT_MAX_AGE_SECONDS:
        limit = settings.HEARTBEAT_MAX_AGE_SECONDS
        print(f"unhealthy: heartbeat is {age:.0f}s old (max {limit:.0f}s)", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
