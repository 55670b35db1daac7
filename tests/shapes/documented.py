"""Request constraints AWS documents but botocore's models leave out (EC2's models carry no patterns at all).

Each entry names the member (`A.B`, `[]` for every list item, empty for the whole request) and a check that
returns what is wrong. Values unknown offline are skipped, as in the shape validator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tests.shapes.payloads import alarm_problems, scaling_metric_problems, sqs_attribute_problems
from tests.shapes.validator import Problem, Unknown

Check = Callable[[Any], list[str]]

# PutRetentionPolicy: "Possible values are: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
# 1827, 2192, 2557, 2922, 3288, and 3653."
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)

# CreateSecurityGroup / IpRange / UserIdGroupPair descriptions: "Up to 255 characters in length. Allowed
# characters are a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*".
_EC2_TEXT = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}$")


def one_of(allowed: Iterable[Any]) -> Check:
    allowed = tuple(allowed)
    return lambda value: [] if value in allowed else [f"{value!r} is not one of {list(allowed)}"]


def between(low: int, high: int) -> Check:
    def check(value: Any) -> list[str]:
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return []
        return [f"{value!r} is not an integer from {low} to {high}"]

    return check


def ec2_text(value: Any) -> list[str]:
    if isinstance(value, str) and _EC2_TEXT.match(value):
        return []
    return [f"{value!r}: EC2 allows up to 255 of a-z A-Z 0-9 space ._-:/()#,@[]+=&;{{}}!$*"]


def security_group_name(value: Any) -> list[str]:
    problems = ec2_text(value)
    if isinstance(value, str) and value.lower().startswith("sg-"):
        problems.append(f"{value!r}: a group name cannot start with sg-")
    return problems


def name_rule(pattern: str, rule: str) -> Check:
    compiled = re.compile(pattern)
    return lambda value: [] if isinstance(value, str) and compiled.fullmatch(value) else [f"{value!r}: {rule}"]


# Each rule as the API reference states it for the member.
_ELB_NAME = name_rule(
    r"(?!internal-)[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?",
    "up to 32 alphanumeric characters or hyphens, not beginning or ending with a hyphen (nor `internal-`)",
)
_RDS_IDENTIFIER = name_rule(
    r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)",
    "1 to 63 letters, digits or hyphens; a letter first; no -- and no trailing -",
)
_RDS_GROUP_NAME = name_rule(
    r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}(?<!-)",
    "1 to 255 letters, digits or hyphens; a letter first; no -- and no trailing -",
)
_ECS_NAME = name_rule(r"[A-Za-z0-9_-]{1,255}", "up to 255 letters, digits, underscores and hyphens")


def container_problems(container: Any) -> list[str]:
    """ContainerDefinition rules from the ECS reference: `name` "Up to 255 letters (uppercase and lowercase),
    numbers, underscores, and hyphens"; HealthCheck interval 5-300, timeout 2-120, retries 1-10, startPeriod
    0-300 seconds, command starting with CMD or CMD-SHELL."""
    if not isinstance(container, Mapping):
        return []
    problems = [f"container name: {p}" for p in _ECS_NAME(container.get("name"))]
    check = container.get("healthCheck")
    if isinstance(check, Mapping):
        for key, (low, high) in {
            "interval": (5, 300),
            "timeout": (2, 120),
            "retries": (1, 10),
            "startPeriod": (0, 300),
        }.items():
            value = check.get(key)
            if isinstance(value, int) and not low <= value <= high:
                problems.append(f"healthCheck.{key} is from {low} to {high}, got {value}")
        command = check.get("command")
        if isinstance(command, list) and (not command or command[0] not in ("CMD", "CMD-SHELL")):
            problems.append(f"healthCheck.command starts with CMD or CMD-SHELL, got {command[:1]}")
    return problems


_SG_RULE = {
    "IpPermissions[].IpRanges[].Description": ec2_text,
    "IpPermissions[].UserIdGroupPairs[].Description": ec2_text,
}

DOCUMENTED: dict[tuple[str, str], dict[str, Check]] = {
    ("logs", "PutRetentionPolicy"): {"retentionInDays": one_of(LOG_RETENTION_DAYS)},
    ("ec2", "CreateSecurityGroup"): {"Description": ec2_text, "GroupName": security_group_name},
    ("ec2", "AuthorizeSecurityGroupIngress"): _SG_RULE,
    ("ec2", "AuthorizeSecurityGroupEgress"): _SG_RULE,
    ("sqs", "SetQueueAttributes"): {"Attributes": sqs_attribute_problems},
    ("cloudwatch", "PutMetricAlarm"): {"": alarm_problems},
    ("application-autoscaling", "PutScalingPolicy"): {
        "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification": scaling_metric_problems,
    },
    ("cloudwatch", "PutDashboard"): {
        "DashboardName": name_rule(r"[A-Za-z0-9_-]{1,255}", "up to 255 of A-Z a-z 0-9 - _"),
    },
    ("elbv2", "CreateTargetGroup"): {"Name": _ELB_NAME},
    ("elbv2", "CreateLoadBalancer"): {"Name": _ELB_NAME},
    ("sqs", "CreateQueue"): {
        "Attributes": sqs_attribute_problems,
        "QueueName": name_rule(
            r"[A-Za-z0-9_-]{1,80}(\.fifo)?", "up to 80 alphanumerics, hyphens, underscores (.fifo for FIFO)"
        ),
    },
    ("ecs", "CreateService"): {"serviceName": _ECS_NAME},
    ("ecs", "CreateCluster"): {"clusterName": _ECS_NAME},
    ("ecs", "RegisterTaskDefinition"): {"family": _ECS_NAME, "containerDefinitions[]": container_problems},
    ("rds", "CreateDBInstance"): {
        "DBInstanceIdentifier": _RDS_IDENTIFIER,
        # "Valid Values: 0, 1, 5, 10, 15, 30, 60"; backups "from 0 to 35" days.
        "MonitoringInterval": one_of((0, 1, 5, 10, 15, 30, 60)),
        "BackupRetentionPeriod": between(0, 35),
    },
    # KMS: "a value between 7 and 30, inclusive" (the model's 1-365 is the API type's range).
    ("kms", "ScheduleKeyDeletion"): {"PendingWindowInDays": between(7, 30)},
    ("secretsmanager", "DeleteSecret"): {"RecoveryWindowInDays": between(7, 30)},
    ("rds", "DeleteDBInstance"): {"FinalDBSnapshotIdentifier": _RDS_GROUP_NAME},
    ("rds", "CreateDBParameterGroup"): {"DBParameterGroupName": _RDS_GROUP_NAME},
    ("rds", "CreateDBSubnetGroup"): {
        "DBSubnetGroupName": name_rule(
            r"[A-Za-z0-9._ -]{1,255}", "up to 255 letters, digits, periods, underscores, spaces or hyphens"
        ),
    },
    ("elasticache", "CreateReplicationGroup"): {
        "ReplicationGroupId": name_rule(
            r"[A-Za-z](?!.*--)[A-Za-z0-9-]{0,39}(?<!-)",
            "1 to 40 letters, digits or hyphens; a letter first; no -- and no trailing -",
        ),
    },
    ("elasticache", "CreateCacheSubnetGroup"): {
        "CacheSubnetGroupName": name_rule(r"[A-Za-z0-9-]{1,255}", "up to 255 alphanumeric characters or hyphens"),
    },
    ("s3", "CreateBucket"): {
        "Bucket": name_rule(
            r"[a-z0-9](?!.*\.\.)[a-z0-9.-]{1,61}[a-z0-9]",
            "3 to 63 lowercase letters, digits, dots and hyphens; alphanumeric at both ends",
        ),
    },
}


def documented_problems(service: str, operation: str, request: Mapping[str, Any]) -> list[Problem]:
    found: list[Problem] = []
    for path, check in DOCUMENTED.get((service, operation), {}).items():
        for where, value in _values_at(request, path, operation):
            # Structured checks look only at members they can read (an Unknown is never a str, int or list).
            if not isinstance(value, Unknown):
                found.extend(Problem(where, message) for message in check(value))
    return found


def _values_at(node: Any, path: str, where: str) -> Iterable[tuple[str, Any]]:
    if not path:
        yield where, node
        return
    head, _, rest = path.partition(".")
    name, is_list = (head[:-2], True) if head.endswith("[]") else (head, False)
    if not isinstance(node, Mapping) or name not in node:
        return
    if not is_list:
        yield from _values_at(node[name], rest, f"{where}.{name}")
        return
    for index, item in enumerate(node[name]):
        yield from _values_at(item, rest, f"{where}.{name}[{index}]")
