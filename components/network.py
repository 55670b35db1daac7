"""Network: the VPC (awsx, public + private subnets, NAT per environment) and encrypted VPC flow logs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components.iam import allow, assume_role_policy, policy_document

NAT_STRATEGIES = {"single": awsx.ec2.NatGatewayStrategy.SINGLE, "onePerAz": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ}


@dataclass(frozen=True)
class NetworkArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    account_id: pulumi.Input[str]
    """Account (flow-log role trust condition)."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key for the flow log group."""
    cidr_block: str = "10.0.0.0/16"
    """VPC CIDR. Default: 10.0.0.0/16."""
    max_azs: int = 3
    """Availability zones. Default: 3."""
    nat_gateways: Literal["single", "onePerAz"] = "onePerAz"
    """`single` NAT gateway or `onePerAz`. Default: onePerAz (the safe choice)."""
    flow_log_retention_days: int = 90
    """Flow log retention. Default: 90."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    """VPC id."""
    public_subnet_ids: pulumi.Output[Sequence[str]]
    """Public subnets (the ALB only)."""
    private_subnet_ids: pulumi.Output[Sequence[str]]
    """Private subnets with NAT egress (tasks, data stores)."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc = awsx.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr_block,
            number_of_availability_zones=args.max_azs,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, name="public", cidr_mask=24),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, name="private", cidr_mask=24),
            ],
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=NAT_STRATEGIES[args.nat_gateways]),
            tags={"Name": f"{args.name_prefix}-vpc"},
            opts=child,
        )
        self._flow_logs(name, args, child)
        self.vpc_id = self.vpc.vpc_id
        self.public_subnet_ids = self.vpc.public_subnet_ids
        self.private_subnet_ids = self.vpc.private_subnet_ids
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
            }
        )

    def _flow_logs(self, name: str, args: NetworkArgs, child: pulumi.ResourceOptions) -> None:
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            name=f"/vpc/{args.name_prefix}/flow-logs",
            retention_in_days=args.flow_log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=child,
        )
        role = aws.iam.Role(
            f"{name}-flow-logs-role",
            assume_role_policy=assume_role_policy("vpc-flow-logs.amazonaws.com", args.account_id),
            description=f"{args.name_prefix}: VPC flow logs delivery",
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs-policy",
            role=role.id,
            policy=policy_document(
                [
                    allow(
                        ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                        [log_group.arn, pulumi.Output.concat(log_group.arn, ":*")],
                    )
                ]
            ),
            opts=child,
        )
        self.flow_log = aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=self.vpc.vpc_id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            opts=child,
        )
