"""Task sandbox for the stacks with `services` (the shop, docs/shop.md): each service runs its real entry point
(`python -m services.shop.<name>`, the image's CMD) as its planned container definition says, all five as one
deployment.

Each service gets its own role and schema in a throwaway database (as the db_roles Lambda makes them in AWS, here
with services.shop.common.database.ensure_service_role like services/shop/local.py), its own throwaway Redis prefix,
the fauxqs queues its plan names (created like services/shop/local.py creates them, from the stack's `queue`), its
`generatedSecrets` freshly generated, and its callees at their planned Service Connect names (`http://users:8081`).
Each must pass its planned health check and /ready and run as planned inside; then one order goes through the shop:
register, token, the seeded catalog, the order, and the confirmation email the notifications service writes to
its /tmp. See docs/runtime-proofs.md ("Task sandbox").
"""

from __future__ import annotations

import base64
import graphlib
import os
import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from psycopg import sql

from services.fauxqs import Fauxqs
from services.shop.common.database import ensure_service_role
from services.shop.local import ensure_service_queues
from tests.sandbox.conftest import admin_execute
from tests.sandbox.deployment import assert_runs_as_planned, client_of, sandbox_spec
from tests.sandbox.environment import EMAIL_SINK_DIR, LocalServices
from tests.sandbox.sandbox import HostBridges, Peer, Sandbox
from tests.sandbox.stacks import SERVICE_STACKS, sandboxed, stack_config
from tests.sandbox.task import Container
from tests.services.helpers import ADMIN_DSN

SHOP = ("users", "products", "orders", "payments", "notifications")
PASSWORD = "correct horse battery staple"
FLOW_TIMEOUT_SECONDS = 60.0


@dataclass
class ShopDeployment:
    """The services of one stack, each in its sandbox, with a client to each one's port."""

    stack: str
    containers: dict[str, Container]
    sandboxes: dict[str, Sandbox]
    clients: dict[str, httpx.Client]


def role_names(containers: Mapping[str, Container], tag: str) -> dict[str, str]:
    """Service -> the throwaway role standing in for its planned DB_USER (roles are cluster-wide: the planned
    name would be shared with every other run on this server)."""
    return {
        name: f"{container.environment['DB_USER']}_sbx_{tag}"
        for name, container in containers.items()
        if "DB_USER" in container.environment
    }


def make_roles(containers: Mapping[str, Container], roles: Mapping[str, str], database: str, password: str) -> None:
    for name, role in roles.items():
        ensure_service_role(ADMIN_DSN, database, role, containers[name].environment["DB_SCHEMA"])
        admin_execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


def planned_queues(stack: str, containers: Mapping[str, Container], sqs_url: str) -> dict[str, str]:
    """Planned queue URL -> a fresh fauxqs queue (with its dead-letter queue) for each service's `queue`."""
    created = ensure_service_queues(stack_config(stack), sqs_url, f"sbx-{stack}-{uuid.uuid4().hex[:8]}")
    return {containers[name].environment["QUEUE_URL"]: url for name, url in created.items()}


def generated_secrets(stack: str, service: str) -> dict[str, str]:
    """Each `generatedSecrets` variable of `service`: base64 of that many random bytes, as Secrets Manager holds it."""
    spec = stack_config(stack).services[service]
    values = {
        name: base64.b64encode(os.urandom(secret.bytes)).decode() for name, secret in spec.generatedSecrets.items()
    }
    # keepPrevious: the AWSPREVIOUS version, before any rotation the initial version's own random bytes.
    for name, secret in spec.generatedSecrets.items():
        if secret.keepPrevious:
            values[f"{name}_PREVIOUS"] = base64.b64encode(os.urandom(secret.bytes)).decode()
    return values


def callees(container: Container, services: Mapping[str, Container]) -> dict[str, int]:
    """Services `container` calls by a planned URL (`http://<service>:<port>`): name -> port."""
    found: dict[str, int] = {}
    for value in container.environment.values():
        url = urlsplit(value)
        if url.scheme == "http" and url.hostname is not None and url.hostname in services and url.port is not None:
            found[url.hostname] = url.port
    return found


@pytest.fixture(scope="module", params=SERVICE_STACKS)
def shop(
    request: pytest.FixtureRequest,
    sandbox_tools: None,
    planned: dict[str, list[Container]],
    session_tag: str,
    fauxqs_server: Fauxqs,
    bridges: HostBridges,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ShopDeployment]:
    stack: str = request.param
    containers = sandboxed(stack, planned[stack])
    assert sorted(containers) == sorted(SHOP), f"{stack}: the sandbox exercises the shop's services {SHOP}"
    database = f"cp_sbx_{session_tag}_svc_{stack.replace('-', '_')}"
    roles, password = role_names(containers, session_tag), secrets.token_urlsafe(16)
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        make_roles(containers, roles, database, password)
        endpoints = {e.name: e for e in bridges.endpoints}
        base = LocalServices(
            postgres_host="127.0.0.1",
            postgres_port=endpoints["postgres"].port,
            database=database,
            db_user="",
            db_password=password,
            redis_host="127.0.0.1",
            redis_port=endpoints["redis"].port,
            redis_key_prefix="",
            sqs_endpoint_url=fauxqs_server.endpoint_url,
            queue_urls=planned_queues(stack, containers, fauxqs_server.endpoint_url),
        )
        scratch = tmp_path_factory.mktemp(f"sandbox-{stack}")
        calls = {name: callees(container, containers) for name, container in containers.items()}
        sandboxes: dict[str, Sandbox] = {}
        with ExitStack() as running:
            # Callees first: a caller's sandbox mounts the directory of each callee's socket.
            for name in graphlib.TopologicalSorter(calls).static_order():
                local = replace(
                    base,
                    db_user=roles.get(name, ""),
                    redis_key_prefix=f"cp-test-{session_tag}:sbx-{stack}:{name}:",
                    generated_secrets=generated_secrets(stack, name),
                )
                peers = [Peer(callee, port, sandboxes[callee].inbound) for callee, port in calls[name].items()]
                spec = sandbox_spec(containers[name], local, {}, scratch, peers)
                sandboxes[name] = running.enter_context(Sandbox(spec, bridges, scratch / name))
            clients = {name: running.enter_context(client_of(sandbox)) for name, sandbox in sandboxes.items()}
            yield ShopDeployment(stack, containers, sandboxes, clients)
    finally:
        admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        for role in roles.values():
            admin_execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def healthy(shop: ShopDeployment) -> ShopDeployment:
    """The deployment once every service has passed its planned health check."""
    for sandbox in shop.sandboxes.values():
        sandbox.wait_healthy()
    return shop


@pytest.mark.parametrize("service", SHOP)
def test_passes_its_health_check_and_is_ready(healthy: ShopDeployment, service: str) -> None:
    sandbox = healthy.sandboxes[service]
    result = sandbox.health_check()
    assert result.returncode == 0, f"{sandbox.label}: health check failed: {result.stderr}\n{sandbox.output()}"
    ready = healthy.clients[service].get("/ready")
    assert ready.status_code == 200, f"{sandbox.label}: /ready {ready.status_code} {ready.text}\n{sandbox.output()}"
    checks = ready.json()["checks"]
    assert "database" in checks and set(checks.values()) == {"ok"}, checks


@pytest.mark.parametrize("service", SHOP)
def test_runs_as_planned_inside(healthy: ShopDeployment, service: str) -> None:
    assert_runs_as_planned(healthy.sandboxes[service])


def seed_catalog(products: Sandbox, count: int) -> None:
    """The seed command run as an operator runs a one-off task: in the service's container, as its user."""
    seeded = products.run_inside(["python", "-m", "services.shop.products.seed", "--count", str(count)], timeout=120)
    assert seeded.returncode == 0, f"{products.label}: seeding failed: {seeded.stdout}{seeded.stderr}"


def bearer_token(users: httpx.Client, email: str) -> dict[str, str]:
    created = users.post("/users", json={"email": email, "password": PASSWORD, "name": "Ada"})
    assert created.status_code == 201, created.text
    token = users.post("/auth/token", json={"email": email, "password": PASSWORD})
    assert token.status_code == 200, token.text
    return {"authorization": f"Bearer {token.json()['access_token']}"}


def place_order(orders: httpx.Client, bearer: dict[str, str], product: dict[str, object]) -> str:
    order = {"items": [{"product_id": product["id"], "quantity": 1}], "currency": product["currency"]}
    placed = orders.post("/orders", json=order, headers=bearer | {"idempotency-key": str(uuid.uuid4())})
    assert placed.status_code in (201, 202), placed.text
    return str(placed.json()["id"])


def wait_for_order(deployment: ShopDeployment, bearer: dict[str, str], order_id: str) -> dict[str, object]:
    """The order once its saga has ended (it may answer 202 and finish in the background)."""
    deadline = time.monotonic() + FLOW_TIMEOUT_SECONDS
    while True:
        order = deployment.clients["orders"].get(f"/orders/{order_id}", headers=bearer)
        assert order.status_code == 200, order.text
        if order.json()["status"] in ("confirmed", "rejected", "payment_failed", "cancelled"):
            return order.json()
        assert time.monotonic() < deadline, f"order still {order.json()['status']}\n{logs(deployment)}"
        time.sleep(0.2)


def wait_for_email(deployment: ShopDeployment, recipient: str) -> tuple[Path, EmailMessage]:
    """The email to `recipient`, from the notifications sandbox's /tmp as seen from the host."""
    notifications = deployment.sandboxes["notifications"]
    sink = notifications.spec.mounts["/tmp"] / Path(EMAIL_SINK_DIR).relative_to("/tmp")
    deadline = time.monotonic() + FLOW_TIMEOUT_SECONDS
    while True:
        for path in sink.glob("*.eml") if sink.is_dir() else ():
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and message["To"] == recipient:
                return path, message
        assert notifications.running(), f"{notifications.label} exited\n{notifications.output()}"
        assert time.monotonic() < deadline, f"no email to {recipient} in {EMAIL_SINK_DIR}\n{logs(deployment)}"
        time.sleep(0.2)


def logs(deployment: ShopDeployment) -> str:
    return "\n".join(sandbox.output(1500) for sandbox in deployment.sandboxes.values())


def test_an_order_goes_through_the_sandboxed_shop(healthy: ShopDeployment) -> None:
    """Register and get a token (users), browse the seeded catalog (products), order (orders, which calls users,
    products and payments by their planned names and sends the event to the planned queue), and the confirmation
    email (notifications, consuming that queue) lands in its /tmp, written as the task's user."""
    seed_catalog(healthy.sandboxes["products"], 5)
    email = f"sandbox-{uuid.uuid4().hex[:8]}@example.com"
    bearer = bearer_token(healthy.clients["users"], email)
    catalog = healthy.clients["products"].get("/products")
    assert catalog.status_code == 200 and catalog.json()["items"], catalog.text
    order_id = place_order(healthy.clients["orders"], bearer, catalog.json()["items"][0])

    assert wait_for_order(healthy, bearer, order_id)["status"] == "confirmed"
    path, message = wait_for_email(healthy, email)
    assert message["From"] == healthy.containers["notifications"].environment["EMAIL_FROM"]
    assert message["X-Template"] == "order_confirmed"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and order_id in body.get_content(), message.as_string()
    notifications = healthy.containers["notifications"]
    assert (path.stat().st_uid, path.stat().st_gid) == (notifications.uid, notifications.gid)
