"""Property-based fuzzing of the payments API from its own OpenAPI schema (schemathesis): no input may produce a
5xx, and responses must match the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.shop.payments.app import create_app
from services.shop.payments.settings import PaymentsSettings
from tests.shop.serving import fuzz, served


@pytest.fixture(scope="module")
def payments_schema(make_service_settings: Any) -> Iterator[Any]:
    service_settings = make_service_settings(
        "payments", PaymentsSettings, schema="payments_fuzz", PROVIDER_LATENCY_MS=0, PROVIDER_DECLINE_RATE=0.2
    )
    with served(create_app(service_settings)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def _fuzz(operation: Any) -> None:
    # positive_data_acceptance is excluded: generated requests reuse Idempotency-Keys with other bodies, which
    # is rightly a 422 (idempotency_key_reused) that no schema can express. Every other check runs (no 5xx,
    # documented status codes, content types and response schemas, negative data rejected).
    fuzz(operation, timeout=10, excluded_checks=[positive_data_acceptance])


@pytest.mark.timeout(240)
def test_payments_conforms_to_its_schema_and_never_fails(payments_schema: Any) -> None:
    operations = [result.ok() for result in payments_schema.get_all_operations()]
    paths = sorted(f"{operation.method.upper()} {operation.path}" for operation in operations)
    assert paths == [
        "GET /health",
        "GET /payments",
        "GET /payments/{payment_id}",
        "GET /ready",
        "POST /payments",
        "POST /payments/{payment_id}/refund",
    ]
    for operation in operations:
        _fuzz(operation)
