"""Container HEALTHCHECK of every shop service, stdlib only (the images have no curl):
`python -m services.shop.common.healthcheck` GETs http://127.0.0.1:$PORT/health and exits 0 on 200, else 1."""

from __future__ import annotations

import http.client
import os
import sys

TIMEOUT_SECONDS = 2.0


def check(port: int, timeout: float = TIMEOUT_SECONDS) -> str | None:
    """None when /health answers 200; otherwise why not."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", "/health")
        status = connection.getresponse().status
    except OSError as error:
        return f"GET /health on port {port} failed: {error}"
    finally:
        connection.close()
    return None if status == 200 else f"GET /health on port {port} answered {status}"


def main() -> int:
    raw_port = os.environ.get("PORT", "8080")
    if not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535:
        print(f"unhealthy: PORT must be a port number from 1 to 65535, got {raw_port!r}", file=sys.stderr)  # noqa: T201
        return 1
    problem = check(int(raw_port))
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
