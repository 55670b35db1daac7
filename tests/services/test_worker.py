"""The worker against real PostgreSQL, Redis and fauxqs: every job type, every transition, duplicates,
priorities, retries, the dead-letter path, SSE ordering and graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from services.common.settings import Settings
from services.common.sqs import job_message, sqs_client
from services.worker.healthcheck import main as healthcheck_main
from services.worker.runner import Worker, backoff_seconds
from tests.services.conftest import EnvFactory, build_worker
from tests.services.helpers import drain, job_status, png_bytes, upload, wait_until


def transitions(db: psycopg.Connection[DictRow], job_id: str) -> list[tuple[str, str]]:
    rows = db.execute(
        "SELECT from_status, to_status FROM job_transitions WHERE job_id = %s ORDER BY id", (job_id,)
    ).fetchall()
    return [(row["from_status"], row["to_status"]) for row in rows]


def run_to_end(client: TestClient, worker: Worker, body: dict[str, Any]) -> dict[str, Any]:
    job_id = client.post("/jobs", json=body).json()["id"]
    drain(worker, lambda: job_status(client, job_id) in ("succeeded", "failed"))
    return client.get(f"/jobs/{job_id}").json()


def test_thumbnail_job_end_to_end(
    client: TestClient, worker: Worker, settings: Settings, db: psycopg.Connection[DictRow]
) -> None:
    file_id = upload(client, png_bytes(200, 100), "image/png", "in.png")
    job = run_to_end(client, worker, {"type": "image.thumbnail", "input_file_id": file_id, "params": {"width": 50}})
    assert job["status"] == "succeeded"
    assert (job["attempts"], job["version"]) == (1, 3)
    assert job["result"] == {
        "location": f"results/{job['id']}.png",
        "summary": {"source_width": 200, "source_height": 100, "width": 50, "height": 25, "format": "png"},
    }
    assert (settings.STORAGE_PATH / job["result"]["location"]).read_bytes().startswith(b"\x89PNG")
    assert transitions(db, job["id"]) == [("queued", "running"), ("running", "succeeded")]


@pytest.mark.parametrize(
    ("job_type", "content_type", "data", "expected"),
    [
        ("data.csv_summary", "text/csv", b"x\n1\n3\n", {"rows": 2, "columns": 1}),
        ("convert.csv_to_json", "text/csv", b"x,y\n1,2\n", {"records": 1}),
        ("convert.json_to_csv", "application/json", b'[{"x": 1}, {"y": 2}]', {"records": 2, "columns": 2}),
    ],
)
def test_file_based_jobs_end_to_end(
    client: TestClient, worker: Worker, job_type: str, content_type: str, data: bytes, expected: dict[str, int]
) -> None:
    file_id = upload(client, data, content_type)
    job = run_to_end(client, worker, {"type": job_type, "input_file_id": file_id})
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["summary"] == expected


def test_bad_input_fails_without_retry(
    client: TestClient, worker: Worker, sqs: Any, settings: Settings, db: psycopg.Connection[DictRow]
) -> None:
    file_id = upload(client, b"not an image", "image/png")
    job = run_to_end(client, worker, {"type": "image.thumbnail", "input_file_id": file_id})
    assert job["status"] == "failed"
    assert job["attempts"] == 1
    assert "not a readable image" in job["error"]
    assert transitions(db, job["id"]) == [("queued", "running"), ("running", "failed")]
    attributes = sqs.get_queue_attributes(QueueUrl=settings.QUEUE_URL_NORMAL, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_duplicate_messages_complete_the_job_once(
    client: TestClient, worker: Worker, sqs: Any, settings: Settings, db: psycopg.Connection[DictRow]
) -> None:
    job_id = client.post("/jobs", json={"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}).json()["id"]
    sqs.send_message(QueueUrl=settings.QUEUE_URL_NORMAL, MessageBody=job_message(job_id))  # a relay re-send
    drain(worker, lambda: job_status(client, job_id) == "succeeded")
    # The duplicate is recognised and deleted, not processed again.
    drain(
        worker,
        lambda: (
            sqs.get_queue_attributes(
                QueueUrl=settings.QUEUE_URL_NORMAL, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
            == "0"
        ),
    )
    assert transitions(db, job_id).count(("running", "succeeded")) == 1


def test_high_priority_is_taken_first(client: TestClient, worker: Worker, db: psycopg.Connection[DictRow]) -> None:
    body = {"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}
    ids = {p: client.post("/jobs", json=body | {"priority": p}).json()["id"] for p in ("low", "normal", "high")}
    wait_until(lambda: db.execute("SELECT count(*) AS n FROM outbox").fetchone() == {"n": 0}, 5, "relay")
    drain(worker, lambda: all(job_status(client, i) == "succeeded" for i in ids.values()))
    started = {
        p: db.execute("SELECT started_at FROM jobs WHERE id = %s", (i,)).fetchone()["started_at"]  # pyright: ignore[reportOptionalSubscript]
        for p, i in ids.items()
    }
    assert started["high"] <= started["normal"] <= started["low"]


def test_transient_failures_retry_then_dead_letter(
    client: TestClient, worker: Worker, sqs: Any, settings: Settings, db: psycopg.Connection[DictRow]
) -> None:
    file_id = upload(client, b"a\n1\n", "text/csv")
    (settings.STORAGE_PATH / "uploads" / file_id).unlink()  # storage lost the file: an error worth retrying
    job_id = client.post("/jobs", json={"type": "data.csv_summary", "input_file_id": file_id}).json()["id"]
    drain(worker, lambda: job_status(client, job_id) == "failed")
    job = client.get(f"/jobs/{job_id}").json()
    assert job["attempts"] == settings.MAX_RECEIVES == 3
    assert job["error"].startswith("failed after 3 attempts: FileNotFoundError")
    assert transitions(db, job_id) == [
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "failed"),
    ]
    # SQS moves the message to the DLQ on the receive after the last one.
    worker.receive()
    dead = sqs.receive_message(QueueUrl=settings.DLQ_URL, WaitTimeSeconds=1).get("Messages", [])
    assert [orjson.loads(m["Body"])["job_id"] for m in dead] == [job_id]


def test_dead_lettered_job_whose_worker_kept_dying_is_marked_failed(
    client: TestClient, worker: Worker, sqs: Any, settings: Settings
) -> None:
    job_id = client.post("/jobs", json={"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}).json()["id"]
    sqs.send_message(QueueUrl=settings.DLQ_URL, MessageBody=job_message(job_id))
    assert worker.sweep_dlq() == 1
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"] == "dead-lettered after 3 receives"


def test_poison_message_goes_to_the_dlq(make_env: EnvFactory) -> None:
    settings = Settings(**make_env(VISIBILITY_TIMEOUT_SECONDS="1", MAX_RECEIVES="2"))  # pyright: ignore[reportArgumentType]
    worker, close = build_worker(settings)
    sqs = sqs_client(settings)
    try:
        sqs.send_message(QueueUrl=settings.QUEUE_URL_NORMAL, MessageBody="{not json")

        def dead_lettered() -> bool:
            worker.process_batch(worker.receive())
            found = sqs.receive_message(QueueUrl=settings.DLQ_URL).get("Messages", [])
            return [m["Body"] for m in found] == ["{not json"]

        wait_until(dead_lettered, timeout=10, what="the poison message to reach the DLQ", interval=0.2)
    finally:
        close()


def test_sse_events_arrive_in_order(client: TestClient, worker: Worker) -> None:
    job_id = client.post("/jobs", json={"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}).json()["id"]
    events: list[dict[str, Any]] = []

    def read_stream() -> None:
        with client.stream("GET", f"/jobs/{job_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line.removeprefix("data: ")))

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    wait_until(lambda: len(events) == 1, timeout=5, what="the initial SSE event")
    drain(worker, lambda: job_status(client, job_id) == "succeeded")
    reader.join(timeout=10)
    assert not reader.is_alive(), "the stream must end at a final status"
    assert [(e["status"], e["version"]) for e in events] == [("queued", 1), ("running", 2), ("succeeded", 3)]


def test_sse_reconnect_with_last_event_id_gets_only_newer_events(client: TestClient, worker: Worker) -> None:
    job_id = client.post("/jobs", json={"type": "data.csv_summary", "params": {"csv": "a\n1\n"}}).json()["id"]
    drain(worker, lambda: job_status(client, job_id) == "succeeded")
    # A client that saw version 1 (queued) before its task stopped reconnects: only the final event comes.
    with client.stream("GET", f"/jobs/{job_id}/events", headers={"Last-Event-ID": "1"}) as response:
        lines = [line for line in response.iter_lines() if line.startswith(("id: ", "data: "))]
    assert lines[0] == "id: 3"
    assert [orjson.loads(line.removeprefix("data: "))["status"] for line in lines[1::2]] == ["succeeded"]
    # Nothing newer than what it saw: the stream ends at once (the job is final) without repeating anything.
    with client.stream("GET", f"/jobs/{job_id}/events", headers={"Last-Event-ID": "3"}) as response:
        assert [line for line in response.iter_lines() if line.startswith("data: ")] == []


def test_sse_for_unknown_job_is_404(client: TestClient) -> None:
    assert client.get(f"/jobs/{uuid.uuid4()}/events").status_code == 404


def test_backoff_grows_and_is_capped() -> None:
    assert backoff_seconds(1, base=0, cap=300) == 0
    assert 2 <= backoff_seconds(3, base=2, cap=300) <= 8
    assert 150 <= backoff_seconds(30, base=2, cap=300) <= 300


def test_worker_sigterm_exits_promptly(env: dict[str, str], settings: Settings) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "services.worker"],
        env={**os.environ, **env, "LOG_LEVEL": "INFO"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: settings.HEARTBEAT_FILE.exists(), timeout=15, what="the worker heartbeat")
        probe = subprocess.run(
            [sys.executable, "-m", "services.worker.healthcheck"], env={**os.environ, **env}, timeout=30, check=False
        )
        assert probe.returncode == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
    assert b'"worker stopped"' in (process.stdout.read() if process.stdout else b"")


def test_healthcheck_fails_on_stale_or_missing_heartbeat(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    heartbeat = tmp_path / "hb"
    monkeypatch.setenv("HEARTBEAT_FILE", str(heartbeat))
    monkeypatch.setenv("HEARTBEAT_MAX_AGE_SECONDS", "30")
    assert healthcheck_main() == 1
    heartbeat.touch()
    assert healthcheck_main() == 0
    old = time.time() - 60
    os.utime(heartbeat, (old, old))
    assert healthcheck_main() == 1
