"""Every API endpoint against real PostgreSQL, Redis and fauxqs (TestClient runs the app in-process)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from services.api.app import create_app
from services.api.ratelimit import Decision, RateLimiter
from services.common.redis_client import CircuitBreaker, async_client
from services.common.settings import Settings
from services.common.sqs import parse_job_message
from tests.services.conftest import EnvFactory
from tests.services.helpers import drain, job_status, png_bytes, upload, wait_until

CSV_JOB = {"type": "data.csv_summary", "params": {"csv": "a,b\n1,2\n"}}


def submit(client: TestClient, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/jobs", json=body, headers=headers)


# --- Health ---


def test_health_is_ok(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_checks_every_dependency(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "redis": "ok", "queue": "ok", "storage": "ok"},
    }


# --- Submission ---


def test_submit_commits_and_relays_to_the_priority_queue(
    client: TestClient, settings: Settings, sqs: Any, db: psycopg.Connection[DictRow]
) -> None:
    response = submit(client, CSV_JOB | {"priority": "high"})
    assert response.status_code == 202
    job = response.json()
    assert response.headers["Location"] == f"/jobs/{job['id']}"
    assert (job["status"], job["priority"], job["version"], job["attempts"]) == ("queued", "high", 1, 0)

    received: list[str] = []

    def relayed() -> bool:
        messages = sqs.receive_message(QueueUrl=settings.QUEUE_URL_HIGH, WaitTimeSeconds=0).get("Messages", [])
        received.extend(parse_job_message(m["Body"]) or "" for m in messages)
        return job["id"] in received

    wait_until(relayed, timeout=5, what="the outbox relay to publish the job")
    wait_until(
        lambda: db.execute("SELECT count(*) AS n FROM outbox WHERE job_id = %s", (job["id"],)).fetchone() == {"n": 0},
        timeout=5,
        what="the relayed outbox row to be deleted",
    )


def test_get_job_returns_status_and_is_cached(client: TestClient) -> None:
    job_id = submit(client, CSV_JOB).json()["id"]
    first = client.get(f"/jobs/{job_id}")
    second = client.get(f"/jobs/{job_id}")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert first.json()["id"] == job_id


def test_unknown_job_is_404(client: TestClient) -> None:
    missing = uuid.uuid4()
    response = client.get(f"/jobs/{missing}")
    assert response.status_code == 404
    assert response.json()["detail"] == f"job {missing} not found"


def test_idempotency_key_replays_the_same_job(client: TestClient, db: psycopg.Connection[DictRow]) -> None:
    first = submit(client, CSV_JOB, key="order-42")
    again = submit(client, CSV_JOB, key="order-42")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    count = db.execute("SELECT count(*) AS n FROM jobs WHERE idempotency_key = 'order-42'").fetchone()
    assert count == {"n": 1}


def test_idempotency_key_with_a_different_body_conflicts(client: TestClient) -> None:
    assert submit(client, CSV_JOB, key="k-1").status_code == 202
    response = submit(client, CSV_JOB | {"priority": "low"}, key="k-1")
    assert response.status_code == 409
    assert "already used with a different request body" in response.json()["detail"]


def test_bad_idempotency_key_is_422(client: TestClient) -> None:
    response = submit(client, CSV_JOB, key="has space")
    assert response.status_code == 422
    assert "String should match pattern" in response.text
    assert "idempotency-key" in response.text


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"type": "video.transcode"}, "does not match any of the expected tags"),
        ({"type": "image.thumbnail"}, "Field required"),
        (CSV_JOB | {"priority": "urgent"}, "Input should be 'high', 'normal' or 'low'"),
        (CSV_JOB | {"params": {"csv": "x" * 70_000}}, "at most 65536 characters"),
    ],
)
def test_invalid_jobs_are_422_with_the_reason(client: TestClient, body: dict[str, Any], fragment: str) -> None:
    response = submit(client, body)
    assert response.status_code == 422
    assert fragment in response.text


def test_malformed_json_is_422(client: TestClient) -> None:
    response = client.post("/jobs", content=b'{"type": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert "JSON decode error" in response.text


@pytest.mark.parametrize("path", ["/jobs", "/batches"])
def test_a_lone_surrogate_in_the_body_is_a_clear_4xx(client: TestClient, path: str) -> None:
    job = b'{"type":"data.csv_summary","params":{"csv":"a\\ud800"}}'
    body = job if path == "/jobs" else b'{"jobs":[' + job + b"]}"
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "unable to parse raw data as a unicode string" in response.text
    assert response.json()["detail"][0]["input"] == "a\ud800"  # echoed, escaped


def test_oversized_json_body_is_413(client: TestClient) -> None:
    response = client.post(
        "/jobs", content=b"[" + b"1," * 600_000 + b"1]", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "exceeds the limit" in response.json()["detail"]


def test_unknown_input_file_is_422(client: TestClient) -> None:
    missing = uuid.uuid4()
    response = submit(client, {"type": "image.thumbnail", "input_file_id": str(missing)})
    assert response.status_code == 422
    assert f"input_file_id {missing} does not exist" in response.json()["detail"]


# --- Batches ---


def test_batch_is_accepted_atomically(client: TestClient) -> None:
    response = client.post("/batches", json={"jobs": [CSV_JOB, CSV_JOB | {"priority": "low"}]})
    assert response.status_code == 202
    batch = response.json()
    assert [job["priority"] for job in batch["jobs"]] == ["normal", "low"]
    assert {job["batch_id"] for job in batch["jobs"]} == {batch["id"]}


def test_batch_with_one_bad_file_creates_nothing(client: TestClient, db: psycopg.Connection[DictRow]) -> None:
    bad = {"type": "image.thumbnail", "input_file_id": str(uuid.uuid4())}
    before = db.execute("SELECT count(*) AS n FROM jobs").fetchone()
    response = client.post("/batches", json={"jobs": [CSV_JOB, bad]})
    assert response.status_code == 422
    assert "(jobs[1])" in response.json()["detail"]
    assert db.execute("SELECT count(*) AS n FROM jobs").fetchone() == before


def test_batch_idempotency(client: TestClient) -> None:
    body = {"jobs": [CSV_JOB]}
    first = client.post("/batches", json=body, headers={"Idempotency-Key": "b-1"})
    again = client.post("/batches", json=body, headers={"Idempotency-Key": "b-1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == first.json()


def test_huge_batch_is_422(client: TestClient) -> None:
    response = client.post("/batches", json={"jobs": [CSV_JOB] * 101})
    assert response.status_code == 422
    assert "at most 100 items" in response.text


# --- Listing ---


def test_list_filters_and_paginates(client: TestClient) -> None:
    ids = [submit(client, CSV_JOB).json()["id"] for _ in range(3)]
    thumb_file = upload(client, png_bytes(), "image/png")
    submit(client, {"type": "image.thumbnail", "input_file_id": thumb_file})

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"type": "data.csv_summary", "status": "queued", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/jobs", params=params).json()
        seen.extend(job["id"] for job in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_list_rejects_bad_filters_and_cursors(client: TestClient) -> None:
    assert client.get("/jobs", params={"status": "done"}).status_code == 422
    assert client.get("/jobs", params={"limit": 0}).status_code == 422
    response = client.get("/jobs", params={"cursor": "!!!"})
    assert response.status_code == 400
    assert "cursor is not valid" in response.json()["detail"]


# --- Files ---


def test_upload_streams_to_storage_with_hash(client: TestClient, settings: Settings) -> None:
    data = png_bytes()
    response = client.post(
        "/files", content=data, headers={"Content-Type": "image/png"}, params={"filename": "cat photo.png"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["size_bytes"], body["content_type"], body["filename"]) == (len(data), "image/png", "cat photo.png")
    stored = settings.STORAGE_PATH / "uploads" / body["id"]
    assert stored.read_bytes() == data


@pytest.mark.parametrize("filename", ["../../etc/passwd", "a/b.png", "..", "c:\\x.png", "bad\x00name"])
def test_path_like_filenames_are_400(client: TestClient, filename: str) -> None:
    response = client.post(
        "/files", content=b"x", headers={"Content-Type": "text/plain"}, params={"filename": filename}
    )
    assert response.status_code == 400
    assert "filename must be a plain name" in response.json()["detail"]


def test_oversized_upload_is_413_and_leaves_nothing(make_env: EnvFactory) -> None:
    settings = Settings(**make_env(MAX_UPLOAD_BYTES="1000"))  # pyright: ignore[reportArgumentType]
    with TestClient(create_app(settings)) as client:
        declared = client.post("/files", content=b"x" * 1001, headers={"Content-Type": "text/plain"})
        streamed = client.post("/files", content=iter([b"x" * 600, b"x" * 600]), headers={"Content-Type": "text/plain"})
    assert declared.status_code == streamed.status_code == 413
    assert "upload limit of 1000 bytes" in declared.json()["detail"]
    assert list((settings.STORAGE_PATH / "tmp").glob("*.part")) == []


def test_malformed_content_type_is_400(client: TestClient) -> None:
    response = client.post("/files", content=b"x", headers={"Content-Type": "no slash here"})
    assert response.status_code == 400


# --- Rate limiting ---


def test_rate_limit_returns_429_with_retry_after(make_env: EnvFactory) -> None:
    settings = Settings(**make_env(RATE_LIMIT_PER_SECOND="0.5", RATE_LIMIT_BURST="3"))  # pyright: ignore[reportArgumentType]
    with TestClient(create_app(settings), headers={"X-Client-Id": f"rl-{uuid.uuid4().hex[:8]}"}) as client:
        codes = [submit(client, CSV_JOB).status_code for _ in range(4)]
        limited = submit(client, CSV_JOB)
        other_client = client.post("/jobs", json=CSV_JOB, headers={"X-Client-Id": f"o-{uuid.uuid4().hex[:8]}"})
    assert codes == [202, 202, 202, 429]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    assert "rate limit of 0.5 requests/s (burst 3) exceeded" in limited.json()["detail"]
    assert other_client.status_code == 202


def test_concurrent_checks_share_one_script_call_and_each_takes_its_own_token(make_env: EnvFactory) -> None:
    settings = Settings(**make_env(RATE_LIMIT_PER_SECOND="0.5", RATE_LIMIT_BURST="3"))  # pyright: ignore[reportArgumentType]
    busy, quiet = f"busy-{uuid.uuid4().hex[:8]}", f"quiet-{uuid.uuid4().hex[:8]}"

    async def burst() -> list[Decision]:
        redis = async_client(settings)
        limiter = RateLimiter(redis, settings, CircuitBreaker())
        try:
            # Gathered checks land in one coalesced batch: the busy client's key appears five times in it.
            return await asyncio.gather(*(limiter.check(busy) for _ in range(5)), limiter.check(quiet))
        finally:
            await redis.aclose()

    decisions = asyncio.run(burst())
    assert [decision.allowed for decision in decisions] == [True, True, True, False, False, True]
    assert [decision.retry_after_seconds for decision in decisions[3:5]] == [2, 2]


def test_bad_client_id_is_422(client: TestClient) -> None:
    response = client.post("/jobs", json=CSV_JOB, headers={"X-Client-Id": "spaces are bad"})
    assert response.status_code == 422
    assert "x-client-id" in response.text


# --- For the web console (issue 19) ------------------------------------------------------------------------


def test_limits_tell_a_client_what_it_may_send(client: TestClient, settings: Settings) -> None:
    body = client.get("/limits").json()
    assert body["max_upload_bytes"] == settings.MAX_UPLOAD_BYTES
    assert body["max_batch_jobs"] == 100 and "data.csv_summary" in body["job_types"]


def test_a_result_is_downloadable_then_gone_when_it_expires(
    client: TestClient, worker: Any, settings: Settings
) -> None:
    job_id = client.post("/jobs", json={"type": "convert.csv_to_json", "params": {"csv": "a,b\n1,2\n"}}).json()["id"]
    assert client.get(f"/jobs/{job_id}/result").status_code == 404  # not finished yet
    drain(worker, lambda: job_status(client, job_id) == "succeeded")
    result = client.get(f"/jobs/{job_id}/result")
    assert result.status_code == 200 and result.headers["content-type"].startswith("application/json")
    assert result.json() == [{"a": "1", "b": "2"}]
    location = client.get(f"/jobs/{job_id}").json()["result"]["location"]
    (Path(settings.STORAGE_PATH) / location).unlink()
    gone = client.get(f"/jobs/{job_id}/result")
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
