"""InternalLoadBalancer: ONE internal ALB (private subnets, VPC clients only) for the services whose config asks
for it (`services.<name>.internalLoadBalancer`); Service Connect balances every other call.

The ALB itself has the platform's ALB attributes (components/cluster.py `application_load_balancer`: invalid header
fields dropped, strictest desync mitigation, access logs to its own bucket, deletion protection per environment).
Each service behind it owns its target group and one listener on its own port (components/microservice.py), so
the security groups can say exactly which caller reaches which service: the ALB's group lets a caller in only on
the ports of the services it declares in `calls`, and a service lets only the ALB's group in.

TLS: an internal ALB's DNS name (`internal-<name>-<id>.<region>.elb.amazonaws.com`) cannot be on an ACM
certificate, so HTTPS needs a name of the stack's own that the certificate covers (`certificate_arn` with
`domain_name`, which the stack owner points at `dns_name`). Without them the listeners are HTTP inside the VPC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.cluster import TLS_POLICY, AlbSettings, application_load_balancer


@dataclass(frozen=True)
class InternalLoadBalancerArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    vpc_id: pulumi.Input[str]
    """VPC of the ALB's security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the ALB (private: it has no public address)."""
    deletion_protection: bool = True
    """Deletion protection (the access log bucket is kept on destroy too). Default: true."""
    idle_timeout_seconds: int = 60
    """Idle timeout. Default: 60."""
    certificate_arn: str | None = None
    """ACM certificate covering `domain_name`: the listeners then serve HTTPS (TLS 1.2+). Default: none (HTTP)."""
    domain_name: str | None = None
    """The name callers use with `certificate_arn` (the stack owner points it at the ALB). Default: none."""

    def __post_init__(self) -> None:
        if (self.certificate_arn is None) != (self.domain_name is None):
            raise ValueError(
                "InternalLoadBalancerArgs: certificate_arn and domain_name: both (HTTPS under that name) or none "
                "(HTTP under the ALB's DNS name)"
            )


@dataclass(frozen=True)
class InternalAlbEntry:
    """What a service needs to put itself behind the internal ALB."""

    load_balancer_arn: pulumi.Input[str]
    """The ALB its listener attaches to."""
    security_group_id: pulumi.Input[str]
    """The ALB's security group (the service's only ingress source for this entry)."""
    arn_suffix: pulumi.Input[str]
    """ALB ARN suffix (request-count scaling and alarm dimension)."""
    certificate_arn: str | None = None
    """HTTPS with this certificate; none: HTTP. Default: none."""


class InternalLoadBalancer(pulumi.ComponentResource):
    dns_name: pulumi.Output[str]
    """The ALB's DNS name (resolves to private addresses)."""
    security_group_id: pulumi.Output[str]
    """The ALB's security group."""
    arn_suffix: pulumi.Output[str]
    """ALB ARN suffix (CloudWatch dimension)."""

    def __init__(self, name: str, args: InternalLoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:internal-alb:InternalLoadBalancer", name, None, opts)
        self.args = args
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} internal ALB: declared callers in, egress only to its services",
            revoke_rules_on_delete=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.alb = application_load_balancer(
            f"{name}-alb",
            AlbSettings(
                lb_name=f"{args.name_prefix}-int-alb",
                internal=True,
                security_group_id=self.security_group.id,
                subnet_ids=args.private_subnet_ids,
                deletion_protection=args.deletion_protection,
                idle_timeout_seconds=args.idle_timeout_seconds,
            ),
            parent=self,
        )
        self.dns_name = self.alb.dns_name
        self.security_group_id = self.security_group.id
        self.arn_suffix = self.alb.arn_suffix
        self.register_outputs({"dns_name": self.dns_name, "security_group_id": self.security_group_id})

    @property
    def entry(self) -> InternalAlbEntry:
        return InternalAlbEntry(
            load_balancer_arn=self.alb.arn,
            security_group_id=self.security_group.id,
            arn_suffix=self.alb.arn_suffix,
            certificate_arn=self.args.certificate_arn,
        )

    def url(self, port: int) -> pulumi.Output[str]:
        """What a caller sets as `<CALLEE>_URL` for the service listening on `port`."""
        if self.args.domain_name is not None:
            return pulumi.Output.from_input(f"https://{self.args.domain_name}:{port}")
        return pulumi.Output.concat("http://", self.alb.dns_name, f":{port}")


def listener(
    name: str, entry: InternalAlbEntry, port: int, target_group: aws.lb.TargetGroup, *, parent: pulumi.Resource
) -> aws.lb.Listener:
    """The service's own listener on its port, forwarding to its target group; HTTPS with the TLS 1.2+ policy of
    the public ALB when the stack gives a certificate."""
    return aws.lb.Listener(
        name,
        load_balancer_arn=entry.load_balancer_arn,
        port=port,
        protocol="HTTPS" if entry.certificate_arn else "HTTP",
        ssl_policy=TLS_POLICY if entry.certificate_arn else None,
        certificate_arn=entry.certificate_arn,
        default_actions=[aws.lb.ListenerDefaultActionArgs(type="forward", target_group_arn=target_group.arn)],
        opts=pulumi.ResourceOptions(parent=parent),
    )
