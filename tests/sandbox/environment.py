"""The one table that turns a planned container environment into the one the sandbox runs with.

ECS gives a container its task definition's `environment` and `secrets` (both arrive as environment variables).
Every name the plan gives a container must have a row here, in the right column (plain `env`, or `secret` through
ECS `secrets`): a new variable, or a secret that became plain text, fails the sandbox test until someone decides here
what it means on this machine. Rows with `local` are variables the plan does not give, which this machine needs in
their place (a password instead of the IAM token provider, the local SQS endpoint, the email file sink).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from tests.sandbox.task import Container

Source = Literal["env", "secret", "local"]


class UnknownVariables(Exception):
    """The plan gives a container variables the table does not know, or in another way than the table says."""


# Where the notifications service writes its email instead of sending it through SES: in the task's /tmp, the only
# place it may write, which the test reads from the host.
EMAIL_SINK_DIR = "/tmp/sent-email"


@dataclass(frozen=True)
class LocalServices:
    """What stands in for AWS on this machine, for one container."""

    postgres_host: str
    postgres_port: int
    database: str
    db_user: str
    """A throwaway role (not a superuser) standing in for the planned DB_USER: roles are cluster-wide."""
    db_password: str
    redis_host: str
    redis_port: int
    redis_key_prefix: str
    sqs_endpoint_url: str
    queue_urls: Mapping[str, str]
    """Planned queue URL -> the URL of the fresh local queue standing in for it."""
    generated_secrets: Mapping[str, str] = field(default_factory=dict)
    """Variable -> a fresh value, generated as Secrets Manager generates the planned secret."""


@dataclass(frozen=True)
class Variable:
    source: Source
    """How the task receives it: plain `env`, ECS `secret`, or `local` (never planned: only this machine's)."""
    value: Callable[[LocalServices, str], str]
    """(local services, the planned value or "") -> the value in the sandbox."""
    given_with: str | None = None
    """A `local` row only for containers planned with this variable (None: for every container)."""


def planned(_: LocalServices, value: str) -> str:
    return value


def local_queue(local: LocalServices, planned_url: str) -> str:
    if planned_url not in local.queue_urls:
        raise UnknownVariables(f"queue {planned_url} has no local queue (known: {sorted(local.queue_urls)})")
    return local.queue_urls[planned_url]


def generated(name: str) -> Callable[[LocalServices, str], str]:
    return lambda local, _: local.generated_secrets[name]


VARIABLES: Mapping[str, Variable] = {
    # Process. The cloud APP_ENVs refuse a password, a local SQS endpoint and the email file sink (EMAIL_SINK_DIR),
    # which stand in for IAM tokens, SQS and SES here, so the run is `local`.
    "APP_ENV": Variable("env", lambda local, _: "local"),
    "SERVICE_NAME": Variable("env", planned),
    "LOG_LEVEL": Variable("env", planned),
    "AWS_REGION": Variable("env", planned),
    "PORT": Variable("env", planned),
    "API_WORKERS": Variable("env", planned),
    # PostgreSQL: the local server, a throwaway database, throwaway roles (not superusers, like the app roles): the job
    # platform's owns the database, each shop service's owns its schema in it.
    "DB_HOST": Variable("env", lambda local, _: local.postgres_host),
    "DB_PORT": Variable("env", lambda local, _: str(local.postgres_port)),
    "DB_NAME": Variable("env", lambda local, _: local.database),
    # The shop's pools, sized from the connection budget: as planned.
    "DB_POOL_MAX": Variable("env", planned),
    "DB_USER": Variable("env", lambda local, _: local.db_user),
    # The same connection code path with the IAM token provider replaced by a password (the local server has no TLS).
    "DB_AUTH": Variable("env", lambda local, _: "password"),
    "DB_PASSWORD": Variable("local", lambda local, _: local.db_password),
    "DB_SSLMODE": Variable("env", lambda local, _: "disable"),
    # The service's own schema, made (as db_roles makes it in AWS) in the throwaway database, owned by its role.
    "DB_SCHEMA": Variable("env", planned),
    # Redis: the local server (no TLS, no AUTH: an empty token makes the client send no AUTH), a throwaway prefix.
    "REDIS_HOST": Variable("env", lambda local, _: local.redis_host),
    "REDIS_PORT": Variable("env", lambda local, _: str(local.redis_port)),
    "REDIS_TLS": Variable("env", lambda local, _: "false"),
    "REDIS_AUTH_TOKEN": Variable("secret", lambda local, _: ""),
    "REDIS_KEY_PREFIX": Variable("local", lambda local, _: local.redis_key_prefix),
    # SQS: fresh fauxqs queues, created with the configured redrive and visibility timeout; every variable that plans
    # the same queue gets the same local one (orders' NOTIFICATIONS_QUEUE_URL is notifications' QUEUE_URL).
    "SQS_ENDPOINT_URL": Variable("local", lambda local, _: local.sqs_endpoint_url),
    "QUEUE_URL_HIGH": Variable("env", local_queue),
    "QUEUE_URL_NORMAL": Variable("env", local_queue),
    "QUEUE_URL_LOW": Variable("env", local_queue),
    "DLQ_URL": Variable("env", local_queue),
    "QUEUE_URL": Variable("env", local_queue),
    "NOTIFICATIONS_QUEUE_URL": Variable("env", local_queue),
    "MAX_RECEIVES": Variable("env", planned),
    "VISIBILITY_TIMEOUT_SECONDS": Variable("env", planned),
    # Calls between services: as planned (`http://users:8081`); the sandbox resolves each name to a proxy to the
    # callee's sandbox, as Service Connect does in the task.
    "USERS_URL": Variable("env", planned),
    "PRODUCTS_URL": Variable("env", planned),
    "PAYMENTS_URL": Variable("env", planned),
    # Tokens: the users service signs with a fresh Ed25519 seed (`generatedSecrets`: base64 of 32 random bytes).
    "JWT_SIGNING_KEY": Variable("secret", generated("JWT_SIGNING_KEY")),
    # keepPrevious: the AWSPREVIOUS version (an initial never-signing key until a rotation), and the version ids.
    "JWT_SIGNING_KEY_PREVIOUS": Variable("secret", generated("JWT_SIGNING_KEY_PREVIOUS")),
    "JWT_SIGNING_KEY_VERSIONS": Variable("env", planned),
    # Email: the planned sender; messages go to files (the sink refuses the cloud APP_ENVs, hence APP_ENV=local).
    "EMAIL_FROM": Variable("env", planned),
    "EMAIL_SINK_DIR": Variable("local", lambda local, _: EMAIL_SINK_DIR, given_with="EMAIL_FROM"),
    # Tracing: as planned, to the ADOT sidecar's port on the task's loopback. The sandbox does not run the sidecar
    # (tests/sandbox/stacks.py SIDECARS), so exports fail there, as they do when the collector is down.
    "OTEL_EXPORTER_OTLP_ENDPOINT": Variable("env", planned),
    "OTEL_EXPORTER_OTLP_PROTOCOL": Variable("env", planned),
    "OTEL_PROPAGATORS": Variable("env", planned),
    "OTEL_RESOURCE_ATTRIBUTES": Variable("env", planned),
    "OTEL_SERVICE_NAME": Variable("env", planned),
    "OTEL_TRACES_SAMPLER": Variable("env", planned),
    "OTEL_TRACES_SAMPLER_ARG": Variable("env", planned),
    # Worker and storage: as planned (STORAGE_PATH is the EFS mount point inside the sandbox).
    "SHUTDOWN_TIMEOUT_SECONDS": Variable("env", planned),
    "STORAGE_PATH": Variable("env", planned),
    # Only behind the HTTP API, whose 10 MB payload quota the API's own limit must not exceed.
    "MAX_UPLOAD_BYTES": Variable("env", planned),
}


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
    values.update(
        {
            name: row.value(local, "")
            for name, row in table.items()
            if row.source == "local" and (row.given_with is None or row.given_with in names)
        }
    )
    return values
