"""The internal ALB and the services behind it: the public ALB's attributes in private subnets, a listener per
service port, SG-to-SG caller -> ALB -> service on exactly the declared calls; microservices' rollback alarms."""

from __future__ import annotations

from typing import Any

import pytest

from components.cluster import TLS_POLICY
from components.ecs_task import Rollout
from components.internal_alb import InternalLoadBalancer, InternalLoadBalancerArgs
from components.microservice import Microservice, allow_call
from tests.components.test_microservice import args, build_one, config_problems, service
from tests.support import Recorded, build, inputs

LB = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
CERT = "arn:aws:acm:us-east-1:210987654321:certificate/" + "0" * 8 + "-0000-0000-0000-" + "0" * 12


def internal_args(**overrides: Any) -> InternalLoadBalancerArgs:
    values: dict[str, Any] = {
        "name_prefix": "shop-dev",
        "vpc_id": "vpc-1",
        "private_subnet_ids": ["subnet-a", "subnet-b"],
        "deletion_protection": False,
    }
    return InternalLoadBalancerArgs(**(values | overrides))


def mesh(**internal: Any) -> tuple[Recorded, dict[str, Any]]:
    """orders calls payments (behind the internal ALB) and products (Service Connect only)."""
    urls: dict[str, Any] = {}

    def program() -> None:
        alb = InternalLoadBalancer("internal", internal_args(**internal))
        orders = Microservice("orders", args("orders", port=8081))
        payments = Microservice("payments", args("payments", port=8082, internal_alb=alb.entry))
        products = Microservice("products", args("products", port=8083))
        allow_call(orders, payments)
        allow_call(orders, products)
        alb.url(8082).apply(lambda url: urls.setdefault("resolved", url))
        alb.security_group_id.apply(lambda sg: urls.setdefault("alb_sg", sg))

    return build(program), urls


@pytest.fixture(scope="module")
def plain() -> tuple[Recorded, dict[str, Any]]:
    return mesh()


def test_the_internal_alb_is_the_public_albs_settings_in_private_subnets(plain):
    recorded, _ = plain
    alb = inputs(recorded.one(LB))
    assert alb["internal"] is True
    assert alb["subnets"] == ["subnet-a", "subnet-b"]
    assert alb["name"] == "shop-dev-int-alb"
    assert alb["dropInvalidHeaderFields"] is True
    assert alb["desyncMitigationMode"] == "strictest"
    assert alb["enableDeletionProtection"] is False, "per environment: the stack's deletionProtection"
    assert alb["accessLogs"]["enabled"] is True and alb["accessLogs"]["prefix"] == "alb"
    component = recorded.find("container-platform:internal-alb:InternalLoadBalancer", "internal")
    bucket = recorded.find("aws:s3/bucket:Bucket", "internal-alb-logs")
    assert recorded.one(LB).parent == bucket.parent == component.urn


def test_each_service_behind_it_has_its_own_listener_and_target_group_from_its_health_path_and_drain(plain):
    recorded, urls = plain
    (listener,) = recorded.of_type(LISTENER)
    assert (inputs(listener)["port"], inputs(listener)["protocol"]) == (8082, "HTTP")
    assert "sslPolicy" not in inputs(listener)
    (group,) = recorded.of_type("aws:lb/targetGroup:TargetGroup")
    assert group.name == "shop-dev-payments-internal-tg"
    assert inputs(group)["deregistrationDelay"] == 30
    assert inputs(group)["healthCheck"]["path"] == "/health"
    payments = recorded.find("container-platform:microservice:Microservice", "payments")
    assert listener.parent == group.parent == payments.urn
    service = inputs(recorded.find("aws:ecs/service:Service", "shop-dev-payments-service"))
    assert [lb["containerPort"] for lb in service["loadBalancers"]] == [8082]
    scaling = {r.name for r in recorded.of_type("aws:appautoscaling/policy:Policy") if "payments" in r.name}
    assert "shop-dev-payments-internal-requests-scaling" in scaling
    assert urls["resolved"].startswith("http://") and urls["resolved"].endswith(":8082")


def test_callers_reach_the_alb_on_the_callees_port_and_the_callee_only_from_the_alb(plain):
    recorded, resolved = plain
    pairs = {
        (r.name, inputs(r)["fromPort"], inputs(r)["toPort"])
        for r in recorded.of_type(INGRESS) + recorded.of_type(EGRESS)
        if "payments-from-" in r.name
    }
    assert pairs == {
        ("shop-dev-payments-from-orders-via-internal-alb-egress", 8082, 8082),
        ("shop-dev-payments-from-orders-via-internal-alb-ingress", 8082, 8082),
        ("shop-dev-payments-from-internal-alb-egress", 8082, 8082),
        ("shop-dev-payments-from-internal-alb-ingress", 8082, 8082),
    }, "no direct orders -> payments rule: the ALB is the only way in"
    into_alb = inputs(recorded.find(INGRESS, "shop-dev-payments-from-orders-via-internal-alb-ingress"))
    into_payments = inputs(recorded.find(INGRESS, "shop-dev-payments-from-internal-alb-ingress"))
    assert into_alb["securityGroupId"] == into_payments["referencedSecurityGroupId"] == resolved["alb_sg"]
    assert recorded.find(INGRESS, "shop-dev-products-from-orders-ingress"), "Service Connect callees unchanged"
    assert not [r for r in recorded.of_type(INGRESS) if "cidrIpv4" in inputs(r)]


def test_with_a_certificate_the_listeners_serve_https_under_the_stacks_name():
    recorded, urls = mesh(certificate_arn=CERT, domain_name="internal.shop.io")
    listener = inputs(recorded.one(LISTENER))
    assert (listener["protocol"], listener["sslPolicy"], listener["certificateArn"]) == ("HTTPS", TLS_POLICY, CERT)
    assert urls["resolved"] == "https://internal.shop.io:8082"
    with pytest.raises(ValueError, match="certificate_arn and domain_name"):
        internal_args(certificate_arn=CERT)


def test_internal_load_balancer_config_is_checked_with_one_message_per_problem():
    services = {
        "orders": service(port=8081, internalLoadBalancer=True, calls=["payments"]),
        "payments": service(port=8081, internalLoadBalancer=True),
        "mailer": service(internalLoadBalancer=True),
    }
    assert config_problems(services, internalLoadBalancer={"certificateArn": CERT}) == [
        "services.mailer.internalLoadBalancer: true without services.mailer.port; allowed: only on a service with "
        "a port",
        "services.payments.port: 8081 is also services.orders.port, both behind the internal ALB; allowed: a port "
        "of its own (the ALB has one listener per service port)",
        "internalLoadBalancer: certificateArn and domainName: both (HTTPS under that name) or neither (HTTP); an "
        "ALB's own DNS name cannot be on a certificate",
    ]
    alone = config_problems({"orders": service(port=8081)}, internalLoadBalancer={"certificateArn": CERT})
    assert (
        "internalLoadBalancer.certificateArn: set, but no service has internalLoadBalancer: true; allowed: only "
        "with a service behind the internal ALB"
    ) in alone


# --- Rollback alarms ----------------------------------------------------------------------------------------


def alarms_of(recorded: Recorded) -> dict[str, dict[str, Any]]:
    return {r.name: inputs(r) for r in recorded.of_type(ALARM)}


def test_a_service_connect_server_rolls_back_on_its_mesh_5xx_rate_latency_and_missing_tasks():
    recorded = build_one(rollout=Rollout(strategy="BLUE_GREEN", bake_time_minutes=5, rollback_alarms=True))
    alarms = alarms_of(recorded)
    names = [
        "shop-dev-orders-rollback-5xx-rate",
        "shop-dev-orders-rollback-latency",
        "shop-dev-orders-rollback-tasks-missing",
    ]
    assert sorted(alarms) == names
    assert all(alarm["name"] == name for name, alarm in alarms.items()), "named as the web service's"
    service = inputs(recorded.one("aws:ecs/service:Service"))
    assert service["alarms"] == {"alarmNames": names, "enable": True, "rollback": True}
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    rate = alarms["shop-dev-orders-rollback-5xx-rate"]
    dimensions = {q["id"]: q["metric"]["dimensions"] for q in rate["metricQueries"] if "metric" in q}
    assert dimensions == {
        "errors": {"TargetDiscoveryName": "shop-dev-orders"},
        "requests": {"TargetDiscoveryName": "shop-dev-orders"},
    }
    assert alarms["shop-dev-orders-rollback-latency"]["threshold"] == 2000, "Service Connect reports milliseconds"
    missing = alarms["shop-dev-orders-rollback-tasks-missing"]["metricQueries"][0]["metric"]
    assert missing["dimensions"] == {"ClusterName": "shop-dev", "ServiceName": "shop-dev-orders"}
    assert all("alarmActions" not in alarm for alarm in alarms.values()), "ECS reads them; the mesh alarms page"


def test_rollback_alarms_follow_the_entry_and_are_off_unless_asked():
    rollout = Rollout(rollback_alarms=True)  # rolling, as behind an ALB
    client = alarms_of(build_one(port=None, rollout=rollout))
    assert list(client) == ["shop-dev-orders-rollback-tasks-missing"]

    def behind_internal_alb() -> None:
        alb = InternalLoadBalancer("internal", internal_args())
        Microservice("orders", args(internal_alb=alb.entry, rollout=rollout))

    behind = alarms_of(build(behind_internal_alb))
    assert sorted(behind) == [
        "shop-dev-orders-rollback-5xx-rate",
        "shop-dev-orders-rollback-p99-latency",
        "shop-dev-orders-rollback-unhealthy-hosts",
    ]
    namespaces = {q["metric"]["namespace"] for a in behind.values() for q in a["metricQueries"] if "metric" in q}
    assert namespaces == {"AWS/ApplicationELB"}
    plain = build_one()
    assert not plain.of_type(ALARM)
    assert "alarms" not in inputs(plain.one("aws:ecs/service:Service"))
