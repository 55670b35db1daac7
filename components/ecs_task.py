"""The secure Fargate task every service runs: roles, log group, security group, task definition.

`WebService` and `QueueWorker` both build their task with `FargateTask`, so the secure defaults (non-root user,
read-only root filesystem with explicit writable volumes, no privileged, dropped capabilities, init process,
secrets only through `secrets`, encrypted logs with retention, execution role limited to its own secrets)
live in one place. `ServiceAttachment` is how shared storage, the database and Redis plug into a service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import allow, assume_role_policy, policy_document

TMP_VOLUME = "tmp"
RUN_AS_USER = "1001:1001"
EXECUTION_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
# Fargate tasks reach ECR, CloudWatch Logs and Secrets Manager over HTTPS (through NAT or VPC endpoints).
HTTPS = 443


@dataclass(frozen=True)
class MountPoint:
    volume: str
    """Task volume name."""
    path: str
    """Path inside the container."""
    read_only: bool = False
    """Mount read-only. Default: false."""


@dataclass(frozen=True)
class ServiceAttachment:
    """What a shared resource (EFS, RDS, Redis, queues) adds to a service that uses it."""

    name: str
    """Short name for child resource names, e.g. `storage`, `database`."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables (endpoints, never secrets). Default: none."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Container `secrets`: variable name -> Secrets Manager/SSM ARN (optionally with `:json-key::`). Default: none."""
    secret_arns: Sequence[pulumi.Input[str]] = ()
    """Secret/parameter ARNs the execution role may read for `secrets`. Default: none."""
    execution_role_statements: Sequence[pulumi.Input[Mapping[str, Any]]] = ()
    """IAM statements the execution role needs beyond reading `secret_arns`, e.g. decrypting them with a
    customer-managed key, scoped to its ARN. Default: none."""
    volumes: Sequence[aws.ecs.TaskDefinitionVolumeArgs] = ()
    """Task definition volumes the mount points refer to. Default: none."""
    mount_points: Sequence[MountPoint] = ()
    """Mount points for the volumes. Default: none."""
    task_role_statements: Sequence[pulumi.Input[Mapping[str, Any]]] = ()
    """IAM statements the application needs on this resource, scoped to its ARNs. Default: none."""
    peer_security_group_id: pulumi.Input[str] | None = None
    """Security group of the resource; the service gets SG-to-SG egress to it and it gets ingress. Default: none."""
    port: int | None = None
    """Port opened between the service and `peer_security_group_id`. Default: none."""


@dataclass(frozen=True)
class DeploymentWait:
    """Whether `pulumi up` waits for a service deployment to finish, and fails when it did not take."""

    wait_for_steady_state: bool = True
    """Wait until the new tasks are running and healthy (ECS `services-stable`). Default: true."""
    timeout_minutes: int = 30
    """How long `pulumi up` waits on a service create or update before it fails. Default: 30."""


ROLLING = "ROLLING"
TRAFFIC_SHIFTING = ("BLUE_GREEN", "CANARY", "LINEAR")


@dataclass(frozen=True)
class Rollout:
    """How ECS replaces a service's tasks: ECS native deployments (no CodeDeploy). With BLUE_GREEN, CANARY or
    LINEAR the new revision starts at full size beside the old one; ECS shifts traffic (ALB listener rules or
    Service Connect; none for a service without either) and keeps the old revision for the bake time."""

    strategy: str = ROLLING
    """ROLLING, BLUE_GREEN, CANARY or LINEAR. Default: ROLLING."""
    bake_time_minutes: int = 0
    """Minutes the old revision stays after all traffic moved (instant rollback window). Default: 0."""
    canary_percent: float = 10.0
    """CANARY: share of production traffic the new revision gets first. Default: 10."""
    linear_step_percent: float = 25.0
    """LINEAR: share of production traffic moved at each step. Default: 25."""
    step_minutes: int = 5
    """CANARY or LINEAR: minutes between traffic steps. Default: 5."""
    rollback_alarms: bool = False
    """Roll back when the service's rollback alarms fire during the deployment or bake time. Default: false."""

    def __post_init__(self) -> None:
        if self.strategy not in (ROLLING, *TRAFFIC_SHIFTING):
            raise ValueError(f"Rollout.strategy: {self.strategy!r}; allowed: {ROLLING}, {', '.join(TRAFFIC_SHIFTING)}")

    @property
    def shifts_traffic(self) -> bool:
        return self.strategy in TRAFFIC_SHIFTING

    def deployment_configuration(
        self, hooks: Sequence[aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs] = ()
    ) -> aws.ecs.ServiceDeploymentConfigurationArgs | None:
        """None for ROLLING (ECS's default, so rolling services plan as before)."""
        if not self.shifts_traffic:
            return None
        step = str(self.step_minutes)
        return aws.ecs.ServiceDeploymentConfigurationArgs(
            strategy=self.strategy,
            bake_time_in_minutes=str(self.bake_time_minutes),
            canary_configuration=aws.ecs.ServiceDeploymentConfigurationCanaryConfigurationArgs(
                canary_percent=self.canary_percent, canary_bake_time_in_minutes=step
            )
            if self.strategy == "CANARY"
            else None,
            linear_configuration=aws.ecs.ServiceDeploymentConfigurationLinearConfigurationArgs(
                step_percent=self.linear_step_percent, step_bake_time_in_minutes=step
            )
            if self.strategy == "LINEAR"
            else None,
            lifecycle_hooks=list(hooks) or None,
        )


@dataclass(frozen=True)
class ServiceConnect:
    """The service joins the cluster's Service Connect namespace: always a client; with a container port also a
    server at `http://<service name>:<port>`. Its proxy's logs and access logs go to a KMS log group."""

    namespace_arn: pulumi.Input[str]
    """Cloud Map namespace ARN (the cluster's)."""
    request_timeout_seconds: int = 15
    """Per-request timeout of calls to this service (servers only). Default: 15."""


SERVICE_CONNECT_PORT_NAME = "http"


@dataclass(frozen=True)
class FargateTaskSpec:
    """Everything about a service's task that is not specific to how it receives work."""

    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    service_name: str
    """Short service name, e.g. `api`, `worker`."""
    image: pulumi.Input[str]
    """Image reference, pinned by digest."""
    cpu: int
    """Task CPU units (valid Fargate size)."""
    memory: int
    """Task memory MiB (valid Fargate size for cpu)."""
    vpc_id: pulumi.Input[str]
    """VPC of the service security group."""
    region: str
    """Region for the awslogs driver."""
    account_id: pulumi.Input[str]
    """Account for trust policy conditions."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key that encrypts the log group."""
    log_retention_days: int = 30
    """Log retention. Default: 30."""
    environment: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Plain environment variables. Default: none."""
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Extra `secrets` (name -> Secrets Manager/SSM ARN); the execution role may read exactly these. Default: none."""
    container_port: int | None = None
    """Port the container listens on. Default: none (workers)."""
    command: Sequence[str] | None = None
    """Override of the image command. Default: the image's."""
    health_check_command: Sequence[str] | None = None
    """Container health check (`CMD` form). Default: none."""
    cpu_architecture: str = "X86_64"
    """X86_64 or ARM64. Default: X86_64."""
    stop_timeout_seconds: int = 30
    """Seconds ECS waits after SIGTERM before SIGKILL (max 120 on Fargate). Default: 30."""
    attachments: Sequence[ServiceAttachment] = ()
    """Shared resources this service uses. Default: none."""
    deployment: DeploymentWait = field(default_factory=DeploymentWait)
    """Whether `pulumi up` waits for the service's deployments. Default: wait, 30 minutes."""
    enable_execute_command: bool = False
    """ECS Exec: the task role gets the SSM channels, the exec log group and the platform key (which encrypts
    sessions); the root filesystem becomes writable, since ECS Exec's agent cannot run on a read-only one.
    Default: false."""
    service_connect: ServiceConnect | None = None
    """Join the cluster's Service Connect namespace (named `http` port with appProtocol http). Default: none."""
    sidecars: Sequence[Mapping[str, Any]] = ()
    """Extra container definitions (e.g. a telemetry collector), held to the main container's rules: non-root,
    read-only root filesystem, unprivileged, no added capabilities; logs go to the service's log group unless
    they bring their own. Not essential unless they say so. Default: none."""
    container_depends_on: Sequence[Mapping[str, str]] = ()
    """`dependsOn` of the main container on sidecars (`{"containerName": ..., "condition": START|HEALTHY|...}`):
    e.g. a telemetry collector starts first and stops last, so no span of the first or last seconds is lost. Each
    must name a sidecar. Default: none."""


class FargateTask:
    """Creates the task's children under `parent`. Not a component: it is part of the service that owns it."""

    def __init__(self, spec: FargateTaskSpec, parent: pulumi.Resource) -> None:
        self.spec = spec
        self._opts = pulumi.ResourceOptions(parent=parent)
        prefix = f"{spec.name_prefix}-{spec.service_name}"
        self.log_group = aws.cloudwatch.LogGroup(
            f"{prefix}-logs",
            name=f"/ecs/{spec.name_prefix}/{spec.service_name}",
            retention_in_days=spec.log_retention_days,
            kms_key_id=spec.log_kms_key_arn,
            opts=self._opts,
        )
        self.service_connect_log_group = None
        if spec.service_connect is not None:
            self.service_connect_log_group = aws.cloudwatch.LogGroup(
                f"{prefix}-connect-logs",
                name=f"/ecs/{spec.name_prefix}/{spec.service_name}/service-connect",
                retention_in_days=spec.log_retention_days,
                kms_key_id=spec.log_kms_key_arn,
                opts=self._opts,
            )
        self.sidecars = [secure_sidecar(i, d, spec.service_name) for i, d in enumerate(spec.sidecars)]
        _check_depends_on(spec.container_depends_on, [sidecar["name"] for sidecar in self.sidecars])
        self.execution_role = self._execution_role(prefix)
        self.task_role = self._task_role(prefix)
        self.security_group = aws.ec2.SecurityGroup(
            f"{prefix}-sg",
            vpc_id=spec.vpc_id,
            description=f"{prefix} tasks: ingress only from named security groups",
            revoke_rules_on_delete=True,
            opts=self._opts,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{prefix}-egress-https",
            security_group_id=self.security_group.id,
            description="HTTPS to AWS APIs (ECR, logs, secrets, SQS) through NAT or endpoints",
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            opts=self._opts,
        )
        self._connect_attachments(prefix)
        self.task_definition = aws.ecs.TaskDefinition(
            f"{prefix}-task",
            family=prefix,
            cpu=str(spec.cpu),
            memory=str(spec.memory),
            network_mode="awsvpc",
            requires_compatibilities=["FARGATE"],
            runtime_platform=aws.ecs.TaskDefinitionRuntimePlatformArgs(
                operating_system_family="LINUX", cpu_architecture=spec.cpu_architecture
            ),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            volumes=self._volumes(),
            container_definitions=self._container_definitions(),
            opts=self._opts,
        )

    # --- IAM ---

    def _all_secrets(self) -> dict[str, pulumi.Input[str]]:
        merged: dict[str, pulumi.Input[str]] = dict(self.spec.secrets)
        for attachment in self.spec.attachments:
            merged.update(attachment.secrets)
        return merged

    def _execution_role(self, prefix: str) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{prefix}-exec-role",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", self.spec.account_id),
            description=f"{prefix}: pull its image, write its logs, read its own secrets",
            opts=self._opts,
        )
        aws.iam.RolePolicyAttachment(
            f"{prefix}-exec-managed",
            role=role.name,
            policy_arn=EXECUTION_MANAGED_POLICY,
            opts=self._opts,
        )
        secret_arns = [arn for a in self.spec.attachments for arn in a.secret_arns]
        secret_arns += [_secret_resource_arn(v) for v in self.spec.secrets.values()]
        secret_arns += [_secret_resource_arn(s["valueFrom"]) for c in self.sidecars for s in c.get("secrets", ())]
        if secret_arns:
            aws.iam.RolePolicy(
                f"{prefix}-exec-secrets",
                role=role.id,
                policy=secret_read_policy(secret_arns),
                opts=self._opts,
            )
        statements = [s for a in self.spec.attachments for s in a.execution_role_statements]
        if statements:
            aws.iam.RolePolicy(
                f"{prefix}-exec-policy", role=role.id, policy=policy_document(statements), opts=self._opts
            )
        return role

    def _task_role(self, prefix: str) -> aws.iam.Role:
        role = aws.iam.Role(
            f"{prefix}-task-role",
            assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com", self.spec.account_id),
            description=f"{prefix}: what the application itself may do",
            opts=self._opts,
        )
        statements: list[pulumi.Input[Mapping[str, Any]]] = [
            s for a in self.spec.attachments for s in a.task_role_statements
        ]
        if self.spec.enable_execute_command:
            statements.extend(self._exec_statements())
        if statements:
            aws.iam.RolePolicy(
                f"{prefix}-task-policy", role=role.id, policy=policy_document(statements), opts=self._opts
            )
        return role

    def _exec_statements(self) -> list[Mapping[str, Any]]:
        spec = self.spec
        exec_logs = pulumi.Output.concat(
            "arn:aws:logs:",
            spec.region,
            ":",
            spec.account_id,
            ":log-group:",
            exec_log_group_name(spec.name_prefix),
            ":*",
        )
        channels = [
            "ssmmessages:CreateControlChannel",
            "ssmmessages:CreateDataChannel",
            "ssmmessages:OpenControlChannel",
            "ssmmessages:OpenDataChannel",
        ]
        return [
            allow(channels, ["*"], sid="EcsExecChannels"),
            allow(["kms:Decrypt"], [spec.log_kms_key_arn], sid="EcsExecSessionKey"),
            allow(["logs:DescribeLogGroups"], ["*"], sid="EcsExecFindLogGroup"),
            allow(
                ["logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
                [exec_logs],
                sid="EcsExecAudit",
            ),
        ]

    # --- Service ---

    def service(
        self,
        *,
        cluster_arn: pulumi.Input[str],
        private_subnet_ids: pulumi.Input[Sequence[str]],
        desired_count: int,
        on_demand_base: int,
        spot_weight: int,
        depends_on: Sequence[pulumi.Resource] = (),
        rollout: Rollout | None = None,
        rollback_alarm_names: Sequence[pulumi.Input[str]] = (),
        lifecycle_hooks: Sequence[aws.ecs.ServiceDeploymentConfigurationLifecycleHookArgs] = (),
        **extra: Any,
    ) -> aws.ecs.Service:
        """The Fargate service running this task: private subnets, no public IP, latest platform, circuit breaker
        with rollback; `rollout` picks the deployment strategy, and with its `rollback_alarms` the alarms named
        here roll a deployment back too. `extra` adds what a kind of service needs (load balancers, discovery,
        ECS Exec)."""
        rollout = rollout or Rollout()
        if rollout.rollback_alarms and rollback_alarm_names:
            extra["alarms"] = aws.ecs.ServiceAlarmsArgs(
                alarm_names=list(rollback_alarm_names), enable=True, rollback=True
            )
        prefix = f"{self.spec.name_prefix}-{self.spec.service_name}"
        wait = self.spec.deployment
        timeout = f"{wait.timeout_minutes}m"
        service = aws.ecs.Service(
            f"{prefix}-service",
            name=prefix,
            cluster=cluster_arn,
            task_definition=self.task_definition.arn,
            desired_count=desired_count,
            capacity_provider_strategies=capacity_strategy(on_demand_base, spot_weight),
            platform_version="LATEST",
            network_configuration=aws.ecs.ServiceNetworkConfigurationArgs(
                subnets=private_subnet_ids,
                security_groups=[self.security_group.id],
                assign_public_ip=False,
            ),
            deployment_circuit_breaker=aws.ecs.ServiceDeploymentCircuitBreakerArgs(enable=True, rollback=True),
            deployment_configuration=rollout.deployment_configuration(lifecycle_hooks),
            deployment_minimum_healthy_percent=100,
            deployment_maximum_percent=200,
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=wait.wait_for_steady_state,
            **self._service_connect_configuration(),
            # Autoscaling owns the desired count once the service exists.
            opts=pulumi.ResourceOptions.merge(
                self._opts,
                pulumi.ResourceOptions(
                    depends_on=list(depends_on),
                    ignore_changes=["desiredCount"],
                    custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout),
                ),
            ),
            **extra,
        )
        if wait.wait_for_steady_state:
            self._fail_on_rollback(service, cluster_arn)
        return service

    def _service_connect_configuration(self) -> dict[str, Any]:
        """`service_connect_configuration` when the service joins the namespace (absent otherwise, so services
        without it plan exactly as before)."""
        spec, connect, log_group = self.spec, self.spec.service_connect, self.service_connect_log_group
        if connect is None or log_group is None:
            return {}
        services = None
        if spec.container_port is not None:
            services = [
                aws.ecs.ServiceServiceConnectConfigurationServiceArgs(
                    port_name=SERVICE_CONNECT_PORT_NAME,
                    discovery_name=service_connect_discovery_name(spec.name_prefix, spec.service_name),
                    client_alias=[
                        aws.ecs.ServiceServiceConnectConfigurationServiceClientAliasArgs(
                            port=spec.container_port, dns_name=spec.service_name
                        )
                    ],
                    timeout=aws.ecs.ServiceServiceConnectConfigurationServiceTimeoutArgs(
                        per_request_timeout_seconds=connect.request_timeout_seconds
                    ),
                )
            ]
        return {
            "service_connect_configuration": aws.ecs.ServiceServiceConnectConfigurationArgs(
                enabled=True,
                namespace=connect.namespace_arn,
                log_configuration=aws.ecs.ServiceServiceConnectConfigurationLogConfigurationArgs(
                    log_driver="awslogs",
                    options={
                        "awslogs-group": log_group.name,
                        "awslogs-region": spec.region,
                        "awslogs-stream-prefix": "service-connect",
                    },
                ),
                # Query strings can carry tokens: they stay out of the access log.
                access_log_configuration=aws.ecs.ServiceServiceConnectConfigurationAccessLogConfigurationArgs(
                    format="JSON", include_query_parameters="DISABLED"
                ),
                services=services,
            )
        }

    def _fail_on_rollback(self, service: aws.ecs.Service, cluster_arn: pulumi.Input[str]) -> None:
        """A circuit-breaker rollback also ends in a steady state, and the provider then reports success
        (hashicorp/terraform-provider-aws#20858): read the service back and fail unless it runs our revision."""
        live = aws.ecs.get_service_output(
            cluster_arn=cluster_arn,
            service_name=service.name,
            opts=pulumi.InvokeOutputOptions(parent=service, depends_on=[service]),
        )
        # Compare with the revision we registered: after a rollback the provider reads the service back, so the
        # service's own `task_definition` output already names the old revision.
        pulumi.Output.all(service.name, self.task_definition.arn, live.task_definition).apply(
            lambda values: require_revision_running(*values)
        )

    def scaling_target(
        self, service: aws.ecs.Service, cluster_name: pulumi.Input[str], min_count: int, max_count: int
    ) -> aws.appautoscaling.Target:
        prefix = f"{self.spec.name_prefix}-{self.spec.service_name}"
        return aws.appautoscaling.Target(
            f"{prefix}-scaling-target",
            min_capacity=min_count,
            max_capacity=max_count,
            resource_id=pulumi.Output.concat("service/", cluster_name, "/", service.name),
            scalable_dimension="ecs:service:DesiredCount",
            service_namespace="ecs",
            opts=self._opts,
        )

    def add_task_role_statements(self, name: str, statements: Sequence[pulumi.Input[Mapping[str, Any]]]) -> None:
        """Grant the application more, scoped permissions (e.g. its queues)."""
        prefix = f"{self.spec.name_prefix}-{self.spec.service_name}"
        aws.iam.RolePolicy(
            f"{prefix}-task-{name}", role=self.task_role.id, policy=policy_document(statements), opts=self._opts
        )

    # --- Network ---

    def _connect_attachments(self, prefix: str) -> None:
        for attachment in self.spec.attachments:
            if attachment.peer_security_group_id is None or attachment.port is None:
                continue
            allow_between(
                f"{prefix}-to-{attachment.name}",
                source_security_group_id=self.security_group.id,
                target_security_group_id=attachment.peer_security_group_id,
                port=attachment.port,
                description=f"{prefix} to {attachment.name}",
                opts=self._opts,
            )

    # --- Task definition ---

    def _volumes(self) -> list[Any]:
        volumes: list[Any] = [aws.ecs.TaskDefinitionVolumeArgs(name=TMP_VOLUME)]
        for attachment in self.spec.attachments:
            volumes.extend(attachment.volumes)
        return volumes

    def _container_definitions(self) -> pulumi.Output[str]:
        spec = self.spec
        mounts = [MountPoint(TMP_VOLUME, "/tmp")]  # noqa: S108 (the one writable scratch path)
        mounts += [m for a in spec.attachments for m in a.mount_points]
        environment: dict[str, pulumi.Input[str]] = dict(spec.environment)
        for attachment in spec.attachments:
            environment.update(attachment.environment)
        container: dict[str, Any] = {
            "name": spec.service_name,
            "image": spec.image,
            "essential": True,
            "user": RUN_AS_USER,
            "readonlyRootFilesystem": not spec.enable_execute_command,
            "privileged": False,
            "memoryReservation": math.floor(spec.memory * 0.8),
            "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
            "environment": [{"name": k, "value": environment[k]} for k in sorted(environment)],
            "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(self._all_secrets().items())],
            "mountPoints": [
                {"sourceVolume": m.volume, "containerPath": m.path, "readOnly": m.read_only} for m in mounts
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": self.log_group.name,
                    "awslogs-region": spec.region,
                    "awslogs-stream-prefix": "ecs",
                    "mode": "non-blocking",
                    "max-buffer-size": "25m",
                },
            },
            "stopTimeout": spec.stop_timeout_seconds,
        }
        if spec.container_port is not None:
            mapping: dict[str, Any] = {"containerPort": spec.container_port, "protocol": "tcp", "name": "http"}
            if spec.service_connect is not None:
                mapping["appProtocol"] = "http"  # HTTP-aware proxy: per-request timeouts, HTTP metrics
            container["portMappings"] = [mapping]
        if spec.container_depends_on:
            container["dependsOn"] = [dict(d) for d in spec.container_depends_on]
        if spec.command is not None:
            container["command"] = list(spec.command)
        if spec.health_check_command is not None:
            # The seed's timings: every 30 s, 5 s timeout, 3 retries, 60 s to start.
            container["healthCheck"] = {
                "command": list(spec.health_check_command),
                "interval": 30,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 60,
            }
        sidecars = [self._with_log_configuration(sidecar) for sidecar in self.sidecars]
        return pulumi.Output.json_dumps([container, *sidecars])

    def _with_log_configuration(self, sidecar: dict[str, Any]) -> dict[str, Any]:
        if "logConfiguration" in sidecar:
            return sidecar
        options = {
            "awslogs-group": self.log_group.name,
            "awslogs-region": self.spec.region,
            "awslogs-stream-prefix": sidecar["name"],
            "mode": "non-blocking",
            "max-buffer-size": "25m",
        }
        return {**sidecar, "logConfiguration": {"logDriver": "awslogs", "options": options}}


class SidecarError(ValueError):
    """A sidecar container definition breaks the task's security rules."""


def secure_sidecar(index: int, definition: Mapping[str, Any], main_container: str) -> dict[str, Any]:
    """`definition` with the main container's secure defaults filled in, or SidecarError naming the key.

    Defaults: not essential, user 1001:1001, read-only root filesystem, unprivileged, every capability dropped.
    Refused: running as root, a writable root filesystem, privileged, added capabilities, a name clash.
    """
    name = definition.get("name")
    where = f"sidecars[{index}]" + (f" ({name})" if isinstance(name, str) else "")
    problems: list[str] = []
    if not isinstance(name, str) or not name or name == main_container:
        problems.append(f"{where}.name: {name!r}; allowed: a container name other than {main_container!r}")
    if not isinstance(definition.get("image"), str):
        problems.append(f"{where}.image: missing; allowed: an image reference (pinned by digest)")
    user = definition.get("user", RUN_AS_USER)
    if not isinstance(user, str) or _is_root(user):
        problems.append(f"{where}.user: {user!r} runs as root; allowed: a non-root uid such as {RUN_AS_USER}")
    if definition.get("readonlyRootFilesystem", True) is not True:
        problems.append(f"{where}.readonlyRootFilesystem: false; allowed: true (mount a volume where it must write)")
    if definition.get("privileged", False) is not False:
        problems.append(f"{where}.privileged: true; allowed: false")
    linux = definition.get("linuxParameters") or {}
    if (linux.get("capabilities") or {}).get("add"):
        problems.append(f"{where}.linuxParameters.capabilities.add: set; allowed: none (every capability is dropped)")
    if problems:
        raise SidecarError("invalid sidecar:\n" + "\n".join(f"  - {p}" for p in problems))
    return {
        "essential": False,
        **definition,
        "user": user,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {**linux, "capabilities": {"drop": ["ALL"]}},
    }


def _is_root(user: str) -> bool:
    """uid 0 in any spelling (`0`, `00`, `root`, `0:0`, ` 0 `) or an empty uid (`:1000`, the image's default)."""
    uid = user.strip().split(":", 1)[0].strip().lstrip("+")
    return uid in ("", "root") or (uid.isdigit() and int(uid) == 0)


def service_connect_discovery_name(name_prefix: str, service_name: str) -> str:
    """Unique per stack (`<app>-<env>-<name>`): Service Connect's TargetDiscoveryName metrics are account-wide, and
    Cloud Map names share the namespace with the HTTP API's `<name>-entry` registrations. Callers still use the
    short name (`http://<name>:<port>`), the client alias."""
    return f"{name_prefix}-{service_name}"


CONTAINER_CONDITIONS = ("START", "COMPLETE", "SUCCESS", "HEALTHY")


def _check_depends_on(depends_on: Sequence[Mapping[str, str]], sidecar_names: Sequence[str]) -> None:
    problems = [
        f"container_depends_on[{i}]: {dict(d)!r}; allowed: a sidecar's containerName ({', '.join(sidecar_names) or 'none'})"
        f" and a condition of {', '.join(CONTAINER_CONDITIONS)}"
        for i, d in enumerate(depends_on)
        if d.get("containerName") not in sidecar_names or d.get("condition") not in CONTAINER_CONDITIONS
    ]
    if problems:
        raise ValueError("invalid FargateTaskSpec:\n" + "\n".join(f"  - {p}" for p in problems))


class DeploymentRolledBack(Exception):
    """The service settled on another task definition than the one `pulumi up` deployed."""


def require_revision_running(service_name: str, wanted: str | None, running: str | None) -> None:
    """Raise unless the service runs `wanted`. Unknown values (a preview, the offline plan) are not judged."""
    if not wanted or not running or wanted == running:
        return
    raise DeploymentRolledBack(
        f"ECS service {service_name} is running {running}, not the deployed {wanted}: the deployment circuit "
        "breaker rolled it back (its tasks failed to start or stay healthy). See the service's events and the "
        "stopped tasks' reasons; the previous revision is still serving."
    )


def exec_log_group_name(name_prefix: str) -> str:
    """Where the cluster audits ECS Exec sessions of `<app>-<env>`."""
    return f"/ecs/{name_prefix}/exec"


def allow_between(
    name: str,
    *,
    source_security_group_id: pulumi.Input[str],
    target_security_group_id: pulumi.Input[str],
    port: int,
    description: str,
    opts: pulumi.ResourceOptions,
) -> None:
    """SG-to-SG: egress from source to target and ingress on target from source, on one TCP port."""
    aws.vpc.SecurityGroupEgressRule(
        f"{name}-egress",
        security_group_id=source_security_group_id,
        referenced_security_group_id=target_security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=description,
        opts=opts,
    )
    aws.vpc.SecurityGroupIngressRule(
        f"{name}-ingress",
        security_group_id=target_security_group_id,
        referenced_security_group_id=source_security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        description=description,
        opts=opts,
    )


def _secret_resource_arn(value_from: pulumi.Input[str]) -> pulumi.Output[str]:
    """`arn:...:secret:name-AbCdEf:json-key::` -> the secret's ARN (what IAM scopes on)."""
    return pulumi.Output.from_input(value_from).apply(
        lambda arn: ":".join(arn.split(":")[:7]) if ":secret:" in arn else arn
    )


def secret_read_policy(arns: Sequence[pulumi.Input[str]]) -> pulumi.Output[str]:
    """Read exactly these Secrets Manager secrets and SSM parameters, nothing else."""

    def document(values: list[str]) -> str:
        secrets = sorted({a for a in values if ":secretsmanager:" in a})
        parameters = sorted({a for a in values if ":ssm:" in a})
        statements = []
        if secrets:
            statements.append(allow(["secretsmanager:GetSecretValue"], secrets, sid="ReadOwnSecrets"))
        if parameters:
            statements.append(allow(["ssm:GetParameters"], parameters, sid="ReadOwnParameters"))
        return json.dumps({"Version": "2012-10-17", "Statement": statements})

    return pulumi.Output.all(*arns).apply(lambda values: document(list(values)))


def capacity_strategy(on_demand_base: int, spot_weight: int) -> list[aws.ecs.ServiceCapacityProviderStrategyArgs]:
    """On-demand FARGATE for the first `on_demand_base` tasks, then FARGATE 1 : FARGATE_SPOT `spot_weight`."""
    strategy = [aws.ecs.ServiceCapacityProviderStrategyArgs(capacity_provider="FARGATE", base=on_demand_base, weight=1)]
    if spot_weight:
        strategy.append(
            aws.ecs.ServiceCapacityProviderStrategyArgs(capacity_provider="FARGATE_SPOT", weight=spot_weight)
        )
    return strategy
