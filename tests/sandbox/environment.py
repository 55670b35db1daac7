"""The one table that turns a planned container environment into the one the sandbox runs with.

ECS gives a container its task definition's `environment` and `secrets` (both arrive as environment variables).
Every name the plan gives a container must have a row here, in the right column (plain `env`, or `secret` through
ECS `secrets`): a new variable, or a secret that became plain text, fails the sandbox test until someone decides here
what it means on this machine. Rows with `local` are variables the plan does not give, which this machine needs in
their place (a password instead of the IAM token provider, the local SQS endpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from tests.sandbox.task import Container

Source = Literal["env", "secret", "local"]


@dataclass(frozen=True)
class LocalServices:
    """What stands in for AWS on this machine, for one stack."""

    postgres_host: str
    postgres_port: int
    database: str
    db_user: str
    db_password: str
    redis_host: str
    redis_port: int
    redis_key_prefix: str
    sqs_endpoint_url: str
    queue_urls: Mapping[str, str]
    """QUEUE_URL_HIGH/NORMAL/LOW and DLQ_URL of fresh local queues."""


@dataclass(frozen=True)
class Variable:
    source: Source
    """How the task receives it: plain `env`, ECS `secret`, or `local` (never planned: only this machine's)."""
    value: Callable[[LocalServices, str], str]
    """(local services, the planned value or "") -> the value in the sandbox."""


def planned(_: LocalServices, value: str) -> str:
    return value


def queue(name: str) -> Callable[[LocalServices, str], str]:
    return lambda local, _: local.queue_urls[name]


VARIABLES: Mapping[str, Variable] = {
    # Process. The cloud APP_ENVs refuse a password and a local SQS endpoint, so the run is `local`.
    "APP_ENV": Variable("env", lambda local, _: "local"),
    "LOG_LEVEL": Variable("env", planned),
    "AWS_REGION": Variable("env", planned),
    "PORT": Variable("env", planned),
    "API_WORKERS": Variable("env", planned),
    # PostgreSQL: the local server, a throwaway database owned by a throwaway role (not a superuser, like the app role).
    "DB_HOST": Variable("env", lambda local, _: local.postgres_host),
    "DB_PORT": Variable("env", lambda local, _: str(local.postgres_port)),
    "DB_NAME": Variable("env", lambda local, _: local.database),
    "DB_USER": Variable("env", lambda local, _: local.db_user),
    # The same connection code path with the IAM token provider replaced by a password (the local server has no TLS).
    "DB_AUTH": Variable("env", lambda local, _: "password"),
    "DB_PASSWORD": Variable("local", lambda local, _: local.db_password),
    "DB_SSLMODE": Variable("env", lambda local, _: "disable"),
    # Redis: the local server (no TLS, no AUTH: an empty token makes the client send no AUTH), a throwaway prefix.
    "REDIS_HOST": Variable("env", lambda local, _: local.redis_host),
    "REDIS_PORT": Variable("env", lambda local, _: str(local.redis_port)),
    "REDIS_TLS": Variable("env", lambda local, _: "false"),
    "REDIS_AUTH_TOKEN": Variable("secret", lambda local, _: ""),
    "REDIS_KEY_PREFIX": Variable("local", lambda local, _: local.redis_key_prefix),
    # SQS: fresh fauxqs queues, created with the planned MAX_RECEIVES and VISIBILITY_TIMEOUT_SECONDS.
    "SQS_ENDPOINT_URL": Variable("local", lambda local, _: local.sqs_endpoint_url),
    "QUEUE_URL_HIGH": Variable("env", queue("QUEUE_URL_HIGH")),
    "QUEUE_URL_NORMAL": Variable("env", queue("QUEUE_URL_NORMAL")),
    "QUEUE_URL_LOW": Variable("env", queue("QUEUE_URL_LOW")),
    "DLQ_URL": Variable("env", queue("DLQ_URL")),
    "MAX_RECEIVES": Variable("env", planned),
    "VISIBILITY_TIMEOUT_SECONDS": Variable("env", planned),
    # Worker and storage: as planned (STORAGE_PATH is the EFS mount point inside the sandbox).
    "SHUTDOWN_TIMEOUT_SECONDS": Variable("env", planned),
    "STORAGE_PATH": Variable("env", planned),
    # Only behind the HTTP API, whose 10 MB payload quota the API's own limit must not exceed.
    "MAX_UPLOAD_BYTES": Variable("env", planned),
}


class UnknownVariables(Exception):
    """The plan gives a container variables the table does not know, or in another way than the table says."""


def table_problems(container: Container, table: Mapping[str, Variable] = VARIABLES) -> list[str]:
    """Why the table cannot map this container's planned variables (empty: it can)."""
    problems: list[str] = []
    planned_as: dict[str, Source] = dict.fromkeys(container.environment, "env")
    planned_as.update(dict.fromkeys(container.secrets, "secret"))
    for name, source in sorted(planned_as.items()):
        row = table.get(name)
        if row is None:
            problems.append(f"{name} ({source}) has no row in tests/sandbox/environment.py VARIABLES")
        elif row.source != source:
            problems.append(f"{name} arrives as {source} in the plan, but the table says {row.source}")
    return problems


def stale_rows(containers: Iterable[Container], table: Mapping[str, Variable] = VARIABLES) -> list[str]:
    """Rows for planned variables that no planned container has any more (a row must not outlive its variable)."""
    seen = {name for c in containers for name in (*c.environment, *c.secrets)}
    return sorted(name for name, row in table.items() if row.source != "local" and name not in seen)


def container_environment(
    container: Container, local: LocalServices, table: Mapping[str, Variable] = VARIABLES
) -> dict[str, str]:
    """The planned variables (env and secrets), each through its row, plus the `local` rows."""
    problems = table_problems(container, table)
    if problems:
        raise UnknownVariables(f"{container.label}: " + "; ".join(problems))
    names = [*container.environment, *sorted(container.secrets)]
    values = {name: table[name].value(local, container.environment.get(name, "")) for name in names}
    values.update({name: row.value(local, "") for name, row in table.items() if row.source == "local"})
    return values
