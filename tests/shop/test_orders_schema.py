"""Property-based fuzzing of the orders API from its own OpenAPI schema (schemathesis), with a real customer's
token and the real users, products and payments behind it: no input may produce a 5xx, and responses must match
the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.fauxqs import Fauxqs
from services.shop.orders.app import create_app
from tests.shop.conftest import ServiceSettingsFactory
from tests.shop.serving import fuzz, served
from tests.shop.test_orders_api import Customer, shop_stack


@pytest.fixture(scope="module")
def orders_schema(
    make_service_settings: ServiceSettingsFactory, shop_database: str, fauxqs_server: Fauxqs
) -> Iterator[tuple[Any, Customer]]:
    with shop_stack(make_service_settings, shop_database, fauxqs_server) as shop:
        customer = shop.customer()
        with served(create_app(shop.orders_settings())) as base_url:
            yield schemathesis.openapi.from_url(f"{base_url}/openapi.json"), customer


def _fuzz(operation: Any, customer: Customer) -> None:
    # positive_data_acceptance is excluded: a schema-valid order names random product ids, which products does
    # not have (422 unknown_product), and a cursor must be one this API issued (422 invalid_cursor). Every other
    # check runs, with a real customer's token so requests get past authentication.
    fuzz(operation, headers=customer.headers, timeout=15, excluded_checks=[positive_data_acceptance])


@pytest.mark.timeout(300)
def test_orders_conforms_to_its_schema_and_never_fails(orders_schema: tuple[Any, Customer]) -> None:
    schema, customer = orders_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = sorted(f"{operation.method.upper()} {operation.path}" for operation in operations)
    assert paths == ["GET /health", "GET /orders", "GET /orders/{order_id}", "GET /ready", "POST /orders"]
    for operation in operations:
        _fuzz(operation, customer)
