"""The shop stack (Pulumi.shop.yaml, docs/shop.md) planned offline: five services, each its own database role and
schema, orders sending order events to the queue notifications owns, the signing key generated for users only,
email for notifications only, the routes on the HTTP API, images built from each service's directory, and no
mandatory policy violation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.build_context import context_files, ignore_file_for, parse_dockerignore
from runner.diff import compare
from runner.engine import PolicyPackProcess
from runner.plan import MOCK_ACCOUNT_ID, Plan
from runner.records import ResourceRecord
from services.shop.common.database import pool_budget
from tests.plans import planned as stack_plan
from tests.program.test_microservices import owner, plan_of, report
from tests.support import Recorded, env_map, inputs, json_input

ROOT = Path(__file__).resolve().parents[2]
STACK_FILE = ROOT / "Pulumi.shop.yaml"
SERVICES = ("users", "products", "orders", "payments", "notifications")
MICROSERVICE = "container-platform:microservice:Microservice"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
QUEUE = "shop-dev-notifications"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return stack_plan("shop")


@pytest.fixture(scope="module")
def shop(plan: Plan) -> Recorded:
    return Recorded(plan.resources, plan.outputs)


def stack_services() -> dict[str, Any]:
    return yaml.safe_load(STACK_FILE.read_text())["config"]["container-platform:services"]


def app_container(shop: Recorded, service: str) -> dict[str, Any]:
    task = shop.find("aws:ecs/taskDefinition:TaskDefinition", f"shop-dev-{service}-task")
    (container,) = [c for c in json_input(task, "containerDefinitions") if c["name"] == service]
    return container


def environment(shop: Recorded, service: str) -> dict[str, str]:
    return env_map(app_container(shop, service)["environment"])


def statements(shop: Recorded, service: str, role: str = "task") -> list[dict[str, Any]]:
    """Every statement of the service's task (or `exec`) role policies."""
    prefix = f"shop-dev-{service}-{role}-"
    return [
        statement
        for policy in shop.of_type(ROLE_POLICY)
        if policy.name.startswith(prefix)
        for statement in json_input(policy, "policy")["Statement"]
    ]


def owned(shop: Recorded, type_: str, service: str) -> list[ResourceRecord]:
    return [r for r in shop.of_type(type_) if owner(shop, r.urn) == service]


def granted(shop: Recorded, service: str, action_prefix: str, role: str = "task") -> dict[str, list[str]]:
    """Action -> resources, for the actions of one service (sqs:, kms:, ses:, ...)."""
    found: dict[str, list[str]] = {}
    for statement in statements(shop, service, role):
        for action in statement["Action"]:
            if action.startswith(action_prefix):
                found.setdefault(action, []).extend(statement["Resource"])
    return found


def test_five_services_as_the_stack_file_declares_them(shop):
    assert sorted(r.name for r in shop.of_type(MICROSERVICE)) == sorted(SERVICES)
    declared = stack_services()
    assert sorted(declared) == sorted(SERVICES)
    for name, spec in declared.items():
        container = app_container(shop, name)
        assert container["portMappings"][0]["containerPort"] == spec["port"]
        assert environment(shop, name)["PORT"] == str(spec["port"])
    assert shop.outputs["serviceNames"] == {name: f"shop-dev-{name}" for name in SERVICES}
    assert not shop.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert not shop.of_type("container-platform:worker:QueueWorker")


def test_each_service_connects_as_its_own_role_in_its_own_schema(shop):
    resource_id = shop.one("aws:rds/instance:Instance").outputs["resourceId"]
    for name in SERVICES:
        variables = environment(shop, name)
        assert (variables["DB_USER"], variables["DB_SCHEMA"], variables["DB_AUTH"]) == (name, name, "iam")
        assert granted(shop, name, "rds-db:") == {
            "rds-db:connect": [f"arn:aws:rds-db:us-east-1:{MOCK_ACCOUNT_ID}:dbuser:{resource_id}/{name}"]
        }
    function = inputs(shop.find("aws:lambda/function:Function", "database-roles"))
    assert function["environment"]["variables"]["ROLES"] == ",".join(("app", *SERVICES))
    invocations = {
        json.loads(inputs(r)["input"])["roles"][0]: r for r in shop.of_type("aws:lambda/invocation:Invocation")
    }
    assert set(invocations) == {"app", *SERVICES}
    for name in SERVICES:
        task = shop.find("aws:ecs/taskDefinition:TaskDefinition", f"shop-dev-{name}-task")
        assert {role for role, r in invocations.items() if r.urn in task.dependencies} == {name}


def test_notifications_owns_the_queue_and_consumes_it(shop):
    queues = {inputs(r)["name"]: r for r in shop.of_type("aws:sqs/queue:Queue")}
    assert set(queues) == {QUEUE, f"{QUEUE}-dlq"}
    assert {owner(shop, r.urn) for r in queues.values()} == {"notifications"}
    (key,) = owned(shop, "aws:kms/key:Key", "notifications")
    assert {inputs(r)["kmsMasterKeyId"] for r in queues.values()} == {key.outputs["arn"]}
    assert environment(shop, "notifications")["QUEUE_URL"].endswith(f"/{QUEUE}")
    queue_arn = queues[QUEUE].outputs["arn"]
    assert granted(shop, "notifications", "sqs:") == {
        action: [queue_arn]
        for action in (
            "sqs:ChangeMessageVisibility",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:ReceiveMessage",
        )
    }
    alarms = {r.name for r in owned(shop, "aws:cloudwatch/metricAlarm:MetricAlarm", "notifications")}
    assert {f"{QUEUE}-dlq-not-empty", f"{QUEUE}-oldest-message"} <= alarms
    scaling = {r.name for r in owned(shop, "aws:appautoscaling/policy:Policy", "notifications")}
    assert f"{QUEUE}-backlog-per-task" in scaling


def test_orders_sends_order_events_to_that_queue_only_and_no_one_else_touches_it(shop):
    queue = next(r for r in shop.of_type("aws:sqs/queue:Queue") if inputs(r)["name"] == QUEUE)
    key_arn = inputs(queue)["kmsMasterKeyId"]
    assert environment(shop, "orders")["NOTIFICATIONS_QUEUE_URL"] == environment(shop, "notifications")["QUEUE_URL"]
    assert granted(shop, "orders", "sqs:") == {"sqs:GetQueueAttributes": [queue.outputs["arn"]],
                                              "sqs:SendMessage": [queue.outputs["arn"]]}  # fmt: skip
    assert granted(shop, "orders", "kms:") == {"kms:Decrypt": [key_arn], "kms:GenerateDataKey": [key_arn]}
    for name in ("users", "products", "payments"):
        assert not granted(shop, name, "sqs:"), name
        assert not granted(shop, name, "kms:"), name
        assert not {k for k in environment(shop, name) if "QUEUE" in k}, name


def test_the_signing_key_is_generated_for_users_only(shop):
    # The key and the initial version that holds AWSPREVIOUS until the first rotation.
    generated = shop.of_type("random:index/randomBytes:RandomBytes")
    assert [inputs(r)["length"] for r in generated] == [32, 32]
    assert {owner(shop, r.urn) for r in generated} == {"users"}
    (secret,) = owned(shop, "aws:secretsmanager/secret:Secret", "users")
    (users_key,) = owned(shop, "aws:kms/key:Key", "users")
    assert inputs(secret)["kmsKeyId"] == users_key.outputs["arn"]
    signing = {s["name"]: s["valueFrom"] for s in app_container(shop, "users")["secrets"]}
    # Besides the signing key, users reads only the cache's AUTH token (it attaches the cache for its login throttle).
    assert signing["JWT_SIGNING_KEY"] == secret.outputs["arn"]
    # keepPrevious: the key before the last rotation too, as ECS reads a version stage (`<arn>::AWSPREVIOUS:`).
    assert signing["JWT_SIGNING_KEY_PREVIOUS"] == f"{secret.outputs['arn']}::AWSPREVIOUS:"
    assert set(signing) == {"JWT_SIGNING_KEY", "JWT_SIGNING_KEY_PREVIOUS", "REDIS_AUTH_TOKEN"}
    reads = granted(shop, "users", "secretsmanager:", role="exec")
    assert set(reads) == {"secretsmanager:GetSecretValue"}
    assert sorted(reads["secretsmanager:GetSecretValue"]) == sorted(
        {signing["JWT_SIGNING_KEY"], signing["REDIS_AUTH_TOKEN"]}
    )
    assert set(environment(shop, "users")["JWT_SIGNING_KEY_VERSIONS"].split()) == {
        v.outputs["id"] for v in owned(shop, "aws:secretsmanager/secretVersion:SecretVersion", "users")
    }
    assert users_key.outputs["arn"] in granted(shop, "users", "kms:", role="exec")["kms:Decrypt"]
    for name in ("products", "orders", "payments", "notifications"):
        assert "JWT_SIGNING_KEY" not in {s["name"] for s in app_container(shop, name)["secrets"]}, name
        assert secret.outputs["arn"] not in json.dumps(statements(shop, name, role="exec")), name


def test_notifications_alone_sends_email_and_only_as_its_address(shop):
    assert environment(shop, "notifications")["EMAIL_FROM"] == "orders@example.com"
    (send,) = [s for s in statements(shop, "notifications") if s["Action"][0].startswith("ses:")]
    assert send["Resource"] == [f"arn:aws:ses:us-east-1:{MOCK_ACCOUNT_ID}:identity/example.com"]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": "orders@example.com"}}
    for name in ("users", "products", "orders", "payments"):
        assert not granted(shop, name, "ses:"), name
    # example.com is a placeholder: the offline plan lists it, a real deployment stops on it.
    assert shop.outputs["offlineOnlyPlaceholders"] == [
        "services.notifications.email.fromAddress: 'orders@example.com' is at example.com, a domain reserved for "
        "examples; allowed: an address that reaches your team"
    ]


def test_the_http_api_serves_exactly_the_stack_files_routes_with_their_throttling(shop):
    declared = {route: name for name, spec in stack_services().items() for route in spec.get("routes", [])}
    routes = {inputs(r)["routeKey"] for r in shop.of_type("aws:apigatewayv2/route:Route")}
    assert routes == set(declared)
    registered = {owner(shop, r.urn) for r in shop.of_type("aws:servicediscovery/service:Service")}
    assert registered == set(declared.values()) == {"users", "products", "orders"}
    settings = inputs(shop.one("aws:apigatewayv2/stage:Stage"))["routeSettings"]
    throttling = yaml.safe_load(STACK_FILE.read_text())["config"]["container-platform:httpApi"]["routeThrottling"]
    assert {s["routeKey"]: (s["throttlingBurstLimit"], s["throttlingRateLimit"]) for s in settings} == {
        route: (limit["burst"], limit["rate"]) for route, limit in throttling.items()
    }
    assert {"POST /orders", "POST /auth/token", "POST /users"} <= set(throttling)
    assert "PAYMENTS_URL" in environment(shop, "orders") and "USERS_URL" in environment(shop, "orders")


def test_each_image_builds_from_its_services_directory_with_only_what_it_copies(shop):
    images = {inputs(r)["build"]["dockerfile"]: inputs(r) for r in shop.of_type("docker:index/image:Image")}
    assert set(images) == {f"services/shop/{name}/Dockerfile" for name in SERVICES}
    for name in SERVICES:
        dockerfile = ROOT / f"services/shop/{name}/Dockerfile"
        ignore = dockerfile.with_name("Dockerfile.dockerignore")
        assert ignore_file_for(ROOT, dockerfile) == ignore, "BuildKit reads the ignore file next to the Dockerfile"
        sent = context_files(ROOT, parse_dockerignore(ignore.read_text()))
        copied = copy_sources(dockerfile.read_text())
        assert copied == [
            "services/shop/requirements.txt",
            "services/__init__.py",
            "services/common",
            "services/shop/__init__.py",
            "services/shop/common",
            f"services/shop/{name}",
        ]
        for source in copied:
            assert any(path == source or path.startswith(f"{source}/") for path in sent), (name, source)
        others = [s for s in SERVICES if s != name]
        assert not [p for p in sent if p.startswith(("services/api/", *(f"services/shop/{o}/" for o in others)))]
        assert images[f"services/shop/{name}/Dockerfile"]["build"]["context"] == "."


def copy_sources(dockerfile: str) -> list[str]:
    """The repository paths a Dockerfile copies from the build context (not from another stage)."""
    return [
        line.split()[1]
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --from=")
    ]


def test_the_shop_stack_has_no_mandatory_policy_violation(plan):
    with PolicyPackProcess() as pack:
        report = pack.evaluate(plan.resources)
    assert report.mandatory_count == 0, [v.message for v in report.violations if v.level == "mandatory"]


@pytest.mark.parametrize(
    ("changed", "edit"),
    [
        ("orders", {"environment": {"ORDER_DEADLINE_SECONDS": "4"}}),
        ("payments", {"cpu": 512, "memory": 1024}),
    ],
)
def test_the_shop_deploys_one_service_without_touching_the_others(tmp_path, changed, edit):
    """Lab 6.1's "deploy independently": a change to one service's config changes only that service's resources.
    Both plans run from copies of the program (asset paths are part of the plan)."""
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    document = yaml.safe_load(STACK_FILE.read_text())
    before = plan_of(tmp_path / "before", yaml.safe_dump(document))
    document["config"]["container-platform:services"][changed].update(edit)
    after = plan_of(tmp_path / "after", yaml.safe_dump(document))
    diff = compare(report(before), report(after), "before", "after")
    assert not diff.added and not diff.removed
    assert diff.changed, "the change must show"
    by_key = {r.urn.split("::", 2)[-1]: r for r in after.resources}
    owners = {owner(Recorded(after.resources, after.outputs), by_key[c.key].urn) for c in diff.changed}
    assert owners == {changed}, [(c.name, c.paths) for c in diff.changed]


def test_every_service_s_pool_fits_the_database_s_connection_budget(shop):
    """pool_budget: services x most tasks x 2 (deployment surge) x (DB_POOL_MAX + 1) + reserved <= max_connections."""
    config = yaml.safe_load(STACK_FILE.read_text())["config"]
    max_connections = int(config.get("container-platform:database", {}).get("maxConnections", 200))
    on_database = [name for name in SERVICES if "DB_USER" in environment(shop, name)]
    most_tasks = max(
        int(inputs(target)["maxCapacity"])
        for target in shop.of_type("aws:appautoscaling/target:Target")
        if any(f"service/shop-dev/shop-dev-{name}" in inputs(target)["resourceId"] for name in on_database)
    )
    budget = pool_budget(len(on_database), most_tasks, max_connections)
    pools = {name: int(environment(shop, name)["DB_POOL_MAX"]) for name in on_database}
    assert all(size <= budget for size in pools.values()), (pools, budget)
