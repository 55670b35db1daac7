"""Database roles: make sure the services' own PostgreSQL role exists and can use IAM authentication.

Invoked by the Pulumi program (`aws.lambda_.Invocation`) after the RDS instance is created or replaced, and safe to
invoke by hand at any time (`aws lambda invoke --function-name <app>-<env>-db-roles out.json`): every step looks
before it changes anything, so a second run changes nothing. The event is ignored.

It reads the RDS-managed master secret at invocation time, so the weekly rotation of the master password never
matters, connects as the master user over TLS and, for the role APP_USER:

- creates it with LOGIN and no password, and grants it `rds_iam` (RDS then accepts only IAM tokens for it);
- gives it a schema of its own name, with USAGE and CREATE, as its search_path in DB_NAME: PostgreSQL 15+ no longer
  lets every role create in `public`, and the services' migrations create their tables as this role.

Runs on the Lambda Python runtime with the runtime's boto3 and pg8000 (pure Python, packaged with this file).
Configuration: `DB_HOST`, `DB_PORT`, `DB_NAME`, `MASTER_SECRET_ARN`, `APP_USER`, `DB_SSLMODE` (`require`, or
`disable` for a local server without TLS).
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
import pg8000.native
from pg8000.native import identifier

# What DatabaseArgs accepts for role and database names; anything else is refused before it reaches SQL.
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_PREFIXES = ("pg_", "rds")
SSLMODES = ("require", "disable")
IAM_ROLE = "rds_iam"
CONNECT_TIMEOUT_SECONDS = 10

logger = logging.getLogger("db_roles")
logger.setLevel(logging.INFO)


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    database: str
    master_secret_arn: str
    app_user: str
    sslmode: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the function's configuration; a bad value is a deployment error and raises."""
        required = ("DB_HOST", "DB_PORT", "DB_NAME", "MASTER_SECRET_ARN", "APP_USER")
        missing = [key for key in required if not env.get(key)]
        if missing:
            raise RuntimeError(f"db_roles is misconfigured: {', '.join(missing)} not set")
        for key in ("DB_NAME", "APP_USER"):
            check_identifier(key, env[key])
        if not env["DB_PORT"].isdigit() or not 1 <= int(env["DB_PORT"]) <= 65535:
            raise RuntimeError(f"DB_PORT={env['DB_PORT']!r} must be a port number, 1-65535")
        sslmode = env.get("DB_SSLMODE", "require")
        if sslmode not in SSLMODES:
            raise RuntimeError(f"DB_SSLMODE={sslmode!r} is not one of {', '.join(SSLMODES)}")
        return cls(
            host=env["DB_HOST"],
            port=int(env["DB_PORT"]),
            database=env["DB_NAME"],
            master_secret_arn=env["MASTER_SECRET_ARN"],
            app_user=env["APP_USER"],
            sslmode=sslmode,
        )


def check_identifier(label: str, value: str) -> None:
    if not IDENTIFIER.match(value) or value.startswith(RESERVED_PREFIXES):
        raise RuntimeError(
            f"{label}={value!r} must be lowercase letters, digits and _, start with a letter, at most 63 characters, "
            f"and not start with {' or '.join(RESERVED_PREFIXES)}"
        )


@cache
def _secrets_client() -> Any:
    return boto3.client("secretsmanager")


def master_credentials(secret_arn: str) -> tuple[str, str]:
    """The master user name and its current password, from the RDS-managed secret."""
    secret = json.loads(_secrets_client().get_secret_value(SecretId=secret_arn)["SecretString"])
    return secret["username"], secret["password"]


def _ssl_context(sslmode: str) -> ssl.SSLContext | None:
    if sslmode == "disable":
        return None
    context = ssl.create_default_context()
    # `require`, as the services connect: encrypted, certificate not checked (the RDS CA bundle is not packaged).
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(settings: Settings, user: str, password: str) -> pg8000.native.Connection:
    return pg8000.native.Connection(
        user,
        host=settings.host,
        port=settings.port,
        database=settings.database,
        password=password,
        ssl_context=_ssl_context(settings.sslmode),
        timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="db-roles",
    )


def ensure_app_role(conn: pg8000.native.Connection, role: str, database: str) -> list[str]:
    """Bring `role` to the state the services need; return what had to change (empty when nothing did)."""
    check_identifier("role", role)
    check_identifier("database", database)
    changes: list[str] = []
    can_login = _value(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = :role", role=role)
    if can_login is None:
        conn.run(f"CREATE ROLE {identifier(role)} LOGIN")
        changes.append(f"created role {role} with LOGIN")
    elif not can_login:
        conn.run(f"ALTER ROLE {identifier(role)} LOGIN")
        changes.append(f"allowed {role} to log in")
    if not _is_member(conn, role, IAM_ROLE):
        conn.run(f"GRANT {IAM_ROLE} TO {identifier(role)}")
        changes.append(f"granted {IAM_ROLE} to {role}")
    changes += _ensure_own_schema(conn, role)
    changes += _ensure_search_path(conn, role, database)
    return changes


def _value(conn: pg8000.native.Connection, query: str, **params: Any) -> Any:
    """The first column of the first row, or None when there is no row."""
    rows = conn.run(query, **params)
    return rows[0][0] if rows else None


def _is_member(conn: pg8000.native.Connection, member: str, group: str) -> bool:
    query = (
        "SELECT true FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
        " WHERE g.rolname = :group AND u.rolname = :member"
    )
    return bool(_value(conn, query, group=group, member=member))


def _ensure_own_schema(conn: pg8000.native.Connection, role: str) -> list[str]:
    changes: list[str] = []
    if not _value(conn, "SELECT true FROM pg_namespace WHERE nspname = :schema", schema=role):
        conn.run(f"CREATE SCHEMA {identifier(role)}")
        changes.append(f"created schema {role}")
    granted = _value(
        conn,
        "SELECT has_schema_privilege(:role, :schema, 'USAGE') AND has_schema_privilege(:role, :schema, 'CREATE')",
        role=role,
        schema=role,
    )
    if not granted:
        conn.run(f"GRANT USAGE, CREATE ON SCHEMA {identifier(role)} TO {identifier(role)}")
        changes.append(f"granted USAGE, CREATE on schema {role} to {role}")
    return changes


def _ensure_search_path(conn: pg8000.native.Connection, role: str, database: str) -> list[str]:
    wanted = f"search_path={role}"
    settings = _value(
        conn,
        "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
        " JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = :database AND r.rolname = :role",
        database=database,
        role=role,
    )
    if wanted in (settings or []):
        return []
    conn.run(f"ALTER ROLE {identifier(role)} IN DATABASE {identifier(database)} SET search_path TO {identifier(role)}")
    return [f"set search_path of {role} in {database} to {role}"]


def handler(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_env(os.environ)
    user, password = master_credentials(settings.master_secret_arn)
    if user == settings.app_user:
        # rds_iam would turn off password logins for the master user itself.
        raise RuntimeError(f"APP_USER={settings.app_user!r} is the master user; the services need a role of their own")
    with closing(connect(settings, user, password)) as conn:
        changes = ensure_app_role(conn, settings.app_user, settings.database)
    logger.info(json.dumps({"message": "app role ensured", "role": settings.app_user, "changes": changes}))
    return {"role": settings.app_user, "database": settings.database, "changes": changes}
