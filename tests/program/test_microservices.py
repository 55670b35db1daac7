"""The program with a `services:` map: one Microservice per entry, Service Connect between them, SG-to-SG for
exactly the declared calls, the HTTP API (or ALB) entry, independent deployability; our stacks unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.diff import compare
from runner.engine import PolicyPackProcess
from runner.exports import with_program_policy_config
from runner.plan import MOCK_ACCOUNT_ID, Plan, run_program
from tests.plans import planned as stack_plan
from tests.policy.helpers import run_policy
from tests.support import Recorded, inputs

ROOT = Path(__file__).resolve().parents[2]
MICROSERVICE = "container-platform:microservice:Microservice"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
PULL_THROUGH_CACHE_RULE = "aws:ecr/pullThroughCacheRule:PullThroughCacheRule"
ROUTE = "aws:apigatewayv2/route:Route"
AUTHORIZATION = "aws-apigateway-route-require-authorization"
CALLS = {"orders": ["products", "payments"], "notifier": ["orders"], "products": [], "payments": []}


def image(name: str, digit: str) -> str:
    return f"210987654321.dkr.ecr.us-east-1.amazonaws.com/shop-{name}@sha256:{digit * 64}"


def shop_yaml(
    entry: str = "httpApi", orders_image: str = "2", payments_cpu: int = 256, payments_memory: int = 512
) -> str:
    job_platform = "false" if entry == "httpApi" else "true"
    return f"""config:
  aws:region: us-east-1
  aws:defaultTags:
    tags:
      environment: dev
  container-platform:environment: dev
  container-platform:applicationName: shop
  container-platform:entry: {entry}
  container-platform:jobPlatform:
    enabled: {job_platform}
  container-platform:httpApi:
    routeThrottling:
      "POST /orders": {{burst: 20, rate: 10}}
  container-platform:services:
    products:
      image: {image("products", "1")}
      port: 8080
      healthCheckCommand: [CMD, /app/healthcheck]
      routes: ["GET /products", "GET /products/{{id}}"]
      attaches: [database, cache]
    orders:
      image: {image("orders", orders_image)}
      port: 8081
      healthCheckCommand: [CMD, /app/healthcheck]
      routes: ["POST /orders", "ANY /orders/{{proxy+}}"]
      calls: [products, payments]
      attaches: [database]
    payments:
      image: {image("payments", "3")}
      port: 8082
      healthCheckCommand: [CMD, /app/healthcheck]
      cpu: {payments_cpu}
      memory: {payments_memory}
      requestTimeoutSeconds: 30
    notifier:
      image: {image("notifier", "4")}
      calls: [orders]
"""


def plan_of(tmp_path: Path, stack_yaml: str, stack: str = "shop") -> Plan:
    for name in ("__main__.py", "Pulumi.yaml", "components", "services", "lambdas"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(stack_yaml)
    return run_program(tmp_path, stack)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    return plan_of(tmp_path_factory.mktemp("shop"), shop_yaml())


def recorded(plan: Plan) -> Recorded:
    return Recorded(plan.resources, plan.outputs)


def owner(plan: Recorded, urn: str | None) -> str | None:
    """The Microservice a resource belongs to (its name), if any."""
    by_urn = {r.urn: r for r in plan.resources}
    while urn is not None:
        resource = by_urn[urn]
        if resource.type == MICROSERVICE:
            return resource.name
        urn = resource.parent
    return None


def test_one_component_per_configured_service_and_no_alb(shop):
    plan = recorded(shop)
    assert sorted(r.name for r in plan.of_type(MICROSERVICE)) == ["notifier", "orders", "payments", "products"]
    assert not plan.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert not plan.of_type("container-platform:web-service:WebService")
    cluster = inputs(plan.one("aws:ecs/cluster:Cluster"))
    assert cluster["serviceConnectDefaults"]["namespace"]
    assert shop.outputs["serviceNames"]["orders"] == "shop-dev-orders"
    assert "url" in shop.outputs


def test_security_groups_allow_exactly_the_declared_calls(shop):
    plan = recorded(shop)
    sg_owner = {
        r.urn.rsplit("::", 1)[-1]: owner(plan, r.urn) for r in plan.of_type("aws:ec2/securityGroup:SecurityGroup")
    }
    ids = {f"{name}-id": service for name, service in sg_owner.items() if service}
    pairs = set()
    for rule in plan.of_type(SG_INGRESS):
        values = inputs(rule)
        source = ids.get(str(values.get("referencedSecurityGroupId")))
        target = ids.get(values["securityGroupId"])
        if source and target:
            pairs.add((source, target, values["fromPort"], values["toPort"]))
            assert "cidrIpv4" not in values
    ports = {"products": 8080, "orders": 8081, "payments": 8082}
    declared = {
        (caller, callee, ports[callee], ports[callee]) for caller, callees in CALLS.items() for callee in callees
    }
    assert pairs == declared


def test_every_service_is_in_service_connect_and_servers_under_their_names(shop):
    plan = recorded(shop)
    for name, port in (("products", 8080), ("orders", 8081), ("payments", 8082), ("notifier", None)):
        connect = inputs(plan.find("aws:ecs/service:Service", f"shop-dev-{name}-service"))[
            "serviceConnectConfiguration"
        ]
        assert connect["enabled"] is True
        assert connect["logConfiguration"]["options"]["awslogs-group"] == f"/ecs/shop-dev/{name}/service-connect"
        if port is None:
            assert "services" not in connect
            continue
        (server,) = connect["services"]
        assert server["clientAlias"] == [{"dnsName": name, "port": port}]
        assert server["timeout"]["perRequestTimeoutSeconds"] == (30 if name == "payments" else 15)


def test_callers_get_service_connect_urls_and_attachments_only_where_declared(shop):
    import json

    plan = recorded(shop)

    def environment(name: str) -> dict[str, str]:
        task = plan.find("aws:ecs/taskDefinition:TaskDefinition", f"shop-dev-{name}-task")
        (container,) = [c for c in json.loads(inputs(task)["containerDefinitions"]) if c["name"] == name]
        return {e["name"]: e["value"] for e in container["environment"]}

    orders = environment("orders")
    assert (orders["PRODUCTS_URL"], orders["PAYMENTS_URL"]) == ("http://products:8080", "http://payments:8082")
    assert environment("notifier")["ORDERS_URL"] == "http://orders:8081"
    assert not {k for k in environment("payments") if k.endswith("_URL") or k.startswith("DATABASE")}
    to_database = {owner(plan, r.urn) for r in plan.of_type(SG_INGRESS) if r.name.endswith("-to-database-ingress")}
    assert {"products", "orders"} <= to_database
    assert "payments" not in to_database


def test_public_services_register_srv_and_reach_the_http_api(shop):
    plan = recorded(shop)
    registrations = {owner(plan, r.urn): inputs(r) for r in plan.of_type("aws:servicediscovery/service:Service")}
    assert set(registrations) == {"products", "orders"}
    assert all(r["dnsConfig"]["dnsRecords"] == [{"type": "SRV", "ttl": 10}] for r in registrations.values())
    routes = {inputs(r)["routeKey"] for r in plan.of_type("aws:apigatewayv2/route:Route")}
    assert routes == {"GET /products", "GET /products/{id}", "POST /orders", "ANY /orders/{proxy+}"}
    from_api = {owner(plan, r.urn) for r in plan.of_type(SG_INGRESS) if r.name.endswith("-from-http-api-ingress")}
    assert from_api == {"products", "orders"}
    scaling = {owner(plan, r.urn): r.name for r in plan.of_type("aws:appautoscaling/policy:Policy")}
    assert not any("requests" in name for name in scaling.values())  # request count is an ALB metric


def test_with_the_alb_entry_routes_become_listener_rules_next_to_the_job_platform(tmp_path):
    plan = recorded(plan_of(tmp_path, shop_yaml(entry="alb")))
    rules = {r.name: inputs(r)["priority"] for r in plan.of_type("aws:lb/listenerRule:ListenerRule")}
    assert rules["jobs-dev-api-rule" if "jobs-dev-api-rule" in rules else "shop-dev-api-rule"] == 100
    service_rules = {name: p for name, p in rules.items() if "-route-" in name}
    assert sorted(service_rules.values()) == [1, 2, 3, 4]
    assert plan.of_type("container-platform:web-service:WebService")
    requests = [
        r.name for r in plan.of_type("aws:appautoscaling/policy:Policy") if r.name.endswith("-requests-scaling")
    ]
    assert sorted(requests) == [
        "shop-dev-api-requests-scaling",
        "shop-dev-orders-requests-scaling",
        "shop-dev-products-requests-scaling",
    ]
    assert not plan.of_type("aws:servicediscovery/service:Service") or all(
        "-entry-discovery" not in r.name for r in plan.of_type("aws:servicediscovery/service:Service")
    )


def report(plan: Plan) -> dict[str, Any]:
    return {
        "stack": plan.stack,
        "resources": [{"urn": r.urn, "type": r.type, "name": r.name, "inputs": dict(r.inputs)} for r in plan.resources],
    }


@pytest.mark.parametrize(
    ("changed", "overrides"),
    [("orders", {"orders_image": "9"}), ("payments", {"payments_cpu": 512, "payments_memory": 1024})],
)
def test_changing_one_service_changes_only_that_services_resources(shop, tmp_path, changed, overrides):
    after = plan_of(tmp_path, shop_yaml(**overrides))
    diff = compare(report(shop), report(after), "before", "after")
    assert not diff.added and not diff.removed
    assert diff.changed, "the change must show"
    plan = recorded(after)
    by_key = {r.urn.split("::", 2)[-1]: r for r in plan.resources}
    owners = {owner(plan, by_key[c.key].urn) for c in diff.changed}
    assert owners == {changed}, [(c.name, c.paths) for c in diff.changed]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "dev-lean"])
def test_our_stacks_deploy_no_services_and_no_service_connect(stack):
    plan = recorded(stack_plan(stack))
    assert not plan.of_type(MICROSERVICE)
    assert "serviceConnectDefaults" not in inputs(plan.one("aws:ecs/cluster:Cluster"))
    for service in plan.of_type("aws:ecs/service:Service"):
        assert "serviceConnectConfiguration" not in inputs(service)
    if stack == "dev-lean":  # the job platform's API behind the HTTP API
        assert not plan.of_type("aws:lb/loadBalancer:LoadBalancer")
        assert plan.one("aws:apigatewayv2/api:Api")
        return
    assert plan.one("aws:lb/loadBalancer:LoadBalancer")
    # The API's own rule (and its blue/green test rule where the stack deploys blue/green): no service routes.
    rules = [rule.name for rule in plan.of_type("aws:lb/listenerRule:ListenerRule")]
    assert [name for name in rules if not name.endswith("-api-test-rule")] == [f"jobs-{stack}-api-rule"]


def test_the_mesh_gets_one_dashboard_with_a_row_and_alarms_per_service(shop):
    plan = recorded(shop)
    (dashboard,) = [d for d in plan.of_type("aws:cloudwatch/dashboard:Dashboard") if d.name.startswith("mesh")]
    body = json.dumps(json.loads(inputs(dashboard)["dashboardBody"]))
    services = sorted(plan.outputs["serviceNames"])
    assert all(name in body for name in services)
    alarms = [a.name for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")]
    for name in services:
        assert any(name in alarm for alarm in alarms), f"no alarm for {name}"


def containers_of(plan: Recorded, name: str) -> dict[str, dict[str, Any]]:
    task = plan.find("aws:ecs/taskDefinition:TaskDefinition", f"shop-dev-{name}-task")
    return {c["name"]: c for c in json.loads(inputs(task)["containerDefinitions"])}


def test_the_app_starts_after_its_collector_so_no_early_span_is_lost(shop):
    plan = recorded(shop)
    for name in CALLS:
        app = containers_of(plan, name)[name]
        assert app["dependsOn"] == [{"containerName": "otel-collector", "condition": "START"}]


def test_every_service_traces_through_the_collector_from_this_accounts_pull_through_cache(shop):
    plan = recorded(shop)
    for name in CALLS:
        collector = containers_of(plan, name)["otel-collector"]
        assert collector["image"].startswith(f"{MOCK_ACCOUNT_ID}.dkr.ecr.us-east-1.amazonaws.com/ecr-public/")
        assert "@sha256:" in collector["image"]
        app = {e["name"]: e["value"] for e in containers_of(plan, name)[name]["environment"]}
        assert app["OTEL_SERVICE_NAME"] == name
    # The rule itself belongs to the one stack that sets images.managePullThroughCache.
    assert not plan.of_type(PULL_THROUGH_CACHE_RULE)


def test_the_shop_stack_with_tracing_has_no_mandatory_violation(shop):
    with PolicyPackProcess() as pack:
        report = pack.evaluate(shop.resources)
    assert report.mandatory_count == 0, [v.message for v in report.violations if v.level == "mandatory"]


def test_a_service_may_switch_tracing_off_and_only_the_owning_stack_creates_the_cache_rule(tmp_path):
    stack = shop_yaml().replace(
        "      requestTimeoutSeconds: 30\n", "      requestTimeoutSeconds: 30\n      tracing: false\n"
    )
    stack = stack.replace(
        "  container-platform:httpApi:\n",
        "  container-platform:images:\n    managePullThroughCache: true\n  container-platform:httpApi:\n",
    )
    plan = recorded(plan_of(tmp_path, stack))
    assert set(containers_of(plan, "payments")) == {"payments"}
    assert set(containers_of(plan, "orders")) == {"orders", "otel-collector"}
    (rule,) = plan.of_type(PULL_THROUGH_CACHE_RULE)
    assert inputs(rule) == {"ecrRepositoryPrefix": "ecr-public", "upstreamRegistryUrl": "public.ecr.aws"}


@pytest.fixture(scope="module")
def guarded(tmp_path_factory) -> Plan:
    """The shop with a JWT authorizer and two public routes, payments behind the internal ALB, rollback alarms on."""
    stack = shop_yaml().replace(
        "  container-platform:httpApi:\n",
        "  container-platform:httpApi:\n"
        "    jwtAuthorizer: {issuer: 'https://auth.shop.io', audiences: [shop]}\n"
        "    publicRoutes: ['GET /products', 'GET /products/{id}']\n",
    )
    stack = stack.replace(
        "      requestTimeoutSeconds: 30\n",
        "      requestTimeoutSeconds: 30\n      internalLoadBalancer: true\n      deployment: {rollbackAlarms: true}\n",
    )
    return plan_of(tmp_path_factory.mktemp("guarded"), stack)


def test_public_routes_stay_open_and_every_other_route_needs_the_jwt(guarded):
    plan = recorded(guarded)
    authorization = {inputs(r)["routeKey"]: inputs(r)["authorizationType"] for r in plan.of_type(ROUTE)}
    assert authorization == {
        "GET /products": "NONE",
        "GET /products/{id}": "NONE",
        "POST /orders": "JWT",
        "ANY /orders/{proxy+}": "JWT",
    }


def authorization_findings(plan: Plan, config: dict[str, Any] | None) -> list[str]:
    properties = {k: v for k, v in ((config or {}).get(AUTHORIZATION) or {}).items() if k != "enforcementLevel"}
    return [
        m
        for r in plan.resources
        if r.type == ROUTE
        for m in run_policy(AUTHORIZATION, ROUTE, r.inputs, properties).messages
    ]


def test_declared_public_routes_reach_the_pack_and_undeclared_open_ones_are_still_flagged(guarded):
    fed = with_program_policy_config(None, guarded.outputs)
    assert authorization_findings(guarded, fed) == []
    assert len(authorization_findings(guarded, None)) == 2, "without the feed the two public routes are flagged"
    # The --policy-config file's level wins; the program's declared routes stay.
    merged = with_program_policy_config({AUTHORIZATION: "mandatory"}, guarded.outputs)
    assert merged == {
        AUTHORIZATION: {"enforcementLevel": "mandatory", "publicRouteKeys": ["GET /products", "GET /products/{id}"]}
    }
    # The shop declares no public route (no authorizer): its open routes stay flagged.
    shop = stack_plan("shop")
    assert "policyPackConfig" not in shop.outputs
    assert authorization_findings(shop, with_program_policy_config(None, shop.outputs))


def test_a_service_behind_the_internal_alb_is_called_through_it_and_rolls_back_on_its_alarms(guarded):
    plan = recorded(guarded)
    (alb,) = plan.of_type("aws:lb/loadBalancer:LoadBalancer")
    assert inputs(alb)["internal"] is True and inputs(alb)["subnets"] == guarded.outputs["privateSubnetIds"]
    assert guarded.outputs["internalAlbDnsName"]
    orders = containers_of(plan, "orders")["orders"]
    variables = {v["name"]: v["value"] for v in orders["environment"]}
    assert variables["PAYMENTS_URL"] == f"http://{guarded.outputs['internalAlbDnsName']}:8082"
    assert variables["PRODUCTS_URL"] == "http://products:8080"
    rules = {r.name for r in plan.of_type(SG_INGRESS)}
    assert "shop-dev-payments-from-orders-ingress" not in rules
    assert {
        "shop-dev-payments-from-orders-via-internal-alb-ingress",
        "shop-dev-payments-from-internal-alb-ingress",
    } <= rules
    service = inputs(plan.find("aws:ecs/service:Service", "shop-dev-payments-service"))
    assert "deploymentConfiguration" not in service or service["deploymentConfiguration"].get("strategy") in (
        None,
        "ROLLING",
    )
    assert service["alarms"]["alarmNames"] == [
        "shop-dev-payments-rollback-5xx-rate",
        "shop-dev-payments-rollback-p99-latency",
        "shop-dev-payments-rollback-unhealthy-hosts",
    ]


def test_a_pinned_image_runs_its_own_health_check_not_the_python_probe(shop):
    plan = recorded(shop)
    assert containers_of(plan, "products")["products"]["healthCheck"]["command"] == ["CMD", "/app/healthcheck"]
    assert "healthCheck" not in containers_of(plan, "notifier")["notifier"], "no port: nothing to probe"


def test_mesh_alarms_read_this_stacks_discovery_names_only(shop):
    plan = recorded(shop)
    dimensions = [
        d["value"]
        for alarm in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        for query in inputs(alarm).get("metricQueries") or [{"metric": {"dimensions": inputs(alarm).get("dimensions")}}]
        for d in [{"name": k, "value": v} for k, v in ((query.get("metric") or {}).get("dimensions") or {}).items()]
        if d["name"] == "TargetDiscoveryName"
    ]
    assert dimensions and all(value.startswith("shop-dev-") for value in dimensions), dimensions
