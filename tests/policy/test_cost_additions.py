"""Issue 16's additions to the cost estimate (policy/rules/costing.py): target tracking alarms, KMS rotation by key
age, Inspector enhanced scanning, the Fargate Spot discount range, the account free tier and per-resource usage
overrides.

Every expected figure is recounted here by hand from the us-east-1 list prices (written out as literals), never by
calling the estimator again: a change to prices.json or to the arithmetic should fail these on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import StackValidationArgs

from policy.rules.cost import cost_budget
from policy.rules.costing import (
    Assumptions,
    CostError,
    CostEstimate,
    Line,
    estimate,
    main,
    render_assumptions_table,
)
from runner.records import ResourceRecord
from tests.policy.helpers import stack_resources

HOURS = 24 * 30.4
DAYS = 30.4
ROOT = Path(__file__).resolve().parents[2]
STACK = "urn:pulumi:dev::proj::"

ALARM = 0.10  # cloudwatch.alarm.standard, per alarm metric-month
KMS_KEY = 1.00
KMS_ROTATION = 1.00
INITIAL_SCAN = 0.09
RESCAN = 0.01
VCPU_HOUR = 0.04048  # fargate.vcpu.X86_64.FARGATE
GB_HOUR = 0.004445  # fargate.gb.X86_64.FARGATE

POLICY = "aws:appautoscaling/policy:Policy"
SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
QUEUE = "aws:sqs/queue:Queue"


def record(type_: str, name: str, inputs: Mapping[str, Any], parent: str | None = None) -> ResourceRecord:
    return ResourceRecord(urn=f"{STACK}{type_}::{name}", type=type_, name=name, inputs=inputs, parent=parent)


def lines_of(cost: CostEstimate, name: str) -> list[Line]:
    return next(r.lines for r in cost.resources if r.name == name)


def resource_month(cost: CostEstimate, name: str) -> float:
    return sum(li.per_month for li in lines_of(cost, name))


def free_names(cost: CostEstimate) -> set[str]:
    return {f["name"] for f in cost.free}


# --- Target tracking alarms ---------------------------------------------------------------------------------


def target_tracking(name: str, specification: Mapping[str, Any]) -> ResourceRecord:
    return record(
        POLICY,
        name,
        {
            "policyType": "TargetTrackingScaling",
            "targetTrackingScalingPolicyConfiguration": {"targetValue": 70, **specification},
        },
    )


CPU = {"predefinedMetricSpecification": {"predefinedMetricType": "ECSServiceAverageCPUUtilization"}}
BACKLOG = {
    "customizedMetricSpecification": {
        "metrics": [
            {
                "id": "high",
                "metricStat": {"stat": "Sum", "metric": {"metricName": "ApproximateNumberOfMessagesVisible"}},
            },
            {
                "id": "low",
                "metricStat": {"stat": "Sum", "metric": {"metricName": "ApproximateNumberOfMessagesVisible"}},
            },
            {"id": "tasks", "metricStat": {"stat": "Average", "metric": {"metricName": "RunningTaskCount"}}},
            {"id": "backlog", "expression": "(high + low) / tasks", "returnData": True},
        ]
    }
}


def test_a_target_tracking_policy_pays_for_its_high_and_low_alarm() -> None:
    cost = estimate([target_tracking("cpu", CPU)])
    assert resource_month(cost, "cpu") == pytest.approx(2 * 1 * 0.10)  # two alarms, one metric each
    [alarms] = lines_of(cost, "cpu")
    assert alarms.quantity == 2 and alarms.key == "cloudwatch.alarm.standard"


def test_a_metric_math_target_tracking_alarm_pays_per_metric_not_per_expression() -> None:
    cost = estimate([target_tracking("backlog", BACKLOG)])
    assert resource_month(cost, "backlog") == pytest.approx(2 * 3 * 0.10)  # three metricStat queries per alarm


@pytest.mark.parametrize("inputs", [{"policyType": "StepScaling"}, {}, {"policyType": "PredictiveScaling"}])
def test_step_and_predictive_policies_create_no_alarms_of_their_own(inputs: Mapping[str, Any]) -> None:
    cost = estimate([record(POLICY, "step", inputs)])
    assert free_names(cost) == {"step"} and cost.per_month == 0


# --- KMS rotation by key age --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "period", "monthly"),
    [
        (0, None, 1.00),  # a new key: no rotation yet
        (364, None, 1.00),
        (365, None, 2.00),  # first yearly rotation
        (730, 365, 3.00),  # second
        (3650, None, 3.00),  # capped after the second
        (100, 90, 2.00),  # a 90-day period: one rotation by day 100
        (200, 90, 3.00),
    ],
)
def test_kms_rotation_adds_a_dollar_for_each_of_the_first_two_rotations(
    age: float, period: int | None, monthly: float
) -> None:
    inputs: dict[str, Any] = {"enableKeyRotation": True}
    if period is not None:
        inputs["rotationPeriodInDays"] = period
    cost = estimate([record("aws:kms/key:Key", "key", inputs)], assumptions=Assumptions(kms_key_age_days=age))
    assert cost.per_month == pytest.approx(monthly)


def test_a_key_without_rotation_never_pays_a_rotation_surcharge() -> None:
    key = record("aws:kms/key:Key", "key", {"enableKeyRotation": False})
    assert estimate([key], assumptions=Assumptions(kms_key_age_days=5000)).per_month == pytest.approx(KMS_KEY)


# --- Inspector enhanced scanning ----------------------------------------------------------------------------

CONTINUOUS_AND_PUSH = {
    "scanType": "ENHANCED",
    "rules": [
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": [{"filterType": "WILDCARD", "filter": "prod-*"}]},
        {"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filterType": "WILDCARD", "filter": "*"}]},
    ],
}


def test_enhanced_scanning_pays_initial_scans_and_continuous_rescans() -> None:
    cost = estimate([record(SCANNING, "registry", CONTINUOUS_AND_PUSH)])
    # defaults: 40 images pushed a month; 10 images under continuous scanning, rescanned 4 times a month each
    assert resource_month(cost, "registry") == pytest.approx(40 * 0.09 + 10 * 4 * 0.01)  # 3.60 + 0.40
    usage = Assumptions(
        inspector_images_pushed_per_month=100,
        inspector_images_continuously_scanned=20,
        inspector_rescans_per_image_per_month=3,
    )
    cost = estimate([record(SCANNING, "registry", CONTINUOUS_AND_PUSH)], assumptions=usage)
    assert resource_month(cost, "registry") == pytest.approx(100 * 0.09 + 20 * 3 * 0.01)  # 9.00 + 0.60


def test_scan_on_push_only_has_no_rescans() -> None:
    on_push = {"scanType": "ENHANCED", "rules": [CONTINUOUS_AND_PUSH["rules"][1]]}
    cost = estimate([record(SCANNING, "registry", on_push)])
    assert [li.item for li in lines_of(cost, "registry")] == ["Amazon Inspector initial image scans"]
    assert cost.per_month == pytest.approx(40 * INITIAL_SCAN)


@pytest.mark.parametrize(
    "inputs",
    [
        {"scanType": "BASIC", "rules": CONTINUOUS_AND_PUSH["rules"]},
        {"scanType": "ENHANCED", "rules": [{"scanFrequency": "MANUAL", "repositoryFilters": [{"filter": "*"}]}]},
    ],
)
def test_basic_or_manual_scanning_costs_nothing(inputs: Mapping[str, Any]) -> None:
    cost = estimate([record(SCANNING, "registry", inputs)])
    assert free_names(cost) == {"registry"} and cost.unpriced == []


# --- Fargate Spot as a range --------------------------------------------------------------------------------


def fargate_graph(strategy: Sequence[Mapping[str, Any]], desired: int = 1) -> list[ResourceRecord]:
    task = record(
        "aws:ecs/taskDefinition:TaskDefinition",
        "api-task",
        {"family": "api", "cpu": "1024", "memory": "2048", "runtimePlatform": {"cpuArchitecture": "X86_64"}},
    )
    service = record(
        "aws:ecs/service:Service",
        "api",
        {"name": "api", "taskDefinition": "api", "desiredCount": desired, "capacityProviderStrategies": list(strategy)},
    )
    return [task, service]


ON_DEMAND_TASK = 1 * HOURS * VCPU_HOUR + 2 * HOURS * GB_HOUR  # 1 vCPU + 2 GB for a month: 29.5344 + 6.4861


def test_spot_is_a_range_priced_at_its_conservative_end() -> None:
    cost = estimate(fargate_graph([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]))
    assert cost.per_month == pytest.approx(ON_DEMAND_TASK * 0.50)  # 50 % off: the point estimate
    assert cost.per_month_low == pytest.approx(ON_DEMAND_TASK * 0.30)  # 70 % off: the low end
    assert cost.per_day_low == pytest.approx(ON_DEMAND_TASK * 0.30 / DAYS)
    assert cost.to_json()["range"]["per_month"] == [round(ON_DEMAND_TASK * 0.30, 4), round(ON_DEMAND_TASK * 0.50, 4)]
    assert "Range: $" in cost.render_text() and "Fargate Spot 50%-70% off on-demand" in cost.render_text()


def test_on_demand_tasks_are_not_a_range() -> None:
    cost = estimate(fargate_graph([{"capacityProvider": "FARGATE", "weight": 1}], desired=2))
    assert cost.per_month == cost.per_month_low == pytest.approx(2 * ON_DEMAND_TASK)
    assert not cost.is_range and "Range:" not in cost.render_text()


def test_mixed_strategy_ranges_only_the_spot_share() -> None:
    strategy = [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 0},
        {"capacityProvider": "FARGATE_SPOT", "weight": 1},
    ]
    cost = estimate(fargate_graph(strategy, desired=3))  # 1 on-demand (base), 2 on Spot
    assert cost.per_month == pytest.approx(ON_DEMAND_TASK + 2 * ON_DEMAND_TASK * 0.50)
    assert cost.per_month_low == pytest.approx(ON_DEMAND_TASK + 2 * ON_DEMAND_TASK * 0.30)


def test_the_budget_policy_compares_the_conservative_end() -> None:
    task_props = {"family": "api", "cpu": "1024", "memory": "2048"}
    service_props = {
        "name": "api",
        "taskDefinition": "api",
        "desiredCount": 1,
        "capacityProviderStrategies": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
    }
    graph = stack_resources(
        [
            ("aws:ecs/taskDefinition:TaskDefinition", "api-task", task_props),
            ("aws:ecs/service:Service", "api", service_props),
        ]
    )
    between = (ON_DEMAND_TASK * 0.30 + ON_DEMAND_TASK * 0.50) / 2  # above the low end, below the point estimate
    messages: list[str] = []
    cost_budget.validate(StackValidationArgs(graph, {"maxMonthlyUsd": between}), lambda m, urn=None: messages.append(m))
    assert len(messages) == 1 and f"${ON_DEMAND_TASK * 0.50:,.2f}/month" in messages[0]


# --- Account free tier --------------------------------------------------------------------------------------


def test_free_tier_is_taken_once_per_account_not_per_resource() -> None:
    queues = [record(QUEUE, f"q{i}", {}) for i in range(3)]
    usage = Assumptions(sqs_requests_per_day=20_000)  # 0.608M requests a month per queue, 1.824M in all
    gross = estimate(queues, assumptions=usage)
    net = estimate(queues, assumptions=usage, free_tier=True)
    assert gross.per_month == pytest.approx(3 * 0.608 * 0.40)
    assert net.per_month == pytest.approx((1.824 - 1) * 0.40)  # one million free for the account, not per queue
    assert [r.per_month for r in net.resources] == [r.per_month for r in gross.resources]  # not attributed
    assert net.to_json()["free_tier"]["per_month"] == pytest.approx(1 * 0.40)


def test_free_tier_alarms_metrics_and_dashboards() -> None:
    graph = [target_tracking(f"policy{i}", CPU) for i in range(6)]  # 12 alarm metrics
    graph += [record("aws:cloudwatch/dashboard:Dashboard", f"d{i}", {}) for i in range(4)]
    cost = estimate(graph, free_tier="always")
    assert cost.per_month == pytest.approx((12 - 10) * 0.10 + (4 - 3) * 3.00)


def test_free_tier_lambda_compute_shared_across_architectures_cheapest_first() -> None:
    x86 = record("aws:lambda/function:Function", "x86", {"memorySize": 1024})
    arm = record("aws:lambda/function:Function", "arm", {"memorySize": 1024, "architectures": ["arm64"]})
    usage = Assumptions(lambda_invocations_per_day=10_000, lambda_seconds_per_invocation=1)
    # each: 10,000 GB-s a day = 304,000 GB-s a month; 608,000 in all, 400,000 free, Arm (the cheaper) first
    gross_compute = 304_000 * 0.0000166667 + 304_000 * 0.0000133334
    free_compute = 304_000 * 0.0000133334 + (400_000 - 304_000) * 0.0000166667
    requests = 2 * 0.304 * 0.20  # 0.608M requests, all inside the 1M free
    cost = estimate([x86, arm], assumptions=usage, free_tier=True)
    assert cost.per_month == pytest.approx(gross_compute + requests - free_compute - requests)


def test_twelve_month_offers_only_for_a_new_account() -> None:
    bucket = [record("aws:s3/bucketV2:BucketV2", "b", {})]
    usage = Assumptions(s3_gb=8)
    assert estimate(bucket, assumptions=usage, free_tier=True).per_month == pytest.approx(8 * 0.023)
    assert estimate(bucket, assumptions=usage, free_tier="new-account").per_month == pytest.approx((8 - 5) * 0.023)


def test_no_free_tier_by_default_and_a_bad_mode_is_an_error() -> None:
    queue = [record(QUEUE, "q", {})]
    assert estimate(queue).free_tier == [] and estimate(queue).per_month == pytest.approx(0.304 * 0.40)
    with pytest.raises(CostError, match=r"free_tier: 'yes'; allowed: none, always, new-account"):
        estimate(queue, free_tier="yes")


# --- Per-resource usage overrides ---------------------------------------------------------------------------

WORKER_QUEUE = record(QUEUE, "jobs-dev-worker-high", {})
OTHER_QUEUE = record(QUEUE, "jobs-dev-events", {})


def test_an_override_by_name_pattern_changes_only_the_matching_resources() -> None:
    usage = Assumptions.from_mapping(
        {"overrides": [{"match": "jobs-*-worker-*", "usage": {"sqs_requests_per_day": 100_000}}]}
    )
    cost = estimate([WORKER_QUEUE, OTHER_QUEUE], assumptions=usage)
    assert resource_month(cost, "jobs-dev-worker-high") == pytest.approx(100_000 * 30.4 / 1e6 * 0.40)  # 1.216
    assert resource_month(cost, "jobs-dev-events") == pytest.approx(10_000 * 30.4 / 1e6 * 0.40)  # 0.1216


def test_an_override_by_urn_and_later_entries_win() -> None:
    usage = Assumptions.from_mapping(
        {
            "sqs_requests_per_day": 1_000,
            "overrides": [
                {"match": "jobs-*", "usage": {"sqs_requests_per_day": 50_000}},
                {"match": OTHER_QUEUE.urn, "usage": {"sqs_requests_per_day": 2_000}},
            ],
        }
    )
    cost = estimate([WORKER_QUEUE, OTHER_QUEUE], assumptions=usage)
    assert resource_month(cost, "jobs-dev-worker-high") == pytest.approx(50_000 * 30.4 / 1e6 * 0.40)
    assert resource_month(cost, "jobs-dev-events") == pytest.approx(2_000 * 30.4 / 1e6 * 0.40)


def test_an_override_on_a_service_also_counts_for_its_clusters_container_insights() -> None:
    cluster = record(
        "aws:ecs/cluster:Cluster", "main", {"settings": [{"name": "containerInsights", "value": "enabled"}]}
    )
    idle = fargate_graph([{"capacityProvider": "FARGATE", "weight": 1}], desired=0)
    usage = Assumptions.from_mapping({"overrides": [{"match": "api", "usage": {"average_tasks": "max"}}]})
    target = record(
        "aws:appautoscaling/target:Target",
        "scaling",
        {"serviceNamespace": "ecs", "resourceId": "service/main/api", "minCapacity": 0, "maxCapacity": 2},
    )
    cost = estimate([cluster, *idle, target], assumptions=usage)
    assert resource_month(cost, "api") == pytest.approx(2 * ON_DEMAND_TASK)
    metrics = next(li for li in lines_of(cost, "main") if li.item.startswith("Container Insights metrics"))
    assert metrics.quantity == 12 + 25 * 1  # the cluster plus one service with running tasks


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            [{"match": "jobs-*", "usage": {"sqs_requests_millions": 5}}],
            r"overrides\[0\]\.usage: unknown key\(s\) sqs_requests_millions; allowed: hours_per_day, average_tasks, ",
        ),
        ([{"match": "jobs-*", "usage": {"s3_gb": -1}}], r"overrides\[0\]\.usage\.s3_gb: -1; allowed: a number >= 0"),
        ([{"match": "jobs-*", "use": {}}], r"overrides\[0\]: \['match', 'use'\]; allowed: an object with exactly"),
        ([{"match": "", "usage": {"s3_gb": 1}}], r"overrides\[0\]\.match: ''; allowed: a resource URN or an fnmatch"),
        ({"match": "jobs-*"}, r"overrides: expected a list of \{match, usage\} objects, got dict"),
    ],
)
def test_bad_overrides_name_what_and_what_is_allowed(overrides: Any, message: str) -> None:
    with pytest.raises(CostError, match=message):
        Assumptions.from_mapping({"overrides": overrides}, "usage.json")


def test_an_override_matching_nothing_is_an_error_naming_the_pattern() -> None:
    usage = Assumptions.from_mapping({"overrides": [{"match": "jobs-*-wrker-*", "usage": {"s3_gb": 2}}]})
    with pytest.raises(
        CostError, match=r"overrides\[0\]\.match 'jobs-\*-wrker-\*': the name pattern matches no resource; allowed:"
    ):
        estimate([WORKER_QUEUE, OTHER_QUEUE], assumptions=usage)


def test_overrides_from_a_file_round_trip_through_the_report(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    content = {"overrides": [{"match": "jobs-*-worker-*", "usage": {"sqs_requests_per_day": 100_000}}]}
    path.write_text(json.dumps(content))
    cost = estimate([WORKER_QUEUE], assumptions=Assumptions.from_file(path))
    assert cost.to_json()["assumptions"]["overrides"] == content["overrides"]
    json.dumps(cost.to_json())


def test_the_budget_policy_reports_an_override_that_matches_nothing() -> None:
    graph = stack_resources([(QUEUE, "q", {})])
    config = {"maxMonthlyUsd": 100, "assumptions": {"overrides": [{"match": "nope", "usage": {"s3_gb": 1}}]}}
    messages: list[str] = []
    cost_budget.validate(StackValidationArgs(graph, config), lambda m, urn=None: messages.append(m))
    assert len(messages) == 1 and messages[0].startswith("cost-budget cannot estimate: cost assumptions:")


# --- Command line and docs ----------------------------------------------------------------------------------


def test_command_line_free_tier_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.json"
    rows = [{"urn": r.urn, "type": r.type, "name": r.name, "inputs": {}} for r in (WORKER_QUEUE, OTHER_QUEUE)]
    report.write_text(json.dumps({"resources": rows}))
    assert main([str(report), "--json", "--free-tier"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["free_tier"]["mode"] == "always" and data["per_month"] == 0  # 0.608M requests, inside the 1M


def test_docs_carry_the_generated_assumptions_table() -> None:
    docs = (ROOT / "docs" / "cost.md").read_text(encoding="utf-8")
    assert render_assumptions_table() in docs, "regenerate: python -m policy.rules.costing --assumptions-table"


# --- NAT instance (EC2 Auto Scaling group) ------------------------------------------------------------------


def nat_instance(desired: int = 1, volume: Mapping[str, Any] | None = None) -> list[ResourceRecord]:
    template = record(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "nat-template",
        {
            "instanceType": "t4g.nano",
            "networkInterfaces": [{"deviceIndex": 0, "associatePublicIpAddress": "true"}],
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"volumeType": "gp3", **(volume or {})}}],
        },
    )
    group = record(
        "aws:autoscaling/group:Group",
        "nat",
        {"minSize": 1, "maxSize": 1, "desiredCapacity": desired, "launchTemplate": {"id": "nat-template-id"}},
    )
    eni = record("aws:ec2/networkInterface:NetworkInterface", "nat-eni", {"sourceDestCheck": False})
    return [template, group, eni]


def test_a_nat_instance_pays_instance_hours_its_public_address_and_root_volume() -> None:
    cost = estimate(nat_instance())
    # t4g.nano $0.0042/h + one public IPv4 $0.005/h, all month; 8 GB gp3 root volume (AMI size, assumed) $0.08/GB
    assert resource_month(cost, "nat") == pytest.approx(HOURS * 0.0042 + HOURS * 0.005 + 8 * 0.08)
    assert free_names(cost) == {"nat-template", "nat-eni"} and cost.unpriced == []


def test_a_nat_instance_with_a_sized_volume_and_none_running() -> None:
    sized = estimate(nat_instance(volume={"volumeSize": 4}))
    assert resource_month(sized, "nat") == pytest.approx(HOURS * (0.0042 + 0.005) + 4 * 0.08)
    assert "nat" in free_names(estimate(nat_instance(desired=0)))


# "Amazon ECS Container Insights metrics" (CloudWatch user guide, Container-Insights-metrics-ECS): each metric's
# dimension sets. ContainerInstanceCount counts EC2 container instances, which a Fargate-only cluster has none of.
RESOURCE_METRIC_DIMENSIONS = ("ClusterName", "ServiceName", "TaskDefinitionFamily")
CONTAINER_INSIGHTS_METRICS = {
    **dict.fromkeys(
        (
            "CpuUtilized", "CpuReserved", "MemoryUtilized", "MemoryReserved", "NetworkRxBytes", "NetworkTxBytes",
            "StorageReadBytes", "StorageWriteBytes", "EphemeralStorageReserved", "EphemeralStorageUtilized",
        ),
        RESOURCE_METRIC_DIMENSIONS,
    ),
    **dict.fromkeys(("ServiceCount", "TaskCount"), ("ClusterName",)),
    **dict.fromkeys(
        ("DeploymentCount", "DesiredTaskCount", "PendingTaskCount", "RunningTaskCount", "TaskSetCount"),
        ("ServiceName",),
    ),
}  # fmt: skip


def test_container_insights_defaults_count_the_documented_metrics_per_dimension_set() -> None:
    def count(*dimensions: str) -> int:
        return sum(d in sets for sets in CONTAINER_INSIGHTS_METRICS.values() for d in dimensions)

    defaults = Assumptions()
    assert defaults.container_insights_metrics_per_cluster == count("ClusterName") == 12
    # One task definition family per service, as every service of the platform has its own.
    assert defaults.container_insights_metrics_per_service == count("ServiceName", "TaskDefinitionFamily") == 25
