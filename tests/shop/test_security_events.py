"""The shop's security lines match their alarms' metric filters: a failed login and a refused token are
authentication failures, a throttled login is a rate-limit refusal (the users service, real PostgreSQL and Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.shop.users.app import create_app
from services.shop.users.settings import UsersSettings
from tests.services.test_security_events import only_signal, security_lines

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def client(make_service_settings: Any) -> Iterator[TestClient]:
    settings = make_service_settings("users", UsersSettings, schema="users_security", LOGIN_MAX_FAILURES=2)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_a_wrong_password_is_an_authentication_failure_without_the_email(client: TestClient) -> None:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    assert client.post("/users", json={"email": email, "password": PASSWORD, "name": "Ada"}).status_code == 201
    with security_lines("users") as lines:
        refused = client.post("/auth/token", json={"email": email, "password": "wrong password entirely"})
    assert refused.status_code == 401
    assert only_signal(lines) == "auth-failures"
    assert email not in lines[0] and "wrong password" not in lines[0]
    assert json.loads(lines[0])["reason"] == "invalid_credentials"


def test_a_throttled_login_is_a_rate_limit_refusal(client: TestClient) -> None:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    with security_lines("users") as lines:
        answers = [client.post("/auth/token", json={"email": email, "password": "not it at all"}) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [401, 401, 429]
    assert [only_signal([line]) for line in lines] == ["auth-failures", "auth-failures", "rate-limit-storms"]


def test_a_forged_token_is_an_authentication_failure_without_the_token(client: TestClient) -> None:
    forged = "eyJhbGciOiJFZERTQSIsImtpZCI6Im5vcGUifQ.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    with security_lines("users") as lines:
        refused = client.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert refused.status_code == 401
    assert only_signal(lines) == "auth-failures"
    assert forged not in lines[0]
    assert json.loads(lines[0])["route"] == "/users/me"
