"""Microservice: one service of the `services:` map, built from the same secure task as every other service.

Each one joins the cluster's Service Connect namespace (a client always; a server at `http://<name>:<port>` when
it has a port), scales on CPU and memory (and on requests per target behind an ALB), and is reachable only
along the paths config declares: `allow_call` opens caller SG -> callee SG on the callee's port (or caller SG ->
internal ALB SG, for a callee behind the internal ALB), `allow_from` lets an entry (the ALB, the internal ALB,
the HTTP API's VPC link) in on the service's port. Public services behind an HTTP API also register in Cloud Map
with SRV records (the address and port an HTTP API private integration resolves).

With `rollout.rollback_alarms`, ECS rolls a deployment back when one of the service's rollback alarms fires during
the deployment or its bake time (components/monitoring.py `rollback_alarms`, as the web service): behind an
ALB its target groups' 5xx rate, p99 latency and unhealthy hosts; otherwise Service Connect's 5xx rate and average
latency for a server, and tasks missing (desired minus running) for every service.

What a service owns besides its task: a queue it consumes (components/service_queue.py; it also scales on the
queue's backlog per task), secrets the platform generates for it, and the right to send email from one address.
The queue and the generated secrets are encrypted with the service's own KMS key, so a grant on that key is a
grant on this service's data only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.ecs_task import (
    DeploymentWait,
    FargateTask,
    FargateTaskSpec,
    Rollout,
    ServiceAttachment,
    ServiceConnect,
    allow_between,
    service_connect_discovery_name,
)
from components.iam import allow, policy_document
from components.internal_alb import InternalAlbEntry, listener
from components.kms import rotating_key
from components.monitoring import (
    RollbackAlarm,
    alb_rollback_alarms,
    metric_query,
    rollback_alarms,
    tasks_missing_queries,
)
from components.service_queue import ServiceQueue, ServiceQueueArgs, backlog_per_task_scaling, wake_from_zero
from components.tracing import CollectorImage, TracingArgs, TracingSidecar, cache_pull_statements, tracing_sidecar
from components.web_service import (
    FARGATE_MAX_STOP_TIMEOUT,
    REQUESTS_PER_TARGET_PER_MINUTE,
    SCALE_IN_COOLDOWN,
    SCALE_OUT_COOLDOWN,
)
from components.web_service import _http_probe as http_probe  # one probe for every web-facing service

CPU_TARGET_PERCENT = 70
MEMORY_TARGET_PERCENT = 80


@dataclass(frozen=True)
class AlbRoute:
    priority: int
    """Listener rule priority (unique on the listener, below the job platform API's 100)."""
    route: str
    """`METHOD /path` from config; `{x}` and `{x+}` become `*` in the ALB path pattern, `ANY` matches any method."""


@dataclass(frozen=True)
class AlbEntry:
    """The cluster's ALB, when it is the entry and the service has public routes."""

    listener_arn: pulumi.Input[str]
    """Listener the service's rules attach to."""
    security_group_id: pulumi.Input[str]
    """ALB security group (the only ingress source for these routes)."""
    arn_suffix: pulumi.Input[str]
    """ALB ARN suffix (request-count scaling's resource label)."""
    routes: Sequence[AlbRoute]
    """One listener rule per route."""


@dataclass(frozen=True)
class EmailSender:
    """Sending email through Amazon SES as one From address."""

    from_address: str
    """The only From address the service may use (`EMAIL_FROM`)."""
    identity: str
    """The SES identity (domain or address, verified out of band) that authorizes sending as `from_address`."""


@dataclass(frozen=True)
class MicroserviceArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    service_name: str
    """Short name: container, Service Connect and Cloud Map name."""
    image: pulumi.Input[str]
    """Image reference, pinned by digest."""
    region: str
    """Region (awslogs driver)."""
    account_id: pulumi.Input[str]
    """Account (trust policy conditions)."""
    vpc_id: pulumi.Input[str]
    """VPC of the service's security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Subnets the tasks run in (never public)."""
    cluster_arn: pulumi.Input[str]
    """ECS cluster ARN."""
    cluster_name: pulumi.Input[str]
    """ECS cluster name (autoscaling resource id)."""
    namespace_id: pulumi.Input[str]
    """Cloud Map namespace id (the HTTP API registration's namespace)."""
    namespace_arn: pulumi.Input[str]
    """Cloud Map namespace ARN (Service Connect)."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the service's log groups."""
    port: int | None = None
    """Port the service listens on; None for a client-only service such as a worker. Default: none."""
    cpu: int = 256
    """Task CPU units. Default: 256."""
    memory: int = 512
    """Task memory MiB. Default: 512."""
    desired_count: int = 1
    """Initial task count. Default: 1."""
    min_count: int = 1
    """Autoscaling minimum. Default: 1."""
    max_count: int = 3
    """Autoscaling maximum. Default: 3."""
    health_check_path: str = "/health"
    """Container (and target group) health check path, with a port. Default: /health."""
    health_check_command: Sequence[str] | None = None
    """Container health check command (ECS's CMD form); None: a Python probe of `health_check_path`. Default: none."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables (never secrets). Default: none."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Container secrets: name -> Secrets Manager/SSM ARN. Default: none."""
    attachments: Sequence[ServiceAttachment] = ()
    """Shared resources the service uses (database, cache, storage, queues). Default: none."""
    request_timeout_seconds: int = 15
    """Service Connect per-request timeout of calls to this service. Default: 15."""
    log_retention_days: int = 30
    """Log retention. Default: 30."""
    cpu_architecture: str = "X86_64"
    """X86_64 or ARM64. Default: X86_64."""
    on_demand_base: int = 1
    """Tasks always on on-demand FARGATE. Default: 1."""
    spot_weight: int = 0
    """FARGATE_SPOT weight relative to FARGATE's 1. Default: 0."""
    deployment: DeploymentWait = field(default_factory=DeploymentWait)
    """Whether `pulumi up` waits for deployments. Default: wait, 30 minutes."""
    rollout: Rollout = field(default_factory=Rollout)
    """Deployment strategy. Behind Service Connect only, ECS shifts the callers' traffic (BLUE_GREEN, CANARY,
    LINEAR); with ALB routes or an HTTP API registration only ROLLING (ECS shifts one production listener rule,
    and Cloud Map SRV records are not shifted). Default: rolling."""
    alb: AlbEntry | None = None
    """Serve these routes through the cluster's ALB. Default: none."""
    internal_alb: InternalAlbEntry | None = None
    """Serve callers through the shared internal ALB: a target group and a listener on the service's port, ingress
    from the internal ALB's group only, request-count scaling. Default: none (Service Connect only)."""
    drain_seconds: int = 30
    """The target groups' deregistration delay and the container's stop timeout (SIGTERM to SIGKILL), one value so
    they agree. Default: 30."""
    error_rate_alarm_percent: float = 5.0
    """Rollback alarm: share of requests answered 5xx (the ALB's targets, or Service Connect's). Default: 5."""
    latency_alarm_seconds: float = 2.0
    """Rollback alarm: the targets' p99 response time behind an ALB; Service Connect's average (AWS documents no
    percentile for its TargetResponseTime). Default: 2."""
    register_for_http_api: bool = False
    """Register the tasks in Cloud Map with SRV records for an HTTP API private integration. Default: false."""
    sidecars: Sequence[Mapping[str, Any]] = ()
    """Extra containers (e.g. a telemetry collector), held to the task's security rules. Default: none."""
    tracing: CollectorImage | None = None
    """Trace with this collector image: the ADOT collector sidecar (components/tracing.py), OpenTelemetry's
    variables on the app, X-Ray writes for the task role and, through a pull-through cache, the execution role's
    import grant. Default: none (no tracing)."""
    alert_topic_arn: pulumi.Input[str] | None = None
    """Topic the alarms of the service's queue notify; required with `queue`. Default: none."""
    queue: ServiceQueueArgs | None = None
    """Own a queue and consume it: `QUEUE_URL`, receive/delete/change-visibility, alarms, scaling on its backlog per
    task next to CPU and memory. Senders get `queue.sender_attachment()`. Default: none."""
    generated_secrets: Mapping[str, int] = field(default_factory=dict)
    """Secrets the platform generates once: variable name -> random bytes, base64-encoded into a Secrets Manager
    secret under the service's key and given to the container in `secrets`. Default: none."""
    keep_previous: Sequence[str] = ()
    """Generated secrets whose version before the last rotation the container also gets, as `<VARIABLE>_PREVIOUS`
    (the secret's AWSPREVIOUS version; a signing key's verifiers accept tokens signed before a rotation), with
    `<VARIABLE>_VERSIONS` (the version ids, not secret) so a rotation rolls the service. Default: none."""
    email: EmailSender | None = None
    """Send email through SES: `EMAIL_FROM`, and SendEmail/SendRawEmail on that identity as that From address
    only. Default: none."""


class Microservice(pulumi.ComponentResource):
    service_name: pulumi.Output[str]
    """ECS service name."""
    security_group_id: pulumi.Output[str]
    """Task security group."""
    log_group_name: pulumi.Output[str]
    """Application log group name."""
    discovery_service_arn: pulumi.Output[str] | None
    """Cloud Map service (SRV) an HTTP API integrates with; None unless `register_for_http_api`."""
    target_group_arn_suffix: pulumi.Output[str] | None
    """Target group ARN suffix behind the ALB; None without ALB routes."""
    rollback_alarm_names: list[pulumi.Output[str]]
    """Alarms that roll a deployment back (with rollout.rollback_alarms); empty otherwise."""
    key: aws.kms.Key | None
    """The service's own KMS key (its queue, its generated secrets); None when it owns neither."""
    queue: ServiceQueue | None
    """The queue the service owns and consumes; senders use its `sender_attachment()`. None without `queue`."""

    def __init__(self, name: str, args: MicroserviceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:microservice:Microservice", name, None, opts)
        _validate(args)
        self.args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self._prefix = f"{args.name_prefix}-{args.service_name}"
        self.tracing = _tracing(args)
        self.key = self._own_key(args)
        self.queue = self._own_queue(args, self.key)
        self.task = FargateTask(self._task_spec(args, self._own_attachments(args)), parent=self)
        if args.tracing is not None and args.tracing.cache_prefix is not None:
            aws.iam.RolePolicy(
                f"{self._prefix}-exec-pull-through-cache",
                role=self.task.execution_role.id,
                policy=policy_document(cache_pull_statements(args.region, args.account_id, args.tracing.cache_prefix)),
                opts=self._child,
            )
        self.port = args.port
        self.security_group_id = self.task.security_group.id
        extra: dict[str, Any] = {}
        depends_on: list[pulumi.Resource] = []
        self.target_group: aws.lb.TargetGroup | None = None
        self.internal_target_group: aws.lb.TargetGroup | None = None
        if args.alb is not None and args.port is not None:
            self.target_group, rules = self._alb_routing(args.alb, args.port)
            self.allow_from("alb", args.alb.security_group_id)
            depends_on += rules
        if args.internal_alb is not None and args.port is not None:
            self.internal_target_group = self._target_group(f"{self._prefix}-internal-tg", args.port)
            depends_on.append(
                listener(
                    f"{self._prefix}-internal-listener",
                    args.internal_alb,
                    args.port,
                    self.internal_target_group,
                    parent=self,
                )
            )
            self.allow_from("internal-alb", args.internal_alb.security_group_id)
        groups = [group for group in (self.target_group, self.internal_target_group) if group is not None]
        if groups and args.port is not None:
            extra["load_balancers"] = [
                aws.ecs.ServiceLoadBalancerArgs(
                    target_group_arn=group.arn, container_name=args.service_name, container_port=args.port
                )
                for group in groups
            ]
            extra["health_check_grace_period_seconds"] = 120
        self.discovery: aws.servicediscovery.Service | None = None
        if args.register_for_http_api and args.port is not None:
            self.discovery = self._http_api_registration(args)
            extra["service_registries"] = aws.ecs.ServiceServiceRegistriesArgs(
                registry_arn=self.discovery.arn, container_name=args.service_name, container_port=args.port
            )
        self.rollback_alarm_names = (
            rollback_alarms(self._prefix, self._rollback_alarms(args), opts=self._child)
            if args.rollout.rollback_alarms
            else []
        )
        self.service = self.task.service(
            cluster_arn=args.cluster_arn,
            private_subnet_ids=args.private_subnet_ids,
            desired_count=args.desired_count,
            on_demand_base=args.on_demand_base,
            spot_weight=args.spot_weight,
            depends_on=depends_on,
            rollout=args.rollout,
            rollback_alarm_names=self.rollback_alarm_names,
            **extra,
        )
        self._autoscaling(args)
        self.service_name = self.service.name
        self.log_group_name = self.task.log_group.name
        self.discovery_service_arn = self.discovery.arn if self.discovery else None
        self.target_group_arn_suffix = self.target_group.arn_suffix if self.target_group else None
        self.register_outputs(
            {
                "service_name": self.service_name,
                "security_group_id": self.security_group_id,
                "rollback_alarm_names": self.rollback_alarm_names,
            }
        )

    def _task_spec(self, args: MicroserviceArgs, own: Sequence[ServiceAttachment]) -> FargateTaskSpec:
        environment: dict[str, pulumi.Input[str]] = {"SERVICE_NAME": args.service_name}
        if args.port is not None:
            environment["PORT"] = str(args.port)
        environment.update(args.environment)
        attachments, sidecars = [*args.attachments, *own], list(args.sidecars)
        depends_on: list[Mapping[str, str]] = []
        if self.tracing is not None:
            attachments.append(
                ServiceAttachment(
                    name="tracing",
                    environment=self.tracing.app_environment,
                    task_role_statements=self.tracing.task_role_statements,
                )
            )
            sidecars.append(self.tracing.container)
            depends_on += self.tracing.app_depends_on
        return FargateTaskSpec(
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
            environment=environment,
            secrets=args.secrets,
            container_port=args.port,
            health_check_command=self._health_check(args),
            cpu_architecture=args.cpu_architecture,
            attachments=attachments,
            deployment=args.deployment,
            service_connect=ServiceConnect(args.namespace_arn, args.request_timeout_seconds),
            sidecars=sidecars,
            container_depends_on=depends_on,
            stop_timeout_seconds=args.drain_seconds,
        )

    # --- What the service owns ---

    def _own_key(self, args: MicroserviceArgs) -> aws.kms.Key | None:
        if args.queue is None and not args.generated_secrets:
            return None
        return rotating_key(
            f"{self._prefix}-key",
            description=f"{self._prefix}: its queue and generated secrets",
            account_id=args.account_id,
            region=args.region,
            opts=self._child,
        )

    def _own_queue(self, args: MicroserviceArgs, key: aws.kms.Key | None) -> ServiceQueue | None:
        if args.queue is None or key is None or args.alert_topic_arn is None:  # _validate requires the topic
            return None
        return ServiceQueue(
            self._prefix, args.queue, kms_key_arn=key.arn, alert_topic_arn=args.alert_topic_arn, parent=self
        )

    def _own_attachments(self, args: MicroserviceArgs) -> list[ServiceAttachment]:
        own: list[ServiceAttachment] = []
        if self.queue is not None:
            own.append(self.queue.consumer_attachment())
        if args.generated_secrets and self.key is not None:
            own.append(self._generated_secrets(args, self.key))
        if args.email is not None:
            own.append(email_attachment(args.email, args.region, args.account_id))
        return own

    def _generated_secrets(self, args: MicroserviceArgs, key: aws.kms.Key) -> ServiceAttachment:
        """Random bytes kept (encrypted) in the stack state, so `pulumi up` never rotates them by accident, and a
        secret under the service's key; the execution role may decrypt with that key through Secrets Manager only."""
        secrets: dict[str, pulumi.Input[str]] = {}
        environment: dict[str, pulumi.Input[str]] = {}
        secret_arns: list[pulumi.Input[str]] = []
        for variable, size in sorted(args.generated_secrets.items()):
            slug = variable.lower().replace("_", "-")
            value = random.RandomBytes(f"{self._prefix}-{slug}", length=size, opts=self._child)
            secret = aws.secretsmanager.Secret(
                f"{self._prefix}-{slug}-secret",
                name_prefix=f"{args.name_prefix}/{args.service_name}/{variable}-",
                description=f"{self._prefix} {variable}: {size} random bytes, base64, generated by the platform",
                kms_key_id=key.arn,
                recovery_window_in_days=7,
                opts=self._child,
            )
            initial = self._initial_version(slug, size, secret) if variable in args.keep_previous else None
            version = aws.secretsmanager.SecretVersion(
                f"{self._prefix}-{slug}-version",
                secret_id=secret.id,
                secret_string=value.base64,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[initial] if initial is not None else []),
            )
            # Named in the task definition only once it has a value: a task started earlier could not start.
            current = pulumi.Output.all(secret.arn, version.id).apply(lambda values: values[0])
            secrets[variable] = current
            secret_arns.append(current)
            if initial is not None:
                secrets[f"{variable}_PREVIOUS"] = current.apply(previous_version_reference)
                # Not a value: version ids, so a rotation (a new current version) changes the task definition and
                # rolls the service. Both ids, because turning keep_previous on for an existing secret puts the
                # initial version last, moving AWSCURRENT to it; that too must restart the tasks.
                environment[f"{variable}_VERSIONS"] = pulumi.Output.all(initial.id, version.id).apply(
                    lambda ids: " ".join(version_id(i) for i in ids)
                )
        via_secrets_manager = {"StringEquals": {"kms:ViaService": f"secretsmanager.{args.region}.amazonaws.com"}}
        return ServiceAttachment(
            name="generated-secrets",
            environment=environment,
            secrets=secrets,
            secret_arns=secret_arns,
            execution_role_statements=[
                {**allow(["kms:Decrypt"], [key.arn], sid="DecryptOwnSecrets"), "Condition": via_secrets_manager}
            ],
        )

    def _initial_version(
        self, slug: str, size: int, secret: aws.secretsmanager.Secret
    ) -> aws.secretsmanager.SecretVersion:
        """A first version, never the current one for long: the current version, put after it, takes AWSCURRENT
        and Secrets Manager moves AWSPREVIOUS here, so `<VARIABLE>_PREVIOUS` resolves from the first deployment on
        (ECS cannot start a task with a secret it cannot fetch). Retained on delete: its recorded staging labels
        go stale as rotations move them, and the provider's delete would remove the labels it recorded."""
        value = random.RandomBytes(f"{self._prefix}-{slug}-initial", length=size, opts=self._child)
        return aws.secretsmanager.SecretVersion(
            f"{self._prefix}-{slug}-initial-version",
            secret_id=secret.id,
            secret_string=value.base64,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )

    @staticmethod
    def _health_check(args: MicroserviceArgs) -> list[str] | None:
        if args.health_check_command is not None:
            return list(args.health_check_command)
        return http_probe(args.port, args.health_check_path) if args.port is not None else None

    # --- Who may connect ---

    def allow_from(self, source: str, source_security_group_id: pulumi.Input[str]) -> None:
        """SG-to-SG from `source` (an entry or a calling service) to this service's port, nothing wider."""
        if self.port is None:
            raise ValueError(f"{self._prefix} has no port: nothing can connect to it (from {source})")
        allow_between(
            f"{self._prefix}-from-{source}",
            source_security_group_id=source_security_group_id,
            target_security_group_id=self.security_group_id,
            port=self.port,
            description=f"{source} to {self._prefix}",
            opts=self._child,
        )

    def allow_caller(self, caller: str, caller_security_group_id: pulumi.Input[str]) -> None:
        """A declared call: straight to this service's port, or, behind the internal ALB, to the ALB's listener on
        that port only (the ALB in turn is the only source `allow_from` lets in)."""
        if self.args.internal_alb is None or self.port is None:
            self.allow_from(caller, caller_security_group_id)
            return
        allow_between(
            f"{self._prefix}-from-{caller}-via-internal-alb",
            source_security_group_id=caller_security_group_id,
            target_security_group_id=self.args.internal_alb.security_group_id,
            port=self.port,
            description=f"{caller} to {self._prefix} through the internal ALB",
            opts=self._child,
        )

    def allow_ingress_from(self, source: str, source_security_group_id: pulumi.Input[str]) -> None:
        """Ingress only, for a source whose own component already owns the matching egress (the HTTP API's VPC
        link security group allows egress to exactly this port and group)."""
        if self.port is None:
            raise ValueError(f"{self._prefix} has no port: nothing can connect to it (from {source})")
        aws.vpc.SecurityGroupIngressRule(
            f"{self._prefix}-from-{source}-ingress",
            security_group_id=self.security_group_id,
            referenced_security_group_id=source_security_group_id,
            ip_protocol="tcp",
            from_port=self.port,
            to_port=self.port,
            description=f"{source} to {self._prefix}",
            opts=self._child,
        )

    # --- Entries ---

    def _target_group(self, name: str, port: int) -> aws.lb.TargetGroup:
        # The seed's 60 s deregistration delay outlasted the task's 30 s stop timeout; both are drain_seconds.
        return aws.lb.TargetGroup(
            name,
            name_prefix=self.args.service_name[:6],
            port=port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=self.args.vpc_id,
            deregistration_delay=self.args.drain_seconds,
            health_check=aws.lb.TargetGroupHealthCheckArgs(
                enabled=True, path=self.args.health_check_path, matcher="200", interval=30, timeout=5
            ),
            opts=self._child,
        )

    def _alb_routing(self, alb: AlbEntry, port: int) -> tuple[aws.lb.TargetGroup, list[pulumi.Resource]]:
        target_group = self._target_group(f"{self._prefix}-tg", port)
        rules: list[pulumi.Resource] = []
        for index, route in enumerate(alb.routes):
            rules.append(
                aws.lb.ListenerRule(
                    f"{self._prefix}-route-{index}",
                    listener_arn=alb.listener_arn,
                    priority=route.priority,
                    conditions=alb_conditions(route.route),
                    actions=[aws.lb.ListenerRuleActionArgs(type="forward", target_group_arn=target_group.arn)],
                    opts=self._child,
                )
            )
        return target_group, rules

    def _http_api_registration(self, args: MicroserviceArgs) -> aws.servicediscovery.Service:
        # Service Connect owns the Cloud Map service named after the service; this one carries SRV records
        # (address and port), which an HTTP API private integration needs, under its own name.
        return aws.servicediscovery.Service(
            f"{self._prefix}-entry-discovery",
            name=f"{args.service_name}-entry",
            dns_config=aws.servicediscovery.ServiceDnsConfigArgs(
                namespace_id=args.namespace_id,
                dns_records=[aws.servicediscovery.ServiceDnsConfigDnsRecordArgs(type="SRV", ttl=10)],
                routing_policy="MULTIVALUE",
            ),
            health_check_custom_config=aws.servicediscovery.ServiceHealthCheckCustomConfigArgs(),
            opts=self._child,
        )

    # --- Rollback alarms ---

    def _alb_targets(self) -> list[tuple[pulumi.Input[str], pulumi.Input[str]]]:
        """(load balancer, target group) ARN suffixes of every ALB the service is behind."""
        targets: list[tuple[pulumi.Input[str], pulumi.Input[str]]] = []
        if self.args.alb is not None and self.target_group is not None:
            targets.append((self.args.alb.arn_suffix, self.target_group.arn_suffix))
        if self.args.internal_alb is not None and self.internal_target_group is not None:
            targets.append((self.args.internal_alb.arn_suffix, self.internal_target_group.arn_suffix))
        return targets

    def _rollback_alarms(self, args: MicroserviceArgs) -> list[RollbackAlarm]:
        """Behind an ALB, the web service's three; a Service Connect server, its mesh traffic's 5xx rate and average
        latency (ECS's `TargetDiscoveryName` metrics); every service, tasks missing (Container Insights)."""
        if targets := self._alb_targets():
            return alb_rollback_alarms(
                self._prefix,
                targets,
                error_rate_percent=args.error_rate_alarm_percent,
                p99_latency_seconds=args.latency_alarm_seconds,
            )
        alarms: list[RollbackAlarm] = []
        if args.port is not None:
            target = {"TargetDiscoveryName": service_connect_discovery_name(args.name_prefix, args.service_name)}
            alarms += [
                RollbackAlarm(
                    "5xx-rate",
                    f"{self._prefix}: more than {args.error_rate_alarm_percent:g} % of mesh calls answered 5xx",
                    [
                        metric_query("errors", "AWS/ECS", "HTTPCode_Target_5XX_Count", "Sum", target),
                        metric_query("requests", "AWS/ECS", "RequestCount", "Sum", target),
                    ],
                    "100 * errors / MAX([1, requests])",
                    args.error_rate_alarm_percent,
                ),
                RollbackAlarm(
                    "latency",
                    f"{self._prefix}: average response time to mesh calls above {args.latency_alarm_seconds:g} s",
                    [metric_query("latency", "AWS/ECS", "TargetResponseTime", "Average", target)],
                    "latency",  # Service Connect reports milliseconds
                    args.latency_alarm_seconds * 1000,
                ),
            ]
        # The ECS service's name is known before it exists (`<app>-<env>-<name>`), so no cycle through its output.
        return [
            *alarms,
            RollbackAlarm(
                "tasks-missing",
                f"{self._prefix}: fewer tasks running than desired",
                tasks_missing_queries(args.cluster_name, self._prefix),
                "desired - running",
                0,
            ),
        ]

    # --- Autoscaling ---

    def _autoscaling(self, args: MicroserviceArgs) -> None:
        target = self.task.scaling_target(self.service, args.cluster_name, args.min_count, args.max_count)
        policies: list[tuple[str, str, float, pulumi.Input[str] | None]] = [
            ("cpu", "ECSServiceAverageCPUUtilization", CPU_TARGET_PERCENT, None),
            ("memory", "ECSServiceAverageMemoryUtilization", MEMORY_TARGET_PERCENT, None),
        ]
        # Request count is an ALB metric: only services behind an ALB scale on it, per target group.
        for kind, (alb_suffix, group_suffix) in zip(self._request_kinds(), self._alb_targets(), strict=True):
            label = pulumi.Output.concat(alb_suffix, "/", group_suffix)
            policies.append((kind, "ALBRequestCountPerTarget", REQUESTS_PER_TARGET_PER_MINUTE, label))
        if self.queue is not None and args.queue is not None:
            # Target tracking policies combine: out when any asks, in only when all agree, so CPU and memory never
            # take tasks away from a backlog.
            queues = {"queue": self.queue.name}
            scaling = {"queues": queues, "cluster_name": args.cluster_name, "service_name": self.service.name}
            backlog_per_task_scaling(
                self._prefix, target, target_value=args.queue.backlog_per_task_target, opts=self._child, **scaling
            )
            if args.min_count == 0:
                wake_from_zero(self._prefix, target, min_count=args.min_count, opts=self._child, **scaling)
        for kind, metric, value, label in policies:
            aws.appautoscaling.Policy(
                f"{self._prefix}-{kind}-scaling",
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

    def _request_kinds(self) -> list[str]:
        kinds = ["requests"] if self.target_group is not None else []
        return kinds + (["internal-requests"] if self.internal_target_group is not None else [])


def _tracing(args: MicroserviceArgs) -> TracingSidecar | None:
    if args.tracing is None:
        return None
    return tracing_sidecar(
        TracingArgs(
            name_prefix=args.name_prefix,
            service_name=args.service_name,
            region=args.region,
            image=args.tracing.reference,
        )
    )


def email_attachment(email: EmailSender, region: str, account_id: pulumi.Input[str]) -> ServiceAttachment:
    """`EMAIL_FROM`, and SendEmail/SendRawEmail on the SES identity only with that From address (`ses:FromAddress`:
    the identity would otherwise allow any address of its domain)."""
    identity = pulumi.Output.concat("arn:aws:ses:", region, ":", account_id, ":identity/", email.identity)
    statement = allow(["ses:SendEmail", "ses:SendRawEmail"], [identity], sid="SendEmailAsFromAddress")
    statement["Condition"] = {"StringEquals": {"ses:FromAddress": email.from_address}}
    return ServiceAttachment(
        name="email", environment={"EMAIL_FROM": email.from_address}, task_role_statements=[statement]
    )


def previous_version_reference(secret_arn: str) -> str:
    """ECS's `valueFrom` for a secret's AWSPREVIOUS version: `<arn>:<json-key>:<version-stage>:<version-id>` with
    no JSON key and no version id (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/secrets-envvar-secrets-manager.html)."""
    return f"{secret_arn}::AWSPREVIOUS:"


def version_id(secret_version_id: str) -> str:
    """The version id from a SecretVersion's resource id, `<secret arn>|<version id>`."""
    return secret_version_id.rsplit("|", 1)[-1]


def allow_call(caller: Microservice, callee: Microservice) -> None:
    """A declared call: caller SG -> callee SG (or the internal ALB's SG) on the callee's port; the rules belong to
    the callee."""
    callee.allow_caller(caller.args.service_name, caller.security_group_id)


def alb_conditions(route: str) -> list[aws.lb.ListenerRuleConditionArgs]:
    """`GET /products/{id}` -> path `/products/*` and method GET; `ANY` leaves the method open."""
    method, _, path = route.partition(" ")
    pattern = "/".join("*" if segment.startswith("{") else segment for segment in path.split("/"))
    conditions = [
        aws.lb.ListenerRuleConditionArgs(path_pattern=aws.lb.ListenerRuleConditionPathPatternArgs(values=[pattern]))
    ]
    if method != "ANY":
        conditions.append(
            aws.lb.ListenerRuleConditionArgs(
                http_request_method=aws.lb.ListenerRuleConditionHttpRequestMethodArgs(values=[method])
            )
        )
    return conditions


def _validate(args: MicroserviceArgs) -> None:
    problems: list[str] = []
    if args.port is None and (args.alb is not None and args.alb.routes):
        problems.append("alb: routes need a port")
    if args.port is None and args.register_for_http_api:
        problems.append("register_for_http_api: needs a port")
    if args.port is None and args.internal_alb is not None:
        problems.append("internal_alb: needs a port")
    if not 1 <= args.drain_seconds <= FARGATE_MAX_STOP_TIMEOUT:
        problems.append(
            f"drain_seconds: {args.drain_seconds}; allowed: 1-{FARGATE_MAX_STOP_TIMEOUT} (Fargate's stop timeout)"
        )
    if not args.min_count <= args.desired_count <= args.max_count:
        problems.append(f"desired_count: {args.desired_count} is outside {args.min_count}..{args.max_count}")
    if args.queue is not None and args.alert_topic_arn is None:
        problems.append("queue: needs alert_topic_arn (the queue's alarms notify it)")
    for variable, size in sorted(args.generated_secrets.items()):
        if not 16 <= size <= 1024:
            problems.append(f"generated_secrets.{variable}: {size} bytes; allowed: 16-1024")
        if variable in args.environment or variable in args.secrets:
            problems.append(f"generated_secrets.{variable}: also in environment or secrets; allowed: one of them")
    for variable in sorted(args.keep_previous):
        if variable not in args.generated_secrets:
            problems.append(
                f"keep_previous.{variable}: not a generated secret; allowed: {sorted(args.generated_secrets)}"
            )
        for derived in (f"{variable}_PREVIOUS", f"{variable}_VERSIONS"):
            if derived in args.environment or derived in args.secrets or derived in args.generated_secrets:
                problems.append(
                    f"keep_previous.{variable}: {derived} is set elsewhere; allowed: a name given only once"
                )
    if problems:
        raise ValueError(
            f"invalid MicroserviceArgs for {args.service_name}:\n" + "\n".join(f"  - {p}" for p in problems)
        )
