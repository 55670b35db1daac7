"""The shop's shared foundation against real PostgreSQL: settings, schemas and roles, migrations, the app factory,
trace context, tokens and idempotency keys."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, SecretStr, ValidationError

from services.common.db import connect
from services.common.logging import JsonFormatter
from services.common.tracing import Tracing
from services.fauxqs import REPO_ROOT, free_port
from services.shop.common import healthcheck
from services.shop.common.app import ServiceError, ServiceRuntime, create_service_app
from services.shop.common.auth import (
    JWKS_PATH,
    CurrentUser,
    Principal,
    RemoteKeys,
    SigningKeyError,
    TokenSigner,
    TokenVerifier,
    install_token_verifier,
    private_key_from_seed,
    thumbprint,
)
from services.shop.common.database import (
    apply_service_migrations,
    open_service_pool,
    pool_budget,
    search_path_option,
    unflushed_transaction,
)
from services.shop.common.idempotency import (
    IDEMPOTENCY_MIGRATION,
    IdempotencyInProgressError,
    IdempotencyKeyReusedError,
    Replay,
    begin,
    expired_key_purging,
    idempotent,
    validate_key,
)
from services.shop.common.observability import (
    TraceContext,
    TraceContextMiddleware,
    add_trace_fields,
    current_trace,
    outgoing_headers,
    outgoing_traceparent,
    parse_traceparent,
    reset_trace,
    use_trace,
)
from services.shop.common.settings import SettingsError, ShopSettings, load_settings
from tests.services.helpers import TcpProxy, wait_until
from tests.shop.conftest import ServiceSettingsFactory, settings_env

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


# --- Settings ---


def test_settings_derive_role_schema_and_prefix_from_the_service_name() -> None:
    settings = ShopSettings(SERVICE_NAME="orders")
    assert (settings.DB_USER, settings.DB_SCHEMA, settings.REDIS_KEY_PREFIX) == ("orders", "orders", "shop:orders:")
    assert settings.redis_key("product", "42") == "shop:orders:product:42"
    explicit = ShopSettings(SERVICE_NAME="orders", DB_USER="orders_app", DB_SCHEMA="sales")
    assert (explicit.DB_USER, explicit.DB_SCHEMA) == ("orders_app", "sales")


def test_load_settings_exits_naming_each_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVICE_NAME", raising=False)
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("DB_SCHEMA", "Orders; DROP")
    with pytest.raises(SettingsError) as error:
        load_settings(ShopSettings)
    message = str(error.value)
    assert "SERVICE_NAME: Field required" in message
    assert "PORT: Input should be a valid integer" in message
    assert "DB_SCHEMA: String should match pattern" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"APP_ENV": "prod", "DB_SSLMODE": "require"},
            "DB_AUTH='password' is not allowed when APP_ENV='prod'; use iam",
        ),
        ({"DB_POOL_MIN": 5, "DB_POOL_MAX": 2}, "DB_POOL_MIN=5 exceeds DB_POOL_MAX=2"),
        (
            {"JWT_SIGNING_KEY": "a", "JWT_SIGNING_KEY_FILE": "/k"},
            "JWT_SIGNING_KEY and JWT_SIGNING_KEY_FILE are both set",
        ),
        ({"SERVICE_NAME": "Orders"}, "SERVICE_NAME\n  String should match pattern '^[a-z][a-z0-9_]{0,39}$'"),
    ],
)
def test_contradicting_settings_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as error:
        ShopSettings(**({"SERVICE_NAME": "orders"} | overrides))  # pyright: ignore[reportArgumentType]
    assert message in str(error.value)


def test_settings_env_reproduces_the_settings(
    make_service_settings: ServiceSettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: ShopSettings = make_service_settings("alpha", DB_PASSWORD=SecretStr("pw"), REDIS_TLS=True)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert load_settings(ShopSettings) == settings


# --- Database: budget, roles, schemas, migrations ---


def test_pool_budget_fits_every_task_during_a_deployment() -> None:
    per_process = pool_budget(services=5, tasks_per_service=2, max_connections=200)
    assert per_process == 8
    assert 5 * 2 * 2 * (per_process + 1) + 15 <= 200
    assert pool_budget(services=5, tasks_per_service=1, max_connections=200) == 17
    with pytest.raises(ValueError, match="cannot share max_connections=200"):
        pool_budget(services=5, tasks_per_service=20, max_connections=200)
    with pytest.raises(ValueError, match="must each be at least 1"):
        pool_budget(services=0)


def test_a_service_role_cannot_read_another_services_schema(
    make_service_settings: ServiceSettingsFactory, tmp_path: Path
) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001_items.sql": "CREATE TABLE items (id int PRIMARY KEY);"})
    alpha: ShopSettings = make_service_settings("alpha")
    beta: ShopSettings = make_service_settings("beta")
    apply_service_migrations(alpha, migrations)
    apply_service_migrations(beta, migrations)
    with connect(alpha, options=search_path_option(alpha.DB_SCHEMA)) as conn:
        conn.execute("INSERT INTO items VALUES (1)")  # unqualified: alpha's own table
        assert conn.execute("SELECT count(*) AS n FROM alpha.items").fetchone() == {"n": 1}
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema beta"):
            conn.execute("SELECT * FROM beta.items")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema public"):
            conn.execute("CREATE TABLE public.stray (id int)")


def test_migrations_apply_once_in_name_order_under_concurrent_start_ups(
    make_service_settings: ServiceSettingsFactory, tmp_path: Path
) -> None:
    settings: ShopSettings = make_service_settings("gamma", schema="gamma_migrations")
    migrations = write_migrations(
        tmp_path / "m",
        {
            "0002_more.sql": "INSERT INTO log (step) VALUES ('second');",
            "0001_log.sql": "CREATE TABLE log (step text NOT NULL); INSERT INTO log (step) VALUES ('first');",
        },
    )
    results: list[list[str]] = []
    threads = [
        threading.Thread(target=lambda: results.append(apply_service_migrations(settings, migrations)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=len) == [[], [], [], ["0001_log.sql", "0002_more.sql"]]
    with connect(settings, options=search_path_option(settings.DB_SCHEMA)) as conn:
        assert [row["step"] for row in conn.execute("SELECT step FROM log")] == ["first", "second"]
        recorded = conn.execute("SELECT name FROM gamma_migrations.schema_migrations ORDER BY name").fetchall()
        assert [row["name"] for row in recorded] == ["0001_log.sql", "0002_more.sql"]
    assert apply_service_migrations(settings, migrations) == []


def test_a_missing_migrations_directory_is_named(make_service_settings: ServiceSettingsFactory, tmp_path: Path) -> None:
    settings: ShopSettings = make_service_settings("gamma", schema="gamma_missing")
    with pytest.raises(FileNotFoundError, match=r"migrations directory .*nowhere does not exist"):
        apply_service_migrations(settings, tmp_path / "nowhere")


def test_the_pool_pins_search_path_and_names_its_connections(make_service_settings: ServiceSettingsFactory) -> None:
    settings: ShopSettings = make_service_settings("delta")

    async def probe() -> dict[str, Any] | None:
        pool = await open_service_pool(settings)
        try:
            async with pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT current_user AS role, current_setting('search_path') AS path,"
                    " current_setting('application_name') AS app"
                )
                return await cursor.fetchone()
        finally:
            await pool.close()

    assert asyncio.run(probe()) == {"role": settings.DB_USER, "path": "delta", "app": "shop-delta"}


def test_an_unflushed_transaction_skips_only_its_own_flush_and_rolls_back_on_error(
    make_service_settings: ServiceSettingsFactory,
) -> None:
    settings: ShopSettings = make_service_settings("delta")

    async def scenario() -> None:
        pool = await open_service_pool(settings)
        try:
            async with pool.connection() as conn:
                await conn.execute("CREATE TEMPORARY TABLE marks (n int)")
                async with unflushed_transaction(conn):
                    assert await (await conn.execute("SHOW synchronous_commit")).fetchone() == {
                        "synchronous_commit": "off"
                    }
                    await conn.execute("INSERT INTO marks VALUES (1)")

                async def insert_then_fail() -> None:
                    async with unflushed_transaction(conn):
                        await conn.execute("INSERT INTO marks VALUES (2)")
                        raise ValueError("boom")

                with pytest.raises(ValueError, match="boom"):
                    await insert_then_fail()
                # Committed once, rolled back once, and the connection's own setting untouched.
                assert await (await conn.execute("SELECT array_agg(n) AS n FROM marks")).fetchone() == {"n": [1]}
                assert await (await conn.execute("SHOW synchronous_commit")).fetchone() == {"synchronous_commit": "on"}
                async with conn.transaction():
                    with pytest.raises(RuntimeError, match="outside any transaction"):
                        async with unflushed_transaction(conn):
                            pass
        finally:
            await pool.close()

    asyncio.run(scenario())


# --- Trace context ---


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT, (TRACE_ID, "b7ad6b7169203331", True)),
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", (TRACE_ID, "b7ad6b7169203331", False)),
        ("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future", (TRACE_ID, "b7ad6b7169203331", True)),
        ("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", None),  # upper case
        ("00-00000000000000000000000000000000-b7ad6b7169203331-01", None),  # zero trace id
        ("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", None),  # zero parent id
        ("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),  # forbidden version
        ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra", None),  # version 00 is exactly 55 chars
        ("00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01", None),  # short trace id
        ("0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", None),
        ("", None),
        (None, None),
    ],
)
def test_traceparent_parsing_follows_w3c_trace_context(
    header: str | None, expected: tuple[str, str, bool] | None
) -> None:
    assert parse_traceparent(header) == expected


def test_outgoing_calls_continue_the_current_trace_under_a_new_parent() -> None:
    token = use_trace(TraceContext(TRACE_ID, "b7ad6b7169203331", sampled=True, tracestate="vendor=1"))
    try:
        headers = outgoing_headers()
        parsed = parse_traceparent(headers["traceparent"])
        assert parsed is not None
        assert parsed[0] == TRACE_ID and parsed[1] != "b7ad6b7169203331" and parsed[2] is True
        assert headers["tracestate"] == "vendor=1"
        assert outgoing_traceparent() != headers["traceparent"]  # a new parent id per call
    finally:
        reset_trace(token)
    assert current_trace() is None
    assert parse_traceparent(outgoing_traceparent()) is not None  # outside a request: a new trace


def trace_probe_app(settings: ShopSettings) -> FastAPI:
    router = APIRouter()

    @router.get("/probe")
    async def probe() -> dict[str, str]:
        logging.getLogger("probe").warning("handling")
        context = current_trace()
        assert context is not None
        return {"trace_id": context.trace_id, "span_id": context.span_id, "outgoing": outgoing_traceparent()}

    return create_service_app(settings, routers=[router])


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """What the services' JSON formatter (as create_service_app configures it) writes meanwhile."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test", add_trace_fields))
    logging.getLogger().addHandler(handler)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_requests_continue_a_valid_trace_and_log_its_ids(make_service_settings: ServiceSettingsFactory) -> None:
    app = trace_probe_app(make_service_settings("epsilon"))  # configures logging: capture after it
    with TestClient(app) as client, captured_logs() as logs:
        response = client.get("/probe", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"})
    body = response.json()
    assert body["trace_id"] == TRACE_ID and body["span_id"] != "b7ad6b7169203331"
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{body['span_id']}-01"
    outgoing = parse_traceparent(body["outgoing"])
    assert outgoing is not None and outgoing[0] == TRACE_ID and outgoing[1] != body["span_id"]
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    handled = next(line for line in lines if line["msg"] == "handling")
    assert (handled["trace_id"], handled["span_id"]) == (TRACE_ID, body["span_id"])


def test_an_invalid_traceparent_starts_a_new_trace(make_service_settings: ServiceSettingsFactory) -> None:
    with TestClient(trace_probe_app(make_service_settings("epsilon"))) as client:
        response = client.get("/probe", headers={"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"})
        doubled = client.get("/probe", headers=[("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)])
    for answer in (response, doubled):
        parsed = parse_traceparent(answer.headers["traceparent"])
        assert parsed is not None and parsed[0] not in {"0" * 32, TRACE_ID} and parsed[2] is False


def test_with_opentelemetry_on_logs_and_headers_carry_the_exported_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(1.0))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI()
    seen: dict[str, str] = {}

    @app.get("/work")
    async def work() -> dict[str, str]:
        context = current_trace()
        assert context is not None
        seen.update(trace_id=context.trace_id, span_id=context.span_id)
        return {}

    app.add_middleware(TraceContextMiddleware, opentelemetry=True)
    Tracing(provider).instrument_app(app)
    with TestClient(app) as client:
        response = client.get("/work", headers={"traceparent": TRACEPARENT})
    (server_span,) = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert server_span.context is not None
    assert seen == {"trace_id": TRACE_ID, "span_id": f"{server_span.context.span_id:016x}"}
    assert response.headers["traceparent"] == f"00-{TRACE_ID}-{seen['span_id']}-01"


# --- App factory: health, readiness, errors, body limit ---


class Item(BaseModel):
    name: str


def errors_app(settings: ShopSettings, **kwargs: Any) -> FastAPI:
    router = APIRouter()

    @router.post("/items", status_code=201)
    async def create(item: Item) -> Item:
        return item

    @router.get("/teapot")
    async def teapot() -> None:
        raise ServiceError(418, "teapot", "short and stout", {"X-Why": "tea"})

    @router.get("/bug")
    async def bug() -> None:
        raise ZeroDivisionError("a bug")

    return create_service_app(settings, routers=[router], **kwargs)


def test_liveness_and_readiness(make_service_settings: ServiceSettingsFactory) -> None:
    async def broken_cache() -> None:
        raise ConnectionError("redis refused the connection")

    async def slow_thing() -> None:
        await asyncio.sleep(5)

    settings: ShopSettings = make_service_settings("zeta", READY_TIMEOUT_SECONDS=0.2)
    with TestClient(errors_app(settings)) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").json() == {"status": "ready", "checks": {"database": "ok"}}
    failing = errors_app(settings, readiness_checks={"cache": broken_cache, "slow": slow_thing})
    with TestClient(failing) as client:
        response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "not_ready"
    assert body["checks"] == {
        "database": "ok",
        "cache": "ConnectionError: redis refused the connection",
        "slow": "timed out after 0.2s",
    }
    assert "cache (ConnectionError: redis refused the connection)" in body["detail"]


def test_readiness_names_the_database_when_it_goes_away(make_service_settings: ServiceSettingsFactory) -> None:
    proxy = TcpProxy(5432)
    proxy.start()
    try:
        settings: ShopSettings = make_service_settings("zeta", DB_PORT=proxy.port, DB_POOL_TIMEOUT_SECONDS=0.5)
        with TestClient(errors_app(settings)) as client:
            assert client.get("/ready").status_code == 200
            proxy.stop()
            response = client.get("/ready")
            assert client.get("/health").status_code == 200  # liveness does not depend on the database
    finally:
        proxy.stop()
    assert response.status_code == 503
    assert response.json()["detail"].startswith("not ready: database (")


def test_every_error_is_json_with_a_code(make_service_settings: ServiceSettingsFactory) -> None:
    settings: ShopSettings = make_service_settings("eta", MAX_REQUEST_BODY_BYTES=1024)
    with TestClient(errors_app(settings), raise_server_exceptions=False) as client:
        missing = client.get("/missing")
        wrong_method = client.delete("/items")
        invalid = client.post("/items", json={"name": 5})
        teapot = client.get("/teapot")
        bug = client.get("/bug")
        declared_too_large = client.post("/items", content=b"{" + b" " * 2000 + b"}")
        streamed_too_large = client.post("/items", content=iter([b" " * 600, b" " * 600]))
        created = client.post("/items", json={"name": "ok"})
    assert (missing.status_code, missing.json()) == (404, {"error": "not_found", "detail": "Not Found"})
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_request" and invalid.json()["detail"][0]["loc"] == ["body", "name"]
    assert "input" not in invalid.json()["detail"][0], "a rejected value (a password) must not be echoed back"
    assert (teapot.status_code, teapot.json(), teapot.headers["X-Why"]) == (
        418,
        {"error": "teapot", "detail": "short and stout"},
        "tea",
    )
    trace = parse_traceparent(bug.headers["traceparent"])
    assert trace is not None
    assert (bug.status_code, bug.json()) == (
        500,
        {"error": "internal_error", "detail": f"internal error; trace id {trace[0]}"},
    )
    for too_large in (declared_too_large, streamed_too_large):
        assert too_large.status_code == 413
        assert too_large.json() == {"error": "body_too_large", "detail": "request body exceeds the limit of 1024 bytes"}
    assert (created.status_code, created.json()) == (201, {"name": "ok"})


def test_database_errors_become_503_with_retry_after(make_service_settings: ServiceSettingsFactory) -> None:
    router = APIRouter()

    @router.get("/query")
    async def query() -> None:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    settings: ShopSettings = make_service_settings("eta")
    with TestClient(create_service_app(settings, routers=[router])) as client:
        response = client.get("/query")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert response.json()["error"] == "database_unavailable"


def test_start_up_applies_shared_and_service_migrations(
    make_service_settings: ServiceSettingsFactory, tmp_path: Path
) -> None:
    settings: ShopSettings = make_service_settings("theta")
    migrations = write_migrations(tmp_path / "m", {"0001_things.sql": "CREATE TABLE things (id int);"})
    app = create_service_app(settings, migrations_dir=migrations, shared_migrations=[IDEMPOTENCY_MIGRATION])
    with TestClient(app):
        pass
    with connect(settings) as conn:
        names = [row["name"] for row in conn.execute("SELECT name FROM theta.schema_migrations ORDER BY applied_at")]
    assert names == [IDEMPOTENCY_MIGRATION[0], "0001_things.sql"]


# --- Container health check ---


class _StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the test reads status codes, not access lines


@pytest.mark.parametrize("status", [200, 503])
def test_the_container_health_check(status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = type("Handler", (_StatusHandler,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PORT", str(server.server_address[1]))
        assert healthcheck.main() == (0 if status == 200 else 1)
    finally:
        server.shutdown()
        server.server_close()
    closed = free_port()
    assert healthcheck.check(closed) is not None and f"port {closed} failed" in str(healthcheck.check(closed))
    monkeypatch.setenv("PORT", "http")
    assert healthcheck.main() == 1


# --- Tokens ---

ISSUER, AUDIENCE = "shop-users", "shop"


def verifier_for(signer: TokenSigner) -> TokenVerifier:
    return TokenVerifier.from_jwks(signer.jwks(), issuer=ISSUER, audience=AUDIENCE)


def verify(verifier: TokenVerifier, token: str) -> Principal:
    return asyncio.run(verifier.verify(token))


def test_a_signed_token_verifies_to_its_principal(token_signer: TokenSigner) -> None:
    issued = token_signer.issue("user-42")
    assert verify(verifier_for(token_signer), issued.token) == Principal("user-42", issued.token_id)
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "EdDSA", "kid": token_signer.kid, "typ": "JWT"}
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(claims) == {"iss", "aud", "sub", "iat", "exp", "jti"}
    assert claims["exp"] - claims["iat"] == 900


def test_the_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    signer = TokenSigner(Ed25519PrivateKey.generate(), issuer=ISSUER, audience=AUDIENCE)
    (published,) = signer.jwks()["keys"]
    assert published["kid"] == thumbprint(published) == signer.kid
    assert "d" not in published  # never the private part


def forged(claims: dict[str, Any], key: Any, algorithm: str, kid: str) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@pytest.mark.parametrize(
    "case", ["expired", "wrong audience", "wrong issuer", "alg none", "HS256 with the public key", "tampered"]
)
def test_bad_tokens_are_refused(token_signer: TokenSigner, case: str) -> None:
    verifier = verifier_for(token_signer)
    now = datetime.now(UTC)
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u", "iat": int(now.timestamp()), "exp": int(now.timestamp()) + 60}
    claims["jti"] = "j"
    public_x = token_signer.jwks()["keys"][0]["x"]
    if case == "expired":
        token = token_signer.issue("u", now=now - timedelta(minutes=16)).token
    elif case == "wrong audience":
        token = (
            TokenSigner.from_settings(
                ShopSettings(
                    SERVICE_NAME="users", JWT_AUDIENCE="elsewhere", JWT_SIGNING_KEY=SecretStr(_seed_of(token_signer))
                )
            )
            .issue("u")
            .token
        )
    elif case == "wrong issuer":
        token = TokenSigner(_key_of(token_signer), issuer="mallory", audience=AUDIENCE).issue("u").token
    elif case == "alg none":
        token = forged(claims, None, "none", token_signer.kid)
    elif case == "HS256 with the public key":
        token = _hs256_with(public_x, claims, token_signer.kid)
    else:
        header, payload, signature = token_signer.issue("u").token.split(".")
        changed = json.loads(base64.urlsafe_b64decode(payload + "=="))
        changed["sub"] = "admin"
        payload = base64.urlsafe_b64encode(json.dumps(changed).encode()).rstrip(b"=").decode()
        token = f"{header}.{payload}.{signature}"
    with pytest.raises(jwt.InvalidTokenError):
        verify(verifier, token)


def _key_of(signer: TokenSigner) -> Ed25519PrivateKey:
    return signer._private_key  # pyright: ignore[reportPrivateUsage]


def _seed_of(signer: TokenSigner) -> str:
    raw = _key_of(signer).private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def _hs256_with(secret: str, claims: dict[str, Any], kid: str) -> str:
    # PyJWT itself refuses to HMAC with something that looks like a key, so forge the token by hand.
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_signing_keys_are_checked() -> None:
    with pytest.raises(SigningKeyError, match="32-byte Ed25519 seed, got 16 bytes"):
        private_key_from_seed(base64.b64encode(b"x" * 16).decode())
    with pytest.raises(SigningKeyError, match="not valid base64"):
        private_key_from_seed("not base64!")
    with pytest.raises(SigningKeyError, match=r"set JWT_SIGNING_KEY .* or JWT_SIGNING_KEY_FILE"):
        TokenSigner.from_settings(ShopSettings(SERVICE_NAME="users"))


def test_a_pem_key_file_signs_like_a_seed(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    signer = TokenSigner.from_settings(ShopSettings(SERVICE_NAME="users", JWT_SIGNING_KEY_FILE=tmp_path / "key.pem"))
    assert signer.jwks()["keys"][0]["x"] == TokenSigner(key, issuer=ISSUER, audience=AUDIENCE).jwks()["keys"][0]["x"]
    with pytest.raises(SigningKeyError, match="cannot be read"):
        TokenSigner.from_settings(ShopSettings(SERVICE_NAME="users", JWT_SIGNING_KEY_FILE=tmp_path / "missing"))


class JwksServer:
    """A users-like JWKS endpoint on httpx's ASGI transport that counts fetches and can switch keys."""

    def __init__(self, signer: TokenSigner) -> None:
        self.signer = signer
        self.fetches = 0
        app = FastAPI()

        @app.get(JWKS_PATH)
        async def jwks(_: Request) -> dict[str, Any]:
            self.fetches += 1
            return self.signer.jwks()

        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://users")


def test_an_unknown_kid_refetches_the_key_set_at_most_once_per_interval(token_signer: TokenSigner) -> None:
    server = JwksServer(token_signer)
    keys = RemoteKeys(f"http://users{JWKS_PATH}", server.client, refresh_seconds=0.5)
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)
    rotated = TokenSigner(Ed25519PrivateKey.generate(), issuer=ISSUER, audience=AUDIENCE)

    async def scenario() -> None:
        first = token_signer.issue("u1")
        await asyncio.gather(*(verifier.verify(first.token) for _ in range(10)))
        assert server.fetches == 1  # concurrent first uses share one fetch
        server.signer = rotated  # users rotates its key
        new_token = rotated.issue("u2").token
        with pytest.raises(jwt.InvalidTokenError, match="no signing key with kid"):
            await verifier.verify(new_token)  # the last fetch is too recent to fetch again
        assert server.fetches == 1
        await asyncio.sleep(0.6)
        assert await verifier.verify(new_token) == Principal(
            "u2", jwt.decode(new_token, options={"verify_signature": False})["jti"]
        )
        assert server.fetches == 2
        await verifier.aclose()

    asyncio.run(scenario())


def protected_app(verifier: TokenVerifier | None, settings: ShopSettings) -> FastAPI:
    router = APIRouter()

    @router.get("/me")
    async def me(user: CurrentUser) -> dict[str, str]:
        return {"user_id": user.user_id}

    app = create_service_app(settings, routers=[router])
    if verifier is not None:
        install_token_verifier(app, verifier)
    return app


def test_current_user_answers_401_with_a_bearer_challenge(
    token_signer: TokenSigner, make_service_settings: ServiceSettingsFactory
) -> None:
    app = protected_app(verifier_for(token_signer), make_service_settings("iota"))
    with TestClient(app) as client:
        ok = client.get("/me", headers={"Authorization": f"Bearer {token_signer.issue('u7').token}"})
        anonymous = client.get("/me")
        garbage = client.get("/me", headers={"Authorization": "Bearer not.a.token"})
    assert (ok.status_code, ok.json()) == (200, {"user_id": "u7"})
    assert (anonymous.status_code, anonymous.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert (garbage.status_code, garbage.headers["WWW-Authenticate"]) == (401, 'Bearer error="invalid_token"')
    assert garbage.json()["error"] == "invalid_token"


def test_an_unreachable_key_set_is_503_not_500(
    token_signer: TokenSigner, make_service_settings: ServiceSettingsFactory
) -> None:
    settings: ShopSettings = make_service_settings(
        "iota", USERS_URL=f"http://127.0.0.1:{free_port()}", JWKS_TIMEOUT_SECONDS=0.5
    )
    app = protected_app(TokenVerifier.from_settings(settings), settings)
    with TestClient(app) as client:
        response = client.get("/me", headers={"Authorization": f"Bearer {token_signer.issue('u7').token}"})
    assert (response.status_code, response.json()["error"], response.headers["Retry-After"]) == (
        503,
        "keys_unavailable",
        "5",
    )


def test_a_static_public_key_setting_verifies(token_signer: TokenSigner) -> None:
    (jwk,) = token_signer.jwks()["keys"]
    settings = ShopSettings(SERVICE_NAME="orders", JWT_PUBLIC_KEY=json.dumps(jwk))
    issued = token_signer.issue("u9")
    assert verify(TokenVerifier.from_settings(settings), issued.token) == Principal("u9", issued.token_id)
    with pytest.raises(ValueError, match=r"JWT_PUBLIC_KEY .* or USERS_URL"):
        TokenVerifier.from_settings(ShopSettings(SERVICE_NAME="orders"))


# --- Idempotency keys ---


@pytest.fixture
def idempotency_settings(make_service_settings: ServiceSettingsFactory) -> ShopSettings:
    settings: ShopSettings = make_service_settings("kappa")
    apply_service_migrations(settings, None, shared=[IDEMPOTENCY_MIGRATION])
    return settings


def test_twenty_concurrent_duplicates_execute_once(idempotency_settings: ShopSettings) -> None:
    executions: list[int] = []

    async def scenario() -> list[Any]:
        pool = await open_service_pool(idempotency_settings)
        try:

            async def attempt(index: int) -> Any:
                async with idempotent(pool, scope="user:1:POST /orders", key="k-concurrent", request=b"{}") as run:
                    if run.replay:
                        return run.replay
                    executions.append(index)
                    await asyncio.sleep(0.2)  # the work: calls to other services
                    async with pool.connection() as conn, conn.transaction():
                        await run.complete(conn, 201, {"order": index})
                    return "executed"

            first_round = await asyncio.gather(*(attempt(i) for i in range(20)), return_exceptions=True)
            later = await attempt(99)
            return [*first_round, later]
        finally:
            await pool.close()

    outcomes = asyncio.run(scenario())
    assert len(executions) == 1
    assert outcomes[:20].count("executed") == 1
    in_progress = [o for o in outcomes[:20] if isinstance(o, IdempotencyInProgressError)]
    assert len(in_progress) + outcomes[:20].count("executed") + sum(isinstance(o, Replay) for o in outcomes[:20]) == 20
    assert all(error.status == 409 and int(error.headers["Retry-After"]) >= 1 for error in in_progress)
    assert outcomes[20] == Replay(201, {"order": executions[0]})


def run_begin(settings: ShopSettings, key: str, body: bytes | dict[str, Any], scope: str = "user:1") -> Any:
    async def go() -> Any:
        pool = await open_service_pool(settings)
        try:
            async with pool.connection() as conn:
                return await begin(conn, scope, key, body)
        finally:
            await pool.close()

    return asyncio.run(go())


def test_a_reused_key_with_another_body_is_422_naming_the_key(idempotency_settings: ShopSettings) -> None:
    assert not isinstance(run_begin(idempotency_settings, "k-reuse", {"a": 1, "b": 2}), Replay)
    with pytest.raises(IdempotencyInProgressError):
        run_begin(idempotency_settings, "k-reuse", {"b": 2, "a": 1})  # same body, other key order
    with pytest.raises(IdempotencyKeyReusedError) as error:
        run_begin(idempotency_settings, "k-reuse", {"a": 1, "b": 3})
    assert (error.value.status, error.value.code) == (422, "idempotency_key_reused")
    assert "'k-reuse'" in error.value.detail
    assert not isinstance(run_begin(idempotency_settings, "k-reuse", {"a": 1, "b": 3}, scope="user:2"), Replay)


def test_a_failed_attempt_releases_the_key_for_a_retry(idempotency_settings: ShopSettings) -> None:
    async def scenario() -> list[str]:
        pool = await open_service_pool(idempotency_settings)
        seen: list[str] = []
        try:
            try:
                async with idempotent(pool, scope="s", key="k-retry", request=b"x"):
                    seen.append("first")
                    raise RuntimeError("payments down")
            except RuntimeError as error:
                seen.append(str(error))
            async with idempotent(pool, scope="s", key="k-retry", request=b"x") as run:
                assert run.replay is None
                seen.append("retry")
                async with pool.connection() as conn, conn.transaction():
                    await run.complete(conn, 200, {"ok": True})
            async with idempotent(pool, scope="s", key="k-retry", request=b"x") as run:
                assert run.replay == Replay(200, {"ok": True})
        finally:
            await pool.close()
        return seen

    assert asyncio.run(scenario()) == ["first", "payments down", "retry"]


def test_expired_keys_and_orphaned_claims_are_taken_over(idempotency_settings: ShopSettings) -> None:
    assert not isinstance(run_begin(idempotency_settings, "k-old", b"a"), Replay)
    assert not isinstance(run_begin(idempotency_settings, "k-orphan", b"a"), Replay)
    with connect(idempotency_settings) as conn:
        conn.execute("UPDATE kappa.idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'k-old'")
        conn.execute(
            "UPDATE kappa.idempotency_keys SET locked_until = now() - interval '1 second' WHERE key = 'k-orphan'"
        )
    assert not isinstance(run_begin(idempotency_settings, "k-old", b"another body after a day"), Replay)
    assert not isinstance(run_begin(idempotency_settings, "k-orphan", b"a"), Replay)
    with pytest.raises(IdempotencyKeyReusedError):
        run_begin(idempotency_settings, "k-orphan", b"b")


def test_expired_keys_are_purged_while_the_service_runs(idempotency_settings: ShopSettings) -> None:
    run_begin(idempotency_settings, "k-stale", b"a")
    run_begin(idempotency_settings, "k-fresh", b"a")
    with connect(idempotency_settings) as conn:
        conn.execute("UPDATE kappa.idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'k-stale'")

    async def scenario() -> list[str]:
        pool = await open_service_pool(idempotency_settings)
        runtime = ServiceRuntime(app=FastAPI(), settings=idempotency_settings, pool=pool, tracing=None)
        rows: list[Any] = []
        try:
            async with expired_key_purging(interval_seconds=0.05)(runtime):
                for _ in range(100):
                    async with pool.connection() as conn:
                        rows = await (await conn.execute("SELECT key FROM idempotency_keys ORDER BY key")).fetchall()
                    if "k-stale" not in {row["key"] for row in rows}:
                        break
                    await asyncio.sleep(0.05)
            return [row["key"] for row in rows]
        finally:
            await pool.close()

    remaining = asyncio.run(scenario())  # other tests' keys share the schema
    assert "k-stale" not in remaining and "k-fresh" in remaining


@pytest.mark.parametrize("key", [None, "", "x" * 256, "caf\u00e9", "tab\there"])
def test_invalid_idempotency_keys_say_what_is_allowed(key: str | None) -> None:
    with pytest.raises(ServiceError, match="1 to 255 printable ASCII characters"):
        validate_key(key)


# --- Running: graceful shutdown ---

SLOW_SERVICE = """
import asyncio
import os
from pathlib import Path

from fastapi import APIRouter

from services.shop.common.app import create_service_app, run
from services.shop.common.settings import ShopSettings, load_settings

router = APIRouter()


@router.get("/slow")
async def slow() -> dict[str, bool]:
    Path(os.environ["STARTED_MARKER"]).touch()
    await asyncio.sleep(1.0)
    return {"done": True}


settings = load_settings(ShopSettings)
run(create_service_app(settings, routers=[router]), settings)
"""


def test_sigterm_lets_in_flight_requests_finish(make_service_settings: ServiceSettingsFactory, tmp_path: Path) -> None:
    script, marker, port = tmp_path / "slow_service.py", tmp_path / "started", free_port()
    script.write_text(SLOW_SERVICE)
    env = (
        os.environ
        | settings_env(make_service_settings("lambda_"))
        | {"PORT": str(port), "STARTED_MARKER": str(marker), "PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "INFO"}
    )
    process = subprocess.Popen([sys.executable, str(script)], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(
            lambda: process.poll() is not None or healthcheck.check(port) is None, timeout=20, what="/health to answer"
        )
        assert process.poll() is None, "the service exited at start-up"
        answers: list[httpx.Response] = []
        request = threading.Thread(
            target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/slow", timeout=10))
        )
        request.start()
        wait_until(marker.exists, timeout=10, what="the slow request to start")
        process.send_signal(signal.SIGTERM)
        request.join(timeout=15)
        stdout, _ = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [(answer.status_code, answer.json()) for answer in answers] == [(200, {"done": True})]
    # uvicorn re-raises the signal once it has shut down, so the exit status is "terminated by SIGTERM".
    assert process.returncode in {0, -signal.SIGTERM}
    assert "service stopping" in [json.loads(line)["msg"] for line in stdout.splitlines() if line.startswith("{")]
