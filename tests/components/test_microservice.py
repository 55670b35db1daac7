"""Microservice: the secure task in Service Connect, its entries, its scaling, the declared calls; the `services:`
config that drives it (one message per problem, each naming the key)."""

from __future__ import annotations

import json
import re
from typing import Any

import pulumi
import pytest

from components.config import ConfigError, database_role, parse_stack_config
from components.ecs_task import SidecarError
from components.microservice import (
    AlbEntry,
    AlbRoute,
    EmailSender,
    Microservice,
    MicroserviceArgs,
    allow_call,
    version_id,
)
from components.tracing import collector_image_through_cache
from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE
from tests.support import Recorded, build, inputs, json_input

IMAGE = "210987654321.dkr.ecr.us-east-1.amazonaws.com/shop-orders@sha256:" + "a" * 64
KEY = "arn:aws:kms:us-east-1:210987654321:key/k"


def args(name: str = "orders", **overrides: Any) -> MicroserviceArgs:
    values: dict[str, Any] = {
        "name_prefix": "shop-dev",
        "service_name": name,
        "image": IMAGE,
        "region": "us-east-1",
        "account_id": "210987654321",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "cluster_arn": "arn:aws:ecs:us-east-1:210987654321:cluster/shop-dev",
        "cluster_name": "shop-dev",
        "namespace_id": "ns-1",
        "namespace_arn": "arn:aws:servicediscovery:us-east-1:210987654321:namespace/ns-1",
        "log_kms_key_arn": KEY,
        "port": 8081,
    }
    values.update(overrides)
    return MicroserviceArgs(**values)


def build_one(**overrides: Any) -> Recorded:
    return build(lambda: Microservice("orders", args(**overrides)))


def containers(recorded: Recorded) -> list[dict[str, Any]]:
    return json_input(recorded.one("aws:ecs/taskDefinition:TaskDefinition"), "containerDefinitions")


def service_connect(recorded: Recorded) -> dict[str, Any]:
    return inputs(recorded.one("aws:ecs/service:Service"))["serviceConnectConfiguration"]


def test_the_task_is_the_platforms_secure_task_with_a_named_http_port():
    recorded = build_one()
    (main,) = containers(recorded)
    assert main["user"] == "1001:1001"
    assert main["readonlyRootFilesystem"] is True
    assert main["privileged"] is False
    assert main["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert main["portMappings"] == [{"containerPort": 8081, "protocol": "tcp", "name": "http", "appProtocol": "http"}]
    assert {"name": "SERVICE_NAME", "value": "orders"} in main["environment"]
    assert main["healthCheck"]["command"][:2] == ["CMD", "python"]
    component = recorded.one("container-platform:microservice:Microservice")
    assert all(r.parent == component.urn for r in recorded.resources if r is not component)


def test_a_server_joins_service_connect_under_its_name_with_logs_and_its_timeout():
    recorded = build_one(request_timeout_seconds=30)
    connect = service_connect(recorded)
    assert connect["enabled"] is True
    assert connect["namespace"].endswith(":namespace/ns-1")
    (server,) = connect["services"]
    assert server["portName"] == "http"
    assert server["discoveryName"] == "shop-dev-orders", "unique per stack: its metrics are account-wide"
    assert server["clientAlias"] == [{"dnsName": "orders", "port": 8081}]
    assert server["timeout"] == {"perRequestTimeoutSeconds": 30}
    assert connect["logConfiguration"]["logDriver"] == "awslogs"
    assert connect["logConfiguration"]["options"]["awslogs-group"] == "/ecs/shop-dev/orders/service-connect"
    assert connect["accessLogConfiguration"] == {"format": "JSON", "includeQueryParameters": "DISABLED"}
    log_group = recorded.find("aws:cloudwatch/logGroup:LogGroup", "shop-dev-orders-connect-logs")
    assert inputs(log_group)["kmsKeyId"] == KEY


def test_a_service_connect_server_deploys_canary_and_ecs_shifts_its_callers():
    from components.ecs_task import Rollout

    recorded = build_one(rollout=Rollout(strategy="CANARY", canary_percent=10, bake_time_minutes=5))
    configuration = inputs(recorded.one("aws:ecs/service:Service"))["deploymentConfiguration"]
    assert configuration["strategy"] == "CANARY"
    assert configuration["canaryConfiguration"] == {"canaryPercent": 10, "canaryBakeTimeInMinutes": "5"}


def test_a_service_without_a_port_is_a_client_only():
    recorded = build_one(port=None)
    connect = service_connect(recorded)
    assert connect["enabled"] is True
    assert "services" not in connect
    (main,) = containers(recorded)
    assert "portMappings" not in main
    assert "healthCheck" not in main
    assert not recorded.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")


def test_http_api_registration_is_srv_in_cloud_map_next_to_service_connect():
    recorded = build_one(register_for_http_api=True)
    discovery = inputs(recorded.one("aws:servicediscovery/service:Service"))
    assert discovery["name"] == "orders-entry"  # Service Connect owns `orders` in the namespace
    assert discovery["dnsConfig"]["dnsRecords"] == [{"type": "SRV", "ttl": 10}]
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert service["serviceRegistries"]["containerName"] == "orders"
    assert service["serviceRegistries"]["containerPort"] == 8081
    assert "serviceConnectConfiguration" in service
    assert not build_one().of_type("aws:servicediscovery/service:Service")


def test_scaling_is_cpu_and_memory_and_requests_only_behind_the_alb():
    plain = build_one()
    kinds = {r.name.rsplit("-", 2)[-2] for r in plain.of_type("aws:appautoscaling/policy:Policy")}
    assert kinds == {"cpu", "memory"}
    alb = AlbEntry(
        listener_arn="arn:listener",
        security_group_id="sg-alb",
        arn_suffix="app/shop/1",
        routes=[AlbRoute(1, "GET /orders/{id}"), AlbRoute(2, "ANY /orders/{proxy+}")],
    )
    routed = build_one(alb=alb)
    kinds = {r.name.rsplit("-", 2)[-2] for r in routed.of_type("aws:appautoscaling/policy:Policy")}
    assert kinds == {"cpu", "memory", "requests"}
    rules = sorted((inputs(r) for r in routed.of_type("aws:lb/listenerRule:ListenerRule")), key=lambda r: r["priority"])
    assert [r["priority"] for r in rules] == [1, 2]
    assert rules[0]["conditions"] == [
        {"pathPattern": {"values": ["/orders/*"]}},
        {"httpRequestMethod": {"values": ["GET"]}},
    ]
    assert rules[1]["conditions"] == [{"pathPattern": {"values": ["/orders/*"]}}]
    ingress = inputs(routed.one("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"))
    assert (ingress["referencedSecurityGroupId"], ingress["fromPort"], ingress["toPort"]) == ("sg-alb", 8081, 8081)


def test_a_declared_call_opens_the_callee_port_from_the_caller_only():
    def program() -> None:
        orders = Microservice("orders", args("orders", port=8081))
        payments = Microservice("payments", args("payments", port=8082))
        allow_call(orders, payments)

    recorded = build(program)
    (ingress,) = recorded.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    (egress,) = [
        r for r in recorded.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule") if "-from-" in r.name
    ]
    assert ingress.name == "shop-dev-payments-from-orders-ingress"
    assert (inputs(ingress)["fromPort"], inputs(ingress)["toPort"]) == (8082, 8082)
    assert egress.name == "shop-dev-payments-from-orders-egress"
    payments = recorded.find("container-platform:microservice:Microservice", "payments")
    assert ingress.parent == egress.parent == payments.urn
    assert "cidrIpv4" not in inputs(ingress)


def test_sidecars_get_the_secure_defaults_and_the_service_log_group():
    recorded = build_one(
        sidecars=[{"name": "otel", "image": "public.ecr.aws/aws-observability/adot@sha256:" + "b" * 64}]
    )
    _, sidecar = containers(recorded)
    assert sidecar["essential"] is False
    assert sidecar["user"] == "1001:1001"
    assert sidecar["readonlyRootFilesystem"] is True
    assert sidecar["privileged"] is False
    assert sidecar["linuxParameters"]["capabilities"] == {"drop": ["ALL"]}
    assert sidecar["logConfiguration"]["options"]["awslogs-group"] == "/ecs/shop-dev/orders"
    assert sidecar["logConfiguration"]["options"]["awslogs-stream-prefix"] == "otel"


@pytest.mark.parametrize(
    ("sidecar", "expected"),
    [
        ({"name": "otel", "image": "x", "user": "0:0"}, "sidecars[0] (otel).user: '0:0' runs as root"),
        ({"name": "otel", "image": "x", "user": "root"}, "sidecars[0] (otel).user: 'root' runs as root"),
        ({"name": "otel", "image": "x", "readonlyRootFilesystem": False}, "(otel).readonlyRootFilesystem: false"),
        ({"name": "otel", "image": "x", "privileged": True}, "(otel).privileged: true"),
        (
            {"name": "otel", "image": "x", "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"]}}},
            "(otel).linuxParameters.capabilities.add: set",
        ),
        ({"name": "orders", "image": "x"}, "sidecars[0] (orders).name: 'orders'"),
        ({"name": "otel"}, "sidecars[0] (otel).image: missing"),
    ],
)
def test_insecure_sidecars_are_refused_naming_the_key(sidecar, expected):
    with pytest.raises(SidecarError) as caught:
        build_one(sidecars=[sidecar])
    assert expected in str(caught.value)


# --- Config ----------------------------------------------------------------------------------------------


PROBE = ["CMD", "/app/healthcheck"]


def service(**values: Any) -> dict[str, Any]:
    """A pinned-image service; with a port it brings its own health check, as config requires of images."""
    return {"image": IMAGE, **({"healthCheckCommand": PROBE} if "port" in values else {}), **values}


def config_problems(services: dict[str, Any], **raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"environment": "dev", "services": services, **raw})
    return caught.value.problems


def test_services_take_their_sizing_from_the_environment_table_and_override_it():
    for environment, cpu, spot in (("dev", 256, 1), ("prod", 1024, 0)):
        raw = {"environment": environment, "services": {"orders": service(port=8080)}}
        if environment == "prod":
            raw["certificateArn"] = (
                "arn:aws:acm:us-east-1:123456789012:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12
            )
        orders = parse_stack_config(raw).services["orders"]
        assert (orders.cpu, orders.spotWeight) == (cpu, spot)
    own = parse_stack_config({"environment": "dev", "services": {"orders": service(cpu=1024, memory=2048)}})
    assert (own.services["orders"].cpu, own.services["orders"].memory) == (1024, 2048)


def test_calls_must_name_another_service_with_a_port():
    found = config_problems(
        {
            "orders": service(port=8080, calls=["orders", "nope", "mailer"]),
            "mailer": service(),
        }
    )
    assert found == [
        "services.orders.calls: 'orders' is the service itself; allowed: other services",
        "services.orders.calls: 'nope' is not a service here; allowed: mailer",
        "services.orders.calls: 'mailer' has no port, so nothing can call it; allowed: services with a port",
    ]


def test_routes_are_http_api_route_keys_unique_across_services_and_need_a_port():
    found = config_problems(
        {
            "orders": service(port=8080, routes=["GET /orders/{id}", "GET /orders/*", "FETCH /x"]),
        }
    )
    assert [p.split(":")[0] for p in found] == ["services.orders.routes.1", "services.orders.routes.2"]
    assert "allowed: `METHOD /path`" in found[0]
    found = config_problems(
        {
            "orders": service(port=8080, routes=["GET /orders/{id}"]),
            "cart": service(port=8081, routes=["GET /orders/{id}"]),
            "mailer": service(routes=["POST /mail"]),
        }
    )
    assert found == [
        "services.mailer.routes: set without services.mailer.port; allowed: routes only on a service with a port",
        "services.cart.routes: 'GET /orders/{id}' is already a route of services.orders; allowed: each route on one service",
    ]


def test_bad_names_reserved_names_and_unknown_keys_are_named():
    found = config_problems({"Orders_1": service(), "api": service(), "cart": service(colour="red")})
    assert any(p.startswith("services.Orders_1: 'Orders_1' is not a service name; allowed: 3-20 chars") for p in found)
    assert any(p.startswith("services.api: 'api' is reserved") for p in found)
    assert any(p.startswith("services.cart.colour: unknown key; allowed keys here: image, build") for p in found)


def test_environment_is_for_plain_values_and_secrets_for_arns():
    found = config_problems(
        {
            "orders": service(
                environment={"DB_PASSWORD": "x", "FEATURE_FLAG": "on"},
                secrets={"STRIPE_KEY": "sk_live_abc"},
            )
        }
    )
    assert found == [
        "services.orders.secrets.STRIPE_KEY: 'sk_live_abc'; allowed: a Secrets Manager secret ARN (optionally with "
        ":json-key:version-stage:version-id) or an SSM parameter ARN"
    ]
    found = config_problems({"orders": service(environment={"DB_PASSWORD": "x", "FEATURE_FLAG": "on"})})
    assert found == [
        "services.orders.environment.DB_PASSWORD: looks like a secret; allowed: non-secret names (give secrets as "
        "services.orders.secrets.DB_PASSWORD: <Secrets Manager or SSM ARN>)"
    ]


def test_image_or_build_sizes_and_attachments_are_checked():
    found = config_problems(
        {
            "orders": {"port": 8080, "cpu": 256, "memory": 4096, "attaches": ["queues"]},
            "cart": service(build="services/cart"),
        },
        jobPlatform={"enabled": False},
        service={"image": IMAGE},
    )
    assert (
        "services.orders.memory: 4096 is not a Fargate size for services.orders.cpu 256; allowed: 512-2048 in steps of 512"
        in found
    )
    assert any(p.startswith("services.orders: needs exactly one of image and build") for p in found)
    assert any(p.startswith("services.cart: needs exactly one of image and build") for p in found)
    assert (
        "services.orders.attaches: 'queues' with jobPlatform.enabled false; allowed: queues only with the job platform"
        in found
    )


def test_the_http_api_entry_replaces_the_alb_only_without_the_job_platform():
    found = config_problems({"orders": service(port=8080, routes=["ANY /{proxy+}"])}, entry="httpApi")
    assert found == [
        "services.orders.routes: 'ANY /{proxy+}' with entry 'httpApi' and jobPlatform.enabled true; allowed: any "
        "other route (the job platform's API takes it)"
    ]
    config = parse_stack_config(
        {
            "environment": "dev",
            "entry": "httpApi",
            "jobPlatform": {"enabled": False},
            "services": {"orders": service(port=8080, routes=["GET /orders"])},
            "httpApi": {"routeThrottling": {"GET /orders": {"burst": 10, "rate": 5.0}}},
        }
    )
    assert config.httpApi.routeThrottling["GET /orders"].burst == 10
    found = config_problems(
        {"orders": service(port=8080, routes=["GET /orders"])},
        entry="httpApi",
        jobPlatform={"enabled": False},
        httpApi={"routeThrottling": {"GET /nope": {"burst": 1, "rate": 1.0}}},
    )
    assert found == ["httpApi.routeThrottling.GET /nope: not a route of any service; allowed: one of GET /orders"]


def test_public_routes_must_each_be_a_configured_route_and_need_the_jwt_authorizer():
    http_api = {"entry": "httpApi", "jobPlatform": {"enabled": False}}
    jwt = {"issuer": "https://auth.shop.io", "audiences": ["shop"]}
    orders = {"orders": service(port=8080, routes=["GET /orders", "POST /orders"])}
    config = parse_stack_config(
        {
            "environment": "dev",
            "services": orders,
            **http_api,
            "httpApi": {"jwtAuthorizer": jwt, "publicRoutes": ["GET /orders"]},
        }
    )
    assert config.httpApi.publicRoutes == ["GET /orders"]
    found = config_problems(
        orders, **http_api, httpApi={"jwtAuthorizer": jwt, "publicRoutes": ["GET /nope", "GET /orders", "PUT /x"]}
    )
    assert found == [
        "httpApi.publicRoutes: 'GET /nope' is not a route of any service; allowed: one of GET /orders, POST /orders",
        "httpApi.publicRoutes: 'PUT /x' is not a route of any service; allowed: one of GET /orders, POST /orders",
    ]
    found = config_problems(orders, **http_api, httpApi={"publicRoutes": ["GET /orders", "GET /orders"]})
    assert found == [
        "httpApi.publicRoutes: 'GET /orders' is listed twice; allowed: each route once",
        "httpApi.publicRoutes: set without httpApi.jwtAuthorizer; allowed: only with a JWT authorizer (without one "
        "every route is already public)",
    ]


# --- Tracing ---------------------------------------------------------------------------------------------

COLLECTOR = collector_image_through_cache("210987654321", "us-east-1")


def test_tracing_adds_the_collector_the_apps_otel_variables_and_the_x_ray_grant():
    recorded = build_one(tracing=COLLECTOR)
    main, collector = containers(recorded)
    assert collector["name"] == "otel-collector"
    assert collector["image"] == COLLECTOR.reference
    assert collector["user"] == "4317:4317" and collector["essential"] is False
    environment = {e["name"]: e["value"] for e in main["environment"]}
    assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert environment["OTEL_SERVICE_NAME"] == "orders"
    policies = {r.name: json_input(r, "policy") for r in recorded.of_type("aws:iam/rolePolicy:RolePolicy")}
    task_actions = {a for s in policies["shop-dev-orders-task-policy"]["Statement"] for a in s["Action"]}
    assert task_actions == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    (cache,) = policies["shop-dev-orders-exec-pull-through-cache"]["Statement"]
    assert cache["Resource"] == ["arn:aws:ecr:us-east-1:210987654321:repository/ecr-public/*"]
    assert cache["Action"] == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]


def test_without_tracing_there_is_no_collector_no_otel_variable_and_no_grant():
    recorded = build_one()
    (main,) = containers(recorded)
    assert not [e for e in main["environment"] if e["name"].startswith("OTEL_")]
    names = {r.name for r in recorded.of_type("aws:iam/rolePolicy:RolePolicy")}
    assert "shop-dev-orders-exec-pull-through-cache" not in names
    assert "shop-dev-orders-task-policy" not in names


def test_tracing_is_on_by_default_per_service_and_can_be_switched_off():
    config = parse_stack_config(
        {"environment": "dev", "services": {"orders": service(port=8080), "quiet": service(tracing=False)}}
    )
    assert (config.services["orders"].tracing, config.services["quiet"].tracing) == (True, False)
    assert config.images.managePullThroughCache is False


@pytest.mark.parametrize(
    "depends_on",
    [
        [{"containerName": "nope", "condition": "START"}],
        [{"containerName": "otel-collector", "condition": "RUNNING"}],
    ],
)
def test_the_app_may_depend_only_on_its_sidecars_with_an_ecs_condition(depends_on):
    from components.ecs_task import FargateTask, FargateTaskSpec

    spec = FargateTaskSpec(
        name_prefix="shop-dev",
        service_name="orders",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/x@sha256:" + "a" * 64,
        cpu=256,
        memory=512,
        vpc_id="vpc-1",
        region="us-east-1",
        account_id="123456789012",
        log_kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        sidecars=[
            {"name": "otel-collector", "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/c@sha256:" + "b" * 64}
        ],
        container_depends_on=depends_on,
    )

    class Holder(pulumi.ComponentResource):
        def __init__(self) -> None:
            super().__init__("test:index:Holder", "holder")
            FargateTask(spec, self)

    with pytest.raises(Exception, match=r"container_depends_on\[0\]"):
        build(Holder)


def test_a_pinned_image_with_a_port_brings_a_health_check_it_can_run():
    found = config_problems({"orders": {"image": IMAGE, "port": 8080}})
    assert found == [
        "services.orders.healthCheckCommand: missing with image and port; allowed: a command the image can run, e.g. "
        '["CMD", "/app/healthcheck"] (the default probe runs python, which only images built from services/ are '
        "known to have)"
    ]
    assert config_problems({"orders": service(port=8080, healthCheckCommand=["curl", "x"])}) == [
        "services.orders.healthCheckCommand: ['curl', 'x']; allowed: a list starting with CMD or CMD-SHELL"
    ]
    config = parse_stack_config({"environment": "dev", "services": {"orders": service(port=8080)}})
    assert config.services["orders"].healthCheckCommand == PROBE


def test_ports_and_variables_the_platform_sets_are_refused_with_the_reason():
    found = config_problems(
        {"orders": service(port=4318, environment={"PORT": "1", "OTEL_SERVICE_NAME": "x", "LOG_FORMAT": "json"})}
    )
    assert found == [
        "services.orders.port: 4318 with tracing; allowed: any port but 4318, 13133 (the collector sidecar listens "
        "there in the task's shared network namespace)",
        "services.orders.environment.OTEL_SERVICE_NAME: set by the platform; allowed: other names (PORT, "
        "SERVICE_NAME and OTEL_* come from port, the service's name and tracing)",
        "services.orders.environment.PORT: set by the platform; allowed: other names (PORT, SERVICE_NAME and OTEL_* "
        "come from port, the service's name and tracing)",
    ]


def test_http_api_throttling_stays_inside_the_account_quota():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"environment": "dev", "httpApi": {"throttlingBurstLimit": 0, "throttlingRateLimit": 20000}})
    assert caught.value.problems == [
        "httpApi.throttlingBurstLimit: 0; allowed: 1 to 5000 (the account's default quota)",
        "httpApi.throttlingRateLimit: 20000; allowed: above 0 up to 10000 requests per second (the account's default "
        "quota)",
    ]


def test_the_refused_ports_are_the_collectors():
    from components import tracing
    from components.config import TRACING_COLLECTOR_PORTS

    listening = {int(e.rsplit(":", 1)[1]) for e in (tracing.OTLP_HTTP_ENDPOINT, tracing.HEALTH_CHECK_ENDPOINT)}
    assert set(TRACING_COLLECTOR_PORTS) == listening


# --- What a service owns: generated secrets, email -------------------------------------------------------


@pytest.fixture(scope="module")
def users() -> Recorded:
    return build(
        lambda: Microservice(
            "users",
            args(
                "users",
                generated_secrets={"JWT_SIGNING_KEY": 32},
                secrets={"PEPPER": "arn:aws:secretsmanager:us-east-1:210987654321:secret:pepper-AbCdEf"},
            ),
        )
    )


def test_a_generated_secret_is_random_bytes_in_secrets_manager_under_the_services_key(users):
    (random_bytes,) = users.of_type("random:index/randomBytes:RandomBytes")
    assert inputs(random_bytes) == {"length": 32}
    key = users.find("aws:kms/key:Key", "shop-dev-users-key")
    secret = inputs(users.find("aws:secretsmanager/secret:Secret", "shop-dev-users-jwt-signing-key-secret"))
    assert secret["kmsKeyId"] == f"arn:aws:kms:us-east-1:123456789012:key/{key.name}-key-id"
    assert secret["namePrefix"] == "shop-dev/users/JWT_SIGNING_KEY-"
    version = users.find("aws:secretsmanager/secretVersion:SecretVersion", "shop-dev-users-jwt-signing-key-version")
    assert random_bytes.urn in version.dependencies
    # The random provider's base64 of the bytes (unknown offline), kept secret in the state.
    assert version.inputs["secretString"][SECRET_SIG_KEY] == SECRET_SIG_VALUE


def test_the_container_reads_it_at_start_and_the_execution_role_reads_exactly_its_secrets(users):
    (main,) = containers(users)
    secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-dev-users-jwt-signing-key-secret-AbCdEf"
    pepper = "arn:aws:secretsmanager:us-east-1:210987654321:secret:pepper-AbCdEf"
    assert main["secrets"] == [
        {"name": "JWT_SIGNING_KEY", "valueFrom": secret_arn},
        {"name": "PEPPER", "valueFrom": pepper},
    ]
    assert not [e for e in main["environment"] if e["name"] == "JWT_SIGNING_KEY"]
    (read,) = json_input(users.find("aws:iam/rolePolicy:RolePolicy", "shop-dev-users-exec-secrets"), "policy")[
        "Statement"
    ]
    assert (read["Action"], sorted(read["Resource"])) == (["secretsmanager:GetSecretValue"], [secret_arn, pepper])
    (decrypt,) = json_input(users.find("aws:iam/rolePolicy:RolePolicy", "shop-dev-users-exec-policy"), "policy")[
        "Statement"
    ]
    assert decrypt["Action"] == ["kms:Decrypt"]
    assert decrypt["Resource"] == ["arn:aws:kms:us-east-1:123456789012:key/shop-dev-users-key-key-id"]
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    # The task definition names the secret only once its value exists.
    version = users.find("aws:secretsmanager/secretVersion:SecretVersion", "shop-dev-users-jwt-signing-key-version")
    assert version.urn in users.one("aws:ecs/taskDefinition:TaskDefinition").dependencies


@pytest.fixture(scope="module")
def rotating() -> Recorded:
    return build(
        lambda: Microservice(
            "users", args("users", generated_secrets={"JWT_SIGNING_KEY": 32}, keep_previous=["JWT_SIGNING_KEY"])
        )
    )


def test_a_kept_previous_version_reaches_the_container_as_the_secrets_awsprevious_stage(rotating):
    (main,) = containers(rotating)
    secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:shop-dev-users-jwt-signing-key-secret-AbCdEf"
    # ECS's valueFrom `<arn>:<json-key>:<version-stage>:<version-id>`, no JSON key, no version id.
    assert main["secrets"] == [
        {"name": "JWT_SIGNING_KEY", "valueFrom": secret_arn},
        {"name": "JWT_SIGNING_KEY_PREVIOUS", "valueFrom": f"{secret_arn}::AWSPREVIOUS:"},
    ]
    # IAM scopes on the secret's ARN: the one GetSecretValue statement covers both stages.
    (read,) = json_input(rotating.find("aws:iam/rolePolicy:RolePolicy", "shop-dev-users-exec-secrets"), "policy")[
        "Statement"
    ]
    assert (read["Action"], read["Resource"]) == (["secretsmanager:GetSecretValue"], [secret_arn])


def test_awsprevious_exists_from_the_first_deployment_an_initial_version_put_before_the_current(rotating):
    initial = rotating.find(
        "aws:secretsmanager/secretVersion:SecretVersion", "shop-dev-users-jwt-signing-key-initial-version"
    )
    current = rotating.find("aws:secretsmanager/secretVersion:SecretVersion", "shop-dev-users-jwt-signing-key-version")
    secret = rotating.find("aws:secretsmanager/secret:Secret", "shop-dev-users-jwt-signing-key-secret")
    assert initial.inputs["secretId"] == current.inputs["secretId"] == secret.outputs["id"]
    # Neither names a staging label: each put moves AWSCURRENT to itself and AWSPREVIOUS to the one before.
    assert "versionStages" not in initial.inputs and "versionStages" not in current.inputs
    assert initial.urn in current.dependencies
    assert initial.inputs["secretString"][SECRET_SIG_KEY] == SECRET_SIG_VALUE
    initial_bytes = rotating.find("random:index/randomBytes:RandomBytes", "shop-dev-users-jwt-signing-key-initial")
    assert initial_bytes.urn in initial.dependencies and initial_bytes.inputs == {"length": 32}
    # The task definition names AWSPREVIOUS only once the current version has moved it there.
    assert current.urn in rotating.one("aws:ecs/taskDefinition:TaskDefinition").dependencies


def test_a_rotation_rolls_the_service_through_the_version_ids_never_a_value(rotating):
    (main,) = containers(rotating)
    environment = {e["name"]: e["value"] for e in main["environment"]}
    # A SecretVersion's id is `<secret>|<version id>`; the mock's ids have no `|`.
    ids = "shop-dev-users-jwt-signing-key-initial-version-id shop-dev-users-jwt-signing-key-version-id"
    assert environment["JWT_SIGNING_KEY_VERSIONS"] == ids
    assert not {"JWT_SIGNING_KEY", "JWT_SIGNING_KEY_PREVIOUS"} & set(environment)
    assert SECRET_SIG_VALUE not in json.dumps(main["environment"])
    assert version_id("arn:aws:secretsmanager:us-east-1:1:secret:s-AbCdEf|EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE") == (
        "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE"
    )


def test_without_keep_previous_there_is_one_version_and_no_previous(users):
    (main,) = containers(users)
    assert not [s for s in main["secrets"] if s["name"].endswith("_PREVIOUS")]
    assert not [e for e in main["environment"] if e["name"].endswith("_VERSIONS")]
    assert len(users.of_type("aws:secretsmanager/secretVersion:SecretVersion")) == 1


def test_keep_previous_names_a_generated_secret_and_its_derived_names_are_free():
    with pytest.raises(ValueError, match=re.escape("keep_previous.SEED: not a generated secret; allowed: []")):
        build_one(keep_previous=["SEED"])
    with pytest.raises(ValueError, match=re.escape("keep_previous.SEED: SEED_PREVIOUS is set elsewhere")):
        build_one(generated_secrets={"SEED": 32}, keep_previous=["SEED"], environment={"SEED_PREVIOUS": "x"})


def test_a_service_that_owns_nothing_has_no_key():
    plain = build_one()
    assert not plain.of_type("aws:kms/key:Key")
    assert not plain.of_type("aws:secretsmanager/secret:Secret")
    assert "shop-dev-orders-exec-policy" not in {r.name for r in plain.of_type("aws:iam/rolePolicy:RolePolicy")}


def test_a_generated_secret_may_not_shadow_a_variable():
    with pytest.raises(ValueError, match=re.escape("generated_secrets.TOKEN_KEY: also in environment or secrets")):
        build_one(generated_secrets={"TOKEN_KEY": 32}, environment={"TOKEN_KEY": "x"})
    with pytest.raises(ValueError, match=re.escape("generated_secrets.SEED: 8 bytes; allowed: 16-1024")):
        build_one(generated_secrets={"SEED": 8})


def test_email_is_from_one_address_on_one_identity():
    recorded = build_one(email=EmailSender(from_address="orders@shop.io", identity="shop.io"))
    (main,) = containers(recorded)
    assert {"name": "EMAIL_FROM", "value": "orders@shop.io"} in main["environment"]
    (send,) = json_input(recorded.find("aws:iam/rolePolicy:RolePolicy", "shop-dev-orders-task-policy"), "policy")[
        "Statement"
    ]
    assert send == {
        "Sid": "SendEmailAsFromAddress",
        "Effect": "Allow",
        "Action": ["ses:SendEmail", "ses:SendRawEmail"],
        "Resource": ["arn:aws:ses:us-east-1:210987654321:identity/shop.io"],
        "Condition": {"StringEquals": {"ses:FromAddress": "orders@shop.io"}},
    }


# --- The config of what a service owns ---------------------------------------------------------------------


def owning(**values: Any) -> dict[str, Any]:
    return service(port=8085, **values)


def test_queue_send_secret_and_email_settings_parse_with_their_defaults():
    config = parse_stack_config(
        {
            "environment": "dev",
            "services": {
                "notifications": owning(queue={}, email={"fromAddress": "orders@mail.shop.io", "identity": "shop.io"}),
                "orders": service(sendsTo=["notifications"], generatedSecrets={"SEED": {"bytes": 32}}),
            },
        }
    )
    notifications, orders = config.services["notifications"], config.services["orders"]
    assert notifications.queue is not None
    assert notifications.queue.model_dump() == {
        "maxReceives": 5,
        "visibilityTimeoutSeconds": 60,
        "retentionDays": 4,
        "acceptableLatencySeconds": 60,
        "averageProcessingSeconds": 1.0,
        "oldestMessageAlarmSeconds": 600,
    }
    assert notifications.email is not None and notifications.email.sending_identity == "shop.io"
    assert orders.sendsTo == ["notifications"] and orders.generatedSecrets["SEED"].bytes == 32
    bare = parse_stack_config({"environment": "dev", "services": {"mailer": owning(email={"fromAddress": "a@b.io"})}})
    assert bare.services["mailer"].email is not None and bare.services["mailer"].email.sending_identity == "b.io"


def test_sends_must_name_another_service_with_a_queue_once():
    found = config_problems(
        {
            "notifications": owning(queue={}),
            "payments": owning(),
            "orders": service(sendsTo=["orders", "payments", "nope", "notifications", "notifications"]),
        }
    )
    assert found == [
        "services.orders.sendsTo: 'orders' is the service itself; allowed: other services with a queue: notifications",
        "services.orders.sendsTo: 'payments' has no queue; allowed: services with a queue: notifications (or give "
        "services.payments a queue)",
        "services.orders.sendsTo: 'nope' is not a service here; allowed: services with a queue: notifications",
        "services.orders.sendsTo: 'notifications' is listed twice; allowed: each service once",
    ]


def test_senders_in_a_cycle_are_refused_since_each_queue_is_built_before_its_senders():
    found = config_problems(
        {
            "ledger": owning(queue={}, sendsTo=["mailer"]),
            "mailer": owning(queue={}, sendsTo=["audit"]),
            "audit": owning(queue={}, sendsTo=["ledger"]),
        }
    )
    assert len(found) == 1
    assert re.fullmatch(
        r"services\.(ledger|mailer|audit)\.sendsTo: (\w+) -> (\w+) -> (\w+) -> \2 is a cycle; allowed: senders "
        r"without a cycle \(each queue is built before the services that send to it\)",
        found[0],
    ), found
    assert set(found[0].split(": ")[1].split(" is a")[0].split(" -> ")) == {"ledger", "mailer", "audit"}


def test_generated_secrets_and_platform_variables_are_given_once():
    found = config_problems(
        {
            "notifications": owning(queue={}, email={"fromAddress": "orders@shop.io"}, environment={"EMAIL_FROM": "x"}),
            "orders": service(
                sendsTo=["notifications"],
                environment={"SEED": "plain"},
                generatedSecrets={
                    "SEED": {"bytes": 32},
                    "NOTIFICATIONS_QUEUE_URL": {"bytes": 16},
                    "lower": {"bytes": 16},
                },
            ),
        }
    )
    assert found == [
        "services.notifications.environment.EMAIL_FROM: set by the platform (from email.fromAddress); allowed: "
        "another name",
        "services.orders.generatedSecrets.SEED: also in services.orders.environment; allowed: a name given only once",
        "services.orders.generatedSecrets.lower: not a variable name; allowed: A-Z, 0-9 and _, not starting with a "
        "digit",
        "services.orders.generatedSecrets.NOTIFICATIONS_QUEUE_URL: set by the platform (from sendsTo notifications); "
        "allowed: another name",
    ]
    assert config_problems({"users": service(generatedSecrets={"SEED": {"bytes": 8}})}) == [
        "services.users.generatedSecrets.SEED.bytes: 8; allowed: 16-1024 (at least 128 random bits)"
    ]


def test_keep_previous_reserves_the_previous_and_versions_variables():
    found = config_problems(
        {
            "users": service(
                environment={"KEY_VERSIONS": "1"},
                secrets={"KEY_PREVIOUS": "arn:aws:secretsmanager:us-east-1:210987654321:secret:k-AbCdEf"},
                generatedSecrets={"KEY": {"bytes": 32, "keepPrevious": True}},
            )
        }
    )
    assert found == [
        "services.users.environment.KEY_VERSIONS: set by the platform (from generatedSecrets.KEY.keepPrevious); "
        "allowed: another name",
        "services.users.secrets.KEY_PREVIOUS: set by the platform (from generatedSecrets.KEY.keepPrevious); "
        "allowed: another name",
    ]
    assert config_problems({"users": service(generatedSecrets={"KEY": {"bytes": 32, "keepPrevious": "yes"}})}) == [
        "services.users.generatedSecrets.KEY.keepPrevious: 'yes' is not true or false; allowed: true or false"
    ]


def test_email_needs_an_address_its_identity_covers():
    found = config_problems({"mailer": owning(email={"fromAddress": "orders@shop.io", "identity": "other.io"})})
    assert found == [
        "services.mailer.email.identity: 'other.io' does not cover fromAddress 'orders@shop.io'; allowed: the "
        "address itself, shop.io or a parent domain of it"
    ]
    for identity in ("orders@shop.io", "shop.io"):
        parse_stack_config(
            {
                "environment": "dev",
                "services": {"mailer": owning(email={"fromAddress": "orders@shop.io", "identity": identity})},
            }
        )
    parse_stack_config(
        {
            "environment": "dev",
            "services": {"mailer": owning(email={"fromAddress": "o@mail.shop.io", "identity": "shop.io"})},
        }
    )
    assert config_problems({"mailer": owning(email={"fromAddress": "not-an-address"})}) == [
        "services.mailer.email.fromAddress: 'not-an-address'; allowed: an email address like orders@shop.example.org"
    ]


def test_a_queue_needs_container_insights_for_its_scaling():
    found = config_problems({"mailer": owning(queue={})}, containerInsights="disabled")
    assert (
        "services.mailer.queue: set with containerInsights 'disabled'; allowed: containerInsights enabled or "
        "enhanced (scaling on the queue divides its backlog by Container Insights' RunningTaskCount)"
    ) in found
    assert not [p for p in config_problems({"mailer": owning()}, containerInsights="disabled") if "mailer" in p]


def test_a_service_that_attaches_the_database_needs_a_role_name_of_its_own():
    found = config_problems({"rds-sync": service(attaches=["database"]), "app": service(attaches=["database"])})
    assert found == [
        "services.rds-sync.attaches: 'database' makes 'rds-sync' connect as role 'rds_sync', which is taken or "
        "reserved; allowed: a service name whose role is not app, dbadmin and does not start with pg_ or rds",
        "services.app.attaches: 'database' makes 'app' connect as role 'app', which is taken or reserved; allowed: a "
        "service name whose role is not app, dbadmin and does not start with pg_ or rds",
    ]
    config = parse_stack_config({"environment": "dev", "services": {"order-history": service(attaches=["database"])}})
    assert database_role(next(iter(config.services))) == "order_history"


def test_a_service_builds_from_a_nested_directory():
    config = parse_stack_config({"environment": "dev", "services": {"users": {"build": "services/shop/users"}}})
    assert config.services["users"].build == "services/shop/users"
    assert config_problems({"users": {"build": "shop/users"}}) == [
        "services.users.build: 'shop/users'; allowed: services/<dir> or services/<dir>/<dir> (a directory with a "
        "Dockerfile)"
    ]
