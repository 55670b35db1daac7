"""Serving a shop app for tests on a real loopback port, and fuzzing it from its own OpenAPI schema."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings

from services.fauxqs import free_port
from tests.services.helpers import wait_until


@contextmanager
def served(app: FastAPI, *, stop_timeout: float = 30) -> Iterator[str]:
    """`app` under uvicorn on a free loopback port, lifespan included; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=stop_timeout)


def fuzz(
    operation: Any,
    *,
    timeout: float = 10,
    headers: Mapping[str, str] | None = None,
    excluded_checks: Iterable[Any] = (),
) -> None:
    """25 derandomised schemathesis cases of `operation`, each validated by every check not in `excluded_checks`
    (a 5xx fails every check)."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
        derandomize=True,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=dict(headers or {}), timeout=timeout, excluded_checks=list(excluded_checks))

    run()
