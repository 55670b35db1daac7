"""Each shop service's PostgreSQL: its own role, its own schema, one pool per process, its own migrations.

Connections are made by services/common/db.py (the same credential path as the job platform: with `DB_AUTH=iam`
a fresh RDS IAM token for every new connection) with `search_path` pinned to the service's schema as a
connection option, so unqualified table names always mean the service's own tables.

Connection budget: every process holds at most DB_POOL_MAX connections, plus one for its migrations while it
starts. During a rolling deployment ECS runs up to twice the desired tasks (deployment_maximum_percent=200), so
    services x tasks_per_service x 2 x (DB_POOL_MAX + 1) + RESERVED_CONNECTIONS <= max_connections
`pool_budget()` computes the largest DB_POOL_MAX that fits: with the platform's max_connections of 200
(components/database.py), five services at two tasks each get DB_POOL_MAX=8.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

from services.common.db import async_pool, connect
from services.shop.common.settings import ShopSettings

log = logging.getLogger(__name__)

# The platform's PostgreSQL max_connections (components/database.py; the seed's 200).
DEFAULT_MAX_CONNECTIONS = 200
SHOP_SERVICES = 5
# superuser_reserved_connections (3) + RDS's own (2) + the db_roles Lambda, an operator's psql, and headroom.
RESERVED_CONNECTIONS = 15
# ECS starts the new tasks before it stops the old ones (deployment_maximum_percent=200 in components/ecs_task.py).
DEPLOYMENT_SURGE = 2
# Two-key advisory locks: this class id (ASCII "shop") plus hashtext(schema) keeps services' migrations apart.
_MIGRATION_LOCK_CLASS = 0x73686F70

ServicePool = AsyncConnectionPool[AsyncConnection[DictRow]]
# (name, SQL) of a migration shipped in code rather than as a file, e.g. idempotency.IDEMPOTENCY_MIGRATION.
SharedMigration = tuple[str, str]


def pool_budget(
    services: int = SHOP_SERVICES,
    tasks_per_service: int = 2,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    *,
    reserved: int = RESERVED_CONNECTIONS,
    surge: int = DEPLOYMENT_SURGE,
) -> int:
    """The largest DB_POOL_MAX for which every task of every service, during a deployment, fits max_connections."""
    if services < 1 or tasks_per_service < 1 or surge < 1:
        raise ValueError(
            f"services={services}, tasks_per_service={tasks_per_service} and surge={surge} must each be at least 1"
        )
    processes = services * tasks_per_service * surge
    per_process = (max_connections - reserved) // processes - 1  # one connection for migrations at start-up
    if per_process < 1:
        raise ValueError(
            f"{processes} processes cannot share max_connections={max_connections} (reserved={reserved}); "
            "use fewer tasks or a larger instance"
        )
    return per_process


@contextlib.asynccontextmanager
async def unflushed_transaction(conn: AsyncConnection[Any]) -> AsyncIterator[None]:
    """A transaction whose COMMIT does not wait for its WAL to reach the disk (`synchronous_commit` off for it only).

    Visibility, locks and ordering are unchanged; a database crash may lose such a commit (never half of it, and
    never one that a later synchronous commit followed, since the WAL is flushed in order). Only for a write
    whose loss the caller recovers from: an idempotent saga step redone, an idempotency claim re-made by the
    retry. A flush took 0.4-7 ms here depending on the disk's other work (docs/shop.md, "Load"); a checkout made
    11 of them."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        # Inside a transaction SET LOCAL would leave the enclosing transaction's commit unflushed too.
        raise RuntimeError("unflushed_transaction needs a connection outside any transaction")
    # BEGIN and SET in one round trip (a query without parameters may hold several statements). Not
    # conn.transaction(), which sends BEGIN on its own, nor its pipeline mode, which polls a writable socket while
    # it waits for the server: under load that cost more CPU than the round trips it saves.
    await conn.execute("BEGIN; SET LOCAL synchronous_commit TO off")
    try:
        yield
    except BaseException:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):  # the pool rolls back a connection returned mid-transaction
                await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


def search_path_option(schema: str) -> str:
    """libpq `options` that pin a connection's search_path to `schema` (one the settings validated)."""
    return f"-c search_path={schema}"


def service_pool(settings: ShopSettings) -> ServicePool:
    """An unopened pool of the service's own role with search_path pinned to its schema."""
    return async_pool(
        settings,
        name=f"shop-{settings.SERVICE_NAME}",
        application_name=f"shop-{settings.SERVICE_NAME}",
        options=search_path_option(settings.DB_SCHEMA),
    )


async def open_service_pool(settings: ShopSettings) -> ServicePool:
    """The pool, opened, with its DB_POOL_MIN connections made (a dead database fails start-up, not a request)."""
    pool = service_pool(settings)
    await pool.open()
    try:
        await pool.wait(timeout=settings.DB_POOL_TIMEOUT_SECONDS * 2)
    except BaseException:
        await pool.close()
        raise
    return pool


def migration_files(migrations_dir: Path | None) -> list[Path]:
    if migrations_dir is None:
        return []
    if not migrations_dir.is_dir():
        raise FileNotFoundError(f"migrations directory {migrations_dir} does not exist")
    return sorted(migrations_dir.glob("*.sql"))


def apply_service_migrations(
    settings: ShopSettings, migrations_dir: Path | None, *, shared: Sequence[SharedMigration] = ()
) -> list[str]:
    """Apply the `shared` migrations, then the `*.sql` files of `migrations_dir` in name order, each once (recorded
    in `<schema>.schema_migrations`) and in its own transaction, as the service's role; return the names applied
    by this call.

    Every task calls this at start-up: an advisory lock keyed by the schema serialises concurrent start-ups of
    one service without making the other services wait."""
    migrations = [*shared, *((path.name, path.read_text()) for path in migration_files(migrations_dir))]
    schema = sql.Identifier(settings.DB_SCHEMA)
    applied: list[str] = []
    with connect(settings, options=search_path_option(settings.DB_SCHEMA)) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (_MIGRATION_LOCK_CLASS, settings.DB_SCHEMA))
        try:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.schema_migrations"
                    " (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(schema)
            )
            done = {
                row["name"] for row in conn.execute(sql.SQL("SELECT name FROM {}.schema_migrations").format(schema))
            }
            for name, text in migrations:
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL(text))  # pyright: ignore[reportArgumentType] - packaged SQL
                    conn.execute(sql.SQL("INSERT INTO {}.schema_migrations (name) VALUES (%s)").format(schema), (name,))
                log.info("applied migration", extra={"migration": name, "schema": settings.DB_SCHEMA})
                applied.append(name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_MIGRATION_LOCK_CLASS, settings.DB_SCHEMA))
    return applied


def ensure_service_role(admin_conninfo: str, database: str, role: str, schema: str) -> None:
    """For the local runner and the tests (trust auth; in AWS the db_roles Lambda does this): make `role` a login
    role owning `schema` in `database`, and leave `public` to no one, so a service reaches only its own tables.

    Idempotent, and safe to run concurrently: an advisory lock serialises runs in one database, and a role made
    meanwhile from another database (roles are cluster-wide) counts as made."""
    conninfo = make_conninfo(admin_conninfo, dbname=database)
    role_id, schema_id, database_id = sql.Identifier(role), sql.Identifier(schema), sql.Identifier(database)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s, hashtext('roles'))", (_MIGRATION_LOCK_CLASS,))
        try:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                _create_role(conn, role_id)
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {}").format(schema_id, role_id))
            conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema_id, role_id))
            conn.execute(sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC").format(schema_id))
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database_id, role_id))
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext('roles'))", (_MIGRATION_LOCK_CLASS,))


def _create_role(conn: psycopg.Connection[Any], role: sql.Identifier) -> None:
    # Created meanwhile by a run in another database: as good as created here.
    with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
