"""PostgreSQL connections and bounded pools (one pool per process; see the connection budget in
docs/services.md: tasks x DB_POOL_MAX must stay under the server's max_connections).

Every connection, pooled or not, takes its credential from `connection_password` at the moment it is opened:
with `DB_AUTH=iam` a fresh RDS IAM authentication token (made by `rds_auth_token`), with `DB_AUTH=password`
`DB_PASSWORD` (if any). RDS checks a token only when a connection is opened, and a token is valid for 15 minutes,
so open connections outlive their token and new ones never reuse an old one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

import boto3
from psycopg import AsyncConnection, Connection
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool
from pydantic import SecretStr

# psycopg_pool retries a failed connection with exponential backoff (1, 2, 4, 8, 16 s...) for `reconnect_timeout`
# (default 300 s): after a 20 s failover its next attempt came 8-9 s after the new primary was up (measured,
# docs/stress.md). Giving an attempt up after a few seconds keeps the gap short: the next checkout starts a
# fresh one at once.
RECONNECT_TIMEOUT_SECONDS = 4.0


class DatabaseSettings(Protocol):
    """The DB_* part of a settings class (services.common.settings.Settings, the shop's ShopSettings)."""

    @property
    def APP_ENV(self) -> str: ...
    @property
    def AWS_REGION(self) -> str: ...
    @property
    def DB_HOST(self) -> str: ...
    @property
    def DB_PORT(self) -> int: ...
    @property
    def DB_NAME(self) -> str: ...
    @property
    def DB_USER(self) -> str: ...
    @property
    def DB_AUTH(self) -> str: ...
    @property
    def DB_PASSWORD(self) -> SecretStr | None: ...
    @property
    def DB_SSLMODE(self) -> str: ...
    @property
    def DB_POOL_MAX(self) -> int: ...
    @property
    def DB_POOL_TIMEOUT_SECONDS(self) -> float: ...
    @property
    def pool_min(self) -> int: ...


def conninfo(
    settings: DatabaseSettings,
    dbname: str | None = None,
    *,
    application_name: str | None = None,
    options: str | None = None,
) -> str:
    """Everything about a connection except its credential (`connection_password` supplies that per connection).

    `options` is libpq's per-connection server settings (for example `-c search_path=orders`)."""
    extra = {"options": options} if options else {}
    return make_conninfo(
        host=settings.DB_HOST,
        port=settings.DB_PORT,
        dbname=dbname or settings.DB_NAME,
        user=settings.DB_USER,
        sslmode=settings.DB_SSLMODE,
        connect_timeout=5,
        application_name=application_name or f"cp-{settings.APP_ENV}",
        # Dead peers (failover, NAT timeouts) must surface as errors, not hung requests.
        keepalives=1,
        keepalives_idle=30,
        **extra,
    )


def rds_auth_token(settings: DatabaseSettings) -> str:
    """A new IAM authentication token for DB_USER at DB_HOST:DB_PORT, signed with the task role's credentials.

    The one place tokens are made. Signing is local (no AWS call); the token is a presigned `rds-db:connect`
    request that RDS accepts as the password for 15 minutes.
    """
    return _rds_client(settings.AWS_REGION).generate_db_auth_token(
        DBHostname=settings.DB_HOST, Port=settings.DB_PORT, DBUsername=settings.DB_USER, Region=settings.AWS_REGION
    )


@cache
def _rds_client(region: str) -> Any:
    # One client per process: its credentials (the task role's) refresh themselves before they expire.
    return boto3.client("rds", region_name=region)


def connection_password(settings: DatabaseSettings) -> str | None:
    """The credential for a connection about to be opened."""
    if settings.DB_AUTH == "iam":
        return rds_auth_token(settings)
    return settings.DB_PASSWORD.get_secret_value() if settings.DB_PASSWORD else None


def connect(
    settings: DatabaseSettings, dbname: str | None = None, *, options: str | None = None
) -> Connection[DictRow]:
    """One connection outside the pools (migrations, set-up), with the same credential path as the pools."""
    return Connection[DictRow].connect(
        conninfo(settings, dbname, options=options),
        autocommit=True,
        row_factory=dict_row,
        password=connection_password(settings),
    )


def _connection_kwargs(settings: DatabaseSettings) -> Callable[[], dict[str, Any]]:
    # psycopg_pool >= 3.3 calls a callable `kwargs` for every new connection, so each gets a fresh credential.
    def kwargs() -> dict[str, Any]:
        return {"autocommit": True, "row_factory": dict_row, "password": connection_password(settings)}

    return kwargs


def async_pool(
    settings: DatabaseSettings,
    *,
    name: str = "api",
    application_name: str | None = None,
    options: str | None = None,
) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    """An unopened pool; `name` names it in psycopg_pool's logs, the other keywords go to `conninfo`."""
    sync_kwargs = _connection_kwargs(settings)

    async def kwargs() -> dict[str, Any]:
        # Off the event loop: a credential refresh (the ECS credentials endpoint) is blocking I/O.
        return await asyncio.to_thread(sync_kwargs)

    return AsyncConnectionPool(
        conninfo(settings, application_name=application_name, options=options),
        connection_class=AsyncConnection[DictRow],
        kwargs=kwargs,
        min_size=settings.pool_min,
        max_size=settings.DB_POOL_MAX,
        timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        open=False,
        name=name,
    )


def sync_pool(settings: DatabaseSettings) -> ConnectionPool[Connection[DictRow]]:
    return ConnectionPool(
        conninfo(settings),
        connection_class=Connection[DictRow],
        kwargs=_connection_kwargs(settings),
        min_size=settings.pool_min,
        max_size=settings.DB_POOL_MAX,
        timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        reconnect_timeout=RECONNECT_TIMEOUT_SECONDS,
        open=False,
        name="worker",
    )
