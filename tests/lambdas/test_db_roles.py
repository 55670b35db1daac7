"""The database role bootstrap handler against the machine's PostgreSQL, with Secrets Manager served by moto.

The server stands in for RDS: a throwaway database owned by a non-superuser "master" role with CREATEROLE (what
the RDS master user is, and like it able to grant `rds_iam`), and `rds_iam` (created on the shared server if
absent; RDS has it built in). The master's credentials are only in the moto secret, as RDS keeps them. The roles:
the job platform's app role and two services' roles (the shop's per-service roles). Locally the server trusts
loopback connections, so the services' pools reach a role through DB_AUTH=password with a password a test sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from psycopg import errors, sql

from lambdas.db_roles import handler
from services.common.db import async_pool, connect, sync_pool
from services.common.migrate import apply_migrations, migration_files
from services.common.settings import Settings
from tests.services.helpers import ADMIN_DSN

REGION = "us-east-1"


@dataclass(frozen=True)
class Server:
    database: str
    master: str
    master_password: str
    app: str
    services: tuple[str, str]
    secret_arn: str
    secrets: Any

    @property
    def roles(self) -> tuple[str, ...]:
        return (self.app, *self.services)


def admin(query: sql.Composable | str, params: tuple[Any, ...] = (), dbname: str = "postgres") -> list[tuple[Any, ...]]:
    with psycopg.connect(ADMIN_DSN.replace("dbname=postgres", f"dbname={dbname}"), autocommit=True) as conn:
        cursor = conn.execute(query, params)  # pyright: ignore[reportArgumentType] - test-built statements
        return cursor.fetchall() if cursor.description else []


def ensure_rds_iam_role() -> None:
    # Shared with whoever else needs it, never dropped: RDS servers always have it.
    with contextlib.suppress(errors.DuplicateObject, errors.UniqueViolation):
        admin("CREATE ROLE rds_iam NOLOGIN")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    tag = uuid.uuid4().hex[:10]
    database, master, app = f"cp_dbroles_{tag}", f"cp_master_{tag}", f"cp_app_{tag}"
    services = (f"cp_users_{tag}", f"cp_orders_{tag}")
    password = f"master-{uuid.uuid4().hex}"
    ensure_rds_iam_role()
    admin(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(sql.Identifier(master), sql.Literal(password)))
    admin(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(master)))
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    handler._secrets_client.cache_clear()
    try:
        with mock_aws():
            secrets = boto3.client("secretsmanager", region_name=REGION)
            secret = json.dumps({"username": master, "password": password})
            arn = secrets.create_secret(Name=f"rds!db-{tag}", SecretString=secret)["ARN"]
            env = {"DB_HOST": "127.0.0.1", "DB_PORT": "5432", "DB_NAME": database, "MASTER_SECRET_ARN": arn,
                   "ROLES": ",".join((app, *services)), "DB_SSLMODE": "disable"}  # fmt: skip
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            yield Server(database, master, password, app, services, arn, secrets)
    finally:
        handler._secrets_client.cache_clear()
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        for role in (app, *services, master):
            admin(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def role_state(server: Server, role: str) -> dict[str, Any]:
    (login, superuser, createrole, password_set), *_ = admin(
        "SELECT rolcanlogin, rolsuper, rolcreaterole, rolpassword IS NOT NULL FROM pg_authid WHERE rolname = %s",
        (role,),
    )
    iam = admin("SELECT pg_has_role(%s, 'rds_iam', 'MEMBER')", (role,))[0][0]
    settings = admin(
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
        "WHERE d.datname = %s AND s.setrole = %s::regrole",
        (server.database, role),
    )
    schema = admin(
        "SELECT pg_get_userbyid(nspowner), nspacl IS NULL FROM pg_namespace WHERE nspname = %s",
        (role,),
        dbname=server.database,
    )
    return {
        "login": login,
        "superuser": superuser,
        "createrole": createrole,
        "password": password_set,
        "rds_iam": iam,
        "settings": settings[0][0] if settings else None,
        "schema owner, no grants": schema[0] if schema else None,
    }


def expected_changes(role: str, database: str) -> list[str]:
    return [
        f"created role {role} with LOGIN",
        f"granted rds_iam to {role}",
        f"created schema {role} owned by {role}",
        f"set search_path of {role} in {database} to {role}",
    ]


def memberships_of(role: str) -> list[str]:
    return [
        name
        for (name,) in admin(
            "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = %s::regrole",
            (role,),
        )
    ]


def test_first_run_creates_every_role_for_iam_auth_and_the_second_changes_nothing(server: Server) -> None:
    first = handler.handler({}, None)
    assert first == {
        "database": server.database,
        "changes": {role: expected_changes(role, server.database) for role in server.roles},
    }
    for role in server.roles:
        assert role_state(server, role) == {
            "login": True,
            "superuser": False,
            "createrole": False,
            "password": False,
            "rds_iam": True,
            "settings": [f"search_path={role}"],
            "schema owner, no grants": (role, True),
        }
    assert handler.handler({}, None)["changes"] == {role: [] for role in server.roles}
    # Giving each schema to its role took a membership; none is left behind (through it, rds_iam).
    assert memberships_of(server.master) == []


def test_an_event_ensures_only_the_roles_it_names_and_only_configured_ones(server: Server) -> None:
    users, orders = server.services
    assert handler.handler({"roles": [users]}, None)["changes"] == {users: expected_changes(users, server.database)}
    assert not admin("SELECT 1 FROM pg_roles WHERE rolname = %s", (orders,))
    with pytest.raises(RuntimeError, match=r"event roles \['someone_else'\] are not configured; allowed: "):
        handler.handler({"roles": ["someone_else"]}, None)
    with pytest.raises(RuntimeError, match=r"event roles=\[\]; allowed: a non-empty list of "):
        handler.handler({"roles": []}, None)


def test_an_existing_role_without_login_is_repaired_not_recreated(server: Server) -> None:
    admin(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(server.app)))
    changes = handler.handler({"roles": [server.app]}, None)["changes"][server.app]
    assert changes[0] == f"allowed {server.app} to log in"
    assert changes[1:] == expected_changes(server.app, server.database)[1:]
    assert role_state(server, server.app)["login"] is True


def test_a_schema_the_master_created_is_handed_to_its_role(server: Server) -> None:
    """The previous version created the schema as the master user and granted USAGE, CREATE to the role."""
    users = server.services[0]
    admin(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(users)))
    with psycopg.connect(
        host="127.0.0.1", dbname=server.database, user=server.master, password=server.master_password, autocommit=True
    ) as master:
        master.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(users)))
    changes = handler.handler({"roles": [users]}, None)["changes"][users]
    assert f"gave schema {users} (owned by {server.master}) to {users}" in changes
    assert role_state(server, users)["schema owner, no grants"] == (users, True)
    assert memberships_of(server.master) == []


def test_the_master_secret_is_read_at_every_invocation(server: Server) -> None:
    handler.handler({}, None)
    rotated = f"rotated-{uuid.uuid4().hex}"
    admin(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(server.master), sql.Literal(rotated)))
    server.secrets.put_secret_value(
        SecretId=server.secret_arn, SecretString=json.dumps({"username": server.master, "password": rotated})
    )
    assert handler.handler({}, None)["changes"] == {role: [] for role in server.roles}
    server.secrets.delete_secret(SecretId=server.secret_arn, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        handler.handler({}, None)


def login_as(server: Server, role: str) -> psycopg.Connection[Any]:
    password = f"test-only-{uuid.uuid4().hex}"
    admin(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    return psycopg.connect(host="127.0.0.1", dbname=server.database, user=role, password=password, autocommit=True)


def test_no_service_reads_or_writes_another_services_schema(server: Server) -> None:
    handler.handler({}, None)
    users, orders = server.services
    with login_as(server, users) as conn:
        conn.execute("CREATE TABLE accounts (id int)")
        assert conn.execute("SELECT current_schema()").fetchone() == (users,)
    with login_as(server, orders) as conn:
        for statement in (
            sql.SQL("SELECT * FROM {}.accounts").format(sql.Identifier(users)),
            sql.SQL("CREATE TABLE {}.stolen (id int)").format(sql.Identifier(users)),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(users), sql.Identifier(orders)),
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_app_role_runs_the_migrations_and_the_services_pools_connect_as_it(server: Server) -> None:
    handler.handler({"roles": [server.app]}, None)
    password = f"test-only-{uuid.uuid4().hex}"
    admin(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(server.app), sql.Literal(password)))
    settings = Settings(DB_NAME=server.database, DB_USER=server.app, DB_PASSWORD=password, DB_AUTH="password")  # pyright: ignore[reportArgumentType]

    assert apply_migrations(settings) == [path.name for path in migration_files()]
    assert apply_migrations(settings) == []
    owners = admin(
        "SELECT DISTINCT schemaname, tableowner FROM pg_tables WHERE tablename IN ('jobs', 'schema_migrations')",
        dbname=server.database,
    )
    assert owners == [(server.app, server.app)]

    pool = sync_pool(settings)
    pool.open(wait=True)
    try:
        with pool.connection() as conn:
            row = conn.execute("SELECT current_user AS who, current_schema() AS schema").fetchone()
            assert row == {"who": server.app, "schema": server.app}
            assert conn.execute("SELECT count(*) AS n FROM jobs").fetchone() == {"n": 0}
    finally:
        pool.close()

    async def through_the_api_pool() -> Any:
        api_pool = async_pool(settings)
        await api_pool.open(wait=True)
        try:
            async with api_pool.connection() as conn:
                return await (await conn.execute("SELECT current_user AS who")).fetchone()
        finally:
            await api_pool.close()

    # A private loop: asyncio.run would leave the main thread without one, which later Pulumi mock runs need.
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(through_the_api_pool()) == {"who": server.app}
    finally:
        loop.close()
    # PostgreSQL 15+: PUBLIC may not create in `public`, and the app role got nothing there.
    with connect(settings) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE public.not_here (id int)")


def test_the_master_user_is_never_made_a_service_role(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLES", f"{server.app},{server.master}")
    with pytest.raises(RuntimeError, match=f"ROLES names '{server.master}', the master user"):
        handler.handler({}, None)
    assert not admin("SELECT 1 FROM pg_auth_members WHERE member = %s::regrole AND roleid = 'rds_iam'::regrole",
                     (server.master,))  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DB_HOST": ""}, "db_roles is misconfigured: DB_HOST not set"),
        ({"ROLES": ""}, "db_roles is misconfigured: ROLES not set"),
        ({"ROLES": "app,App"}, "ROLES='App' must be lowercase letters, digits and _"),
        ({"ROLES": "app,rds_iam"}, "ROLES='rds_iam' must be lowercase letters, digits and _, start with a letter"),
        ({"ROLES": "app,orders,app"}, "ROLES='app,orders,app' names a role twice; allowed: each role once"),
        ({"DB_NAME": "x; DROP ROLE y"}, "DB_NAME='x; DROP ROLE y' must be lowercase letters"),
        ({"DB_PORT": "54x"}, "DB_PORT='54x' must be a port number, 1-65535"),
        ({"DB_SSLMODE": "prefer"}, "DB_SSLMODE='prefer' is not one of require, disable"),
    ],
)
def test_bad_configuration_is_refused_before_connecting(env: dict[str, str], message: str) -> None:
    valid = {"DB_HOST": "h", "DB_PORT": "5432", "DB_NAME": "app", "MASTER_SECRET_ARN": "arn:s", "ROLES": "app,users"}
    with pytest.raises(RuntimeError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        handler.Settings.from_env({**valid, **env})
