"""Fixtures of the task sandbox: the plan of every stack (once per session), the local services standing in for AWS
(PostgreSQL, Redis and fauxqs from tests/services/conftest.py), and the bridges that let sandboxes reach them."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from services.common.settings import Settings
from services.fauxqs import Fauxqs
from tests.plans import planned as stack_plan
from tests.sandbox.sandbox import Endpoint, HostBridges, ensure_tools
from tests.sandbox.stacks import STACKS
from tests.sandbox.task import Container, planned_containers

# Session fixtures shared with the service tests: one fauxqs, one tag that names (and cleans) Redis keys.
from tests.services.conftest import fauxqs_server, session_tag  # noqa: F401
from tests.services.helpers import ADMIN_DSN


@pytest.fixture(scope="session")
def planned() -> dict[str, list[Container]]:
    """The container definitions of every stack, planned once (a plan takes a second or more)."""
    return {stack: planned_containers(stack_plan(stack)) for stack in STACKS}


@pytest.fixture(scope="session")
def sandbox_tools() -> None:
    reason = ensure_tools()
    if reason and os.environ.get("PLATFORM_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"PLATFORM_REQUIRE_SANDBOX=1 but the task sandbox cannot run: {reason}")
    if reason:
        pytest.skip(reason)


def admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(statement)


@pytest.fixture(scope="session")
def app_role(session_tag: str) -> Iterator[tuple[str, str]]:  # noqa: F811 - the imported fixture
    """A throwaway login role that is not a superuser, like the services' role in RDS; (name, password)."""
    name, password = f"cp_sbx_{session_tag}", secrets.token_urlsafe(16)
    admin_execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
    try:
        yield name, password
    finally:
        admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def bridges(fauxqs_server: Fauxqs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostBridges]:  # noqa: F811
    """Unix sockets to the local PostgreSQL, Redis and fauxqs, mounted into every sandbox."""
    defaults = Settings()
    postgres = conninfo_to_dict(ADMIN_DSN)
    endpoints = [
        Endpoint("postgres", str(postgres["host"]), int(postgres["port"] or 5432)),
        Endpoint("redis", defaults.REDIS_HOST, defaults.REDIS_PORT),
        Endpoint("sqs", "127.0.0.1", fauxqs_server.port),
    ]
    # Short path: a Unix socket path must stay under 108 bytes.
    with HostBridges(tmp_path_factory.mktemp(f"b{uuid.uuid4().hex[:6]}", numbered=False), endpoints) as running:
        yield running
