"""Failure injection, bounded in time: a worker SIGKILLed mid-job, PostgreSQL connections cut, Redis gone.
Only servers these tests start themselves are killed (a proxy, a throwaway redis-server, our workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from services.api.app import create_app
from services.common.settings import Settings
from tests.services.conftest import EnvFactory, build_worker
from tests.services.helpers import RedisServer, TcpProxy, drain, job_status, upload, wait_until

CSV_JOB = {"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}


def start_worker(env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.worker"],
        env={**os.environ, **env, "HEARTBEAT_FILE": f"{env['HEARTBEAT_FILE']}-{name}"},
        stdout=subprocess.DEVNULL,
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_sigkilled_worker_loses_nothing_and_the_job_completes_once(
    make_env: EnvFactory, workers: list[subprocess.Popen[bytes]], db: psycopg.Connection[DictRow]
) -> None:
    env = make_env(VISIBILITY_TIMEOUT_SECONDS="2")
    settings = Settings(**env)  # pyright: ignore[reportArgumentType]
    big_csv = b"a,b,c\n" + b"".join(b"%d,%d.5,x%d\n" % (i, i * 3, i % 7) for i in range(150_000))
    with TestClient(create_app(settings)) as client:
        file_id = upload(client, big_csv, "text/csv")
        job_id = client.post("/jobs", json={"type": "data.csv_summary", "input_file_id": file_id}).json()["id"]
        workers.append(start_worker(env, "first"))
        wait_until(lambda: job_status(client, job_id) == "running", timeout=20, what="the job to start", interval=0.01)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=5)
        assert job_status(client, job_id) == "running"  # killed mid-job: nothing recorded the end

        workers.append(start_worker(env, "second"))
        wait_until(lambda: job_status(client, job_id) == "succeeded", timeout=30, what="another worker to finish")
        job = client.get(f"/jobs/{job_id}").json()
    assert job["attempts"] == 2
    assert job["result"]["summary"] == {"rows": 150_000, "columns": 3}
    rows = db.execute("SELECT to_status FROM job_transitions WHERE job_id = %s ORDER BY id", (job_id,)).fetchall()
    assert [row["to_status"] for row in rows] == ["running", "running", "succeeded"]


def test_postgres_outage_gives_503_then_recovers_without_losing_accepted_jobs(
    make_env: EnvFactory, settings: Settings, db: psycopg.Connection[DictRow]
) -> None:
    proxy = TcpProxy(target_port=settings.DB_PORT)
    proxy.start()
    env = make_env(DB_PORT=str(proxy.port), DB_POOL_TIMEOUT_SECONDS="1")
    proxied = Settings(**env)  # pyright: ignore[reportArgumentType]
    accepted: list[str] = []
    try:
        with TestClient(create_app(proxied)) as client:
            for _ in range(3):
                response = client.post("/jobs", json=CSV_JOB)
                assert response.status_code == 202
                accepted.append(response.json()["id"])

            proxy.stop()  # every pooled connection is cut and new ones are refused
            during = [client.post("/jobs", json=CSV_JOB) for _ in range(3)]
            assert {r.status_code for r in during} == {503}
            assert during[0].headers["Retry-After"] == "1"
            assert "database unavailable" in during[0].json()["detail"]
            assert client.get("/ready").status_code == 503

            proxy.start()

            def accepting() -> bool:
                response = client.post("/jobs", json=CSV_JOB)
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                return response.status_code == 202

            wait_until(accepting, timeout=15, what="the API to recover", interval=0.2)
            assert client.get("/ready").status_code == 200
    finally:
        proxy.stop()
    found = db.execute("SELECT count(*) AS n FROM jobs WHERE id = ANY(%s::uuid[])", (accepted,)).fetchone()
    assert found == {"n": len(accepted)}


def test_redis_outage_serves_status_from_postgres_and_still_accepts(make_env: EnvFactory) -> None:
    redis_server = RedisServer()
    redis_server.start()
    try:
        settings = Settings(**make_env(REDIS_PORT=str(redis_server.port), REDIS_TIMEOUT_SECONDS="0.2"))  # pyright: ignore[reportArgumentType]
        worker, close = build_worker(settings)
        try:
            with TestClient(create_app(settings)) as client:
                before = client.post("/jobs", json=CSV_JOB).json()["id"]
                assert job_status(client, before) == "queued"  # now cached in Redis

                redis_server.kill()
                after = client.post("/jobs", json=CSV_JOB)
                assert after.status_code == 202
                ready = client.get("/ready").json()
                assert ready["status"] == "degraded"
                assert ready["checks"]["redis"] == "failed"

                ids = [before, after.json()["id"]]
                drain(worker, lambda: all(job_status(client, i) == "succeeded" for i in ids))
        finally:
            close()
    finally:
        redis_server.kill()
