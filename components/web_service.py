"""WebService: a Fargate service behind the cluster's ALB or an API Gateway HTTP API, registered in Cloud Map.

Behind the ALB: a target group and listener rule, SG-to-SG from the ALB, autoscaling on CPU, memory and requests
per target. Behind the HTTP API (no ALB, `listener_arn` none): its Cloud Map service carries SRV records (address
and port, what an HTTP API private integration resolves), ingress comes from the VPC link's security group
(`allow_ingress_from`), and autoscaling tracks CPU and memory only; the ECS container health check still replaces
failing tasks, but there are no load balancer health checks and no weighted target groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.ecs_task import DeploymentWait, FargateTask, FargateTaskSpec, ServiceAttachment, allow_between

SCALE_IN_COOLDOWN = 300
SCALE_OUT_COOLDOWN = 60
# The seed stepped on the whole ALB's 5-minute request count (2000 is ~7 req/s for the entire service, so it
# would pin the service at max); tracking requests per target per minute scales with each task's share.
REQUESTS_PER_TARGET_PER_MINUTE = 1000


@dataclass(frozen=True)
class WebServiceArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    service_name: str
    """Short service name (container name, Cloud Map name)."""
    image: pulumi.Input[str]
    """Image reference, pinned by digest."""
    region: str
    """Region (awslogs driver)."""
    account_id: pulumi.Input[str]
    """Account (trust policy conditions)."""
    vpc_id: pulumi.Input[str]
    """VPC of the service and its target group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets the tasks run in (never public)."""
    cluster_arn: pulumi.Input[str]
    """ECS cluster ARN."""
    cluster_name: pulumi.Input[str]
    """ECS cluster name (autoscaling resource id)."""
    namespace_id: pulumi.Input[str]
    """Cloud Map namespace id."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key for the log group."""
    cpu: int = 512
    """Task CPU units. Default: 512."""
    memory: int = 1024
    """Task memory MiB. Default: 1024."""
    desired_count: int = 2
    """Initial task count. Default: 2."""
    min_count: int = 1
    """Autoscaling minimum. Default: 1."""
    max_count: int = 3
    """Autoscaling maximum. Default: 3."""
    container_port: int = 8080
    """Container port. Default: 8080."""
    health_check_path: str = "/health"
    """Health check path (target group and container). Default: /health."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables (never secrets). Default: none."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Container secrets: name -> Secrets Manager/SSM ARN. Default: none."""
    deployment: DeploymentWait = field(default_factory=DeploymentWait)
    """Whether `pulumi up` waits for deployments and fails on a circuit-breaker rollback. Default: wait, 30 min."""
    attachments: Sequence[ServiceAttachment] = ()
    """Shared storage, database, cache the service uses. Default: none."""
    log_retention_days: int = 30
    """Log retention. Default: 30."""
    cpu_architecture: str = "X86_64"
    """X86_64 or ARM64. Default: X86_64."""
    on_demand_base: int = 1
    """Tasks always on on-demand FARGATE. Default: 1."""
    spot_weight: int = 0
    """FARGATE_SPOT weight relative to FARGATE's 1. Default: 0 (no Spot)."""
    enable_execute_command: bool = False
    """ECS Exec. Default: false."""
    listener_rule_priority: int = 100
    """Priority of the service's rule on the listener. Default: 100."""
    path_patterns: Sequence[str] = ("/*",)
    """Paths routed to the service. Default: everything."""
    listener_arn: pulumi.Input[str] | None = None
    """ALB listener the service's routing rule attaches to; none: not behind an ALB. Default: none."""
    alb_security_group_id: pulumi.Input[str] | None = None
    """ALB security group, the only ingress source behind the ALB. Default: none."""
    alb_arn_suffix: pulumi.Input[str] | None = None
    """ALB ARN suffix (request-count scaling's resource label). Default: none."""
    register_for_http_api: bool = False
    """Cloud Map SRV records (address and port) for an HTTP API private integration, instead of A records; only
    without an ALB. Default: false."""

    def __post_init__(self) -> None:
        alb = (self.listener_arn, self.alb_security_group_id, self.alb_arn_suffix)
        if any(value is None for value in alb) and any(value is not None for value in alb):
            raise ValueError(
                "WebServiceArgs: listener_arn, alb_security_group_id and alb_arn_suffix: all three (behind the ALB) "
                "or none"
            )
        if self.register_for_http_api and self.listener_arn is not None:
            raise ValueError("WebServiceArgs.register_for_http_api: true with an ALB; allowed: one entry")

    @property
    def behind_alb(self) -> bool:
        return self.listener_arn is not None


class WebService(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    """ECS service name."""
    security_group_id: pulumi.Output[str]
    """Task security group (attach data stores to it)."""
    target_group_arn_suffix: pulumi.Output[str] | None
    """Target group ARN suffix (CloudWatch dimension); None when not behind the ALB."""
    discovery_service_arn: pulumi.Output[str]
    """Its Cloud Map service (SRV records with `register_for_http_api`)."""
    task_role_arn: pulumi.Output[str]
    """Task role ARN."""
    log_group_name: pulumi.Output[str]
    """Log group name."""

    def __init__(self, name: str, args: WebServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:web-service:WebService", name, None, opts)
        self._child = pulumi.ResourceOptions(parent=self)
        prefix = f"{args.name_prefix}-{args.service_name}"
        self.task = FargateTask(
            FargateTaskSpec(
                name_prefix=args.name_prefix,
                service_name=args.service_name,
                image=args.image,
                cpu=args.cpu,
                memory=args.memory,
                vpc_id=args.vpc_id,
                region=args.region,
                account_id=args.account_id,
                log_kms_key_arn=args.log_kms_key_arn,
                log_retention_days=args.log_retention_days,
                environment={"PORT": str(args.container_port), **args.environment},
                secrets=args.secrets,
                container_port=args.container_port,
                health_check_command=_http_probe(args.container_port, args.health_check_path),
                cpu_architecture=args.cpu_architecture,
                attachments=args.attachments,
                deployment=args.deployment,
                enable_execute_command=args.enable_execute_command,
            ),
            parent=self,
        )
        self._prefix = prefix
        self._port = args.container_port
        self.target_group: aws.lb.TargetGroup | None = None
        alb_extra: dict[str, object] = {}
        if args.behind_alb:
            self.target_group, listener_rule = self._routing(prefix, args)
            alb_extra = {
                "depends_on": [listener_rule],
                "load_balancers": [
                    aws.ecs.ServiceLoadBalancerArgs(
                        target_group_arn=self.target_group.arn,
                        container_name=args.service_name,
                        container_port=args.container_port,
                    )
                ],
                "health_check_grace_period_seconds": 120,
            }
        self.discovery = self._discovery(prefix, args)
        # SRV records need the container and port that ECS registers; A records must not name them.
        registry = (
            aws.ecs.ServiceServiceRegistriesArgs(
                registry_arn=self.discovery.arn, container_name=args.service_name, container_port=args.container_port
            )
            if args.register_for_http_api
            else aws.ecs.ServiceServiceRegistriesArgs(registry_arn=self.discovery.arn)
        )
        self.service = self.task.service(
            cluster_arn=args.cluster_arn,
            private_subnet_ids=args.private_subnet_ids,
            desired_count=args.desired_count,
            on_demand_base=args.on_demand_base,
            spot_weight=args.spot_weight,
            service_registries=registry,
            enable_execute_command=args.enable_execute_command,
            **alb_extra,  # type: ignore[arg-type]
        )
        self._autoscaling(prefix, args)
        self.service_name = self.service.name
        self.security_group_id = self.task.security_group.id
        self.target_group_arn_suffix = self.target_group.arn_suffix if self.target_group is not None else None
        self.discovery_service_arn = self.discovery.arn
        self.task_role_arn = self.task.task_role.arn
        self.log_group_name = self.task.log_group.name
        self.register_outputs(
            {
                "service_name": self.service_name,
                "security_group_id": self.security_group_id,
                "target_group_arn_suffix": self.target_group_arn_suffix,
            }
        )

    def allow_ingress_from(self, source: str, source_security_group_id: pulumi.Input[str]) -> None:
        """Ingress on the container port only, for a source whose own component owns the matching egress (the
        HTTP API's VPC link security group allows egress to exactly this port and group)."""
        aws.vpc.SecurityGroupIngressRule(
            f"{self._prefix}-from-{source}-ingress",
            security_group_id=self.security_group_id,
            referenced_security_group_id=source_security_group_id,
            ip_protocol="tcp",
            from_port=self._port,
            to_port=self._port,
            description=f"{source} to {self._prefix}",
            opts=self._child,
        )

    # --- Entry ---

    def _discovery(self, prefix: str, args: WebServiceArgs) -> aws.servicediscovery.Service:
        record = "SRV" if args.register_for_http_api else "A"
        return aws.servicediscovery.Service(
            f"{prefix}-discovery",
            name=args.service_name,
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=args.namespace_id,
                dns_records=[aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(type=record, ttl=10)],
                routing_policy="MULTIVALUE",
            ),
            health_check_custom_config=aws.servicediscovery.ServiceHealthCheckCustomConfigArgs(),
            opts=self._child,
        )

    def _routing(self, prefix: str, args: WebServiceArgs) -> tuple[aws.lb.TargetGroup, aws.lb.ListenerRule]:
        if args.alb_security_group_id is None or args.listener_arn is None:
            raise ValueError("WebServiceArgs: the ALB's listener and security group are needed behind the ALB")
        allow_between(
            f"{prefix}-from-alb",
            source_security_group_id=args.alb_security_group_id,
            target_security_group_id=self.task.security_group.id,
            port=args.container_port,
            description=f"ALB to {prefix}",
            opts=self._child,
        )
        target_group = aws.lb.TargetGroup(
            f"{prefix}-tg",
            name_prefix=args.service_name[:6],
            port=args.container_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=60,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True,
                path=args.health_check_path,
                matcher="200",
                interval=30,
                timeout=5,
                healthy_threshold=2,
                unhealthy_threshold=5,
            ),
            opts=self._child,
        )
        rule = aws.lb.ListenerRule(
            f"{prefix}-rule",
            listener_arn=args.listener_arn,
            priority=args.listener_rule_priority,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(args.path_patterns))
                )
            ],
            actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
            opts=self._child,
        )
        return target_group, rule

    # --- Autoscaling ---

    def _autoscaling(self, prefix: str, args: WebServiceArgs) -> None:
        target = self.task.scaling_target(self.service, args.cluster_name, args.min_count, args.max_count)
        policies: list[tuple[str, str, float, pulumi.Input[str] | None]] = [
            ("cpu", "ECSServiceAverageCPUUtilization", 70, None),
            ("memory", "ECSServiceAverageMemoryUtilization", 80, None),
        ]
        if self.target_group is not None and args.alb_arn_suffix is not None:
            request_label = pulumi.Output.concat(args.alb_arn_suffix, "/", self.target_group.arn_suffix)
            policies.append(("requests", "ALBRequestCountPerTarget", REQUESTS_PER_TARGET_PER_MINUTE, request_label))
        for kind, metric, value, label in policies:
            aws.appautoscaling.Policy(
                f"{prefix}-{kind}-scaling",
                policy_type="TargetTrackingScaling",
                resource_id=target.resource_id,
                scalable_dimension=target.scalable_dimension,
                service_namespace=target.service_namespace,
                target_tracking_scaling_policy_configuration=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationArgs(
                    target_value=value,
                    scale_in_cooldown=SCALE_IN_COOLDOWN,
                    scale_out_cooldown=SCALE_OUT_COOLDOWN,
                    predefined_metric_specification=aws.appautoscaling.PolicyTargetTrackingScalingPolicyConfigurationPredefinedMetricSpecificationArgs(
                        predefined_metric_type=metric, resource_label=label
                    ),
                ),
                opts=self._child,
            )


def _http_probe(port: int, path: str) -> list[str]:
    # The seed used curl, which a minimal image does not ship; the image's Python does the same check.
    url = f"http://127.0.0.1:{port}{path}"
    script = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=4)"
    return ["CMD", "python", "-c", script]
