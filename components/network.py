"""Network: the VPC (awsx, public + private subnets), its internet egress and encrypted VPC flow logs.

Egress is either managed NAT gateways (awsx, `single` or `onePerAz`) or one NAT instance: the maintained fck-nat
image (https://fck-nat.dev) in an auto scaling group of 1 that attaches a fixed network interface at boot, so the
private subnets' default routes survive an instance replacement (fck-nat's high-availability mode).
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from components.iam import allow, assume_role_policy, policy_document

NAT_STRATEGIES = {"single": awsx.ec2.NatGatewayStrategy.SINGLE, "onePerAz": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ}
# fck-nat's public AMIs: publisher account and Amazon Linux 2023 arm64 name pattern (fck-nat docs, "Deploying").
FCK_NAT_AMI_OWNER = "568608671756"
FCK_NAT_AMI_NAME = "fck-nat-al2023-*-arm64-ebs"
# The fck-nat image's root device (its Packer template).
FCK_NAT_ROOT_DEVICE = "/dev/xvda"
SSM_MANAGED_INSTANCE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
ANYWHERE = "0.0.0.0/0"
FCK_NAT_USER_DATA = """#!/bin/sh
: > /etc/fck-nat.conf
echo 'eni_id={eni}' >> /etc/fck-nat.conf
service fck-nat restart
"""


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
    """With `egress="natGateway"`: `single` NAT gateway or `onePerAz`. Default: onePerAz (the safe choice)."""
    egress: Literal["natGateway", "natInstance"] = "natGateway"
    """`natGateway` (managed NAT gateways) or `natInstance` (one fck-nat instance). Default: natGateway."""
    nat_instance_type: str = "t4g.nano"
    """NAT instance type (ARM64) with `egress="natInstance"`. Default: t4g.nano."""
    nat_instance_ssm: bool = False
    """Attach the SSM managed-instance policy to the NAT instance's role. Default: False (no shell access)."""
    flow_log_retention_days: int = 90
    """Flow log retention. Default: 90."""
    launch_tags: Mapping[str, str] = field(default_factory=dict)
    """The stack's default tags (`aws:defaultTags`), set explicitly where the provider's default tags do not reach: an
    auto scaling group and the instances, volumes and interfaces it launches. Default: none."""


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    """VPC id."""
    public_subnet_ids: pulumi.Output[Sequence[str]]
    """Public subnets (the ALB only)."""
    private_subnet_ids: pulumi.Output[Sequence[str]]
    """Private subnets with NAT egress (tasks, data stores)."""
    nat_group_name: pulumi.Output[str] | None
    """Auto Scaling group of the NAT instance (office hours size it to 0 and back); None with NAT gateways."""

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
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=_nat_gateway_strategy(args)),
            tags={"Name": f"{args.name_prefix}-vpc"},
            opts=child,
        )
        self.nat_instance: NatInstance | None = None
        if args.egress == "natInstance":
            self.nat_instance = NatInstance(name, args, self.vpc, child)
        self._flow_logs(name, args, child)
        self.vpc_id = self.vpc.vpc_id
        self.public_subnet_ids = self.vpc.public_subnet_ids
        self.private_subnet_ids = self.vpc.private_subnet_ids
        self._args = args
        self.nat_group_name = self.nat_instance.group.name if self.nat_instance is not None else None
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "public_subnet_ids": self.public_subnet_ids,
                "private_subnet_ids": self.private_subnet_ids,
                "nat_group_name": self.nat_group_name,
            }
        )

    @functools.cached_property
    def nat_public_ips(self) -> list[pulumi.Output[str]]:
        """The NAT gateways' Elastic IPs, one per gateway: the source address of everything the private subnets send
        to a public address (the internet-facing ALB included). Empty with a NAT instance (its public address
        changes when the instance is replaced). Looked up only when asked for: a stack without the blue/green test
        listener makes no DescribeNatGateways call."""
        return _nat_gateway_public_ips(self._args, self.vpc)

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


def _nat_gateway_strategy(args: NetworkArgs) -> awsx.ec2.NatGatewayStrategy:
    if args.egress == "natInstance":
        return awsx.ec2.NatGatewayStrategy.NONE
    return NAT_STRATEGIES[args.nat_gateways]


def _nat_gateway_public_ips(args: NetworkArgs, vpc: awsx.ec2.Vpc) -> list[pulumi.Output[str]]:
    """Each NAT gateway's Elastic IP, looked up once the VPC exists: awsx's own `eips` output holds resource
    references, which cannot be read back offline. `single` has exactly one available gateway in the VPC;
    `onePerAz` has one in each public subnet."""
    if args.egress == "natInstance":
        return []
    per_zone = args.nat_gateways == "onePerAz"

    def lookup(index: int) -> pulumi.Output[str]:
        subnet = vpc.public_subnet_ids.apply(lambda ids: ids[index]) if per_zone else None
        gateway = aws.ec2.get_nat_gateway_output(
            vpc_id=vpc.vpc_id,
            subnet_id=subnet,
            state="available",
            opts=pulumi.InvokeOutputOptions(depends_on=[vpc]),
        )
        return gateway.public_ip

    return [lookup(index) for index in range(args.max_azs if per_zone else 1)]


class NatInstance:
    """One fck-nat instance as the private subnets' NAT, kept alive by an auto scaling group of 1.

    The instance sits in the first public subnet and, at boot, attaches `network_interface` (a fixed ENI with
    source/destination check off) as fck-nat's `eni_id`; the private route tables send 0.0.0.0/0 to that ENI, so a
    replacement instance takes over the same routes without any route change.
    """

    def __init__(self, name: str, args: NetworkArgs, vpc: awsx.ec2.Vpc, child: pulumi.ResourceOptions) -> None:
        self.tag = f"{args.name_prefix}-nat"
        first_public_subnet = vpc.public_subnet_ids.apply(lambda ids: ids[0])
        self.security_group = self._security_group(name, args, vpc, child)
        self.network_interface = aws.ec2.NetworkInterface(
            f"{name}-nat-eni",
            subnet_id=first_public_subnet,
            security_groups=[self.security_group.id],
            source_dest_check=False,
            description=f"{args.name_prefix}: NAT instance, target of the private subnets' default routes",
            tags={"Name": self.tag},
            opts=child,
        )
        self.role = self._role(name, args, child)
        profile = aws.iam.InstanceProfile(f"{name}-nat-profile", role=self.role.name, opts=child)
        self.launch_template = self._launch_template(name, args, profile, child)
        self.group = aws.autoscaling.Group(
            f"{name}-nat",
            min_size=1,
            max_size=1,
            desired_capacity=1,
            vpc_zone_identifiers=[first_public_subnet],
            health_check_type="EC2",
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=self.launch_template.id, version=self.launch_template.latest_version.apply(str)
            ),
            # A new image (a newer fck-nat release found at deploy) replaces the instance. The old one must go
            # first: the fixed ENI can be attached to one instance at a time.
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(min_healthy_percentage=0),
            ),
            tags=[
                aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
                for key, value in {**args.launch_tags, "Name": self.tag}.items()
            ],
            opts=child,
        )
        self.routes = [
            aws.ec2.Route(
                f"{name}-private-{index + 1}-nat-route",
                route_table_id=_private_route_table_id(vpc, index),
                destination_cidr_block=ANYWHERE,
                network_interface_id=self.network_interface.id,
                opts=child,
            )
            for index in range(args.max_azs)
        ]

    def _security_group(
        self, name: str, args: NetworkArgs, vpc: awsx.ec2.Vpc, child: pulumi.ResourceOptions
    ) -> aws.ec2.SecurityGroup:
        group = aws.ec2.SecurityGroup(
            f"{name}-nat-sg",
            vpc_id=vpc.vpc_id,
            description=f"{args.name_prefix} NAT instance: any traffic from inside the VPC, out to the internet",
            revoke_rules_on_delete=True,
            tags={"Name": self.tag},
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nat-ingress-vpc",
            security_group_id=group.id,
            cidr_ipv4=args.cidr_block,
            ip_protocol="-1",
            description="Traffic to NAT, from inside the VPC only",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-nat-egress-internet",
            security_group_id=group.id,
            cidr_ipv4=ANYWHERE,
            ip_protocol="-1",
            description="NATed traffic out to the internet",
            opts=child,
        )
        return group

    def _role(self, name: str, args: NetworkArgs, child: pulumi.ResourceOptions) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{name}-nat-role",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
            description=f"{args.name_prefix}: NAT instance (attach its fixed ENI, turn off source/dest check)",
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-nat-policy",
            role=role.id,
            policy=self._boot_policy(),
            opts=child,
        )
        if args.nat_instance_ssm:
            aws.iam.RolePolicyAttachment(
                f"{name}-nat-ssm", role=role.name, policy_arn=SSM_MANAGED_INSTANCE_POLICY, opts=child
            )
        return role

    def _boot_policy(self) -> pulumi.Output[str]:
        """What fck-nat's boot script calls, only on the instances and interfaces tagged as this NAT's."""
        # `arn:<partition>:ec2:<region>:<account>` taken from the ENI's own ARN.
        ec2_arn = self.network_interface.arn.apply(lambda arn: ":".join(arn.split(":")[:5]))
        tagged = {"StringEquals": {"aws:ResourceTag/Name": self.tag}}
        attach = allow(
            ["ec2:AttachNetworkInterface"],
            [pulumi.Output.concat(ec2_arn, ":instance/*"), self.network_interface.arn],
            sid="AttachTheFixedInterface",
        )
        disable_check = allow(
            ["ec2:ModifyNetworkInterfaceAttribute"],
            [pulumi.Output.concat(ec2_arn, ":network-interface/*")],
            sid="TurnOffSourceDestCheck",
        )
        return policy_document([{**attach, "Condition": tagged}, {**disable_check, "Condition": tagged}])

    def _launch_template(
        self, name: str, args: NetworkArgs, profile: aws.iam.InstanceProfile, child: pulumi.ResourceOptions
    ) -> aws.ec2.LaunchTemplate:
        image = aws.ec2.get_ami_output(
            most_recent=True,
            owners=[FCK_NAT_AMI_OWNER],
            filters=[
                aws.ec2.GetAmiFilterArgs(name="name", values=[FCK_NAT_AMI_NAME]),
                aws.ec2.GetAmiFilterArgs(name="architecture", values=["arm64"]),
            ],
        )
        tags = {**args.launch_tags, "Name": self.tag}
        return aws.ec2.LaunchTemplate(
            f"{name}-nat-template",
            description=f"{args.name_prefix}: fck-nat NAT instance",
            image_id=image.id,
            instance_type=args.nat_instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="true",
                    security_groups=[self.security_group.id],
                    delete_on_termination="true",
                )
            ],
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=FCK_NAT_ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        encrypted="true", volume_type="gp3", delete_on_termination="true"
                    ),
                )
            ],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1
            ),
            # Standard credits: a busy month cannot add surplus-credit charges; throughput is the trade-off.
            credit_specification=aws.ec2.LaunchTemplateCreditSpecificationArgs(cpu_credits="standard"),
            user_data=self.network_interface.id.apply(_fck_nat_user_data),
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
                for kind in ("instance", "network-interface", "volume")
            ],
            update_default_version=True,
            tags=tags,
            opts=child,
        )


def _fck_nat_user_data(network_interface_id: str) -> str:
    """fck-nat's configuration file (its docs): attach this ENI at boot and NAT the VPC's traffic through it."""
    return base64.b64encode(FCK_NAT_USER_DATA.format(eni=network_interface_id).encode()).decode()


def _private_route_table_id(vpc: awsx.ec2.Vpc, index: int) -> pulumi.Output[str]:
    """The route table awsx associates with private subnet `index` (looked up once the VPC exists)."""
    table = aws.ec2.get_route_table_output(
        vpc_id=vpc.vpc_id,
        subnet_id=vpc.private_subnet_ids.apply(lambda ids: ids[index]),
        opts=pulumi.InvokeOutputOptions(depends_on=[vpc]),
    )
    return table.route_table_id
