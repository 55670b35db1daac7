"""Deployment hook: smoke-test a service's new revision through the ALB's test route before production traffic
moves to it, and roll the deployment back when a check fails.

Invoked by Amazon ECS as a lifecycle hook of a BLUE_GREEN, CANARY or LINEAR deployment (stage
POST_TEST_TRAFFIC_SHIFT: the new revision has 100 % of the test traffic and none of the production traffic). The
event, as ECS sends it:

    {"executionId": "...", "lifecycleStage": "POST_TEST_TRAFFIC_SHIFT", "resourceArn": "<service deployment ARN>",
     "executionDetails": {"serviceArn": ..., "targetServiceRevisionArn": ..., "testTrafficWeights": {...},
                          "productionTrafficWeights": {...}},
     "hookDetails": {"baseUrl": "https://<alb>:8443", "header": "X-Deployment-Test", "checks": [{"path", "status"}]}}

`hookDetails` is what the service's lifecycle hook configures (the program writes it). Every check is a GET of
`baseUrl + path` carrying the test header with the token from Secrets Manager (`TEST_TOKEN_SECRET_ARN`). `baseUrl` is
the ALB's test listener, which admits only the VPC's NAT gateway addresses: the function runs in the private
subnets. Its test rule forwards only requests with that header to the new revision's target group; anything else
gets the listener's 404. The function returns what ECS reads:

- `{"hookStatus": "SUCCEEDED"}`: every check answered the expected status; the deployment goes on.
- `{"hookStatus": "FAILED"}`: a check failed; ECS rolls back to the last successful revision.

While the test route is not serving the new revision yet (the ALB answers 502/503/504, or the connection fails,
as while targets register) the function retries every `RETRY_SECONDS` within one invocation, up to
`READY_TIMEOUT_SECONDS` (env, default 120; the function's timeout is longer), then fails: a revision that never
becomes reachable is rolled back. Retrying inside the invocation keeps the function stateless (no IN_PROGRESS
round trips whose state would have to live somewhere).

Results are logged as one JSON line per invocation (stage, revision, each check's status and time). Runs on the
Lambda Python runtime with only the standard library and the runtime's boto3.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import boto3

TEST_HEADER = "X-Deployment-Test"
REQUEST_TIMEOUT_SECONDS = 5.0
# The ALB's answers while no healthy target is registered behind the test rule yet.
NOT_READY = frozenset({502, 503, 504})
RETRY_SECONDS = 5.0
DEFAULT_READY_TIMEOUT_SECONDS = 120.0

logger = logging.getLogger("deploy_hook")
logger.setLevel(logging.INFO)


@dataclass(frozen=True)
class Check:
    path: str
    status: int


@dataclass(frozen=True)
class Result:
    path: str
    expected: int
    status: int | None
    seconds: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == self.expected


class BadHookDetails(ValueError):
    """The hook's configuration cannot be used: nothing can be tested, so the deployment must not go on."""


def parse_checks(details: Mapping[str, Any]) -> tuple[str, str, list[Check]]:
    base_url = details.get("baseUrl")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise BadHookDetails(f"hookDetails.baseUrl: {base_url!r}; allowed: an http(s):// URL")
    header = details.get("header", TEST_HEADER)
    raw = details.get("checks")
    if not isinstance(raw, list) or not raw:
        raise BadHookDetails(f"hookDetails.checks: {raw!r}; allowed: a non-empty list of {{path, status}}")
    checks = []
    for index, item in enumerate(raw):
        path, status = (item.get("path"), item.get("status", 200)) if isinstance(item, Mapping) else (None, None)
        if not isinstance(path, str) or not path.startswith("/") or not isinstance(status, int):
            raise BadHookDetails(f"hookDetails.checks[{index}]: {item!r}; allowed: {{path: /..., status: int}}")
        checks.append(Check(path, status))
    return base_url.rstrip("/"), str(header), checks


@cache
def tls_context() -> ssl.SSLContext:
    """The certificate chain must verify, but not the host name: the hook reaches the ALB by its AWS DNS name,
    which the listener's certificate (issued for the service's own domain) does not cover."""
    context = ssl.create_default_context()
    context.check_hostname = False
    return context


def run_check(base_url: str, header: str, token: str, check: Check) -> Result:
    request = urllib.request.Request(base_url + check.path, headers={header: token, "User-Agent": "deploy-hook"})  # noqa: S310 (http(s) only, checked above)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS, context=tls_context()) as response:  # noqa: S310
            status = response.status
        error = None
    except urllib.error.HTTPError as exc:
        status, error = exc.code, None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        status, error = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    return Result(check.path, check.status, status, round(time.monotonic() - started, 3), error)


def not_ready(results: list[Result]) -> bool:
    """Some checks failed, and only the way a route without a healthy target yet fails."""
    failed = [r for r in results if not r.passed]
    return bool(failed) and all(r.status in NOT_READY or r.status is None for r in failed)


def run_checks(base_url: str, header: str, token: str, checks: list[Check], timeout: float) -> list[Result]:
    """Every check; again after RETRY_SECONDS while the route is not ready, until `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        results = [run_check(base_url, header, token, check) for check in checks]
        if not not_ready(results) or time.monotonic() + RETRY_SECONDS > deadline:
            return results
        time.sleep(RETRY_SECONDS)


@cache
def _secrets() -> Any:
    return boto3.client("secretsmanager")


def test_token() -> str:
    return _secrets().get_secret_value(SecretId=os.environ["TEST_TOKEN_SECRET_ARN"])["SecretString"]


def handler(event: Mapping[str, Any], _context: object) -> dict[str, str]:
    details = event.get("hookDetails") or {}
    execution = event.get("executionDetails") or {}
    record: dict[str, Any] = {
        "stage": event.get("lifecycleStage"),
        "service": execution.get("serviceArn"),
        "revision": execution.get("targetServiceRevisionArn"),
    }
    try:
        base_url, header, checks = parse_checks(details)
    except BadHookDetails as exc:
        logger.error(json.dumps({**record, "hookStatus": "FAILED", "error": str(exc)}))
        return {"hookStatus": "FAILED"}
    timeout = float(os.environ.get("READY_TIMEOUT_SECONDS", DEFAULT_READY_TIMEOUT_SECONDS))
    results = run_checks(base_url, header, test_token(), checks, timeout)
    status = "SUCCEEDED" if all(r.passed for r in results) else "FAILED"
    record |= {"hookStatus": status, "checks": [asdict(r) | {"passed": r.passed} for r in results]}
    (logger.info if status == "SUCCEEDED" else logger.error)(json.dumps(record))
    return {"hookStatus": status}
