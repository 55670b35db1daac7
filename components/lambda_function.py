"""A Lambda function as the platform makes every one: its own log group (retention, KMS, JSON logs at INFO, the
platform at WARN), its own role that only Lambda assumes from this account, and one role policy of the caller's
statements plus writing to that log group. Logical names: `<name>-logs`, `<name>-role`, `<name>-policy`, `<name>`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import allow, assume_role_policy, policy_document


def logged_function(
    name: str,
    *,
    function_name: str,
    role_description: str,
    statements: Sequence[Any],
    account_id: pulumi.Input[str],
    log_retention_days: int,
    log_kms_key_arn: pulumi.Input[str],
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource] = (),
    **function_args: Any,
) -> aws.lambda_.Function:
    """The function (`function_args` are `aws.lambda_.Function`'s: runtime, handler, code, timeout, ...), created
    after its role policy and log group so its first invocation can log."""
    child = pulumi.ResourceOptions(parent=parent)
    log_group = aws.cloudwatch.LogGroup(
        f"{name}-logs",
        name=f"/aws/lambda/{function_name}",
        retention_in_days=log_retention_days,
        kms_key_id=log_kms_key_arn,
        opts=child,
    )
    role = aws.iam.Role(
        f"{name}-role",
        assume_role_policy=assume_role_policy("lambda.amazonaws.com", account_id),
        description=f"{function_name}: {role_description}",
        opts=child,
    )
    write_logs = allow(
        ["logs:CreateLogStream", "logs:PutLogEvents"], [pulumi.Output.concat(log_group.arn, ":*")], sid="WriteOwnLogs"
    )
    role_policy = aws.iam.RolePolicy(
        f"{name}-policy", role=role.id, policy=policy_document([*statements, write_logs]), opts=child
    )
    return aws.lambda_.Function(
        name,
        name=function_name,
        role=role.arn,
        logging_config=aws.lambda_.FunctionLoggingConfigArgs(
            log_format="JSON", log_group=log_group.name, application_log_level="INFO", system_log_level="WARN"
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[role_policy, log_group, *depends_on]),
        **function_args,
    )
