"""ContainerCluster: the ECS cluster, its Cloud Map namespace (Service Connect's too), and, with the `alb` entry,
the internet-facing ALB that fronts it; with `test_listener`, a second listener for blue/green test traffic that
only the VPC's NAT gateways' addresses may reach (docs/deployments.md, "The test route")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.ecs_task import exec_log_group_name
from components.s3 import PrivateBucket, private_bucket

# ELB.17: TLS 1.3 with TLS 1.2 fallback, forward secrecy only.
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
ACCESS_LOG_EXPIRY_DAYS = 90
# The blue/green test listener's port, by protocol (the production listener's 443 or its HTTP-only fallback on 80).
TEST_LISTENER_PORTS = {"HTTPS": 8443, "HTTP": 8080}


@dataclass(frozen=True)
class AlbTestListener:
    """The ALB's blue/green test listener."""

    arn: pulumi.Input[str]
    """Listener ARN: the test rule goes on it."""
    port: int
    """Its port: the hook's only egress besides HTTPS."""
    url: pulumi.Input[str]
    """`http(s)://<alb dns name>:<port>`: where the hook sends its checks."""


@dataclass(frozen=True)
class ContainerClusterArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    vpc_id: pulumi.Input[str]
    """VPC of the ALB and namespace."""
    public_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the internet-facing ALB."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key for the ECS Exec log group and exec sessions."""
    log_retention_days: int = 90
    """ECS Exec audit log retention. Default: 90."""
    container_insights: str = "enhanced"
    """Container Insights mode: enhanced, enabled or disabled. Default: enhanced."""
    certificate_arn: str | None = None
    """ACM certificate; with it, 443 serves TLS and 80 redirects. Default: none (HTTP only)."""
    deletion_protection: bool = True
    """ALB deletion protection. Default: true."""
    idle_timeout_seconds: int = 60
    """ALB idle timeout. Default: 60."""
    entry: str = "alb"
    """`alb`: the internet-facing ALB and its listeners; `httpApi`: none (an API Gateway HTTP API is the entry).
    Default: alb."""
    service_connect: bool = False
    """Make the namespace the cluster's Service Connect default (services in config use it). Default: false."""
    test_listener: bool = False
    """A listener for blue/green test traffic (8443 HTTPS with the certificate, else 8080 HTTP; fixed 404 by
    default), open only to `test_listener_source_ips`. Default: false."""
    test_listener_source_ips: Sequence[pulumi.Input[str]] = ()
    """Public IPv4 addresses allowed to the test listener: the VPC's NAT gateways' Elastic IPs, the source of
    everything the private subnets send to the ALB's public addresses. Default: none."""

    def __post_init__(self) -> None:
        if self.entry not in ("alb", "httpApi"):
            raise ValueError(f"ContainerClusterArgs.entry: {self.entry!r}; allowed: alb, httpApi")
        if self.test_listener and self.entry != "alb":
            raise ValueError(
                f"ContainerClusterArgs.test_listener: true with entry {self.entry!r}; allowed: only with entry alb"
            )
        if self.test_listener and not self.test_listener_source_ips:
            raise ValueError(
                "ContainerClusterArgs.test_listener_source_ips: empty with test_listener; allowed: the NAT gateways' "
                "Elastic IPs (a NAT instance's public address is not fixed)"
            )


class ContainerCluster(pulumi.ComponentResource):
    cluster_arn: pulumi.Output[str]
    """ECS cluster ARN."""
    cluster_name: pulumi.Output[str]
    """ECS cluster name."""
    namespace_id: pulumi.Output[str]
    """Cloud Map private DNS namespace id (`<app>-<env>.local`)."""
    namespace_arn: pulumi.Output[str]
    """Cloud Map namespace ARN (Service Connect's namespace)."""
    alb_arn_suffix: pulumi.Output[str]
    """ALB ARN suffix (CloudWatch dimension). Only with the `alb` entry."""
    alb_dns_name: pulumi.Output[str]
    """ALB DNS name. Only with the `alb` entry."""
    alb_security_group_id: pulumi.Output[str]
    """ALB security group: services allow ingress from it only. Only with the `alb` entry."""
    listener_arn: pulumi.Output[str]
    """The listener services attach their routing rules to (HTTPS when a certificate is set). Only with `alb`."""
    test_listener: AlbTestListener | None
    """The blue/green test listener (test rules go here, a deployment hook in the private subnets sends its checks
    to its URL); None without `test_listener`.
    """

    def __init__(self, name: str, args: ContainerClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:cluster:ContainerCluster", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        self.namespace = aws.servicediscovery.PrivateDnsNamespace(
            f"{name}-namespace",
            name=f"{args.name_prefix}.local",
            vpc=args.vpc_id,
            description=f"{args.name_prefix} service discovery",
            opts=self._child,
        )
        self._cluster(name, args)
        # Services name FARGATE/FARGATE_SPOT in their strategies: they must wait for the providers' association.
        self.cluster_arn = pulumi.Output.all(self.cluster.arn, self.capacity.id).apply(lambda values: values[0])
        self.cluster_name = self.capacity.cluster_name
        self.namespace_id = self.namespace.id
        self.namespace_arn = self.namespace.arn
        outputs: dict[str, pulumi.Input[str]] = {
            "cluster_arn": self.cluster_arn,
            "cluster_name": self.cluster_name,
            "namespace_id": self.namespace_id,
        }
        self.has_alb = args.entry == "alb"
        self.test_listener = None
        if self.has_alb:
            self._load_balancer(name, args)
            self.alb_arn_suffix = self.alb.arn_suffix
            self.alb_dns_name = self.alb.dns_name
            self.alb_security_group_id = self.alb_security_group.id
            outputs |= {"alb_dns_name": self.alb_dns_name, "listener_arn": self.listener_arn}
        if args.test_listener:
            self.test_listener = self._test_listener(name, args)
            outputs |= {"test_listener_arn": self.test_listener.arn, "test_listener_url": self.test_listener.url}
        self.register_outputs(outputs)

    # --- ECS ---

    def _cluster(self, name: str, args: ContainerClusterArgs) -> None:
        exec_logs = aws.cloudwatch.LogGroup(
            f"{name}-exec-logs",
            name=exec_log_group_name(args.name_prefix),
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=self._child,
        )
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster",
            name=args.name_prefix,
            settings=[aws.ecs.ClusterSettingArgs(name="containerInsights", value=args.container_insights)],
            service_connect_defaults=(
                aws.ecs.ClusterServiceConnectDefaultsArgs(namespace=self.namespace.arn)
                if args.service_connect
                else None
            ),
            configuration=aws.ecs.ClusterConfigurationArgs(
                execute_command_configuration=aws.ecs.ClusterConfigurationExecuteCommandConfigurationArgs(
                    kms_key_id=args.log_kms_key_arn,
                    logging="OVERRIDE",
                    log_configuration=aws.ecs.ClusterConfigurationExecuteCommandConfigurationLogConfigurationArgs(
                        cloud_watch_log_group_name=exec_logs.name,
                        cloud_watch_encryption_enabled=True,
                    ),
                )
            ),
            opts=self._child,
        )
        self.capacity = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategies=[
                aws.ecs.ClusterCapacityProvidersDefaultCapacityProviderStrategyArgs(
                    capacity_provider="FARGATE", base=1, weight=1
                )
            ],
            opts=self._child,
        )

    # --- Load balancer ---

    def _load_balancer(self, name: str, args: ContainerClusterArgs) -> None:
        self.alb_security_group = aws.ec2.SecurityGroup(
            f"{name}-alb-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} ALB: HTTP/HTTPS from the internet, egress only to services",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        ports = [80, 443] if args.certificate_arn else [80]
        for port in ports:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-ingress-{port}",
                security_group_id=self.alb_security_group.id,
                cidr_ipv4="0.0.0.0/0",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=f"Internet to ALB on {port}",
                opts=self._child,
            )
        self.alb = application_load_balancer(
            f"{name}-alb",
            AlbSettings(
                lb_name=f"{args.name_prefix}-alb",
                internal=False,
                security_group_id=self.alb_security_group.id,
                subnet_ids=args.public_subnet_ids,
                deletion_protection=args.deletion_protection,
                idle_timeout_seconds=args.idle_timeout_seconds,
            ),
            parent=self,
        )
        not_found = _not_found()
        if args.certificate_arn:
            self.https_listener: aws.lb.Listener | None = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.alb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=args.certificate_arn,
                default_actions=[not_found],
                opts=self._child,
            )
            http_action = aws.lb.ListenerDefaultActionArgs(
                type="redirect",
                redirect=aws.lb.ListenerDefaultActionRedirectArgs(protocol="HTTPS", port="443", status_code="HTTP_301"),
            )
        else:
            self.https_listener = None
            http_action = not_found
        self.http_listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.alb.arn,
            port=80,
            protocol="HTTP",
            default_actions=[http_action],
            opts=self._child,
        )
        self.listener_arn = (self.https_listener or self.http_listener).arn

    def _test_listener(self, name: str, args: ContainerClusterArgs) -> AlbTestListener:
        """A listener on its own port whose only way in is the NAT gateways' addresses: an internet-facing ALB
        resolves to public IPs, so a client in the private subnets reaches it through NAT, and the internet gateway
        maps the NAT gateway's private address to its Elastic IP (VPC user guide, "NAT gateways":
        https://docs.aws.amazon.com/vpc/latest/userguide/vpc-nat-gateway.html). The ALB's security group filters
        each listener port ("Security groups for your Application Load Balancer",
        https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-update-security-groups.html)."""
        protocol = "HTTPS" if args.certificate_arn else "HTTP"
        port = TEST_LISTENER_PORTS[protocol]
        for index, address in enumerate(args.test_listener_source_ips):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-ingress-test-{index + 1}",
                security_group_id=self.alb_security_group.id,
                cidr_ipv4=pulumi.Output.concat(address, "/32"),
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                description=f"NAT gateway {index + 1} of the private subnets to the test listener on {port}",
                opts=self._child,
            )
        listener = aws.lb.Listener(
            f"{name}-test",
            load_balancer_arn=self.alb.arn,
            port=port,
            protocol=protocol,
            ssl_policy=TLS_POLICY if args.certificate_arn else None,
            certificate_arn=args.certificate_arn,
            default_actions=[_not_found()],
            opts=self._child,
        )
        url = pulumi.Output.concat(protocol.lower(), "://", self.alb.dns_name, f":{port}")
        return AlbTestListener(listener.arn, port, url)


# --- Shared by every ALB of the platform (the public one here, the internal one in components/internal_alb.py) ---


@dataclass(frozen=True)
class AlbSettings:
    lb_name: str
    """The load balancer's name (32 characters at most)."""
    internal: bool
    """Scheme: internal (private subnets, VPC clients only) or internet-facing."""
    security_group_id: pulumi.Input[str]
    """The ALB's own security group."""
    subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets of the ALB (public for internet-facing, private for internal)."""
    deletion_protection: bool
    """Deletion protection (and the log bucket kept on destroy)."""
    idle_timeout_seconds: int = 60
    """Idle timeout. Default: 60."""


def application_load_balancer(name: str, settings: AlbSettings, *, parent: pulumi.Resource) -> aws.lb.LoadBalancer:
    """An ALB with the platform's attributes: invalid header fields dropped, strictest desync mitigation, deletion
    protection as given, and access logs to its own private bucket (`<name>-logs`)."""
    logs_bucket = _access_logs_bucket(
        f"{name}-logs", f"{settings.lb_name}-logs-", not settings.deletion_protection, parent=parent
    )
    return aws.lb.LoadBalancer(
        name,
        name=settings.lb_name,
        internal=settings.internal,
        load_balancer_type="application",
        security_groups=[settings.security_group_id],
        subnets=settings.subnet_ids,
        drop_invalid_header_fields=True,
        desync_mitigation_mode="strictest",
        enable_deletion_protection=settings.deletion_protection,
        idle_timeout=settings.idle_timeout_seconds,
        access_logs=aws.lb.LoadBalancerAccessLogsArgs(bucket=logs_bucket.bucket.bucket, enabled=True, prefix="alb"),
        # ELB checks it may write to the bucket when logging is enabled: the policy must exist first.
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[logs_bucket.policy]),
    )


def _access_logs_bucket(
    name: str, bucket_prefix: str, force_destroy: bool, *, parent: pulumi.Resource
) -> PrivateBucket:
    elb_account = aws.elb.get_service_account_output(opts=pulumi.InvokeOutputOptions(parent=parent))

    def elb_writes_logs(bucket_arn: pulumi.Output[str]) -> list[dict[str, Any]]:
        return [
            {
                "Sid": "ElbWritesAccessLogs",
                "Effect": "Allow",
                "Principal": {"AWS": elb_account.arn},
                "Action": "s3:PutObject",
                "Resource": pulumi.Output.concat(bucket_arn, "/alb/AWSLogs/*"),
            }
        ]

    # ALB access logs support only SSE-S3 (AES256), not KMS: no key is passed.
    return private_bucket(
        name,
        bucket_prefix=bucket_prefix,
        expiration_days=ACCESS_LOG_EXPIRY_DAYS,
        force_destroy=force_destroy,
        grants=elb_writes_logs,
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _not_found() -> aws.lb.ListenerDefaultActionArgs:
    return aws.lb.ListenerDefaultActionArgs(
        type="fixed-response",
        fixed_response=aws.lb.ListenerDefaultActionFixedResponseArgs(
            content_type="text/plain", message_body="Not Found", status_code="404"
        ),
    )
