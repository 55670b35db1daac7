"""Property-based fuzzing of the products API from its own OpenAPI schema (schemathesis), over a seeded catalog:
no input may produce a 5xx, and responses must match the documented status codes, content types and schemas."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.shop.products import seed
from services.shop.products.app import create_app
from tests.shop.serving import fuzz, served
from tests.shop.test_products import products_settings


@pytest.fixture(scope="module")
def products_schema(make_service_settings: Any) -> Iterator[Any]:
    service_settings = products_settings(make_service_settings)
    asyncio.run(seed.seed(service_settings, 60, rng_seed=1))
    with served(create_app(service_settings)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


def _fuzz(operation: Any) -> None:
    # positive_data_acceptance is excluded: schema-valid ids name products and orders that do not exist (422
    # unknown_product, 404), and a schema-valid cursor is one this service never issued (400), which no
    # schema can express. Every other check runs (no 5xx, documented status codes, content types and response
    # schemas, negative data rejected).
    fuzz(operation, timeout=10, excluded_checks=[positive_data_acceptance])


@pytest.mark.timeout(240)
def test_products_conforms_to_its_schema_and_never_fails(products_schema: Any) -> None:
    operations = [result.ok() for result in products_schema.get_all_operations()]
    paths = sorted(f"{operation.method.upper()} {operation.path}" for operation in operations)
    assert paths == [
        "DELETE /reservations/{order_id}",
        "GET /health",
        "GET /products",
        "GET /products/{product_id}",
        "GET /ready",
        "GET /reservations/{order_id}",
        "POST /reservations",
        "POST /reservations/{order_id}/commit",
    ]
    for operation in operations:
        _fuzz(operation)
