"""Cache: an ElastiCache replication group (Valkey by default) with TLS, AUTH and KMS encryption at rest.

The seed's `ContainerDatabaseIntegration` cache half, as a replication group instead of one CfnCacheCluster so
prod can fail over. The AUTH token is generated once (`pulumi_random`, kept in state) into Secrets Manager.
Its security group has no rules of its own: each service that calls `attachment()` gets an SG-to-SG rule on
6379, the endpoint in `environment` and the token only in `secrets`.

Engine: Valkey, the Linux Foundation fork of Redis OSS 7.2. ElastiCache prices it about 20% below Redis OSS,
it speaks the same protocol (the services' redis-py client works unchanged) and AWS ships new versions there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.aws_limits import CACHE_NODE_FAMILIES, is_cache_node_type
from components.ecs_task import ServiceAttachment
from components.kms import shared_or_own_key
from components.monitoring import alarm, graph_widget

REDIS_PORT = 6379
ENGINE_MAJORS: dict[str, tuple[int, ...]] = {"valkey": (7, 8, 9), "redis": (6, 7)}
# The seed's windows; maintenance starts when the snapshot window ends, so they never overlap.
SNAPSHOT_WINDOW = "03:00-05:00"
MAINTENANCE_WINDOW = "sun:05:00-sun:07:00"
CPU_ALARM_PERCENT = 80
MEMORY_ALARM_PERCENT = 80

Engine = Literal["valkey", "redis"]


@dataclass(frozen=True)
class CacheArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    vpc_id: pulumi.Input[str]
    """VPC of the security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets of the cache subnet group."""
    account_id: pulumi.Input[str]
    """Account that administers the KMS key."""
    region: str
    """Region of the dashboard's metrics."""
    topic_arn: pulumi.Input[str]
    """Alert topic every alarm notifies."""
    log_kms_key_arn: pulumi.Input[str]
    """KMS key of the slow-log/engine-log group (the platform key)."""
    node_type: str = "cache.t4g.micro"
    """Node type, `cache.<family>.<size>` (seed: t3 micro dev, r6g large prod). Default: cache.t4g.micro."""
    engine: Engine = "valkey"
    """valkey or redis (Redis OSS). Default: valkey."""
    engine_version: str = "8.2"
    """Engine version, `major.minor` (valkey 7.2+, redis 6.2/7.x). Default: 8.2."""
    num_cache_clusters: int = 2
    """Nodes: one primary plus replicas, 1-6. Default: 2."""
    multi_az: bool = True
    """Automatic failover to a replica in another AZ; needs 2+ nodes (seed: one node). Default: true."""
    snapshot_retention_days: int = 7
    """Daily snapshots kept, 0-35 (seed: 7 prod / 1 dev). Default: 7."""
    log_retention_days: int = 30
    """Retention of the slow-log and engine-log group. Default: 30."""
    deletion_protection: bool = True
    """Take a final snapshot on delete and retain the KMS key it is encrypted with. Default: true."""
    kms_key_arn: pulumi.Input[str] | None = None
    """The stack's shared KMS key for data and snapshots at rest (`kms.sharedKey`). Default: none (its own key)."""
    own_dashboard: bool = True
    """Its own CloudWatch dashboard; false when the platform dashboard shows its widgets (one dashboard, $3/month
    less each). Default: true."""

    def __post_init__(self) -> None:
        _validate(self)


def _validate(args: CacheArgs) -> None:
    if not is_cache_node_type(args.node_type):
        raise ValueError(
            f"node_type={args.node_type!r} is not cache.<family>.<size> with a known family; "
            f"families: {', '.join(CACHE_NODE_FAMILIES)}"
        )
    if args.engine not in ENGINE_MAJORS:
        raise ValueError(f"engine={args.engine!r} must be one of {sorted(ENGINE_MAJORS)}")
    version = re.fullmatch(r"(\d+)\.\d+", args.engine_version)
    if not version or int(version.group(1)) not in ENGINE_MAJORS[args.engine]:
        raise ValueError(
            f"engine_version={args.engine_version!r} must be major.minor with a major of "
            f"{ENGINE_MAJORS[args.engine]} for engine={args.engine!r}"
        )
    if not 1 <= args.num_cache_clusters <= 6:
        raise ValueError(f"num_cache_clusters={args.num_cache_clusters} must be 1-6")
    if args.multi_az and args.num_cache_clusters < 2:
        raise ValueError(
            f"multi_az=True (automatic failover) needs num_cache_clusters >= 2 "
            f"(got {args.num_cache_clusters}); add a replica or set multi_az=False"
        )
    if not 0 <= args.snapshot_retention_days <= 35:
        raise ValueError(f"snapshot_retention_days={args.snapshot_retention_days} must be 0-35")


class Cache(pulumi.ComponentResource):
    primary_endpoint_address: pulumi.Output[str]
    """Primary endpoint host (follows failover)."""
    reader_endpoint_address: pulumi.Output[str]
    """Reader endpoint host (spreads reads over replicas)."""
    auth_token_secret_arn: pulumi.Output[str]
    """Secrets Manager secret holding the AUTH token (plain string)."""
    security_group_id: pulumi.Output[str]
    """Cache security group; services get 6379 ingress to it through `attachment()`."""
    dashboard_name: pulumi.Output[str] | None
    """CloudWatch dashboard name; None without its own dashboard (`own_dashboard` false)."""
    dashboard_widgets: pulumi.Output[list[dict[str, Any]]]
    """Its dashboard widgets, for a platform dashboard that shows every component."""

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:cache:Cache", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        group_id = f"{args.name_prefix}-cache"
        # A final snapshot stays restorable only while its key exists.
        self.key, key_arn = shared_or_own_key(
            f"{name}-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: cache data and snapshots at rest",
            account_id=args.account_id,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.deletion_protection),
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} cache: 6379 only from services that use it",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        subnet_group = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            description=f"{args.name_prefix} cache private subnets",
            subnet_ids=args.private_subnet_ids,
            opts=self._child,
        )
        token = self._auth_token(name, args)
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/elasticache/{args.name_prefix}/cache",
            retention_in_days=args.log_retention_days,
            kms_key_id=args.log_kms_key_arn,
            opts=self._child,
        )
        self.replication_group = aws.elasticache.ReplicationGroup(
            f"{name}-group",
            replication_group_id=group_id,
            description=f"{args.name_prefix} cache",
            engine=args.engine,
            engine_version=args.engine_version,
            node_type=args.node_type,
            num_cache_clusters=args.num_cache_clusters,
            automatic_failover_enabled=args.multi_az,
            multi_az_enabled=args.multi_az,
            port=REDIS_PORT,
            subnet_group_name=subnet_group.name,
            security_group_ids=[self.security_group.id],
            at_rest_encryption_enabled=True,
            kms_key_id=key_arn,
            transit_encryption_enabled=True,
            transit_encryption_mode="required",
            auth_token=token.result,
            snapshot_retention_limit=args.snapshot_retention_days,
            snapshot_window=SNAPSHOT_WINDOW,
            maintenance_window=MAINTENANCE_WINDOW,
            final_snapshot_identifier=f"{group_id}-final" if args.deletion_protection else None,
            auto_minor_version_upgrade=True,
            log_delivery_configurations=[
                aws.elasticache.ReplicationGroupLogDeliveryConfigurationArgs(
                    destination=log_group.name,
                    destination_type="cloudwatch-logs",
                    log_format="json",
                    log_type=kind,
                )
                for kind in ("slow-log", "engine-log")
            ],
            tags={"Name": group_id},
            opts=self._child,
        )
        self.primary_endpoint_address = self.replication_group.primary_endpoint_address
        self.reader_endpoint_address = self.replication_group.reader_endpoint_address
        self.security_group_id = self.security_group.id
        self._monitoring(name, args, group_id)
        self.register_outputs(
            {
                "primary_endpoint_address": self.primary_endpoint_address,
                "auth_token_secret_arn": self.auth_token_secret_arn,
                "security_group_id": self.security_group_id,
                "dashboard_name": self.dashboard_name,
            }
        )

    def attachment(self) -> ServiceAttachment:
        """The endpoint in `environment`, the AUTH token only in `secrets`, 6379 from the service."""
        return ServiceAttachment(
            name=self._name,
            environment={
                "REDIS_HOST": self.replication_group.primary_endpoint_address,
                "REDIS_PORT": str(REDIS_PORT),
                "REDIS_TLS": "true",
            },
            secrets={"REDIS_AUTH_TOKEN": self.auth_token_secret_arn},
            secret_arns=[self.auth_token_secret_arn],
            peer_security_group_id=self.security_group.id,
            port=REDIS_PORT,
        )

    # --- AUTH token ---

    def _auth_token(self, name: str, args: CacheArgs) -> random.RandomPassword:
        # Generated once and kept (encrypted) in the stack state, so `pulumi up` never rotates it by accident.
        # Letters and digits only: ElastiCache allows few symbols and clients put the token in URLs.
        token = random.RandomPassword(
            f"{name}-auth-token",
            length=64,
            special=False,
            min_upper=1,
            min_lower=1,
            min_numeric=1,
            opts=self._child,
        )
        # The AWS-managed key (no kms_key_id): task execution roles may read the secret without a KMS grant.
        secret = aws.secretsmanager.Secret(
            f"{name}-auth-token-secret",
            name_prefix=f"{args.name_prefix}/cache-auth-token-",
            description=f"{args.name_prefix} cache AUTH token",
            recovery_window_in_days=30 if args.deletion_protection else 7,
            opts=self._child,
        )
        aws.secretsmanager.SecretVersion(
            f"{name}-auth-token-version",
            secret_id=secret.id,
            secret_string=token.result,
            opts=self._child,
        )
        self.auth_token_secret_arn = secret.arn
        return token

    # --- Monitoring ---

    def _monitoring(self, name: str, args: CacheArgs, group_id: str) -> None:
        # Engine metrics are per node; ElastiCache names a group's nodes <group id>-001, -002, ...
        nodes = [f"{group_id}-{index:03d}" for index in range(1, args.num_cache_clusters + 1)]
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        for node in nodes:
            short = f"{name}-{node.rsplit('-', 1)[1]}"
            common: dict[str, Any] = {
                "topic_arn": args.topic_arn, "namespace": "AWS/ElastiCache",
                "dimensions": {"CacheClusterId": node}, "opts": self._child,
            }  # fmt: skip
            self.alarms += [
                alarm(f"{short}-cpu-high", description=f"{node}: engine CPU utilization is high",
                      metric_name="EngineCPUUtilization", threshold=CPU_ALARM_PERCENT, **common),
                alarm(f"{short}-memory-high", description=f"{node}: memory usage is high",
                      metric_name="DatabaseMemoryUsagePercentage", threshold=MEMORY_ALARM_PERCENT, **common),
                alarm(f"{short}-evictions", description=f"{node}: keys are being evicted (memory full)",
                      metric_name="Evictions", statistic="Sum", threshold=0, evaluation_periods=1,
                      treat_missing_data="notBreaching", **common),
            ]  # fmt: skip
        self.dashboard_widgets = pulumi.Output.from_input(cache_widgets(args.region, nodes))
        self.dashboard: aws.cloudwatch.Dashboard | None = None
        self.dashboard_name = None
        if args.own_dashboard:
            self.dashboard = aws.cloudwatch.Dashboard(
                f"{name}-dashboard",
                dashboard_name=f"{args.name_prefix}-cache",
                dashboard_body=self.dashboard_widgets.apply(lambda widgets: json.dumps({"widgets": widgets})),
                opts=self._child,
            )
            self.dashboard_name = self.dashboard.dashboard_name


def cache_dashboard_body(region: str, nodes: Sequence[str]) -> str:
    return json.dumps({"widgets": cache_widgets(region, nodes)})


def cache_widgets(region: str, nodes: Sequence[str]) -> list[dict[str, Any]]:
    """Per node: engine CPU, memory usage, evictions and connections."""
    widgets: list[dict[str, Any]] = [
        graph_widget(
            title,
            region,
            [["AWS/ElastiCache", metric, "CacheClusterId", node, {"stat": stat}] for node in nodes],
        )
        for title, metric, stat in (
            ("Cache engine CPU %", "EngineCPUUtilization", "Average"),
            ("Cache memory usage %", "DatabaseMemoryUsagePercentage", "Average"),
            ("Cache evictions", "Evictions", "Sum"),
            ("Cache connections", "CurrConnections", "Maximum"),
        )
    ]
    for widget in widgets:
        widget.update({"width": 12, "height": 6})
    return widgets
