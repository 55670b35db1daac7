"""Database roles: make sure the services' own PostgreSQL roles exist and can use IAM authentication.

Invoked by the Pulumi program (`aws.lambda_.Invocation`, one per role) after the RDS instance is created or replaced,
and safe to invoke by hand at any time (`aws lambda invoke --function-name <app>-<env>-db-roles out.json`): every step
looks before it changes anything, so a second run changes nothing. The event may name the roles to ensure,
`{"roles": ["orders"]}`, each one of the configured ROLES; without it (`{}`) every configured role is ensured.

It reads the RDS-managed master secret at invocation time, so the weekly rotation of the master password never
matters, connects as the master user over TLS and, for each role:

- creates it with LOGIN and no password, and grants it `rds_iam` (RDS then accepts only IAM tokens for it);
- gives it a schema of its own name that it owns (`AUTHORIZATION`), as its search_path in DB_NAME: PostgreSQL 15+ no
  longer lets every role create in `public`, the services' migrations create their tables as the role, and no other
  role is granted anything on the schema, so no service reads another's tables.

Handing a schema to another owner needs membership in that role, which would make the master user a member of
`rds_iam` through it (and RDS would then refuse its password): the membership is granted and revoked inside the
same transaction, so no other session ever sees it.

Runs on the Lambda Python runtime with the runtime's boto3 and pg8000 (pure Python, packaged with this file).
Configuration: `DB_HOST`, `DB_PORT`, `DB_NAME`, `MASTER_SECRET_ARN`, `ROLES` (comma-separated), `DB_SSLMODE`
(`require`, or `disable` for a local server without TLS).
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
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
    roles: tuple[str, ...]
    sslmode: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the function's configuration; a bad value is a deployment error and raises."""
        required = ("DB_HOST", "DB_PORT", "DB_NAME", "MASTER_SECRET_ARN", "ROLES")
        missing = [key for key in required if not env.get(key)]
        if missing:
            raise RuntimeError(f"db_roles is misconfigured: {', '.join(missing)} not set")
        check_identifier("DB_NAME", env["DB_NAME"])
        roles = tuple(role.strip() for role in env["ROLES"].split(","))
        for role in roles:
            check_identifier("ROLES", role)
        if len(set(roles)) != len(roles):
            raise RuntimeError(f"ROLES={env['ROLES']!r} names a role twice; allowed: each role once")
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
            roles=roles,
            sslmode=sslmode,
        )

    def requested_roles(self, event: Any) -> tuple[str, ...]:
        """The roles an event asks for (`{"roles": [...]}`), each a configured one; all of them without a list."""
        requested = event.get("roles") if isinstance(event, Mapping) else None
        if requested is None:
            return self.roles
        if not isinstance(requested, list) or not requested:
            raise RuntimeError(f"event roles={requested!r}; allowed: a non-empty list of {', '.join(self.roles)}")
        unknown = [role for role in requested if role not in self.roles]
        if unknown:
            raise RuntimeError(f"event roles {unknown!r} are not configured; allowed: {', '.join(self.roles)}")
        return tuple(dict.fromkeys(requested))


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


def ensure_role(conn: pg8000.native.Connection, role: str, database: str) -> list[str]:
    """Bring `role` to the state a service needs; return what had to change (empty when nothing did)."""
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
    owner = _value(
        conn,
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = :schema",
        schema=role,
    )
    if owner == role:
        return []
    with _acting_for(conn, role):
        if owner is None:
            conn.run(f"CREATE SCHEMA {identifier(role)} AUTHORIZATION {identifier(role)}")
            return [f"created schema {role} owned by {role}"]
        conn.run(f"ALTER SCHEMA {identifier(role)} OWNER TO {identifier(role)}")
        return [f"gave schema {role} (owned by {owner}) to {role}"]


@contextmanager
def _acting_for(conn: pg8000.native.Connection, role: str) -> Iterator[None]:
    """One transaction in which the master user is a member of `role`, as giving it a schema requires.

    The membership is revoked before the commit: a master user that is a member of `rds_iam`, even through another
    role, can no longer log in with its password, so no other session may ever see it.
    """
    master = identifier(_value(conn, "SELECT current_user"))
    already = _value(conn, "SELECT pg_has_role(current_user, :role, 'MEMBER')", role=role)
    conn.run("BEGIN")
    try:
        if not already:
            # PostgreSQL 16+ separates SET (needed to give an object to a role) from INHERIT; 15 has neither option.
            options = " WITH INHERIT FALSE, SET TRUE" if _server_version(conn) >= 160000 else ""
            conn.run(f"GRANT {identifier(role)} TO {master}{options}")
        yield
        if not already:
            conn.run(f"REVOKE {identifier(role)} FROM {master}")
        conn.run("COMMIT")
    except BaseException:
        conn.run("ROLLBACK")
        raise


def _server_version(conn: pg8000.native.Connection) -> int:
    return int(_value(conn, "SELECT current_setting('server_version_num')"))


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
    roles = settings.requested_roles(event)
    user, password = master_credentials(settings.master_secret_arn)
    if user in roles:
        # rds_iam would turn off password logins for the master user itself.
        raise RuntimeError(f"ROLES names {user!r}, the master user; every service needs a role of its own")
    changes: dict[str, list[str]] = {}
    with closing(connect(settings, user, password)) as conn:
        for role in roles:
            changes[role] = ensure_role(conn, role, settings.database)
    logger.info(json.dumps({"message": "roles ensured", "database": settings.database, "changes": changes}))
    return {"database": settings.database, "changes": changes}
