"""The deployment hook against ECS's POST_TEST_TRAFFIC_SHIFT event, with Secrets Manager served by moto and the ALB
played by a local HTTP server: requests carrying the test header with the right token reach the new revision
(green), every other request reaches production (blue), as the listener's test rule and production rule route."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.deploy_hook import handler

EVENT = Path(__file__).parent / "events" / "ecs-hook-post-test-traffic-shift.json"
REGION = "us-east-1"
TOKEN = "t0k3n-only-the-hook-knows"
# path -> status of each revision; the green one also serves a path blue does not have.
BLUE = {"/health": 200}
GREEN = {"/health": 200, "/jobs/00000000-0000-0000-0000-000000000000": 404}


class FakeAlb:
    """The listener: the test rule (header match) forwards to green, the production rule to blue."""

    def __init__(self) -> None:
        self.green: Callable[[str], int] = lambda path: GREEN.get(path, 404)
        self.seen_tokens: list[str | None] = []
        alb = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                token = self.headers.get(handler.TEST_HEADER)
                alb.seen_tokens.append(token)
                status = alb.green(self.path) if token == TOKEN else BLUE.get(self.path, 404)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def alb() -> Iterator[FakeAlb]:
    fake = FakeAlb()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def token_secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(handler, "RETRY_SECONDS", 0.05)
    handler._secrets.cache_clear()
    with mock_aws():
        arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="jobs-prod-api-deploy-test-token", SecretString=TOKEN
        )["ARN"]
        monkeypatch.setenv("TEST_TOKEN_SECRET_ARN", arn)
        yield arn
    handler._secrets.cache_clear()


def hook_event(alb: FakeAlb, checks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    event = json.loads(EVENT.read_text())
    event["hookDetails"]["baseUrl"] = alb.url
    if checks is not None:
        event["hookDetails"]["checks"] = checks
    return event


def logged(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    records = [r for r in caplog.records if r.name == "deploy_hook"]
    assert len(records) == 1
    return json.loads(records[0].getMessage())


def test_passing_checks_let_the_deployment_go_on_and_are_logged(
    alb: FakeAlb, token_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="deploy_hook"):
        result = handler.handler(hook_event(alb), None)
    assert result == {"hookStatus": "SUCCEEDED"}
    assert alb.seen_tokens == [TOKEN, TOKEN]
    record = logged(caplog)
    assert record["stage"] == "POST_TEST_TRAFFIC_SHIFT"
    assert record["revision"].endswith("/01275892")
    assert [(c["path"], c["status"], c["passed"]) for c in record["checks"]] == [
        ("/health", 200, True),
        ("/jobs/00000000-0000-0000-0000-000000000000", 404, True),
    ]


def test_a_failed_check_rolls_the_deployment_back(
    alb: FakeAlb, token_secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    alb.green = lambda path: 500 if path == "/health" else GREEN.get(path, 404)
    with caplog.at_level(logging.INFO, logger="deploy_hook"):
        result = handler.handler(hook_event(alb), None)
    assert result == {"hookStatus": "FAILED"}
    record = logged(caplog)
    assert record["hookStatus"] == "FAILED"
    assert record["checks"][0] == {
        "path": "/health", "expected": 200, "status": 500, "seconds": record["checks"][0]["seconds"],
        "error": None, "passed": False,
    }  # fmt: skip


def test_checks_reach_the_new_revision_not_production(alb: FakeAlb, token_secret: str) -> None:
    # Production (blue) answers 200 on /ready; green does not have it. Passing here would mean the token is not sent.
    alb.green = lambda path: GREEN.get(path, 404)
    result = handler.handler(hook_event(alb, [{"path": "/ready", "status": 200}]), None)
    assert result == {"hookStatus": "FAILED"}


def test_waits_while_the_test_route_has_no_healthy_target_yet(alb: FakeAlb, token_secret: str) -> None:
    answers = iter([503, 502, 200])
    alb.green = lambda path: next(answers)
    result = handler.handler(hook_event(alb, [{"path": "/health", "status": 200}]), None)
    assert result == {"hookStatus": "SUCCEEDED"}
    assert len(alb.seen_tokens) == 3


def test_a_route_that_never_becomes_ready_fails(
    alb: FakeAlb, token_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("READY_TIMEOUT_SECONDS", "0.3")
    alb.green = lambda path: 503
    result = handler.handler(hook_event(alb, [{"path": "/health", "status": 200}]), None)
    assert result == {"hookStatus": "FAILED"}
    assert 2 <= len(alb.seen_tokens) <= 8


def test_an_unreachable_alb_fails(token_secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("READY_TIMEOUT_SECONDS", "0")
    event = json.loads(EVENT.read_text())
    event["hookDetails"]["baseUrl"] = "http://127.0.0.1:9"  # discard port: connection refused
    assert handler.handler(event, None) == {"hookStatus": "FAILED"}


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"checks": [{"path": "/health"}]}, "hookDetails.baseUrl: None"),
        ({"baseUrl": "ftp://x", "checks": [{"path": "/health"}]}, "hookDetails.baseUrl: 'ftp://x'"),
        ({"baseUrl": "http://x", "checks": []}, "hookDetails.checks: []"),
        ({"baseUrl": "http://x", "checks": [{"path": "health"}]}, "hookDetails.checks[0]"),
    ],
)
def test_unusable_hook_details_fail_the_deployment(
    token_secret: str, caplog: pytest.LogCaptureFixture, details: dict[str, Any], message: str
) -> None:
    event = json.loads(EVENT.read_text()) | {"hookDetails": details}
    with caplog.at_level(logging.INFO, logger="deploy_hook"):
        assert handler.handler(event, None) == {"hookStatus": "FAILED"}
    assert message in logged(caplog)["error"]
