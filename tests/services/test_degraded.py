"""What `./platform stress` found (docs/stress.md), pinned: a full disk is a 507 that leaves nothing behind, and
after PostgreSQL's connections die the pools drop every dead idle connection at the first error, so recovery
does not fail one more request or job attempt per pooled connection."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.common.settings import Settings
from services.common.storage import Storage
from services.worker.runner import Action
from stress.servers import small_filesystem
from tests.services.conftest import EnvFactory, build_worker
from tests.services.helpers import TcpProxy, wait_until

CSV_JOB = {"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}


@pytest.fixture
def full_storage() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and ./platform stress run as root or in a user namespace)")
    with small_filesystem(1024 * 1024) as root:
        Storage(root).ensure_layout()
        yield root


def fill(root: Path) -> None:
    with (root / "ballast").open("wb", buffering=0) as ballast:
        chunk = b"\0" * 65536
        while chunk:
            try:
                ballast.write(chunk)
            except OSError:
                chunk = chunk[: len(chunk) // 2]


def test_upload_to_a_full_disk_is_507_with_retry_after_and_leaves_no_file(
    make_env: EnvFactory, full_storage: Path
) -> None:
    settings = Settings(**make_env(STORAGE_PATH=str(full_storage)))  # pyright: ignore[reportArgumentType]
    with TestClient(create_app(settings)) as client:
        fill(full_storage)
        response = client.post("/files", content=b"a,b\n" + b"1,2\n" * 50_000, headers={"Content-Type": "text/csv"})
        assert response.status_code == 507
        assert response.headers["Retry-After"] == "30"
        assert "storage is full" in response.json()["detail"]
        ready = client.get("/ready").json()
        assert ready["checks"]["storage"] == "failed"
        # Neither the upload nor the readiness probe left a file (the probe's file is created, its write fails).
        assert [*(full_storage / "tmp").iterdir(), *(full_storage / "uploads").iterdir()] == []
        (full_storage / "ballast").unlink()
        assert client.post("/files", content=b"a\n1\n", headers={"Content-Type": "text/csv"}).status_code == 201


def test_api_pool_drops_every_dead_connection_after_the_first_error(make_env: EnvFactory, settings: Settings) -> None:
    proxy = TcpProxy(settings.DB_PORT)
    proxy.start()
    try:
        proxied = Settings(**make_env(DB_PORT=str(proxy.port), DB_POOL_MIN="4", DB_POOL_MAX="4"))  # pyright: ignore[reportArgumentType]
        app = create_app(proxied)
        with TestClient(app) as client:
            assert client.post("/jobs", json=CSV_JOB).status_code == 202
            proxy.drop_connections()  # as a failover does: every pooled connection is dead, the name answers
            assert client.post("/jobs", json=CSV_JOB).status_code == 503

            def checked() -> bool:
                check: asyncio.Task[None] | None = getattr(app.state, "pool_check", None)
                return check is not None and check.done()

            wait_until(checked, timeout=5, what="a check of the pool")
            assert [client.post("/jobs", json=CSV_JOB).status_code for _ in range(4)] == [202] * 4
    finally:
        proxy.stop()


def test_worker_pool_drops_every_dead_connection_after_the_first_error(
    make_env: EnvFactory, settings: Settings
) -> None:
    proxy = TcpProxy(settings.DB_PORT)
    proxy.start()
    try:
        proxied = Settings(**make_env(DB_PORT=str(proxy.port), DB_POOL_MIN="4", DB_POOL_MAX="4"))  # pyright: ignore[reportArgumentType]
        worker, close = build_worker(proxied)
        try:
            worker.pool.wait(timeout=10)
            proxy.drop_connections()
            message = {
                "MessageId": "m",
                "ReceiptHandle": "r",
                "Body": '{"job_id": "00000000-0000-0000-0000-000000000000"}',
            }
            received = type("R", (), {"message": message, "queue_url": "q"})()
            assert worker._handle_safely(received).action is Action.DELAY  # pyright: ignore[reportPrivateUsage, reportArgumentType]
            for _ in range(4):
                with worker.pool.connection(timeout=5) as conn:
                    conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            pytest.fail(f"a dead pooled connection was handed out after the first error: {exc}")
        finally:
            close()
    finally:
        proxy.stop()


def test_a_result_is_written_once_and_a_retry_keeps_the_first(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.ensure_layout()
    assert storage.write_once("results/j.json", b'{"rows": 4}') is True
    first = (tmp_path / "results/j.json").stat().st_ino
    assert storage.write_once("results/j.json", b'{"rows": 4}') is False
    assert (tmp_path / "results/j.json").stat().st_ino == first
    assert list((tmp_path / "tmp").iterdir()) == []
