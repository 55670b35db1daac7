"""The lean `POST /jobs` path: it answers well-formed submissions itself and hands anything doubtful to the
FastAPI route (whose error responses tests/services/test_api.py checks through this same path)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services.api.fast_submit import FastJobSubmit, _parse, _sized_json  # pyright: ignore[reportPrivateUsage]

CSV_JOB = {"type": "data.csv_summary", "params": {"csv": "a,b\n1,2\n"}}
SCOPE: Scope = {"type": "http", "client": ("10.0.0.7", 5000), "headers": []}
VALID_BODY = b'{"type":"data.csv_summary","params":{"csv":"a"}}'
JSON_HEADERS = {b"content-type": b"application/json", b"content-length": b"10"}


async def _must_not_be_called(scope: Scope, receive: Receive, send: Send) -> None:
    raise AssertionError("the FastAPI route was used for a well-formed submission")


def test_well_formed_submissions_skip_the_fastapi_route(client: TestClient) -> None:
    app = client.app
    assert isinstance(app, FastAPI)
    lean = app.router.routes[0]
    assert isinstance(lean, Route) and isinstance(lean.app, FastJobSubmit)
    lean.app._fallback = _must_not_be_called  # pyright: ignore[reportPrivateUsage]

    created = client.post("/jobs", json=CSV_JOB, headers={"Idempotency-Key": "lean-1"})
    replayed = client.post("/jobs", json=CSV_JOB, headers={"Idempotency-Key": "lean-1"})
    conflict = client.post("/jobs", json=CSV_JOB | {"priority": "high"}, headers={"Idempotency-Key": "lean-1"})

    assert created.status_code == 202 and created.headers["location"] == f"/jobs/{created.json()['id']}"
    assert replayed.status_code == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.json() == created.json()
    assert conflict.status_code == 409 and "already used" in conflict.json()["detail"]
    assert app.openapi()["paths"]["/jobs"]["post"]["responses"]["202"]


def test_a_valid_body_is_parsed_like_the_model() -> None:
    submission = _parse(SCOPE, {b"idempotency-key": b"k-1"}, b'{"type":"data.csv_summary","params":{"csv":"a\\n1"}}')
    assert submission is not None
    assert (submission.client, submission.key) == ("ip:10.0.0.7", "k-1")
    assert submission.job.model_dump(mode="json")["priority"] == "normal"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b'{"type": '),
        ({}, b'{"type":"video.transcode"}'),
        ({}, b'{"type":"data.csv_summary","params":{"csv":NaN}}'),
        ({b"x-client-id": b"has space"}, b"{}"),
        ({b"idempotency-key": b"k 1"}, VALID_BODY),
        ({b"x-client-id": b"ok\n"}, VALID_BODY),
    ],
)
def test_doubtful_requests_go_to_the_fastapi_route(headers: dict[bytes, bytes], body: bytes) -> None:
    assert _parse(SCOPE, headers, body) is None


@pytest.mark.parametrize(
    ("headers", "lean"),
    [
        (JSON_HEADERS, True),
        (JSON_HEADERS | {b"content-type": b"Application/JSON; charset=utf-8"}, True),
        (JSON_HEADERS | {b"content-type": b"text/plain"}, False),
        (JSON_HEADERS | {b"content-type": b"application/merge-patch+json"}, False),
        ({b"content-type": b"application/json"}, False),  # chunked: no Content-Length
    ],
)
def test_only_sized_json_bodies_are_read_by_the_lean_path(headers: dict[bytes, Any], lean: bool) -> None:
    assert _sized_json(headers) is lean
