"""How the services authenticate to PostgreSQL: IAM tokens in the cloud, a password locally, one code path.

The token tests sign real tokens with botocore (credentials from the environment, no network); the connection
tests run the real pools and migrations against the machine's PostgreSQL with the token provider replaced by a
recording stand-in, since the local server has no TLS (which RDS requires for tokens) and trusts loopback.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from services.common import db
from services.common.migrate import apply_migrations
from services.common.settings import Settings

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SESSION_TOKEN = "session-token-of-the-task-role"
RDS_HOST = "jobs-dev-postgres.abcdefghij.eu-west-1.rds.amazonaws.com"


def iam_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "APP_ENV": "dev",
        "DB_AUTH": "iam",
        "DB_SSLMODE": "require",
        "DB_HOST": RDS_HOST,
        "DB_PORT": 5432,
        "DB_USER": "app",
        "AWS_REGION": "eu-west-1",
    }
    return Settings(**(values | overrides))


# --- Settings ---


def test_cloud_environments_require_iam_auth_and_name_the_fix() -> None:
    with pytest.raises(ValidationError) as error:
        Settings(APP_ENV="staging", DB_SSLMODE="require", DB_PASSWORD="stale-after-rotation")  # pyright: ignore[reportArgumentType]
    message = str(error.value)
    assert "DB_AUTH='password' is not allowed when APP_ENV='staging'; use iam" in message
    assert iam_settings().DB_PASSWORD is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DB_PASSWORD": "x"}, "DB_PASSWORD is set but DB_AUTH='iam' connects with IAM tokens; unset DB_PASSWORD"),
        ({"DB_SSLMODE": "prefer"}, "DB_SSLMODE='prefer' is not allowed when APP_ENV='dev'; use require, verify-ca or"),
        (
            {"APP_ENV": "local", "DB_SSLMODE": "disable"},
            "DB_SSLMODE='disable' is not allowed when DB_AUTH='iam'; use require, verify-ca or verify-full",
        ),
        ({"DB_AUTH": "token"}, "Input should be 'password' or 'iam'"),
    ],
)
def test_contradicting_database_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        iam_settings(**overrides)


def test_local_runs_use_a_password_when_given_and_never_print_it() -> None:
    settings = Settings(DB_PASSWORD="s3cret")  # pyright: ignore[reportArgumentType]
    assert (settings.DB_AUTH, db.connection_password(settings)) == ("password", "s3cret")
    assert "s3cret" not in repr(settings)
    assert db.connection_password(Settings()) is None


# --- Tokens ---


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Credentials only from the environment (as the ECS task role's reach botocore), nothing from disk."""
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
        "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    db._rds_client.cache_clear()
    yield
    db._rds_client.cache_clear()


def test_a_token_is_a_presigned_rds_db_connect_request_for_this_host_user_and_region(aws_credentials: None) -> None:
    token = db.connection_password(iam_settings())
    assert token is not None
    url = urlsplit(f"https://{token}")
    assert (url.netloc, url.path) == (f"{RDS_HOST}:5432", "/")
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["Action"] == "connect"
    assert query["DBUser"] == "app"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    day = query["X-Amz-Date"][:8]
    assert query["X-Amz-Credential"] == f"{ACCESS_KEY}/{day}/eu-west-1/rds-db/aws4_request"
    assert query["X-Amz-Expires"] == "900"  # 15 minutes, RDS's limit
    assert query["X-Amz-Security-Token"] == SESSION_TOKEN
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Amz-Signature"])


def test_password_auth_never_asks_for_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(settings: Settings) -> str:
        raise AssertionError("a token was requested with DB_AUTH=password")

    monkeypatch.setattr(db, "rds_auth_token", refuse)
    assert db.connection_password(Settings(DB_PASSWORD="local")) == "local"  # pyright: ignore[reportArgumentType]


# --- Every new connection, pooled or not, gets a fresh credential ---


class TokenRecorder:
    """Stands in for `rds_auth_token`: records each request and returns a distinct credential."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, int, str, str]] = []

    def __call__(self, settings: Settings) -> str:
        self.requests.append((settings.DB_HOST, settings.DB_PORT, settings.DB_USER, settings.AWS_REGION))
        return f"token-{len(self.requests)}"


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> TokenRecorder:
    recorder = TokenRecorder()
    monkeypatch.setattr(db, "rds_auth_token", recorder)
    return recorder


def local_iam_settings(database: str, **overrides: Any) -> Settings:
    settings = iam_settings(APP_ENV="local", AWS_REGION="eu-west-1", **overrides)
    # The local server has no TLS and trusts loopback: point the validated IAM settings at it.
    return settings.model_copy(
        update={"DB_HOST": "127.0.0.1", "DB_NAME": database, "DB_USER": "postgres", "DB_SSLMODE": "disable"}
    )


def test_each_new_pool_connection_gets_its_own_token_and_reused_ones_none(database: str, tokens: TokenRecorder) -> None:
    settings = local_iam_settings(database, DB_POOL_MIN=1, DB_POOL_MAX=3)
    pool = db.sync_pool(settings)
    pool.open(wait=True)
    try:
        assert tokens.requests == [("127.0.0.1", 5432, "postgres", "eu-west-1")]
        for _ in range(3):
            with pool.connection() as conn:
                conn.execute("SELECT 1")
        assert len(tokens.requests) == 1  # a pooled connection was reused: its token was checked once, at connect
        with ExitStack() as held:
            for _ in range(3):
                held.enter_context(pool.connection())
        assert len(tokens.requests) == 3
    finally:
        pool.close()


def test_the_api_pool_asks_per_connection_too(database: str, tokens: TokenRecorder) -> None:
    async def open_two() -> None:
        pool = db.async_pool(local_iam_settings(database, DB_POOL_MIN=2, DB_POOL_MAX=2))
        await pool.open(wait=True)
        await pool.close()

    # A private loop: asyncio.run would leave the main thread without one, which later Pulumi mock runs need.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(open_two())
    finally:
        loop.close()
    assert tokens.requests == [("127.0.0.1", 5432, "postgres", "eu-west-1")] * 2


def test_migrations_connect_through_the_same_path(database: str, tokens: TokenRecorder) -> None:
    apply_migrations(local_iam_settings(database))
    assert tokens.requests == [("127.0.0.1", 5432, "postgres", "eu-west-1")]
