"""Property-based fuzzing of the users API from its own OpenAPI schema (schemathesis): no input may produce a 5xx,
and responses must match the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.shop.users.app import create_app
from services.shop.users.settings import UsersSettings
from tests.shop.serving import fuzz, served


@pytest.fixture(scope="module")
def users_schema(make_service_settings: Any) -> Iterator[Any]:
    service_settings = make_service_settings("users", UsersSettings, schema="users_fuzz")
    with served(create_app(service_settings)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def _fuzz(operation: Any) -> None:
    # positive_data_acceptance is excluded: the password policy (no common passwords, at least 5 different
    # characters, not the email) goes beyond what a schema can say, so schema-valid sign-ups can rightly get a
    # 422 (weak_password), and a generated email may already be taken (409). Every other check runs.
    fuzz(operation, timeout=10, excluded_checks=[positive_data_acceptance])


@pytest.mark.timeout(240)
def test_users_conforms_to_its_schema_and_never_fails(users_schema: Any) -> None:
    operations = [result.ok() for result in users_schema.get_all_operations()]
    paths = sorted(f"{operation.method.upper()} {operation.path}" for operation in operations)
    assert paths == [
        "GET /.well-known/jwks.json",
        "GET /health",
        "GET /ready",
        "GET /users/me",
        "POST /auth/token",
        "POST /users",
    ]
    for operation in operations:
        _fuzz(operation)
