"""OfficeHours: the database stopped and started by EventBridge Scheduler as a role scoped to it, the services'
scalable targets taken to 0 and back, the NAT instance's group to 0 and 1; crons in the configured time zone."""

from __future__ import annotations

import json
import re

import pytest

from components.office_hours import OfficeHours, OfficeHoursArgs, ScheduledService, aws_cron, unix_cron
from tests.support import Recorded, build, inputs, json_input, statements

ACCOUNT = "123456789012"
SCHEDULE = "aws:scheduler/schedule:Schedule"
ACTION = "aws:appautoscaling/scheduledAction:ScheduledAction"
GROUP_SCHEDULE = "aws:autoscaling/schedule:Schedule"


def office_hours(**overrides: object) -> Recorded:
    def program() -> None:
        args = {
            "name_prefix": "jobs-dev",
            "region": "us-east-1",
            "account_id": ACCOUNT,
            "timezone": "Europe/Berlin",
            "weekdays": (0, 1, 2, 3, 4),
            "database_identifier": "jobs-dev-db",
            "services": [
                ScheduledService("api", "jobs-dev-cluster", "jobs-dev-api", 1, 3),
                ScheduledService("worker", "jobs-dev-cluster", "jobs-dev-worker", 0, 5),
            ],
            "nat_group_name": "network-nat-1a2b3c4",
            **overrides,
        }
        OfficeHours("office-hours", OfficeHoursArgs(**args))  # type: ignore[arg-type]

    return build(program)


@pytest.fixture(scope="module")
def recorded() -> Recorded:
    return office_hours()


def test_crons_in_both_dialects():
    weekdays = (0, 1, 2, 3, 4)
    assert aws_cron("08:00", weekdays) == "cron(0 8 ? * MON-FRI *)"
    assert unix_cron("20:30", weekdays) == "30 20 * * 1-5"
    # Sunday counts first in both dialects: a weekend is two single days, a week wrapping Sunday two runs.
    assert aws_cron("09:15", (5, 6)) == "cron(15 9 ? * SUN,SAT *)"
    assert unix_cron("09:15", (0, 1, 2, 3, 4, 5, 6)) == "15 9 * * 0-6"


def test_the_database_is_stopped_and_started_through_the_universal_target(recorded):
    schedules = {r.name: inputs(r) for r in recorded.of_type(SCHEDULE)}
    assert set(schedules) == {"jobs-dev-office-hours-database-stop", "jobs-dev-office-hours-database-start"}
    stop, start = schedules["jobs-dev-office-hours-database-stop"], schedules["jobs-dev-office-hours-database-start"]
    assert stop["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:rds:stopDBInstance"
    assert start["target"]["arn"] == "arn:aws:scheduler:::aws-sdk:rds:startDBInstance"
    assert (stop["scheduleExpression"], start["scheduleExpression"]) == (
        "cron(0 20 ? * MON-FRI *)",
        "cron(0 8 ? * MON-FRI *)",
    )
    for schedule in (stop, start):
        assert schedule["scheduleExpressionTimezone"] == "Europe/Berlin"
        assert schedule["flexibleTimeWindow"] == {"mode": "OFF"}
        assert json.loads(schedule["target"]["input"]) == {"DbInstanceIdentifier": "jobs-dev-db"}
        assert "kmsKeyArn" not in schedule  # an AWS owned key: free, and nothing to grant


def test_the_scheduler_role_may_only_stop_and_start_this_database(recorded):
    role = recorded.find("aws:iam/role:Role", "jobs-dev-office-hours-scheduler-role")
    (trust,) = statements(json_input(role, "assumeRolePolicy"))
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    policy = recorded.find("aws:iam/rolePolicy:RolePolicy", "jobs-dev-office-hours-scheduler-policy")
    (statement,) = statements(json_input(policy, "policy"))
    assert statement["Action"] == ["rds:StartDBInstance", "rds:StopDBInstance"]
    assert statement["Resource"] == [f"arn:aws:rds:us-east-1:{ACCOUNT}:db:jobs-dev-db"]
    for schedule in recorded.of_type(SCHEDULE):
        assert inputs(schedule)["target"]["roleArn"].endswith("jobs-dev-office-hours-scheduler-role")


def test_services_go_to_zero_at_stop_and_back_to_their_sizing_at_start(recorded):
    actions = {r.name: inputs(r) for r in recorded.of_type(ACTION)}
    expected = {
        "api-stop": ("service/jobs-dev-cluster/jobs-dev-api", "cron(0 20 ? * MON-FRI *)", 0, 0),
        "api-start": ("service/jobs-dev-cluster/jobs-dev-api", "cron(0 8 ? * MON-FRI *)", 1, 3),
        "worker-stop": ("service/jobs-dev-cluster/jobs-dev-worker", "cron(0 20 ? * MON-FRI *)", 0, 0),
        "worker-start": ("service/jobs-dev-cluster/jobs-dev-worker", "cron(0 8 ? * MON-FRI *)", 0, 5),
    }
    assert set(actions) == {f"jobs-dev-office-hours-{key}" for key in expected}
    for key, (resource_id, cron, low, high) in expected.items():
        action = actions[f"jobs-dev-office-hours-{key}"]
        assert (action["resourceId"], action["schedule"], action["timezone"]) == (resource_id, cron, "Europe/Berlin")
        assert action["scalableDimension"] == "ecs:service:DesiredCount" and action["serviceNamespace"] == "ecs"
        assert action["scalableTargetAction"] == {"minCapacity": low, "maxCapacity": high}


def test_the_nat_instance_group_goes_to_zero_and_back_to_one(recorded):
    schedules = {r.name: inputs(r) for r in recorded.of_type(GROUP_SCHEDULE)}
    stop, start = schedules["jobs-dev-office-hours-nat-stop"], schedules["jobs-dev-office-hours-nat-start"]
    assert (stop["recurrence"], start["recurrence"]) == ("0 20 * * 1-5", "0 8 * * 1-5")
    for schedule, size in ((stop, 0), (start, 1)):
        assert schedule["autoscalingGroupName"] == "network-nat-1a2b3c4"
        assert schedule["timeZone"] == "Europe/Berlin"
        assert (schedule["minSize"], schedule["maxSize"], schedule["desiredCapacity"]) == (size, size, size)


def test_every_child_belongs_to_the_component(recorded):
    component = recorded.one("container-platform:office-hours:OfficeHours")
    assert len(recorded.resources) == 1 + len(recorded.children_of(component)) == 1 + 2 + 2 + 4 + 2


def test_only_what_is_given_is_scheduled():
    recorded = office_hours(database_identifier=None, services=[], nat_group_name=None)
    assert [r.type for r in recorded.resources] == ["container-platform:office-hours:OfficeHours"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"weekdays": ()}, "weekdays ([]): one or more of 0 (Monday) to 6 (Sunday)"),
        ({"start": "20:00", "stop": "08:00"}, "stop (08:00) must be later than start (20:00) on the same day"),
    ],
)
def test_contradictory_args_are_refused(overrides, message):
    args = {
        "name_prefix": "p",
        "region": "us-east-1",
        "account_id": ACCOUNT,
        "timezone": "UTC",
        "weekdays": (0,),
        **overrides,
    }
    with pytest.raises(ValueError, match=re.escape(message)):
        OfficeHoursArgs(**args)  # type: ignore[arg-type]
