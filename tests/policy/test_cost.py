"""The cost estimate (policy/rules/costing.py) and the `cost-budget` stack policy (policy/rules/cost.py).

Known answers are worked out by hand from the us-east-1 figures in prices.json; a change to the table should
fail them, on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from pulumi_policy import EnforcementLevel, StackValidationArgs

from policy.rules.cost import cost_budget
from policy.rules.costing import (
    FREE_TYPES,
    PRICERS,
    Assumptions,
    CostError,
    CostEstimate,
    Line,
    estimate,
    price_table,
)
from runner.records import ResourceRecord
from tests.plans import planned as stack_plan
from tests.policy.helpers import stack_resources

HOURS = 24 * 30.4  # hours a month at the default 24 hours a day
ROOT = Path(__file__).resolve().parents[2]
STACK = "urn:pulumi:dev::proj::"

SERVICE = "aws:ecs/service:Service"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
RDS = "aws:rds/instance:Instance"


def record(
    type_: str, name: str, inputs: Mapping[str, Any], parent: str | None = None, custom: bool = True
) -> ResourceRecord:
    return ResourceRecord(
        urn=f"{STACK}{type_}::{name}", type=type_, name=name, inputs=inputs, parent=parent, custom=custom
    )


def task_definition(cpu: str = "1024", memory: str = "2048", architecture: str = "X86_64") -> ResourceRecord:
    return record(
        TASK_DEFINITION,
        "api-task",
        {"family": "api", "cpu": cpu, "memory": memory, "runtimePlatform": {"cpuArchitecture": architecture}},
    )


def service(desired: int = 2, strategy: Sequence[Mapping[str, Any]] | None = None, **extra: Any) -> ResourceRecord:
    inputs: dict[str, Any] = {"name": "api", "taskDefinition": "arn:aws:ecs:us-east-1:123:task-definition/api:3"}
    inputs["desiredCount"] = desired
    if strategy is not None:
        inputs["capacityProviderStrategies"] = list(strategy)
    return record(SERVICE, "api", {**inputs, **extra})


def lines_of(cost: CostEstimate, name: str) -> list[Line]:
    return next(r.lines for r in cost.resources if r.name == name)


def line(cost: CostEstimate, name: str, item_prefix: str) -> Line:
    return next(li for li in lines_of(cost, name) if li.item.startswith(item_prefix))


def figure(key: str, region: str = "us-east-1") -> float:
    return float(price_table()["regions"][region][key]["usd"])


# --- Known answers ----------------------------------------------------------------------------------------


def test_small_graph_priced_by_hand() -> None:
    # GIVEN two 1 vCPU / 2 GB x86 tasks on on-demand Fargate, an internet-facing ALB in 2 subnets, a KMS key
    graph = [
        task_definition(),
        service(desired=2),
        record("aws:lb/loadBalancer:LoadBalancer", "alb", {"internal": False, "subnets": ["a", "b"]}),
        record("aws:kms/key:Key", "key", {}),
    ]
    # WHEN it is estimated with the default assumptions (alb_lcu 0.5)
    cost = estimate(graph, "us-east-1")
    # THEN every line is the hand arithmetic
    fargate = 2 * 1 * HOURS * 0.04048 + 2 * 2 * HOURS * 0.004445  # 59.0688 + 12.97229 = 72.04109
    alb = HOURS * 0.0225 + 0.5 * HOURS * 0.008 + 2 * HOURS * 0.005  # 16.416 + 2.9184 + 7.296 = 26.6304
    kms = 1.0
    assert sum(li.per_month for li in lines_of(cost, "api")) == pytest.approx(fargate)
    assert sum(li.per_month for li in lines_of(cost, "alb")) == pytest.approx(alb)
    assert cost.per_month == pytest.approx(fargate + alb + kms)
    assert cost.per_day == pytest.approx((fargate + alb + kms) / 30.4)
    assert [f["type"] for f in cost.free] == [TASK_DEFINITION]
    assert cost.unpriced == []


def test_single_nat_vpc_from_the_awsx_component_inputs() -> None:
    vpc = record("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "Single"}, "numberOfAvailabilityZones": 3})
    cost = estimate([vpc], "us-east-1", Assumptions(nat_gb_per_day=2))
    # one NAT gateway-hour, 2 GB/day processed, one public IPv4 for its EIP
    assert cost.per_month == pytest.approx(HOURS * 0.045 + 2 * 30.4 * 0.045 + HOURS * 0.005)


def test_one_nat_per_zone_multiplies_hours_and_addresses_not_traffic() -> None:
    single = estimate([record("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "Single"}})])
    per_zone = estimate(
        [record("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "OnePerAz"}, "numberOfAvailabilityZones": 3})]
    )
    assert line(per_zone, "vpc", "NAT gateways").quantity == 3 * line(single, "vpc", "NAT gateways").quantity
    assert line(per_zone, "vpc", "NAT data").per_month == line(single, "vpc", "NAT data").per_month


def test_a_vpc_whose_children_are_recorded_is_priced_through_them() -> None:
    vpc = record("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "Single"}}, custom=False)
    nat = record("aws:ec2/natGateway:NatGateway", "nat", {}, parent=vpc.urn)
    eip = record("aws:ec2/eip:Eip", "eip", {}, parent=vpc.urn)
    cost = estimate([vpc, nat, eip])
    assert [f["name"] for f in cost.free] == ["vpc"]
    assert cost.per_month == pytest.approx(HOURS * 0.045 + 1 * 30.4 * 0.045 + HOURS * 0.005)
    assert {r.component for r in cost.resources} == {"vpc"}


def test_spot_lowers_the_fargate_lines_by_the_tables_conservative_discount() -> None:
    on_demand = estimate([task_definition(), service(strategy=[{"capacityProvider": "FARGATE", "weight": 1}])])
    spot = estimate([task_definition(), service(strategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}])])
    ratio = 1 - figure("fargate.spotDiscount.conservative")
    assert line(spot, "api", "Fargate vCPU").per_month == pytest.approx(
        line(on_demand, "api", "Fargate vCPU").per_month * ratio
    )
    assert line(spot, "api", "Fargate memory").per_month == pytest.approx(
        line(on_demand, "api", "Fargate memory").per_month * ratio
    )
    assert 0 < ratio < 1


def test_arm64_lowers_the_fargate_lines_by_the_tables_ratio() -> None:
    x86 = estimate([task_definition(), service()])
    arm = estimate([task_definition(architecture="ARM64"), service()])
    ratio = figure("fargate.vcpu.ARM64.FARGATE") / figure("fargate.vcpu.X86_64.FARGATE")
    assert line(arm, "api", "Fargate vCPU").per_month == pytest.approx(
        line(x86, "api", "Fargate vCPU").per_month * ratio
    )
    assert ratio < 1


def test_capacity_provider_base_first_then_weights() -> None:
    # GIVEN 5 tasks, FARGATE base 1 weight 1, FARGATE_SPOT weight 3: 1 + 4 x 1/4 = 2 on-demand, 4 x 3/4 = 3 Spot
    strategy = [
        {"capacityProvider": "FARGATE", "base": 1, "weight": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 3},
    ]
    cost = estimate([task_definition(cpu="0.5 vCPU", memory="1 GB"), service(desired=5, strategy=strategy)])
    assert line(cost, "api", "Fargate vCPU (X86_64, FARGATE)").quantity == pytest.approx(2 * 0.5 * HOURS)
    assert line(cost, "api", "Fargate vCPU (X86_64, FARGATE_SPOT)").quantity == pytest.approx(3 * 0.5 * HOURS)


@pytest.mark.parametrize(("mode", "tasks"), [("min", 1), ("max", 5), (0.5, 3), ("desired", 2)])
def test_average_tasks_between_the_autoscaling_bounds(mode: str | float, tasks: float) -> None:
    target = record(
        "aws:appautoscaling/target:Target",
        "scaling",
        {"serviceNamespace": "ecs", "resourceId": "service/main/api", "minCapacity": 1, "maxCapacity": 5},
    )
    cost = estimate([task_definition(), service(desired=2), target], assumptions=Assumptions(average_tasks=mode))
    assert line(cost, "api", "Fargate vCPU").quantity == pytest.approx(tasks * 1 * HOURS)


def test_multi_az_doubles_the_rds_instance_and_storage_lines() -> None:
    inputs = {"engine": "postgres", "instanceClass": "db.t4g.micro", "allocatedStorage": 20, "storageType": "gp3"}
    single = estimate([record(RDS, "db", inputs)])
    multi = estimate([record(RDS, "db", {**inputs, "multiAz": True})])
    assert line(single, "db", "RDS db.t4g.micro").per_month == pytest.approx(HOURS * 0.016)
    assert line(single, "db", "RDS storage").per_month == pytest.approx(20 * 0.115)
    assert line(multi, "db", "RDS db.t4g.micro").per_month == pytest.approx(
        2 * line(single, "db", "RDS db.t4g.micro").per_month
    )
    assert line(multi, "db", "RDS storage").per_month == pytest.approx(2 * line(single, "db", "RDS storage").per_month)


def test_rds_managed_master_password_adds_a_secret() -> None:
    inputs = {
        "engine": "postgres",
        "instanceClass": "db.t4g.micro",
        "allocatedStorage": 20,
        "manageMasterUserPassword": True,
    }
    assert line(estimate([record(RDS, "db", inputs)]), "db", "Secrets Manager").per_month == pytest.approx(0.40)


def test_valkey_nodes_cost_the_tables_ratio_of_redis() -> None:
    group = "aws:elasticache/replicationGroup:ReplicationGroup"
    redis = estimate([record(group, "c", {"engine": "redis", "nodeType": "cache.t4g.micro", "numCacheClusters": 2})])
    valkey = estimate([record(group, "c", {"engine": "valkey", "nodeType": "cache.t4g.micro", "numCacheClusters": 2})])
    assert redis.per_month == pytest.approx(2 * HOURS * 0.016)
    assert valkey.per_month == pytest.approx(redis.per_month * figure("elasticache.valkeyRatio"))


def test_container_insights_counts_only_services_with_running_tasks() -> None:
    cluster = record(
        "aws:ecs/cluster:Cluster", "main", {"settings": [{"name": "containerInsights", "value": "enhanced"}]}
    )
    idle = record(SERVICE, "idle", {"name": "idle", "taskDefinition": "api", "desiredCount": 0})
    cost = estimate([cluster, task_definition(), service(desired=2), idle])
    a = Assumptions()
    metrics = a.container_insights_metrics_per_cluster + a.container_insights_metrics_per_service * 1 + 20 * 2
    assert line(cost, "main", "Container Insights metrics").per_month == pytest.approx(metrics * 0.30)
    assert {"name": "idle"}.items() <= next(f for f in cost.free if f["name"] == "idle").items()


def test_log_group_storage_follows_retention_and_flow_logs_are_ingested_once() -> None:
    group = record("aws:cloudwatch/logGroup:LogGroup", "flows", {"name": "/vpc/flows", "retentionInDays": 7})
    flow = record(
        "aws:ec2/flowLog:FlowLog", "flow", {"logDestination": "arn:aws:logs:us-east-1:1:log-group:/vpc/flows"}
    )
    cost = estimate([group, flow], assumptions=Assumptions(flow_log_gb_per_day=1))
    assert [li.item for li in lines_of(cost, "flows")] == ["Log storage"]
    assert line(cost, "flows", "Log storage").per_month == pytest.approx(1 * 7 * 0.03)
    assert line(cost, "flow", "Flow log delivery").per_month == pytest.approx(1 * 30.4 * 0.50)


@pytest.mark.parametrize(
    ("writer", "group_name"),
    [
        (
            record(
                "aws:lambda/function:Function", "roles", {"name": "roles", "loggingConfig": {"logGroup": "/x/roles"}}
            ),
            "/x/roles",
        ),
        (record("aws:lambda/function:Function", "alerts", {"name": "alerts"}), "/aws/lambda/alerts"),
        (
            record(
                "aws:codebuild/project:Project", "build", {"logsConfig": {"cloudwatchLogs": {"groupName": "/cb/b"}}}
            ),
            "/cb/b",
        ),
        (
            record(
                "aws:ecs/cluster:Cluster",
                "main",
                {
                    "configuration": {
                        "executeCommandConfiguration": {"logConfiguration": {"cloudWatchLogGroupName": "/ecs/exec"}}
                    }
                },
            ),
            "/ecs/exec",
        ),
        (None, "/aws/rds/instance/db-1/upgrade"),
    ],
)
def test_a_log_group_only_events_write_is_priced_at_the_event_assumption(
    writer: ResourceRecord | None, group_name: str
) -> None:
    group = record("aws:cloudwatch/logGroup:LogGroup", "logs", {"name": group_name, "retentionInDays": 7})
    traffic = record("aws:cloudwatch/logGroup:LogGroup", "api", {"name": "/ecs/api", "retentionInDays": 7})
    cost = estimate([group, traffic, *([writer] if writer else [])], assumptions=Assumptions(event_log_gb_per_day=0.01))
    ingestion = line(cost, "logs", "Log ingestion (standard)")
    assert ingestion.per_month == pytest.approx(0.01 * 30.4 * 0.50)
    assert "event_log_gb_per_day: written by" in (ingestion.note or "")
    assert line(cost, "api", "Log ingestion (standard)").per_month == pytest.approx(0.05 * 30.4 * 0.50)


def test_unpriced_and_free_types_are_listed_never_silently_zero() -> None:
    component = record("acme:index:Thing", "thing", {}, custom=False)
    graph = [
        component,
        record("aws:iam/role:Role", "role", {}, parent=component.urn),
        record("aws:sagemaker/endpoint:Endpoint", "model", {}, parent=component.urn),
        record(RDS, "mysql", {"engine": "mysql", "instanceClass": "db.t4g.micro"}),
    ]
    cost = estimate(graph)
    assert {(u["type"], u["name"]) for u in cost.unpriced} == {
        ("aws:sagemaker/endpoint:Endpoint", "model"),
        (RDS, "mysql"),
    }
    assert {f["name"] for f in cost.free} == {"thing", "role"}
    assert cost.resources == [] and cost.per_month == 0


def test_an_input_unknown_until_apply_leaves_the_resource_unpriced() -> None:
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    cost = estimate([record(RDS, "db", {"engine": "postgres", "instanceClass": unknown})])
    assert cost.unpriced[0]["reason"] == "an input it is priced on is not known until apply"


def test_region_changes_prices_and_an_unpriced_region_is_an_error() -> None:
    vpc = record("awsx:ec2:Vpc", "vpc", {"natGateways": {"strategy": "Single"}})
    assert estimate([vpc], "eu-west-1").per_month > estimate([vpc], "us-east-1").per_month
    with pytest.raises(CostError, match=r"region 'mars-1' has no prices .*priced regions: us-east-1, eu-west-1"):
        estimate([vpc], "mars-1")


def test_region_is_inferred_from_arns() -> None:
    queue = record("aws:sqs/queue:Queue", "q", {"kmsMasterKeyId": "arn:aws:kms:eu-west-1:123456789012:key/abc"})
    assert estimate([queue]).region == "eu-west-1"


def test_json_and_text_reports() -> None:
    parent = record("acme:index:Api", "api-component", {}, custom=False)
    child = record("aws:kms/key:Key", "key", {}, parent=parent.urn)
    cost = estimate([parent, child])
    data = cost.to_json()
    assert {"currency", "per_day", "per_month", "resources", "unpriced", "free", "by_component"} <= set(data)
    assert data["resources"][0]["component"] == "api-component"
    assert data["by_component"] == {"api-component": 1.0}
    json.dumps(data)
    text = cost.render_text()
    assert "Total: $0.03/day, $1.00/month" in text and "api-component" in text


# --- Assumptions ------------------------------------------------------------------------------------------


def test_assumptions_from_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"nat_gb_per_day": 5, "average_tasks": "max"}))
    assumptions = Assumptions.from_file(path)
    assert (assumptions.nat_gb_per_day, assumptions.average_tasks, assumptions.hours_per_day) == (5, "max", 24.0)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"nat_gb": 1}, r"unknown key\(s\) nat_gb; allowed: hours_per_day, average_tasks"),
        ({"hours_per_day": 30}, r"hours_per_day: 30; allowed: 0 to 24"),
        ({"s3_gb": "lots"}, r"s3_gb: 'lots'; allowed: a number >= 0"),
        ({"average_tasks": "most"}, r"average_tasks: 'most'; allowed: min, desired, max or a fraction from 0 to 1"),
        ([1, 2], r"expected an object of assumption names to values, got list"),
    ],
)
def test_bad_assumptions_name_the_key(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "usage.json"
    path.write_text(json.dumps(content))
    with pytest.raises(CostError, match=message):
        Assumptions.from_file(path)


def test_every_assumption_is_documented() -> None:
    assert all(doc.endswith(".") for _, _, doc in Assumptions().describe())


# --- The price table --------------------------------------------------------------------------------------


def test_every_figure_names_a_source_with_url_and_date() -> None:
    table = price_table()
    assert {"us-east-1", "eu-west-1"} <= set(table["regions"])
    for region, figures in table["regions"].items():
        for key, item in figures.items():
            source = table["sources"].get(item["source"])
            assert source and source["url"].startswith("http") and source["retrieved"], (region, key)
            assert item["usd"] > 0 and item["per"], (region, key)


def test_both_regions_price_the_same_services() -> None:
    regions = price_table()["regions"]
    core = {key for key in regions["us-east-1"] if not key.startswith(("rds.postgres.", "elasticache.redis."))}
    assert core <= set(regions["eu-west-1"])


def test_the_free_list_and_the_priced_list_do_not_overlap() -> None:
    assert set(FREE_TYPES) & set(PRICERS) == set()


# --- The cost-budget policy -------------------------------------------------------------------------------

BUDGET_GRAPH = [
    ("aws:kms/key:Key", "key-a", {}),
    ("aws:kms/key:Key", "key-b", {}),
    ("aws:secretsmanager/secret:Secret", "s", {}),
]
BUDGET_TOTAL = 2 * 1.0 + 0.40  # two keys and a secret, per month


def run_budget(config: Mapping[str, Any]) -> list[str]:
    messages: list[str] = []
    args = StackValidationArgs(stack_resources(BUDGET_GRAPH), config)
    cost_budget.validate(args, lambda message, urn=None: messages.append(message))
    return messages


def test_budget_passes_at_the_threshold_and_fails_above_it() -> None:
    assert run_budget({"maxMonthlyUsd": BUDGET_TOTAL}) == []
    [message] = run_budget({"maxMonthlyUsd": BUDGET_TOTAL - 0.01})
    assert message.startswith("estimated $2.40/month ($0.08/day, us-east-1 list prices); biggest: key-a $1.00")
    assert message.endswith("over maxMonthlyUsd $2.39")


def test_budget_default_and_advisory_level() -> None:
    assert run_budget({}) == []  # the default budget (125/month) is far above 2.40
    assert cost_budget.enforcement_level == EnforcementLevel.ADVISORY


def test_budget_per_type_caps_and_bad_caps() -> None:
    over = run_budget({"maxMonthlyUsdByType": {"aws:kms/key:Key": 1.5, "aws:secretsmanager/secret:Secret": 1}})
    assert over == [
        "aws:kms/key:Key estimated $2.00/month, over its maxMonthlyUsdByType cap $1.50 (estimated $2.40/month "
        "($0.08/day, us-east-1 list prices); biggest: key-a $1.00, key-b $1.00, s $0.40)"
    ]
    assert run_budget({"maxMonthlyUsdByType": {"aws:kms/key:Key": "cheap"}}) == [
        "config maxMonthlyUsdByType['aws:kms/key:Key']: 'cheap'; allowed: USD per month, a number >= 0"
    ]


def test_budget_honours_region_and_assumptions_config() -> None:
    graph_cost = run_budget({"maxMonthlyUsd": 0, "region": "eu-west-1"})
    assert "eu-west-1 list prices" in graph_cost[0]
    [bad] = run_budget({"assumptions": {"nat_gb": 1}})
    assert bad.startswith("cost-budget cannot estimate: config assumptions: unknown key(s) nat_gb")


# --- The platform's own stacks ----------------------------------------------------------------------------

# Types the platform may leave unpriced, and why (none since Inspector enhanced scanning is priced per image).
JUSTIFIED_UNPRICED: set[str] = set()


@pytest.fixture(scope="module")
def platform_costs() -> dict[str, CostEstimate]:
    return {stack: estimate(stack_plan(stack).resources) for stack in ("dev", "staging", "prod")}


def test_dev_costs_less_than_staging_less_than_prod(platform_costs: dict[str, CostEstimate]) -> None:
    dev, staging, prod = (platform_costs[s].per_month for s in ("dev", "staging", "prod"))
    assert 0 < dev < staging < prod


def test_platform_stacks_leave_nothing_unpriced_without_a_reason(platform_costs: dict[str, CostEstimate]) -> None:
    for stack, cost in platform_costs.items():
        assert {u["type"] for u in cost.unpriced} <= JUSTIFIED_UNPRICED, stack
