"""Container entry point: `python -m services.api` serves on 0.0.0.0:$PORT."""

from __future__ import annotations

import os

import uvicorn

from services.common.settings import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(
        "services.api.app:create_app",
        factory=True,
        host="0.0.0.0",  # noqa: S104 - inside the task; the security group and ALB decide who reaches it
        port=settings.PORT,
        workers=int(os.environ.get("API_WORKERS", "1")),
        log_config=None,  # our JSON logging is configured by create_app
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
