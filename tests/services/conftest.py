"""Fixtures: real PostgreSQL (a throwaway database per session), real Redis (a per-session key prefix)
and fauxqs on a free loopback port (started once per session, fresh queues per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from services.api.app import create_app
from services.common.db import connect, sync_pool
from services.common.migrate import apply_migrations
from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.common.sqs import blocking_sqs_client, ensure_queues, sqs_client
from services.fauxqs import FAUXQS_ENTRY, Fauxqs, npm_ci
from services.worker.events import SnapshotPublisher
from services.worker.runner import Worker
from tests.services.helpers import throwaway_database

EnvFactory = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def fauxqs_server() -> Iterator[Fauxqs]:
    if not FAUXQS_ENTRY.exists() and (npm_ci() != 0 or not FAUXQS_ENTRY.exists()):
        pytest.fail("fauxqs is not installed and `npm ci` failed; run: uv run python -m services.fauxqs install")
    with Fauxqs() as server:
        yield server


@pytest.fixture(scope="session")
def session_tag() -> Iterator[str]:
    tag = uuid.uuid4().hex[:10]
    yield tag
    client = sync_client(Settings())
    delete_prefix(client, f"cp-test-{tag}:")
    client.close()


@pytest.fixture(scope="session")
def database(session_tag: str) -> Iterator[str]:
    with throwaway_database(f"cp_test_{session_tag}") as name:
        yield name


@pytest.fixture(scope="session")
def storage_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage")


@pytest.fixture
def make_env(database: str, fauxqs_server: Fauxqs, storage_root: Path, session_tag: str, tmp_path: Path) -> EnvFactory:
    """Environment (as the containers get it) with fresh queues; keyword arguments override variables."""

    def make(**overrides: str) -> dict[str, str]:
        base = {
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DB_HOST": "127.0.0.1",
            "DB_NAME": database,
            "DB_POOL_MAX": "4",
            "DB_POOL_TIMEOUT_SECONDS": "2",
            "REDIS_KEY_PREFIX": f"cp-test-{session_tag}:",
            "SQS_ENDPOINT_URL": fauxqs_server.endpoint_url,
            "STORAGE_PATH": str(storage_root),
            "HEARTBEAT_FILE": str(tmp_path / "heartbeat"),
            "RATE_LIMIT_PER_SECOND": "1000",
            "RATE_LIMIT_BURST": "1000",
            "MAX_RECEIVES": "3",
            "VISIBILITY_TIMEOUT_SECONDS": "30",
            "IDLE_WAIT_SECONDS": "1",
            "RETRY_BACKOFF_BASE_SECONDS": "0",
            "RELAY_POLL_SECONDS": "0.2",
        } | overrides
        probe = Settings(**base)  # pyright: ignore[reportArgumentType]
        queues = ensure_queues(
            sqs_client(probe), f"t{uuid.uuid4().hex[:12]}", probe.MAX_RECEIVES, probe.VISIBILITY_TIMEOUT_SECONDS
        )
        return base | queues

    return make


@pytest.fixture
def env(make_env: EnvFactory) -> dict[str, str]:
    return make_env()


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    settings = Settings(**env)  # pyright: ignore[reportArgumentType]
    apply_migrations(settings)
    return settings


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), headers={"X-Client-Id": f"c-{uuid.uuid4().hex[:8]}"}) as test_client:
        yield test_client


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection[DictRow]]:
    with connect(settings) as conn:
        yield conn


def build_worker(settings: Settings) -> tuple[Worker, Callable[[], None]]:
    pool = sync_pool(settings)
    pool.open()
    redis = sync_client(settings)
    sqs = blocking_sqs_client(settings)  # the client the worker's entry point uses
    worker = Worker(settings, pool, sqs, SnapshotPublisher(redis, settings))
    worker.storage.ensure_layout()

    def close() -> None:
        pool.close()
        sqs.close()
        redis.close()

    return worker, close


@pytest.fixture
def worker(settings: Settings) -> Iterator[Worker]:
    built, close = build_worker(settings)
    yield built
    close()


@pytest.fixture
def sqs(settings: Settings) -> Any:
    return sqs_client(settings)
