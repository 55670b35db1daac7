"""Fixtures for the shop's tests: real PostgreSQL, Redis and fauxqs, shared by the whole session.

- `shop_database`: a throwaway database `shop_test_<tag>`, dropped (with the roles made in it) at the end.
- `make_service_settings(service, settings_cls=ShopSettings, *, schema=None, **overrides)`: makes the service's
  role (`<service>_<tag>`, LOGIN, trust auth) and its schema (default: the service name) in that database, as the
  local runner does, and returns settings for it: DB_USER/DB_SCHEMA set, a Redis prefix of the session, small
  pools, WARNING logs, the session's signing key file. Pass `schema=` for a fresh schema per test.
- `redis_prefix`: `shop-test-<tag>:`, every key under it deleted at the end.
- `fauxqs_server`: a local SQS endpoint (services.fauxqs) on a free port, for the whole session.
- `signing_key_file` / `token_signer`: an Ed25519 key file and the signer that uses it (users' settings).
- `settings_env(settings)`: the environment variables that reproduce `settings` (to start a service process).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import redis
from psycopg import sql
from pydantic import SecretStr

from services.common.redis_client import delete_prefix
from services.fauxqs import FAUXQS_ENTRY, Fauxqs, npm_ci
from services.shop.common.auth import TokenSigner, write_signing_key_file
from services.shop.common.database import ensure_service_role
from services.shop.common.settings import ShopSettings
from tests.services.helpers import ADMIN_DSN, throwaway_database

SettingsT = TypeVar("SettingsT", bound=ShopSettings)
ServiceSettingsFactory = Callable[..., Any]


@pytest.fixture(scope="session")
def shop_tag() -> str:
    """A short random tag naming this session's database, roles and Redis prefix."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def shop_database(shop_tag: str) -> Iterator[str]:
    try:
        with throwaway_database(f"shop_test_{shop_tag}") as name:
            yield name
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            roles = admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", (f"%\\_{shop_tag}",))
            for (role,) in roles.fetchall():
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="session")
def redis_prefix(shop_tag: str) -> Iterator[str]:
    prefix = f"shop-test-{shop_tag}:"
    yield prefix
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        delete_prefix(client, prefix)
    finally:
        client.close()


@pytest.fixture(scope="session")
def fauxqs_server() -> Iterator[Fauxqs]:
    if not FAUXQS_ENTRY.exists() and (npm_ci() != 0 or not FAUXQS_ENTRY.exists()):
        pytest.fail("fauxqs is not installed and `npm ci` failed; run: uv run python -m services.fauxqs install")
    with Fauxqs() as server:
        yield server


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_signing_key_file(tmp_path_factory.mktemp("keys") / "jwt-signing.key")


@pytest.fixture(scope="session")
def token_signer(signing_key_file: Path) -> TokenSigner:
    """The signer the users service would build from the session's settings (default issuer and audience)."""
    return TokenSigner.from_settings(ShopSettings(SERVICE_NAME="users", JWT_SIGNING_KEY_FILE=signing_key_file))


@pytest.fixture(scope="session")
def make_service_settings(
    shop_database: str, shop_tag: str, redis_prefix: str, signing_key_file: Path
) -> ServiceSettingsFactory:
    """`make_service_settings("orders", OrdersSettings, schema="orders_t1", PRODUCTS_URL=...)` -> OrdersSettings."""

    def make(
        service: str, settings_cls: type[SettingsT] = ShopSettings, *, schema: str | None = None, **overrides: Any
    ) -> SettingsT:
        role = f"{service}_{shop_tag}"
        schema = schema or service
        ensure_service_role(ADMIN_DSN, shop_database, role, schema)
        values: dict[str, Any] = {
            "SERVICE_NAME": service,
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DB_HOST": "127.0.0.1",
            "DB_PORT": 5432,
            "DB_NAME": shop_database,
            "DB_USER": role,
            "DB_SCHEMA": schema,
            "DB_POOL_MIN": 1,
            "DB_POOL_MAX": 4,
            "DB_POOL_TIMEOUT_SECONDS": 2,
            "REDIS_KEY_PREFIX": f"{redis_prefix}{schema}:",
            "JWT_SIGNING_KEY_FILE": signing_key_file,
        }
        return settings_cls(**(values | overrides))

    return make


def settings_env(settings: ShopSettings) -> dict[str, str]:
    """Environment variables that reproduce `settings` (for `python -m services.shop.<service>` in a test)."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            value = json.dumps(value)  # pydantic-settings reads complex fields as JSON
        env[name] = str(value)
    return env
