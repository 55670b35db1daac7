"""OfficeHours: stop what can stop outside working hours (the AWS Instance Scheduler lever, built natively).

- The database: two EventBridge Scheduler schedules call RDS's StopDBInstance / StartDBInstance through the
  universal target, as a role only scheduler.amazonaws.com may assume for this account and that may only stop and
  start this one instance. Schedules are encrypted with an AWS owned key by default (no KMS key to pay for).
- ECS services: Application Auto Scaling scheduled actions on their scalable targets, min = max = 0 at stop and
  the sized min / max back at start; the service's own scaling policies act within those bounds (the worker's
  wake-from-zero alarm stays in ALARM while work waits at night and, since Auto Scaling alarm actions repeat each
  minute, wakes it once start lifts the max).
- The NAT instance: scheduled actions on its Auto Scaling group, 0 at stop and 1 at start (the instance is
  terminated, its public IPv4 address and root volume go with it).

Cron expressions are in the configured time zone (each service's own timezone setting), so daylight saving time
is followed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.iam import allow, assume_role_policy, policy_document

DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
"""Day-of-week names, Sunday first: both AWS cron (1-7 from SUN) and Unix cron (0-6 from Sunday) count this way."""
RDS_UNIVERSAL_TARGET = "arn:aws:scheduler:::aws-sdk:rds:{action}"


@dataclass(frozen=True)
class ScheduledService:
    """An ECS service with an Application Auto Scaling target, scaled to 0 outside office hours."""

    name: str
    """Short name (`api`, `worker`); child names derive from it."""
    cluster_name: pulumi.Input[str]
    """Cluster of the service."""
    service_name: pulumi.Input[str]
    """ECS service name (its scalable target's resource id is `service/<cluster>/<service>`)."""
    min_count: int
    """Autoscaling minimum restored at start."""
    max_count: int
    """Autoscaling maximum restored at start."""


@dataclass(frozen=True)
class OfficeHoursArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    region: str
    """Region (the database ARN)."""
    account_id: pulumi.Input[str]
    """Account (the database ARN, the scheduler role's trust condition)."""
    timezone: str
    """IANA time zone the start and stop times are in."""
    weekdays: Sequence[int]
    """Days it runs, Monday 0 to Sunday 6."""
    start: str = "08:00"
    """HH:MM everything starts. Default: 08:00."""
    stop: str = "20:00"
    """HH:MM everything stops. Default: 20:00."""
    database_identifier: pulumi.Input[str] | None = None
    """RDS instance to stop and start. Default: none."""
    services: Sequence[ScheduledService] = ()
    """ECS services to scale to 0 and back. Default: none."""
    nat_group_name: pulumi.Input[str] | None = None
    """Auto Scaling group of a NAT instance, 0 instances at stop and 1 at start. Default: none."""

    def __post_init__(self) -> None:
        if not self.weekdays or any(day not in range(7) for day in self.weekdays):
            raise ValueError(f"weekdays ({list(self.weekdays)}): one or more of 0 (Monday) to 6 (Sunday)")
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be later than start ({self.start}) on the same day")


def _sunday_first(weekdays: Sequence[int]) -> list[int]:
    return sorted({(day + 1) % 7 for day in weekdays})


def _runs(days: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for day in days:
        if runs and runs[-1][1] == day - 1:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _day_field(weekdays: Sequence[int], name: bool) -> str:
    def label(day: int) -> str:
        return DAY_NAMES[day] if name else str(day)

    return ",".join(label(a) if a == b else f"{label(a)}-{label(b)}" for a, b in _runs(_sunday_first(weekdays)))


def aws_cron(clock: str, weekdays: Sequence[int]) -> str:
    """EventBridge Scheduler's and Application Auto Scaling's cron: minutes hours day-of-month month day-of-week
    year, with `?` for the day of month when days of the week are given."""
    hour, minute = (int(part) for part in clock.split(":"))
    return f"cron({minute} {hour} ? * {_day_field(weekdays, name=True)} *)"


def unix_cron(clock: str, weekdays: Sequence[int]) -> str:
    """EC2 Auto Scaling's recurrence: Unix cron, minute hour day-of-month month day-of-week (0 Sunday)."""
    hour, minute = (int(part) for part in clock.split(":"))
    return f"{minute} {hour} * * {_day_field(weekdays, name=False)}"


class OfficeHours(pulumi.ComponentResource):
    database_role_arn: pulumi.Output[str] | None
    """Role EventBridge Scheduler stops and starts the database as; None without a database."""

    def __init__(self, name: str, args: OfficeHoursArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:office-hours:OfficeHours", name, None, opts)
        # A scheduled action needs its scalable target registered: children wait for what this component waits for.
        self._child = pulumi.ResourceOptions(parent=self, depends_on=opts.depends_on if opts else None)
        self._args = args
        self._prefix = f"{args.name_prefix}-office-hours"
        self.database_role_arn = None
        if args.database_identifier is not None:
            self.database_role_arn = self._database(args.database_identifier)
        for service in args.services:
            self._service(service)
        if args.nat_group_name is not None:
            self._nat_instance(args.nat_group_name)
        self.register_outputs({"database_role_arn": self.database_role_arn})

    # --- Database ---

    def _database(self, identifier: pulumi.Input[str]) -> pulumi.Output[str]:
        args = self._args
        database_arn = pulumi.Output.concat("arn:aws:rds:", args.region, ":", args.account_id, ":db:", identifier)
        role = aws.iam.Role(
            f"{self._prefix}-scheduler-role",
            description=f"{args.name_prefix}: EventBridge Scheduler stops and starts the database outside office hours",
            assume_role_policy=assume_role_policy("scheduler.amazonaws.com", args.account_id),
            opts=self._child,
        )
        policy = aws.iam.RolePolicy(
            f"{self._prefix}-scheduler-policy",
            role=role.id,
            policy=policy_document(
                [allow(["rds:StartDBInstance", "rds:StopDBInstance"], [database_arn], sid="StopAndStartTheDatabase")]
            ),
            opts=self._child,
        )
        # The universal target's input is the API request in the AWS SDKs' member names, PascalCased (Scheduler user
        # guide, "Using universal targets"; Step Functions' SDK integrations, same naming:
        # https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html). The SDKs name RDS's
        # DBInstanceIdentifier `dbInstanceIdentifier` (https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/rds/
        # aws.sdk.kotlin.services.rds.model/-start-db-instance-request/db-instance-identifier.html): `Db`, not `DB`.
        payload = pulumi.Output.from_input(identifier).apply(lambda db: json.dumps({"DbInstanceIdentifier": db}))
        for action, clock in (("stop", args.stop), ("start", args.start)):
            aws.scheduler.Schedule(
                f"{self._prefix}-database-{action}",
                name=f"{self._prefix}-database-{action}",
                description=f"{args.name_prefix}: {action} the database at {clock} {args.timezone}",
                schedule_expression=aws_cron(clock, args.weekdays),
                schedule_expression_timezone=args.timezone,
                flexible_time_window=aws.scheduler.ScheduleFlexibleTimeWindowArgs(mode="OFF"),
                target=aws.scheduler.ScheduleTargetArgs(
                    arn=RDS_UNIVERSAL_TARGET.format(action=f"{action}DBInstance"),
                    role_arn=role.arn,
                    input=payload,
                    retry_policy=aws.scheduler.ScheduleTargetRetryPolicyArgs(
                        maximum_event_age_in_seconds=3600, maximum_retry_attempts=3
                    ),
                ),
                # Until its policy is attached the role cannot call RDS.
                opts=pulumi.ResourceOptions.merge(self._child, pulumi.ResourceOptions(depends_on=[policy])),
            )
        return role.arn

    # --- ECS services ---

    def _service(self, service: ScheduledService) -> None:
        args = self._args
        resource_id = pulumi.Output.concat("service/", service.cluster_name, "/", service.service_name)
        for action, clock, low, high in (
            ("stop", args.stop, 0, 0),
            ("start", args.start, service.min_count, service.max_count),
        ):
            aws.appautoscaling.ScheduledAction(
                f"{self._prefix}-{service.name}-{action}",
                name=f"{self._prefix}-{service.name}-{action}",
                service_namespace="ecs",
                resource_id=resource_id,
                scalable_dimension="ecs:service:DesiredCount",
                schedule=aws_cron(clock, args.weekdays),
                timezone=args.timezone,
                scalable_target_action=aws.appautoscaling.ScheduledActionScalableTargetActionArgs(
                    min_capacity=low, max_capacity=high
                ),
                opts=self._child,
            )

    # --- NAT instance ---

    def _nat_instance(self, group_name: pulumi.Input[str]) -> None:
        args = self._args
        for action, clock, size in (("stop", args.stop, 0), ("start", args.start, 1)):
            aws.autoscaling.Schedule(
                f"{self._prefix}-nat-{action}",
                scheduled_action_name=f"{self._prefix}-nat-{action}",
                autoscaling_group_name=group_name,
                recurrence=unix_cron(clock, args.weekdays),
                time_zone=args.timezone,
                min_size=size,
                max_size=size,
                desired_capacity=size,
                opts=self._child,
            )
