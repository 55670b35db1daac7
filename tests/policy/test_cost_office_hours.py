"""Office hours in the cost estimate (policy/rules/costing.py): schedules that stop and start a resource price its
hourly charges for the hours a week it runs; what a stopped resource still bills stays in full.

Figures are recounted by hand from the us-east-1 list prices (literals), never by calling the estimator again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from policy.rules.costing import cron_times, estimate, running_fraction
from runner.records import ResourceRecord
from tests.plans import planned as stack_plan

HOURS = 24 * 30.4
STACK = "urn:pulumi:dev::proj::"
WEEKDAYS_8_TO_20 = 60 / 168  # 12 h x 5 days of the week's 168 h
RDS_MICRO, RDS_GP3 = 0.016, 0.115
NANO, IPV4, GP3 = 0.0042, 0.005, 0.08
VCPU_HOUR, GB_HOUR = 0.04048, 0.004445  # fargate X86_64 on-demand
METRIC = 0.3


def record(type_: str, name: str, inputs: Mapping[str, Any]) -> ResourceRecord:
    return ResourceRecord(urn=f"{STACK}{type_}::{name}", type=type_, name=name, inputs=inputs, parent=None)


def month(cost: Any, name: str) -> float:
    return sum(line.per_month for line in next(r.lines for r in cost.resources if r.name == name))


def notes(cost: Any, name: str) -> list[str]:
    return [line.note or "" for line in next(r.lines for r in cost.resources if r.name == name)]


# --- Reading cron expressions ---------------------------------------------------------------------------------


def test_cron_times_in_both_dialects_are_minutes_into_the_week_from_monday():
    monday_to_friday_8 = [day * 1440 + 480 for day in range(5)]
    assert cron_times("cron(0 8 ? * MON-FRI *)") == monday_to_friday_8
    assert cron_times("0 8 * * 1-5") == monday_to_friday_8
    assert cron_times("cron(0 8 ? * 2-6 *)") == monday_to_friday_8  # AWS numbers days 1-7 from Sunday
    assert cron_times("30 7 * * 0,7") == [6 * 1440 + 450]  # Unix: 0 and 7 are both Sunday
    assert cron_times("cron(15 9 ? * SUN,SAT *)") == [5 * 1440 + 555, 6 * 1440 + 555]


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 8 1 * ? *)",
        "cron(0/5 8 ? * MON *)",
        "rate(1 hour)",
        "0 8 * 1 1",
        "cron(0 8 ? * FRI-MON *)",
        "0 25 * * 1",
    ],
)
def test_forms_that_do_not_start_or_stop_daily_are_refused(expression):
    with pytest.raises(ValueError, match=r"cron expression|only|day"):
        cron_times(expression)


def test_running_fraction_pairs_each_start_with_the_next_stop_and_wraps_the_week():
    starts, stops = cron_times("0 8 * * 1-5"), cron_times("0 20 * * 1-5")
    assert running_fraction(starts, stops) == pytest.approx(WEEKDAYS_8_TO_20)
    # Started Friday 18:00, stopped Monday 06:00: a weekend job, across the week's end.
    assert running_fraction(cron_times("0 18 * * 5"), cron_times("0 6 * * 1")) == pytest.approx(60 / 168)
    with pytest.raises(ValueError, match="needs both a start and a stop"):
        running_fraction(starts, [])


# --- Priced lines ---------------------------------------------------------------------------------------------


def db_schedules(identifier: str = "jobs-dev-db", state: str = "ENABLED") -> list[ResourceRecord]:
    return [
        record(
            "aws:scheduler/schedule:Schedule",
            f"db-{action}",
            {
                "scheduleExpression": f"cron(0 {hour} ? * MON-FRI *)",
                "scheduleExpressionTimezone": "Europe/Berlin",
                "state": state,
                "target": {
                    "arn": f"arn:aws:scheduler:::aws-sdk:rds:{action}DBInstance",
                    "input": json.dumps({"DbInstanceIdentifier": identifier}),
                },
            },
        )
        for action, hour in (("stop", 20), ("start", 8))
    ]


DATABASE = record(
    "aws:rds/instance:Instance",
    "db",
    {
        "identifier": "jobs-dev-db",
        "engine": "postgres",
        "instanceClass": "db.t4g.micro",
        "allocatedStorage": 20,
        "storageType": "gp3",
    },
)


def test_a_stopped_database_pays_instance_hours_for_office_hours_and_storage_in_full():
    cost = estimate([DATABASE, *db_schedules()])
    assert month(cost, "db") == pytest.approx(HOURS * RDS_MICRO * WEEKDAYS_8_TO_20 + 20 * RDS_GP3)
    assert "office hours: 60 h/week (36%)" in notes(cost, "db")[0]
    assert {r["name"] for r in cost.free} == {"db-stop", "db-start"} and cost.unpriced == []


@pytest.mark.parametrize("schedules", [db_schedules("another-db"), db_schedules(state="DISABLED"), db_schedules()[:1]])
def test_schedules_of_another_database_disabled_or_without_a_start_change_nothing(schedules):
    assert month(estimate([DATABASE, *schedules]), "db") == pytest.approx(HOURS * RDS_MICRO + 20 * RDS_GP3)


def test_a_service_scaled_to_zero_outside_office_hours_pays_tasks_and_insights_metrics_for_its_hours():
    cluster = record(
        "aws:ecs/cluster:Cluster",
        "main",
        {"name": "main", "settings": [{"name": "containerInsights", "value": "enabled"}]},
    )
    task = record(
        "aws:ecs/taskDefinition:TaskDefinition", "api-task", {"family": "api", "cpu": "1024", "memory": "2048"}
    )
    service = record(
        "aws:ecs/service:Service", "api", {"name": "api", "cluster": "main", "taskDefinition": "api", "desiredCount": 1}
    )
    actions = [
        record(
            "aws:appautoscaling/scheduledAction:ScheduledAction",
            f"api-{action}",
            {
                "serviceNamespace": "ecs",
                "resourceId": "service/main/api",
                "schedule": f"cron(0 {hour} ? * MON-FRI *)",
                "scalableTargetAction": {"minCapacity": size, "maxCapacity": size * 3},
            },
        )
        for action, hour, size in (("stop", 20, 0), ("start", 8, 1))
    ]
    cost = estimate([cluster, task, service, *actions])
    assert month(cost, "api") == pytest.approx(HOURS * (VCPU_HOUR + 2 * GB_HOUR) * WEEKDAYS_8_TO_20)
    assert all("office hours: 60 h/week (36%)" in note for note in notes(cost, "api"))
    # 12 per-cluster metrics all month, 25 per-service metrics for the hours it runs; logs per running task-hour.
    metrics = next(line for line in next(r for r in cost.resources if r.name == "main").lines if "metrics" in line.item)
    assert metrics.quantity == pytest.approx(12 + 25 * WEEKDAYS_8_TO_20)
    assert metrics.per_month == pytest.approx((12 + 25 * WEEKDAYS_8_TO_20) * METRIC)


def nat(delete_on_termination: str) -> list[ResourceRecord]:
    template = record(
        "aws:ec2/launchTemplate:LaunchTemplate",
        "nat-template",
        {
            "instanceType": "t4g.nano",
            "networkInterfaces": [{"associatePublicIpAddress": "true"}],
            "blockDeviceMappings": [
                {"ebs": {"volumeType": "gp3", "volumeSize": 2, "deleteOnTermination": delete_on_termination}}
            ],
        },
    )
    group = record(
        "aws:autoscaling/group:Group", "nat", {"desiredCapacity": 1, "launchTemplate": {"id": "nat-template-id"}}
    )
    schedules = [
        record(
            "aws:autoscaling/schedule:Schedule",
            f"nat-{action}",
            {"autoscalingGroupName": "nat", "recurrence": f"0 {hour} * * 1-5", "desiredCapacity": size},
        )
        for action, hour, size in (("stop", 20, 0), ("start", 8, 1))
    ]
    return [template, group, *schedules]


def test_a_terminated_nat_instance_releases_its_address_and_volume_unless_the_volume_is_kept():
    running = HOURS * (NANO + IPV4) * WEEKDAYS_8_TO_20
    assert month(estimate(nat("true")), "nat") == pytest.approx(running + 2 * GP3 * WEEKDAYS_8_TO_20)
    assert month(estimate(nat("false")), "nat") == pytest.approx(running + 2 * GP3)


def test_dev_lean_runs_its_database_api_worker_and_nat_instance_in_office_hours_only():
    cost = estimate(stack_plan("dev-lean").resources)
    scheduled = {
        r.name for r in cost.resources for line in r.lines if line.note and "office hours: 60 h/week (36%)" in line.note
    }
    assert {"database-instance", "jobs-dev-api-service", "network-nat", "cluster-cluster"} <= scheduled
    assert cost.per_day <= 2.00
