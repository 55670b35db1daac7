"""Typed settings read from the environment (the contract the Pulumi components inject).

See docs/services.md for the table of variables. In the cloud environments the services connect to
PostgreSQL as their own role with IAM authentication (`DB_AUTH=iam`, a fresh token per connection), never with a
stored password: RDS rotates the master password every 7 days and ECS reads `secrets` only at task start.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AppEnv = Literal["dev", "staging", "prod", "local"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
DbAuth = Literal["password", "iam"]
Priority = Literal["high", "normal", "low"]

PRIORITIES: tuple[Priority, ...] = ("high", "normal", "low")
CLOUD_ENVS: frozenset[str] = frozenset({"dev", "staging", "prod"})
TLS_SSLMODES: tuple[SslMode, ...] = ("require", "verify-ca", "verify-full")


def check_pool_bounds(pool_min: int | None, pool_max: int) -> None:
    if pool_min is not None and pool_min > pool_max:
        raise ValueError(f"DB_POOL_MIN={pool_min} exceeds DB_POOL_MAX={pool_max}; it must be between 0 and DB_POOL_MAX")


def pool_min(configured: int | None, pool_max: int) -> int:
    """Connections a pool opens at start-up: DB_POOL_MIN, or 2 (at most DB_POOL_MAX)."""
    return min(2, pool_max) if configured is None else configured


def database_connection_problems(
    app_env: str, db_auth: DbAuth, db_password: SecretStr | None, db_sslmode: SslMode
) -> list[str]:
    """What the cloud requires of a database connection (every service's settings check it): IAM authentication,
    no stored password beside it, TLS."""
    cloud = app_env in CLOUD_ENVS
    iam = db_auth == "iam"
    problems: list[str] = []
    if cloud and not iam:
        problems.append(
            f"DB_AUTH={db_auth!r} is not allowed when APP_ENV={app_env!r}; use iam "
            "(a stored password goes stale when RDS rotates it)"
        )
    if iam and db_password is not None:
        problems.append("DB_PASSWORD is set but DB_AUTH='iam' connects with IAM tokens; unset DB_PASSWORD")
    # RDS accepts IAM authentication tokens only over SSL/TLS.
    if (cloud or iam) and db_sslmode not in TLS_SSLMODES:
        because = f"APP_ENV={app_env!r}" if cloud else "DB_AUTH='iam'"
        problems.append(
            f"DB_SSLMODE={db_sslmode!r} is not allowed when {because}; use require, verify-ca or verify-full"
        )
    return problems


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # --- Process ---
    APP_ENV: AppEnv = "local"
    LOG_LEVEL: LogLevel = "INFO"
    PORT: int = Field(default=8080, ge=1, le=65535)
    AWS_REGION: str = "us-east-1"

    # --- PostgreSQL ---
    DB_HOST: str = "127.0.0.1"
    DB_PORT: int = Field(default=5432, ge=1, le=65535)
    DB_NAME: str = "cp_local"
    DB_USER: str = "postgres"
    # `iam`: a token from the task role per new connection (the cloud); `password`: DB_PASSWORD, if any (local).
    DB_AUTH: DbAuth = "password"
    DB_PASSWORD: SecretStr | None = None
    DB_SSLMODE: SslMode = "prefer"
    DB_POOL_MAX: int = Field(default=10, ge=1, le=100)
    # Opened at start-up (the API waits for them before it serves), so the first burst of requests does
    # not pay for new PostgreSQL backends (a fork plus, in AWS, a TLS handshake each). Unset: 2, or
    # DB_POOL_MAX if that is smaller (see `pool_min`).
    DB_POOL_MIN: int | None = Field(default=None, ge=0, le=100)
    DB_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0, le=60)

    # --- Redis ---
    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = Field(default=6379, ge=1, le=65535)
    REDIS_TLS: bool = False
    REDIS_AUTH_TOKEN: SecretStr | None = None
    REDIS_DB: int = Field(default=0, ge=0, le=15)
    REDIS_KEY_PREFIX: str = Field(default="cp:", min_length=1, max_length=64)
    REDIS_TIMEOUT_SECONDS: float = Field(default=0.5, gt=0, le=10)

    # --- SQS ---
    QUEUE_URL_HIGH: str = ""
    QUEUE_URL_NORMAL: str = ""
    QUEUE_URL_LOW: str = ""
    DLQ_URL: str = ""
    SQS_ENDPOINT_URL: str | None = None
    MAX_RECEIVES: int = Field(default=5, ge=1, le=1000)
    VISIBILITY_TIMEOUT_SECONDS: int = Field(default=120, ge=1, le=43200)

    # --- Storage ---
    STORAGE_PATH: Path = Path(".local/storage")
    MAX_UPLOAD_BYTES: int = Field(default=50 * 1024 * 1024, ge=1)

    # --- API behaviour ---
    MAX_JSON_BODY_BYTES: int = Field(default=1024 * 1024, ge=1024)
    MAX_BATCH_JOBS: int = Field(default=100, ge=1, le=10_000)
    RATE_LIMIT_PER_SECOND: float = Field(default=50.0, gt=0)
    RATE_LIMIT_BURST: int = Field(default=100, ge=1)
    RELAY_POLL_SECONDS: float = Field(default=0.5, gt=0, le=60)
    # After a wake-up the relay waits this long so a round sends full batches of 10 rather than one
    # SendMessageBatch per commit (boto3 CPU per call dominated the API's profile under load).
    RELAY_LINGER_SECONDS: float = Field(default=0.05, ge=0, le=5)

    # --- Worker behaviour ---
    SHUTDOWN_TIMEOUT_SECONDS: float = Field(default=100.0, gt=0)
    HEARTBEAT_FILE: Path = Path("/tmp/worker-heartbeat")  # noqa: S108 - /tmp is the writable scratch path by contract
    HEARTBEAT_MAX_AGE_SECONDS: float = Field(default=60.0, gt=0)
    IDLE_WAIT_SECONDS: int = Field(default=1, ge=0, le=20)
    RETRY_BACKOFF_BASE_SECONDS: float = Field(default=2.0, ge=0)
    RETRY_BACKOFF_MAX_SECONDS: float = Field(default=300.0, ge=0)
    DLQ_SWEEP_SECONDS: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        check_pool_bounds(self.DB_POOL_MIN, self.DB_POOL_MAX)
        return self

    @model_validator(mode="after")
    def _enforce_connection_requirements(self) -> Self:
        problems = database_connection_problems(self.APP_ENV, self.DB_AUTH, self.DB_PASSWORD, self.DB_SSLMODE)
        if self.APP_ENV in CLOUD_ENVS and self.SQS_ENDPOINT_URL:
            problems.append("SQS_ENDPOINT_URL is for local runs and tests only; unset it in the cloud")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pool_min(self) -> int:
        """Connections each pool opens at start-up."""
        return pool_min(self.DB_POOL_MIN, self.DB_POOL_MAX)

    @cached_property
    def queue_urls(self) -> dict[Priority, str]:
        """Work queues in the order workers poll them (high before normal before low)."""
        urls: dict[Priority, str] = {
            "high": self.QUEUE_URL_HIGH,
            "normal": self.QUEUE_URL_NORMAL,
            "low": self.QUEUE_URL_LOW,
        }
        missing = [f"QUEUE_URL_{name.upper()}" for name, url in urls.items() if not url]
        if missing:
            raise ValueError(f"missing queue settings: {', '.join(missing)}")
        return urls

    def require_dlq_url(self) -> str:
        if not self.DLQ_URL:
            raise ValueError("DLQ_URL is required by the worker (dead-letter queue reconciliation)")
        return self.DLQ_URL

    def redis_key(self, *parts: str) -> str:
        return self.REDIS_KEY_PREFIX + ":".join(parts)


def load_settings() -> Settings:
    return Settings()
