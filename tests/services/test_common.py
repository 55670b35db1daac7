"""Settings, the job state machine, request validation, processors and storage (no servers needed)."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import orjson
import pytest
from pydantic import TypeAdapter, ValidationError

from services.common.jobs import STATUSES, TRANSITIONS, InvalidTransitionError, JobRequest, check_transition
from services.common.processors import JobInputError, run_job
from services.common.settings import Settings
from services.common.sqs import parse_job_message
from services.common.storage import Storage
from tests.services.helpers import png_bytes

REQUEST = TypeAdapter(JobRequest)


# --- Settings ---


def test_local_defaults_need_no_secrets() -> None:
    settings = Settings(APP_ENV="local")
    assert settings.DB_SSLMODE == "prefer"
    assert settings.PORT == 8080
    assert settings.MAX_RECEIVES == 5
    assert settings.VISIBILITY_TIMEOUT_SECONDS == 120
    assert settings.SHUTDOWN_TIMEOUT_SECONDS == 100


def test_cloud_env_requires_iam_auth_tls_and_no_local_endpoint() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(APP_ENV="prod", DB_SSLMODE="prefer", SQS_ENDPOINT_URL="http://127.0.0.1:1")
    message = str(error.value)
    assert "DB_AUTH='password' is not allowed when APP_ENV='prod'; use iam" in message
    assert "DB_SSLMODE='prefer' is not allowed" in message
    assert "SQS_ENDPOINT_URL is for local runs" in message


def test_cloud_env_accepts_complete_secure_settings() -> None:
    settings = Settings(APP_ENV="prod", DB_AUTH="iam", DB_SSLMODE="require")
    assert settings.DB_PASSWORD is None


def test_pool_minimum_cannot_exceed_the_maximum() -> None:
    with pytest.raises(
        ValidationError, match="DB_POOL_MIN=5 exceeds DB_POOL_MAX=4; it must be between 0 and DB_POOL_MAX"
    ):
        Settings(DB_POOL_MIN=5, DB_POOL_MAX=4)
    assert Settings(DB_POOL_MIN=4, DB_POOL_MAX=4).pool_min == 4
    assert Settings(DB_POOL_MAX=1).pool_min == 1  # the default never exceeds a small maximum
    assert Settings().pool_min == 2


def test_missing_queue_urls_are_named() -> None:
    with pytest.raises(ValueError, match="QUEUE_URL_HIGH, QUEUE_URL_NORMAL, QUEUE_URL_LOW"):
        _ = Settings(APP_ENV="local").queue_urls


# --- State machine ---


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_transitions_follow_the_table(current: str, target: str) -> None:
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(InvalidTransitionError, match=f"cannot go from '{current}' to '{target}'"):
            check_transition(current, target)


def test_final_statuses_have_no_exit() -> None:
    assert TRANSITIONS["succeeded"] == TRANSITIONS["failed"] == frozenset()


# --- Requests ---


def test_thumbnail_requires_an_input_file() -> None:
    with pytest.raises(ValidationError, match=r"`image\.thumbnail`\.input_file_id\n  Field required"):
        REQUEST.validate_python({"type": "image.thumbnail"})


@pytest.mark.parametrize("job_type", ["data.csv_summary", "convert.csv_to_json"])
def test_csv_jobs_need_exactly_one_input(job_type: str) -> None:
    with pytest.raises(ValidationError, match=r"exactly one of input_file_id or params\.csv"):
        REQUEST.validate_python({"type": job_type})
    with pytest.raises(ValidationError, match=r"exactly one of input_file_id or params\.csv"):
        REQUEST.validate_python({"type": job_type, "input_file_id": str(uuid.uuid4()), "params": {"csv": "a\n1"}})


def test_unknown_job_type_names_the_allowed_ones() -> None:
    with pytest.raises(ValidationError, match=r"'image\.thumbnail', 'data\.csv_summary'"):
        REQUEST.validate_python({"type": "video.transcode"})


def test_unknown_params_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        REQUEST.validate_python({"type": "data.csv_summary", "params": {"csv": "a\n1", "delimiter": ";"}})


# --- Processors ---


def _no_file() -> bytes:
    raise AssertionError("inline jobs must not read storage")


def test_thumbnail_fits_the_box_and_keeps_aspect() -> None:
    output = run_job("image.thumbnail", {"width": 32, "height": 32, "format": "jpeg"}, lambda: png_bytes(64, 48))
    assert output.extension == "jpeg"
    assert output.summary == {"source_width": 64, "source_height": 48, "width": 32, "height": 24, "format": "jpeg"}
    assert output.data.startswith(b"\xff\xd8")


def test_thumbnail_rejects_non_images() -> None:
    with pytest.raises(JobInputError, match="not a readable image"):
        run_job("image.thumbnail", {}, lambda: b"definitely not an image")


def test_csv_summary_statistics() -> None:
    output = run_job("data.csv_summary", {"csv": "n,name\n1,a\n2,b\n3,\n6,a\n"}, _no_file)
    report = orjson.loads(output.data)
    assert report["rows"] == 4
    assert report["columns"]["n"] == {
        "count": 4,
        "missing": 0,
        "kind": "numeric",
        "min": 1.0,
        "max": 6.0,
        "mean": 3.0,
        "median": 2.5,
        "stdev": pytest.approx(2.160246899),
    }
    assert report["columns"]["name"] == {"count": 3, "missing": 1, "kind": "text", "distinct": 2}


def test_csv_json_round_trip() -> None:
    to_json = run_job("convert.csv_to_json", {"csv": "a,b\n1,x\n2,y\n"}, _no_file)
    assert orjson.loads(to_json.data) == [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}]
    back = run_job("convert.json_to_csv", {"json_text": to_json.data.decode()}, _no_file)
    assert back.data == b"a,b\n1,x\n2,y\n"
    assert back.summary == {"records": 2, "columns": 2}


@pytest.mark.parametrize(
    ("job_type", "params", "message"),
    [
        ("data.csv_summary", {"csv": "a,b\n1\n"}, "line 2 has 1 fields, the header has 2"),
        ("data.csv_summary", {"csv": ""}, "needs a header row"),
        ("convert.json_to_csv", {"json_text": "{not json"}, "not valid JSON"),
        ("convert.json_to_csv", {"json_text": '{"a": 1}'}, "array of objects"),
        ("convert.json_to_csv", {"json_text": '[{"a": {"b": 1}}]'}, "field 'a' holds a nested value"),
    ],
)
def test_bad_inputs_fail_with_a_reason(job_type: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(JobInputError, match=message):
        run_job(job_type, params, _no_file)


def test_file_input_must_be_utf8() -> None:
    with pytest.raises(JobInputError, match="not UTF-8"):
        run_job("data.csv_summary", {}, lambda: b"\xff\xfe\x00bad")


# --- Storage and messages ---


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.ensure_layout()
    storage.write_atomic("results/x.json", b"{}")
    storage.write_atomic("results/x.json", b"[]")
    assert (tmp_path / "results/x.json").read_bytes() == b"[]"
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("body", ["not json", "[]", '{"job_id": 5}', '{"job_id": "../../etc"}'])
def test_malformed_messages_are_poison(body: str) -> None:
    assert parse_job_message(body) is None


def test_job_message_ids_are_normalised() -> None:
    job_id = uuid.uuid4()
    assert parse_job_message(orjson.dumps({"job_id": str(job_id).upper()}).decode()) == str(job_id)
