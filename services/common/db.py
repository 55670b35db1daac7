"""PostgreSQL connection settings and bounded pools (one pool per process; see the connection budget in
docs/services.md: tasks x DB_POOL_MAX must stay under the server's max_connections)."""

from __future__ import annotations

from psycopg import AsyncConnection, Connection
from psycopg.conninfo import make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from services.common.settings import Settings


def conninfo(settings: Settings, dbname: str | None = None) -> str:
    password = settings.DB_PASSWORD.get_secret_value() if settings.DB_PASSWORD else None
    return make_conninfo(
        host=settings.DB_HOST,
        port=settings.DB_PORT,
        dbname=dbname or settings.DB_NAME,
        user=settings.DB_USER,
        password=password,
        sslmode=settings.DB_SSLMODE,
        connect_timeout=5,
        application_name=f"cp-{settings.APP_ENV}",
        # Dead peers (failover, NAT timeouts) must surface as errors, not hung requests.
        keepalives=1,
        keepalives_idle=30,
    )


def async_pool(settings: Settings) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
    return AsyncConnectionPool(
        conninfo(settings),
        connection_class=AsyncConnection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row},
        min_size=settings.pool_min,
        max_size=settings.DB_POOL_MAX,
        timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        open=False,
        name="api",
    )


def sync_pool(settings: Settings) -> ConnectionPool[Connection[DictRow]]:
    return ConnectionPool(
        conninfo(settings),
        connection_class=Connection[DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row},
        min_size=settings.pool_min,
        max_size=settings.DB_POOL_MAX,
        timeout=settings.DB_POOL_TIMEOUT_SECONDS,
        open=False,
        name="worker",
    )
