"""WebService: a Fargate service behind the cluster's ALB or an API Gateway HTTP API, registered in Cloud Map.

Behind the ALB: a target group and listener rule, SG-to-SG from the ALB, autoscaling on CPU, memory and requests
per target. Behind the HTTP API (no ALB, `listener_arn` none): its Cloud Map service carries SRV records (address
and port, what an HTTP API private integration resolves), ingress comes from the VPC link's security group
(`allow_ingress_from`), and autoscaling tracks CPU and memory only; the ECS container health check still replaces
failing tasks, but there are no load balancer health checks and no weighted target groups.

Deployments (`rollout`): behind the ALB, blue/green, canary and linear are ECS native deployments over two target
groups, with a header-matched test rule on the ALB's test listener (reachable from the VPC's NAT addresses only), a
least-privilege role ECS shifts traffic with, a smoke-test hook Lambda in the private subnets (lambdas/deploy_hook)
and rollback alarms; docs/deployments.md. One `drain_seconds` sets the deregistration delay,
the stop timeout and the application's graceful shutdown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.cluster import AlbTestListener
from components.ecs_task import (
    HTTPS,
    DeploymentWait,
    FargateTask,
    FargateTaskSpec,
    Rollout,
    ServiceAttachment,
    allow_between,
)
from components.iam import allow, assume_role_policy, policy_document
from components.lambda_function import FunctionVpc, logged_function
from components.lambda_package import python_lambda_package
from components.monitoring import alb_rollback_alarms, rollback_alarms

SCALE_IN_COOLDOWN = 300
SCALE_OUT_COOLDOWN = 60
# The seed stepped on the whole ALB's 5-minute request count (2000 is ~7 req/s for the entire service, so it
# would pin the service at max); tracking requests per target per minute scales with each task's share.
REQUESTS_PER_TARGET_PER_MINUTE = 1000
HOOK_SOURCE = Path(__file__).resolve().parent.parent / "lambdas" / "deploy_hook"
HOOK_RUNTIME, HOOK_PYTHON = "python3.13", "3.13"
# The hook retries a test route without a healthy target yet for up to this long; the function may run longer.
HOOK_READY_TIMEOUT_SECONDS = 120
HOOK_FUNCTION_TIMEOUT_SECONDS = 180
TEST_HEADER = "X-Deployment-Test"
# Fargate's limit on a container's stop timeout.
FARGATE_MAX_STOP_TIMEOUT = 120
# The API's own graceful shutdown ends this long before ECS's SIGKILL.
SHUTDOWN_MARGIN_SECONDS = 5
ANYWHERE = "0.0.0.0/0"


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
    drain_seconds: int = 30
    """The one value a stopping task's timing comes from: the target group's deregistration delay (in-flight
    requests finish while the ALB sends no new ones), the container's stop timeout (SIGTERM to SIGKILL), and
    `SHUTDOWN_TIMEOUT_SECONDS` for the application's graceful shutdown (5 s less). Default: 30."""
    rollout: Rollout = field(default_factory=Rollout)
    """Deployment strategy. BLUE_GREEN, CANARY or LINEAR behind the ALB add a second target group, a test rule
    (requests with the deployment's secret test header), the role ECS shifts traffic with, and the smoke-test
    hook; behind the HTTP API ECS replaces the tasks with no traffic shift (Cloud Map). Default: rolling."""
    smoke_tests: Sequence[tuple[str, int]] = ()
    """(path, status) the hook checks on the new revision through the test rule, after the health check path.
    Default: none."""
    test_listener: AlbTestListener | None = None
    """The ALB's test listener: the test rule goes on it and the hook (in the private subnets) sends its checks to
    it; required behind the ALB with a traffic-shifting rollout. Default: none."""
    test_rule_priority: int = 99
    """Priority of the test rule; must win over the production rule's. Default: 99."""
    error_rate_alarm_percent: float = 5.0
    """Rollback alarm: share of requests answered 5xx by the targets. Default: 5."""
    p99_latency_alarm_seconds: float = 2.0
    """Rollback alarm: the targets' p99 response time. Default: 2."""

    def __post_init__(self) -> None:
        if not 1 <= self.drain_seconds <= FARGATE_MAX_STOP_TIMEOUT:
            raise ValueError(
                f"WebServiceArgs.drain_seconds: {self.drain_seconds}; allowed: 1-{FARGATE_MAX_STOP_TIMEOUT} (Fargate's "
                "maximum stop timeout)"
            )
        if self.behind_alb and self.rollout.shifts_traffic and self.test_listener is None:
            raise ValueError(
                f"WebServiceArgs.test_listener: missing with rollout {self.rollout.strategy} behind the ALB; allowed: "
                "the ALB's test listener (the test rule goes on it; the deployment hook tests the new revision there)"
            )
        if self.behind_alb and self.rollout.shifts_traffic and self.test_rule_priority >= self.listener_rule_priority:
            raise ValueError(
                f"WebServiceArgs.test_rule_priority: {self.test_rule_priority} with listener_rule_priority "
                f"{self.listener_rule_priority}; allowed: a lower number (the test rule must be evaluated first)"
            )
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
    rollback_alarm_names: list[pulumi.Output[str]]
    """Alarms that roll a deployment back (behind the ALB with rollout.rollback_alarms); empty otherwise."""
    deploy_hook_function_name: pulumi.Output[str] | None
    """The smoke-test hook Lambda; None unless blue/green, canary or linear behind the ALB."""

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
                environment={
                    "PORT": str(args.container_port),
                    "SHUTDOWN_TIMEOUT_SECONDS": str(max(1, args.drain_seconds - SHUTDOWN_MARGIN_SECONDS)),
                    **args.environment,
                },
                secrets=args.secrets,
                container_port=args.container_port,
                health_check_command=_http_probe(args.container_port, args.health_check_path),
                cpu_architecture=args.cpu_architecture,
                attachments=args.attachments,
                deployment=args.deployment,
                enable_execute_command=args.enable_execute_command,
                stop_timeout_seconds=args.drain_seconds,
            ),
            parent=self,
        )
        self._prefix = prefix
        self._port = args.container_port
        self.target_group: aws.lb.TargetGroup | None = None
        self.alternate_target_group: aws.lb.TargetGroup | None = None
        self.rollback_alarm_names = []
        self.deploy_hook_function_name = None
        alb_extra: dict[str, object] = {}
        if args.behind_alb:
            self.target_group, listener_rule = self._routing(prefix, args)
            advanced = None
            depends_on: list[pulumi.Resource] = [listener_rule]
            if args.rollout.shifts_traffic:
                advanced, hooks, waits_for = self._blue_green(prefix, args, listener_rule)
                alb_extra["lifecycle_hooks"] = hooks
                depends_on += waits_for
            if args.rollout.rollback_alarms:
                self.rollback_alarm_names = self._rollback_alarms(prefix, args)
            alb_extra |= {
                "depends_on": depends_on,
                "load_balancers": [
                    aws.ecs.ServiceLoadBalancerArgs(
                        target_group_arn=self.target_group.arn,
                        container_name=args.service_name,
                        container_port=args.container_port,
                        advanced_configuration=advanced,
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
            rollout=args.rollout,
            rollback_alarm_names=self.rollback_alarm_names,
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
                "rollback_alarm_names": self.rollback_alarm_names,
                "deploy_hook_function_name": self.deploy_hook_function_name,
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
        target_group = self._target_group(f"{prefix}-tg", args)
        shifting = args.rollout.shifts_traffic
        if shifting:
            self.alternate_target_group = self._target_group(f"{prefix}-tg-alternate", args)
        rule = aws.lb.ListenerRule(
            f"{prefix}-rule",
            listener_arn=args.listener_arn,
            priority=args.listener_rule_priority,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(args.path_patterns))
                )
            ],
            actions=[self._forward(target_group)],
            # ECS rewrites the forward action's weights on every deployment: the program must not undo them.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["actions"] if shifting else None),
        )
        return target_group, rule

    def _forward(self, target_group: aws.lb.TargetGroup) -> aws.lb.ListenerRuleActionArgs:
        """All traffic to `target_group`; with an alternate group, as the weighted pair ECS shifts (100 / 0)."""
        if self.alternate_target_group is None:
            return aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)
        pair = [
            aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=target_group.arn, weight=100),
            aws.lb.ListenerRuleActionForwardTargetGroupArgs(arn=self.alternate_target_group.arn, weight=0),
        ]
        return aws.lb.ListenerRuleActionArgs(
            type="forward", forward=aws.lb.ListenerRuleActionForwardArgs(target_groups=pair)
        )

    def _target_group(self, name: str, args: WebServiceArgs) -> aws.lb.TargetGroup:
        # The seed's 60 s deregistration delay and the task's 30 s stop timeout disagreed; both are drain_seconds.
        return aws.lb.TargetGroup(
            name,
            name_prefix=args.service_name[:6],
            port=args.container_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=args.vpc_id,
            deregistration_delay=args.drain_seconds,
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

    # --- Deployments ---

    def _blue_green(
        self, prefix: str, args: WebServiceArgs, production_rule: aws.lb.ListenerRule
    ) -> tuple[
        aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs,
        list[aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs],
        list[pulumi.Resource],
    ]:
        """The test rule, the role ECS shifts traffic with, and the smoke-test hook (ECS native blue/green)."""
        if self.target_group is None or self.alternate_target_group is None or args.test_listener is None:
            raise ValueError("WebServiceArgs: blue/green needs both target groups and the test listener")
        token = random.RandomPassword(f"{prefix}-deploy-test-token-random", length=40, special=False, opts=self._child)
        token_secret = aws.secretsmanager.Secret(
            f"{prefix}-deploy-test-token",
            name_prefix=f"{prefix}-deploy-test-token-",
            description=f"{prefix}: the header value the listener's test rule forwards to the new revision",
            kms_key_id=args.log_kms_key_arn,
            recovery_window_in_days=7,
            opts=self._child,
        )
        aws.secretsmanager.SecretVersion(
            f"{prefix}-deploy-test-token-value",
            secret_id=token_secret.id,
            secret_string=token.result,
            opts=self._child,
        )
        # The seed had no test route. The test listener admits only the VPC's NAT addresses; on it, only requests
        # carrying the deployment's secret header (defence in depth) reach the new revision, the rest get a 404.
        test_rule = aws.lb.ListenerRule(
            f"{prefix}-test-rule",
            listener_arn=args.test_listener.arn,
            priority=args.test_rule_priority,
            conditions=[
                aws.lb.ListenerRuleConditionArgs(
                    http_header=aws.lb.ListenerRuleConditionHttpHeaderArgs(
                        http_header_name=TEST_HEADER, values=[pulumi.Output.secret(token.result)]
                    )
                ),
                aws.lb.ListenerRuleConditionArgs(
                    path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=list(args.path_patterns))
                ),
            ],
            actions=[self._forward(self.target_group)],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["actions"]),
        )
        role, role_policy = self._traffic_shift_role(prefix, args, production_rule, test_rule)
        hook, waits_for = self._deploy_hook(prefix, args, token_secret)
        advanced = aws.ecs.ServiceLoadBalancerAdvancedConfigurationArgs(
            alternate_target_group_arn=self.alternate_target_group.arn,
            production_listener_rule=production_rule.arn,
            test_listener_rule=test_rule.arn,
            role_arn=role.arn,
        )
        return advanced, [hook], [test_rule, role_policy, *waits_for]

    def _traffic_shift_role(
        self, prefix: str, args: WebServiceArgs, production_rule: aws.lb.ListenerRule, test_rule: aws.lb.ListenerRule
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """AWS's AmazonECSInfrastructureRolePolicyForLoadBalancers, scoped to this service's listeners, rules and
        target groups (the managed policy allows them on every load balancer of the account)."""
        if (
            self.target_group is None
            or self.alternate_target_group is None
            or args.listener_arn is None
            or args.test_listener is None
        ):
            raise ValueError("WebServiceArgs: the traffic-shift role needs both target groups and both listeners")
        role = aws.iam.Role(
            f"{prefix}-traffic-shift-role",
            assume_role_policy=assume_role_policy("ecs.amazonaws.com", args.account_id),
            description=f"{prefix}: ECS shifts traffic between its two target groups during deployments",
            opts=self._child,
        )
        groups = [self.target_group.arn, self.alternate_target_group.arn]
        policy = aws.iam.RolePolicy(
            f"{prefix}-traffic-shift-policy",
            role=role.id,
            policy=policy_document(
                [
                    # Describe* cannot be scoped to resources (IAM's service authorization reference).
                    allow(
                        [
                            "elasticloadbalancing:DescribeListeners",
                            "elasticloadbalancing:DescribeRules",
                            "elasticloadbalancing:DescribeTargetGroups",
                            "elasticloadbalancing:DescribeTargetHealth",
                        ],
                        ["*"],
                        sid="ReadLoadBalancers",
                    ),
                    allow(
                        ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"],
                        groups,
                        sid="RegisterOwnTargets",
                    ),
                    allow(
                        ["elasticloadbalancing:ModifyListener"],
                        [args.listener_arn, args.test_listener.arn],
                        sid="ModifyOwnListeners",
                    ),
                    allow(
                        ["elasticloadbalancing:ModifyRule"], [production_rule.arn, test_rule.arn], sid="ShiftOwnRules"
                    ),
                ]
            ),
            opts=self._child,
        )
        return role, policy

    def _deploy_hook(
        self, prefix: str, args: WebServiceArgs, token_secret: aws.secretsmanager.Secret
    ) -> tuple[aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs, list[pulumi.Resource]]:
        """The smoke-test Lambda (lambdas/deploy_hook) at POST_TEST_TRAFFIC_SHIFT, and the role ECS invokes it
        with. It runs in the private subnets, so its requests reach the test listener from a NAT gateway's address,
        the only source the listener admits."""
        if args.test_listener is None:
            raise ValueError("WebServiceArgs: the deployment hook needs the test listener")
        security_group, egress = self._deploy_hook_network(prefix, args, args.test_listener.port)
        function = logged_function(
            f"{prefix}-deploy-hook",
            function_name=f"{prefix}-deploy-hook",
            role_description="read the deployment test token, write its logs",
            statements=[
                allow(["secretsmanager:GetSecretValue"], [token_secret.arn], sid="ReadTestToken"),
                allow(["kms:Decrypt"], [args.log_kms_key_arn], sid="DecryptTestToken"),
            ],
            account_id=args.account_id,
            log_retention_days=args.log_retention_days,
            log_kms_key_arn=args.log_kms_key_arn,
            parent=self,
            description="Smoke-tests a new revision through the ALB's test listener before traffic shifts; FAILED rolls back",
            vpc=FunctionVpc(
                subnet_ids=args.private_subnet_ids, security_group_ids=[security_group.id], region=args.region
            ),
            runtime=HOOK_RUNTIME,
            architectures=["arm64"],
            handler="handler.handler",
            code=python_lambda_package(HOOK_SOURCE, [], python_version=HOOK_PYTHON, architecture="arm64").archive,
            timeout=HOOK_FUNCTION_TIMEOUT_SECONDS,
            memory_size=128,
            reserved_concurrent_executions=2,
            environment=aws.lambda_.FunctionEnvironmentArgs(
                variables={
                    "TEST_TOKEN_SECRET_ARN": token_secret.arn,
                    "READY_TIMEOUT_SECONDS": str(HOOK_READY_TIMEOUT_SECONDS),
                }
            ),
        )
        invoke_role = aws.iam.Role(
            f"{prefix}-deploy-hook-invoke-role",
            assume_role_policy=assume_role_policy("ecs.amazonaws.com", args.account_id),
            description=f"{prefix}: ECS invokes the deployment hook",
            opts=self._child,
        )
        invoke_policy = aws.iam.RolePolicy(
            f"{prefix}-deploy-hook-invoke-policy",
            role=invoke_role.id,
            policy=policy_document([allow(["lambda:InvokeFunction"], [function.arn], sid="InvokeDeployHook")]),
            opts=self._child,
        )
        self.deploy_hook_function_name = function.name
        checks = [{"path": args.health_check_path, "status": 200}]
        checks += [{"path": path, "status": status} for path, status in args.smoke_tests]
        details = pulumi.Output.from_input(args.test_listener.url).apply(
            lambda url: json.dumps({"baseUrl": url, "header": TEST_HEADER, "checks": checks})
        )
        hook = aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs(
            lifecycle_stages=["POST_TEST_TRAFFIC_SHIFT"],
            hook_target_arn=function.arn,
            role_arn=invoke_role.arn,
            hook_details=details,
        )
        return hook, [function, invoke_policy, *egress]

    def _deploy_hook_network(
        self, prefix: str, args: WebServiceArgs, test_port: int
    ) -> tuple[aws.ec2.SecurityGroup, list[aws.vpc.SecurityGroupEgressRule]]:
        """The hook's own security group: out to the test listener's port and to HTTPS (Secrets Manager), both
        through NAT to public addresses (the ALB's change over time, so no narrower CIDR holds); no ingress."""
        group = aws.ec2.SecurityGroup(
            f"{prefix}-deploy-hook-sg",
            vpc_id=args.vpc_id,
            description=f"{prefix} deployment hook: the ALB test listener and HTTPS to AWS APIs, no ingress",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        egress = [
            aws.vpc.SecurityGroupEgressRule(
                f"{prefix}-deploy-hook-egress-{kind}",
                security_group_id=group.id,
                description=description,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=ANYWHERE,
                opts=self._child,
            )
            for kind, port, description in (
                ("test-listener", test_port, "The ALB test listener, through NAT"),
                ("https", HTTPS, "HTTPS to Secrets Manager, through NAT"),
            )
        ]
        return group, egress

    def _rollback_alarms(self, prefix: str, args: WebServiceArgs) -> list[pulumi.Output[str]]:
        """5xx rate, p99 latency and unhealthy hosts over both target groups (traffic is on either, or split)."""
        if self.target_group is None or args.alb_arn_suffix is None:
            raise ValueError("WebServiceArgs: rollback alarms need the target group and the ALB")
        groups = [self.target_group] + ([self.alternate_target_group] if self.alternate_target_group else [])
        specs = alb_rollback_alarms(
            prefix,
            [(args.alb_arn_suffix, group.arn_suffix) for group in groups],
            error_rate_percent=args.error_rate_alarm_percent,
            p99_latency_seconds=args.p99_latency_alarm_seconds,
        )
        return rollback_alarms(prefix, specs, opts=self._child)

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
