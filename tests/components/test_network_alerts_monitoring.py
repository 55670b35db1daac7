"""Network (VPC + flow logs), Alerts (key + topic) and Monitoring (dashboard + alarms)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.alerts import Alerts, AlertsArgs
from components.monitoring import Monitoring, MonitoringArgs, WatchedWebService
from components.network import Network, NetworkArgs
from runner import plan as plan_module
from tests.support import Recorded, build, inputs, json_input

KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
TOPIC = "arn:aws:sns:us-east-1:123456789012:jobs-dev-alerts"


def build_network(nat: str) -> Recorded:
    args = NetworkArgs(name_prefix="jobs-dev", account_id="123456789012", log_kms_key_arn=KEY, nat_gateways=nat)  # type: ignore[arg-type]
    return build(lambda: Network("network", args))


@pytest.mark.parametrize(("nat", "strategy"), [("single", "Single"), ("onePerAz", "OnePerAz")])
def test_vpc_spreads_over_three_azs_with_the_nat_strategy(nat, strategy):
    vpc = inputs(build_network(nat).one("awsx:ec2:Vpc"))
    assert vpc["numberOfAvailabilityZones"] == 3
    assert vpc["natGateways"] == {"strategy": strategy}
    assert [(s["type"], s["cidrMask"]) for s in vpc["subnetSpecs"]] == [("Public", 24), ("Private", 24)]


@pytest.mark.parametrize(("nat", "egress", "subnets"), [
    ("onePerAz", "natGateway", ["subnet-network-vpc-public-0", "subnet-network-vpc-public-1", "subnet-network-vpc-public-2"]),
    ("single", "natGateway", [None]),
    ("single", "natInstance", []),
])  # fmt: skip
def test_nat_public_ips_are_each_nat_gateways_elastic_ip(monkeypatch, nat, egress, subnets):
    lookups: list[dict[str, Any]] = []
    answer_others = plan_module.mock_call

    def answer(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
        if token == "aws:ec2/getNatGateway:getNatGateway":
            lookups.append(args)
            # AWS answers with the one gateway matching the filters (the subnet, or the VPC's only one).
            return {"id": "nat-1", "publicIp": f"198.51.100.{len(lookups)}", "subnetId": args.get("subnetId") or "x"}
        return answer_others(token, args, region)

    monkeypatch.setattr(plan_module, "mock_call", answer)
    args = NetworkArgs(
        name_prefix="jobs-dev", account_id="123456789012", log_kms_key_arn=KEY, nat_gateways=nat, egress=egress
    )  # type: ignore[arg-type]

    def program() -> None:
        pulumi.export("natPublicIps", Network("network", args).nat_public_ips)

    recorded = build(program)
    assert [lookup.get("subnetId") for lookup in lookups] == subnets
    # Only gateways in service: one being replaced lingers as `deleted` for a while.
    assert all((lookup["vpcId"], lookup["state"]) == ("vpc-network-vpc", "available") for lookup in lookups)
    assert recorded.outputs["natPublicIps"] == [f"198.51.100.{i + 1}" for i in range(len(subnets))]


@pytest.mark.parametrize(("read", "lookups"), [(False, 0), (True, 3)])
def test_nat_addresses_are_looked_up_only_when_read(monkeypatch, read, lookups):
    tokens: list[str] = []
    answer_others = plan_module.mock_call

    def answer(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
        tokens.append(token)
        return answer_others(token, args, region)

    monkeypatch.setattr(plan_module, "mock_call", answer)
    args = NetworkArgs(name_prefix="jobs-dev", account_id="123456789012", log_kms_key_arn=KEY, nat_gateways="onePerAz")

    def program() -> None:
        network = Network("network", args)
        if read:
            pulumi.export("natPublicIps", network.nat_public_ips)

    build(program)
    # A stack without the blue/green test listener asks AWS nothing about its NAT gateways.
    assert tokens.count("aws:ec2/getNatGateway:getNatGateway") == lookups


@pytest.mark.parametrize("egress", ["natInstance", "natGateway"])
def test_nat_group_name_is_the_nat_instances_auto_scaling_group(egress):
    args = NetworkArgs(name_prefix="jobs-dev", account_id="123456789012", log_kms_key_arn=KEY, egress=egress)  # type: ignore[arg-type]
    names: list[pulumi.Output[str] | None] = []

    def program() -> None:
        network = Network("network", args)
        names.append(network.nat_group_name)
        if network.nat_group_name is not None:
            pulumi.export("natGroupName", network.nat_group_name)

    recorded = build(program)
    groups = recorded.of_type("aws:autoscaling/group:Group")
    if egress == "natGateway":
        assert names == [None] and not groups
    else:
        assert [recorded.outputs["natGroupName"]] == [g.outputs["name"] for g in groups]


def test_flow_logs_capture_all_traffic_into_an_encrypted_group():
    recorded = build_network("single")
    flow_log = inputs(recorded.one("aws:ec2/flowLog:FlowLog"))
    assert flow_log["trafficType"] == "ALL"
    group = inputs(recorded.one("aws:cloudwatch/logGroup:LogGroup"))
    assert (group["kmsKeyId"], group["retentionInDays"]) == (KEY, 90)
    policy = json_input(recorded.one("aws:iam/rolePolicy:RolePolicy"), "policy")
    assert all(r.startswith("arn:aws:logs:") for s in policy["Statement"] for r in s["Resource"])


def build_alerts(email: str | None) -> Recorded:
    return build(lambda: Alerts("alerts", AlertsArgs("jobs-dev", "us-east-1", "123456789012", email)))


def test_alert_topic_is_encrypted_with_a_rotating_key():
    recorded = build_alerts(None)
    key = inputs(recorded.one("aws:kms/key:Key"))
    assert key["enableKeyRotation"] is True
    principals = {s["Principal"].get("Service") for s in json.loads(key["policy"])["Statement"]}
    assert {"logs.us-east-1.amazonaws.com", "cloudwatch.amazonaws.com", "sns.amazonaws.com"} <= principals
    topic = inputs(recorded.one("aws:sns/topic:Topic"))
    assert topic["kmsMasterKeyId"].startswith("arn:aws:kms:")
    assert recorded.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_email_subscription_only_when_configured():
    (subscription,) = build_alerts("ops@example.com").of_type("aws:sns/topicSubscription:TopicSubscription")
    assert (inputs(subscription)["protocol"], inputs(subscription)["endpoint"]) == ("email", "ops@example.com")


@pytest.fixture(scope="module")
def monitoring() -> Recorded:
    args = MonitoringArgs(
        name_prefix="jobs-dev",
        region="us-east-1",
        topic_arn=TOPIC,
        cluster_name="jobs-dev",
        alb_arn_suffix="app/jobs-dev-alb/1",
        web_services=[WatchedWebService("api", "jobs-dev-api", "targetgroup/api/2")],
    )
    return build(lambda: Monitoring("monitoring", args))


def test_alarms_use_the_seed_thresholds_and_page_the_topic(monitoring):
    alarms = {r.name: inputs(r) for r in monitoring.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    expected = {
        "monitoring-api-cpu-high": ("CPUUtilization", 85),
        "monitoring-api-memory-high": ("MemoryUtilization", 90),
        "monitoring-api-target-5xx": ("HTTPCode_Target_5XX_Count", 10),
        "monitoring-api-unhealthy-hosts": ("UnHealthyHostCount", 0),
        "monitoring-api-latency-p99": ("TargetResponseTime", 2.0),
    }
    assert {name: (a["metricName"], a["threshold"]) for name, a in alarms.items()} == expected
    for alarm in alarms.values():
        assert alarm["alarmActions"] == [TOPIC]
        assert alarm["okActions"] == [TOPIC]
    assert alarms["monitoring-api-latency-p99"]["extendedStatistic"] == "p99"
    assert alarms["monitoring-api-cpu-high"]["dimensions"] == {"ClusterName": "jobs-dev", "ServiceName": "jobs-dev-api"}


def test_dashboard_has_the_seed_widgets(monitoring):
    body = json_input(monitoring.one("aws:cloudwatch/dashboard:Dashboard"), "dashboardBody")
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert titles == ["jobs-dev-api: ECS service metrics", "Load balancer metrics", "Error rates"]
    metric_names = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert {"CPUUtilization", "MemoryUtilization", "RunningTaskCount", "RequestCount", "TargetResponseTime",
            "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count"} <= metric_names  # fmt: skip
