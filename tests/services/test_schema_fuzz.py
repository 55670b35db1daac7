"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): no input may produce a
5xx, and responses must match the documented status codes, content types and schemas. Bounded:
a few examples per operation, no deadline, so the whole run stays within a few seconds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from services.api.app import create_app
from services.common.settings import Settings
from services.fauxqs import free_port
from tests.services.helpers import wait_until


@pytest.fixture
def api_schema(settings: Settings) -> Iterator[Any]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="uvicorn to start")
    try:
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _fuzz(operation: Any) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=list(HealthCheck),  # pyright: ignore[reportArgumentType]
        derandomize=True,
    )
    def run(case: Any) -> None:
        # positive_data_acceptance is excluded: "exactly one of input_file_id or params.csv" is a cross-field
        # rule the schema does not express, so schema-valid bodies can rightly get a 422. Every other check
        # (no 5xx, documented status codes, content types, response schemas, negative data rejected) runs.
        case.call_and_validate(timeout=10, excluded_checks=[positive_data_acceptance])

    run()


@pytest.mark.timeout(150)
def test_api_conforms_to_its_schema_and_never_fails(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 10  # health, ready, limits, files, jobs (4), a job's result, batches
    for operation in operations:
        # An SSE stream only ends at a final status, which a fuzzed job never reaches here.
        if operation.path.endswith("/events"):
            continue
        _fuzz(operation)
