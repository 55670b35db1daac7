"""The environment contract every shop service shares (docs/shop.md); each service subclasses `ShopSettings`.

The DB_* variables mean what they mean for the job platform (services/common/settings.py): in the cloud a service
connects as its own role with IAM authentication (`DB_AUTH=iam`, a fresh token per connection) over TLS. Each
service owns one schema (`DB_SCHEMA`, by default its name) and its connections have `search_path` pinned to it.

    class OrdersSettings(ShopSettings):
        PRODUCTS_URL: str = "http://127.0.0.1:8082"

    settings = load_settings(OrdersSettings)   # exits with one line per bad variable
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import (
    CLOUD_ENVS,
    AppEnv,
    DbAuth,
    LogLevel,
    SslMode,
    check_pool_bounds,
    database_connection_problems,
    pool_min,
)

# Lower-case letters, digits and underscores (as the db_roles Lambda accepts): the service name is also a
# PostgreSQL schema and role name and a Redis key part.
SERVICE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
# Empty means "derive from SERVICE_NAME" (filled in before validation).
IDENTIFIER_OR_EMPTY = r"^(?:[a-z][a-z0-9_]{0,62})?$"


class ShopSettings(BaseSettings):
    """Settings read from the environment; validation errors name the variable and what it allows."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # --- Process ---
    SERVICE_NAME: str = Field(pattern=SERVICE_NAME_PATTERN)
    APP_ENV: AppEnv = "local"
    LOG_LEVEL: LogLevel = "INFO"
    PORT: int = Field(default=8080, ge=1, le=65535)
    AWS_REGION: str = "us-east-1"
    # ECS sends SIGTERM, waits stopTimeout (30 s by default), then SIGKILL: finish in-flight requests before that.
    SHUTDOWN_TIMEOUT_SECONDS: float = Field(default=20.0, gt=0, le=120)
    MAX_REQUEST_BODY_BYTES: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    # Each readiness check (the pool, plus what the service registers) gets this long before /ready says 503.
    READY_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0, le=30)

    # --- PostgreSQL (same names and meaning as services/common/settings.py) ---
    DB_HOST: str = "127.0.0.1"
    DB_PORT: int = Field(default=5432, ge=1, le=65535)
    DB_NAME: str = "shop_local"
    # The service's own role; unset or empty: SERVICE_NAME.
    DB_USER: str = Field(default="", pattern=IDENTIFIER_OR_EMPTY)
    DB_AUTH: DbAuth = "password"
    DB_PASSWORD: SecretStr | None = None
    DB_SSLMODE: SslMode = "prefer"
    # The schema the service owns and its connections' search_path; unset or empty: SERVICE_NAME.
    DB_SCHEMA: str = Field(default="", pattern=IDENTIFIER_OR_EMPTY)
    # See services.shop.common.database.pool_budget for how these fit PostgreSQL's max_connections.
    DB_POOL_MAX: int = Field(default=10, ge=1, le=100)
    DB_POOL_MIN: int | None = Field(default=None, ge=0, le=100)
    DB_POOL_TIMEOUT_SECONDS: float = Field(default=5.0, gt=0, le=60)

    # --- Redis (products' cache) ---
    REDIS_HOST: str = "127.0.0.1"
    REDIS_PORT: int = Field(default=6379, ge=1, le=65535)
    REDIS_TLS: bool = False
    REDIS_AUTH_TOKEN: SecretStr | None = None
    REDIS_DB: int = Field(default=0, ge=0, le=15)
    # Unset or empty: `shop:<SERVICE_NAME>:`.
    REDIS_KEY_PREFIX: str = Field(default="", max_length=64)
    REDIS_TIMEOUT_SECONDS: float = Field(default=0.5, gt=0, le=10)

    # --- Tokens (users signs, every service verifies) ---
    JWT_ISSUER: str = Field(default="shop-users", min_length=1)
    JWT_AUDIENCE: str = Field(default="shop", min_length=1)
    JWT_TTL_SECONDS: int = Field(default=900, ge=60, le=3600)
    JWT_LEEWAY_SECONDS: float = Field(default=30.0, ge=0, le=300)
    # Signing (users only): a base64 32-byte Ed25519 seed (Secrets Manager in AWS) or a key file (local runs).
    JWT_SIGNING_KEY: SecretStr | None = None
    JWT_SIGNING_KEY_FILE: Path | None = None
    # The key before the last rotation (the secret's AWSPREVIOUS version; a `.previous` file locally): published in
    # the JWK set, never used to sign, so tokens it signed verify until they expire.
    JWT_SIGNING_KEY_PREVIOUS: SecretStr | None = None
    JWT_SIGNING_KEY_PREVIOUS_FILE: Path | None = None
    # Verification: a static JWK set (JSON), or else the users service's /.well-known/jwks.json.
    JWT_PUBLIC_KEY: str | None = None
    USERS_URL: str | None = None
    # An unknown `kid` refetches the JWK set at most this often (a key rotation is picked up within it).
    JWKS_REFRESH_SECONDS: float = Field(default=30.0, ge=1, le=3600)
    JWKS_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0, le=30)

    @model_validator(mode="before")
    @classmethod
    def _derive_from_service_name(cls, data: Any) -> Any:
        service = data.get("SERVICE_NAME") if isinstance(data, dict) else None
        if not isinstance(service, str):
            return data  # SERVICE_NAME's own error says what is missing
        derived = {"DB_USER": service, "DB_SCHEMA": service, "REDIS_KEY_PREFIX": f"shop:{service}:"}
        return data | {name: value for name, value in derived.items() if not data.get(name)}

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        check_pool_bounds(self.DB_POOL_MIN, self.DB_POOL_MAX)
        return self

    @model_validator(mode="after")
    def _enforce_connection_requirements(self) -> Self:
        cloud = self.APP_ENV in CLOUD_ENVS
        problems = database_connection_problems(self.APP_ENV, self.DB_AUTH, self.DB_PASSWORD, self.DB_SSLMODE)
        for variable in ("JWT_SIGNING_KEY", "JWT_SIGNING_KEY_PREVIOUS"):
            from_file = getattr(self, f"{variable}_FILE") is not None
            if cloud and from_file:
                problems.append(f"{variable}_FILE is for local runs; in the cloud set {variable} (Secrets Manager)")
            if from_file and getattr(self, variable) is not None:
                problems.append(f"{variable} and {variable}_FILE are both set; set one of them")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pool_min(self) -> int:
        """Connections the pool opens at start-up: DB_POOL_MIN, or 2 (at most DB_POOL_MAX)."""
        return pool_min(self.DB_POOL_MIN, self.DB_POOL_MAX)

    def redis_key(self, *parts: str) -> str:
        return self.REDIS_KEY_PREFIX + ":".join(parts)


class SettingsError(SystemExit):
    """Invalid environment: the message lists each bad variable and what it allows."""


SettingsT = TypeVar("SettingsT", bound=ShopSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """`cls()` from the environment, or exit with one line per invalid variable (no traceback to dig through)."""
    try:
        return cls()  # pyright: ignore[reportCallIssue] - BaseSettings fills required fields from the environment
    except ValidationError as error:
        raise SettingsError(describe_validation_error(cls.__name__, error)) from None


def describe_validation_error(name: str, error: ValidationError) -> str:
    lines = [f"invalid environment for {name}:"]
    for problem in error.errors():
        variable = ".".join(str(part) for part in problem["loc"]) or "settings"
        lines.append(f"  {variable}: {problem['msg']}")
    return "\n".join(lines)
