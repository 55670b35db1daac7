"""A Lambda function as the platform makes every one: its own log group (retention, KMS, JSON logs at INFO, the
platform at WARN), its own role that only Lambda assumes from this account, and one role policy of the caller's
statements plus writing to that log group (and, for a function in a VPC, managing its network interfaces). Logical
names: `<name>-logs`, `<name>-role`, `<name>-policy`, `<name>`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import Statement, allow, assume_role_policy, policy_document

# What Lambda needs to attach a function to a VPC (the AWSLambdaVPCAccessExecutionRole actions, without logs).
VPC_NETWORK_INTERFACE_ACTIONS = (
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:UnassignPrivateIpAddresses",
)
# These work only on `*` (Lambda developer guide, "Giving Lambda functions access to a VPC").
VPC_DESCRIBE_ACTIONS = ("ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets")


@dataclass(frozen=True)
class FunctionVpc:
    """Where a function in a VPC attaches its network interfaces."""

    subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets (the function reaches the internet and AWS APIs through their NAT)."""
    security_group_ids: Sequence[pulumi.Input[str]]
    """The function's own security groups (its egress is all it needs: nothing connects to a function)."""
    region: str
    """Region of the VPC (the network interfaces' ARNs)."""


def vpc_access_statements(region: str, account_id: pulumi.Input[str]) -> list[pulumi.Input[Statement]]:
    """The execution role's part of attaching a function to a VPC: its interfaces in this account and region."""
    interfaces = pulumi.Output.concat("arn:aws:ec2:", region, ":", account_id, ":*/*")
    return [
        allow(list(VPC_NETWORK_INTERFACE_ACTIONS), [interfaces], sid="ManageVpcNetworkInterfaces"),
        allow(list(VPC_DESCRIBE_ACTIONS), ["*"], sid="DescribeVpcNetworkInterfaces"),
    ]


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
    vpc: FunctionVpc | None = None,
    **function_args: Any,
) -> aws.lambda_.Function:
    """The function (`function_args` are `aws.lambda_.Function`'s: runtime, handler, code, timeout, ...), created
    after its role policy and log group so its first invocation can log; with `vpc`, attached to those subnets and
    security groups, its role allowed to manage its network interfaces (Lambda checks that at creation)."""
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
    network = vpc_access_statements(vpc.region, account_id) if vpc is not None else []
    role_policy = aws.iam.RolePolicy(
        f"{name}-policy", role=role.id, policy=policy_document([*statements, write_logs, *network]), opts=child
    )
    if vpc is not None:
        function_args["vpc_config"] = aws.lambda_.FunctionVpcConfigArgs(
            subnet_ids=vpc.subnet_ids, security_group_ids=list(vpc.security_group_ids)
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
