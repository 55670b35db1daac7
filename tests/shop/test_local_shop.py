"""`./platform local --app shop`: the environment each service gets mirrors Pulumi.shop.yaml, and the whole shop,
started through ShopProcesses on a throwaway database, Redis prefix and fauxqs, serves every public route of
docs/shop.md through the gateway; one service can be stopped, killed and started again."""

from __future__ import annotations

import base64
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import sql

from services.common.redis_client import delete_prefix, sync_client
from services.common.settings import Settings
from services.fauxqs import FAUXQS_ENTRY, npm_ci
from services.shop.common.observability import parse_traceparent
from services.shop.local import (
    ADMIN_CONNINFO,
    LocalResources,
    ShopProcesses,
    ShopStartError,
    ensure_secret_file,
    resolve_ports,
    service_environment,
)
from services.shop.routes import RouteTable, load_stack_config

PORTS = {"users": 18081, "products": 18082, "orders": 18083, "payments": 18084, "notifications": 18085}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def resources(tmp_path: Path) -> LocalResources:
    return LocalResources(
        database="shop_x",
        redis_prefix="shop-x",
        sqs_endpoint_url="http://127.0.0.1:9324",
        queue_urls={"notifications": "http://127.0.0.1:9324/000000000000/shop-x-notifications"},
        secret_files={("users", "JWT_SIGNING_KEY"): tmp_path / "jwt.key"},
        mail_dir=tmp_path / "mail",
    )


def test_each_service_gets_its_own_role_schema_redis_prefix_and_port(tmp_path: Path) -> None:
    config = load_stack_config()
    for name in config.services:
        env = service_environment(config, name, PORTS, resources(tmp_path))
        assert env["SERVICE_NAME"] == name
        assert env["PORT"] == str(PORTS[name])
        assert (env["DB_NAME"], env["DB_USER"], env["DB_SCHEMA"]) == ("shop_x", name, name)
        assert env["REDIS_KEY_PREFIX"] == f"shop-x:{name}:"
        assert env["APP_ENV"] == "local"


def test_calls_queues_secrets_and_email_come_from_the_stack_file(tmp_path: Path) -> None:
    config = load_stack_config()
    local = resources(tmp_path)
    orders = service_environment(config, "orders", PORTS, local)
    assert orders["USERS_URL"] == "http://127.0.0.1:18081"
    assert orders["PRODUCTS_URL"] == "http://127.0.0.1:18082"
    assert orders["PAYMENTS_URL"] == "http://127.0.0.1:18084"
    assert orders["NOTIFICATIONS_QUEUE_URL"] == local.queue_urls["notifications"]
    assert orders["SQS_ENDPOINT_URL"] == local.sqs_endpoint_url
    notifications = service_environment(config, "notifications", PORTS, local)
    assert notifications["QUEUE_URL"] == local.queue_urls["notifications"]
    assert notifications["EMAIL_SINK_DIR"] == str(local.mail_dir)
    assert notifications["EMAIL_FROM"] == config.services["notifications"].email.fromAddress  # pyright: ignore[reportOptionalMemberAccess]
    users = service_environment(config, "users", PORTS, local)
    assert users["JWT_SIGNING_KEY_FILE"] == str(tmp_path / "jwt.key")
    payments = service_environment(config, "payments", PORTS, local)
    assert not {"QUEUE_URL", "SQS_ENDPOINT_URL", "NOTIFICATIONS_QUEUE_URL", "EMAIL_SINK_DIR"} & set(payments)
    assert not [variable for variable in payments if variable.endswith("_URL")]


def test_a_generated_secret_is_random_base64_private_and_kept(tmp_path: Path) -> None:
    path = ensure_secret_file(tmp_path / "dir" / "jwt.key", 32)
    first = path.read_text()
    assert len(base64.b64decode(first.strip(), validate=True)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_secret_file(path, 32).read_text() == first
    assert ensure_secret_file(tmp_path / "other.key", 32).read_text() != first


def test_service_ports_must_name_exactly_the_services_with_a_port() -> None:
    config = load_stack_config()
    assert resolve_ports(config, "table") == {name: PORTS[name] - 10000 for name in PORTS}
    with pytest.raises(ValueError, match=r"missing \['users'\], unknown \['web'\]; allowed: exactly the services"):
        resolve_ports(config, {**{n: p for n, p in PORTS.items() if n != "users"}, "web": 1})


# --- The whole shop -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopProcesses]:
    if not FAUXQS_ENTRY.exists() and (npm_ci() != 0 or not FAUXQS_ENTRY.exists()):
        pytest.fail("fauxqs is not installed and `npm ci` failed; run: uv run python -m services.fauxqs install")
    tag = uuid.uuid4().hex[:10]
    database, redis_prefix = f"shop_test_{tag}", f"shop-test-{tag}"
    root = tmp_path_factory.mktemp("shop")
    processes = ShopProcesses(
        database=database,
        redis_prefix=redis_prefix,
        port=0,
        service_ports="free",
        local_dir=root / "local",
        log_dir=root / "logs",
        log_level="WARNING",
        stop_grace=5,
        integration_timeout=8,
    )
    try:
        with processes:
            processes.seed_products(20)
            yield processes
    finally:
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        redis = sync_client(Settings())
        delete_prefix(redis, f"{redis_prefix}:")
        redis.close()


@pytest.fixture
def client(shop: ShopProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, timeout=30) as http:
        yield http


def traced(span: int) -> dict[str, str]:
    return {"traceparent": f"00-{TRACE_ID}-{span:016x}-01"}


def assert_served_by_a_service(response: httpx.Response) -> None:
    """The request went through the gateway to a shop service, which continued the caller's trace."""
    assert response.json() != {"message": "Not Found"}
    parsed = parse_traceparent(response.headers.get("traceparent"))
    assert parsed is not None, response.headers
    assert parsed[0] == TRACE_ID


def test_every_service_reports_ready(shop: ShopProcesses) -> None:
    for name in shop.services:
        assert httpx.get(f"{shop.service_url(name)}/ready").status_code == 200, name
        assert httpx.get(f"{shop.service_url(name)}/health").status_code == 200, name
    assert shop.exited() == {}


def test_every_public_route_is_served_through_the_gateway(shop: ShopProcesses, client: httpx.Client) -> None:
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery staple"
    served: dict[str, httpx.Response] = {}

    served["POST /users"] = client.post(
        "/users", json={"email": email, "password": password, "name": "Ada"}, headers=traced(1)
    )
    assert served["POST /users"].status_code == 201, served["POST /users"].text
    served["POST /auth/token"] = client.post(
        "/auth/token", json={"email": email, "password": password}, headers=traced(2)
    )
    assert served["POST /auth/token"].status_code == 200, served["POST /auth/token"].text
    bearer = {"authorization": f"Bearer {served['POST /auth/token'].json()['access_token']}"}
    served["GET /users/me"] = client.get("/users/me", headers=bearer | traced(3))
    assert served["GET /users/me"].json()["email"] == email

    served["GET /products"] = client.get("/products", headers=traced(4))
    product = served["GET /products"].json()["items"][0]
    served["GET /products/{id}"] = client.get(f"/products/{product['id']}", headers=traced(5))
    assert served["GET /products/{id}"].json()["id"] == product["id"]

    order = {"items": [{"product_id": product["id"], "quantity": 1}], "currency": product["currency"]}
    served["POST /orders"] = client.post(
        "/orders", json=order, headers=bearer | traced(6) | {"idempotency-key": str(uuid.uuid4())}
    )
    assert served["POST /orders"].status_code in (201, 202), served["POST /orders"].text
    order_id = served["POST /orders"].json()["id"]
    served["GET /orders"] = client.get("/orders", headers=bearer | traced(7))
    assert order_id in [placed["id"] for placed in served["GET /orders"].json()["items"]]
    served["GET /orders/{id}"] = client.get(f"/orders/{order_id}", headers=bearer | traced(8))
    assert served["GET /orders/{id}"].status_code == 200

    routes = {route.key for route in RouteTable.from_config(shop.config).routes}
    assert set(served) == routes
    for response in served.values():
        assert_served_by_a_service(response)


def test_internal_services_and_unknown_paths_are_the_gateway_s_404(client: httpx.Client) -> None:
    for path in ("/payments", "/notifications", "/health", "/users/me/extra"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (404, {"message": "Not Found"}), path


def test_a_service_can_be_killed_paused_stopped_and_started_again(shop: ShopProcesses, client: httpx.Client) -> None:
    shop.kill_service("products")
    down = client.get("/products")
    assert (down.status_code, down.json()) == (503, {"message": "Service Unavailable"})
    shop.start_service("products")
    assert client.get("/products").status_code == 200

    shop.pause_service("products")
    hung = client.get("/products/00000000-0000-0000-0000-000000000001")
    assert (hung.status_code, hung.json()) == (504, {"message": "Gateway Timeout"})
    shop.resume_service("products")
    assert client.get("/products").status_code == 200

    shop.stop_service("payments")
    assert "payments" in shop.exited()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{shop.service_url('payments')}/health")
    shop.start_service("payments")
    assert httpx.get(f"{shop.service_url('payments')}/ready").status_code == 200
    assert shop.exited() == {}


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        shop = ShopProcesses(port=port, service_ports="free", local_dir=tmp_path, log_dir=tmp_path)
        with pytest.raises(ShopStartError, match=rf"port {port} \(gateway\) already in use; stop what listens there"):
            shop.start()
    assert not list(tmp_path.iterdir())  # no database, queue, secret or process was touched
