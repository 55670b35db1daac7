"""SharedStorage: an encrypted EFS file system that services mount through one non-root access point.

The seed's `ContainerPersistentStorage`: file system, KMS key, lifecycle, backups, security group, access
point, mount targets, dashboard and burst-credit alarm. Its security group has no rules of its own: each service
that calls `attachment()` gets an SG-to-SG NFS rule, IAM mount rights on this file system only, and the volume.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components.ecs_task import MountPoint, ServiceAttachment
from components.iam import allow, deny_insecure_transport, policy_document
from components.kms import shared_or_own_key
from components.monitoring import alarm, graph_widget

NFS_PORT = 2049
ACCESS_POINT_PATH = "/shared"
OWNER_ID = 1001  # the non-root user every container runs as (components.ecs_task.RUN_AS_USER)
LIFECYCLE_DAYS = (1, 7, 14, 30, 60, 90, 180, 270, 365)
# The seed's alarm: fewer than 1e9 burst credit bytes left over two periods.
BURST_CREDIT_ALARM_BYTES = 1_000_000_000

PerformanceMode = Literal["generalPurpose", "maxIO"]
ThroughputMode = Literal["bursting", "provisioned", "elastic"]


@dataclass(frozen=True)
class SharedStorageArgs:
    name_prefix: str
    """`<app>-<env>`; names derive from it."""
    vpc_id: pulumi.Input[str]
    """VPC of the security group."""
    private_subnet_ids: pulumi.Input[Sequence[str]]
    """Private subnets; one mount target in each."""
    subnet_count: int
    """How many private subnets there are (the network's `max_azs`): apply callbacks cannot create resources."""
    account_id: pulumi.Input[str]
    """Account that administers the KMS key."""
    region: str
    """Region of the dashboard's metrics."""
    topic_arn: pulumi.Input[str]
    """Alert topic every alarm notifies."""
    performance_mode: PerformanceMode = "generalPurpose"
    """EFS performance mode (AWS advises generalPurpose; maxIO adds latency). Default: generalPurpose."""
    throughput_mode: ThroughputMode = "elastic"
    """bursting, provisioned (needs `provisioned_throughput_mibps`) or elastic. Default: elastic."""
    provisioned_throughput_mibps: float | None = None
    """MiB/s; only with throughput_mode provisioned (seed prod: 100). Default: none."""
    transition_to_ia_days: int = 30
    """Days without access before files move to Infrequent Access (seed: 30). Default: 30."""
    transition_to_archive_days: int | None = 90
    """Days without access before files move to Archive (seed: 90); EFS allows Archive only with elastic
    throughput and generalPurpose performance, so set none for the others. Default: 90."""
    deletion_protection: bool = True
    """Keep the file system and its key in AWS when the stack deletes them. Default: true."""
    kms_key_arn: pulumi.Input[str] | None = None
    """The stack's shared KMS key for the file system (`kms.sharedKey`). Default: none (its own key)."""
    own_dashboard: bool = True
    """Its own CloudWatch dashboard; false when the platform dashboard shows its widgets (one dashboard, $3/month
    less each). Default: true."""

    def __post_init__(self) -> None:
        _validate(self)


def _validate(args: SharedStorageArgs) -> None:
    if args.subnet_count < 1:
        raise ValueError(f"subnet_count={args.subnet_count!r} must be at least 1")
    if isinstance(args.private_subnet_ids, list | tuple):
        check_subnet_count(args.private_subnet_ids, args.subnet_count)
    mode, mibps = args.throughput_mode, args.provisioned_throughput_mibps
    if mode == "provisioned" and (mibps is None or mibps <= 0):
        raise ValueError(f"throughput_mode='provisioned' needs provisioned_throughput_mibps > 0 (got {mibps!r})")
    if mode != "provisioned" and mibps is not None:
        raise ValueError(
            f"provisioned_throughput_mibps={mibps!r} is only allowed with throughput_mode='provisioned' "
            f"(got throughput_mode={mode!r})"
        )
    if args.performance_mode == "maxIO" and mode == "elastic":
        raise ValueError(
            "performance_mode='maxIO' does not support throughput_mode='elastic'; use bursting or provisioned"
        )
    if args.transition_to_ia_days not in LIFECYCLE_DAYS:
        raise ValueError(f"transition_to_ia_days={args.transition_to_ia_days!r} must be one of {LIFECYCLE_DAYS}")
    archive = args.transition_to_archive_days
    if archive is None:
        return
    if archive not in LIFECYCLE_DAYS or archive <= args.transition_to_ia_days:
        raise ValueError(
            f"transition_to_archive_days={archive!r} must be one of {LIFECYCLE_DAYS} and later than "
            f"transition_to_ia_days={args.transition_to_ia_days!r}"
        )
    if mode != "elastic" or args.performance_mode != "generalPurpose":
        raise ValueError(
            f"transition_to_archive_days={archive!r} needs throughput_mode='elastic' and "
            f"performance_mode='generalPurpose' (got {mode!r}, {args.performance_mode!r}); set it to None"
        )


class SharedStorage(pulumi.ComponentResource):
    file_system_id: pulumi.Output[str]
    """EFS file system id."""
    file_system_arn: pulumi.Output[str]
    """EFS file system ARN (what task roles are granted on)."""
    access_point_id: pulumi.Output[str]
    """Access point id (`/shared`, uid/gid 1001)."""
    access_point_arn: pulumi.Output[str]
    """Access point ARN (the IAM condition on mounts)."""
    security_group_id: pulumi.Output[str]
    """Mount targets' security group; services get NFS ingress to it through `attachment()`."""
    dashboard_name: pulumi.Output[str] | None
    """CloudWatch dashboard name; None without its own dashboard (`own_dashboard` false)."""
    dashboard_widgets: pulumi.Output[list[dict[str, Any]]]
    """Its dashboard widgets, for a platform dashboard that shows every component."""

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:storage:SharedStorage", name, None, opts)
        self._name = name
        self._child = pulumi.ResourceOptions(parent=self)
        # Retained data must stay readable: the key is retained with the file system.
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=args.deletion_protection)
        self.key, key_arn = shared_or_own_key(
            f"{name}-key",
            args.kms_key_arn,
            description=f"{args.name_prefix}: shared EFS file system",
            account_id=args.account_id,
            region=args.region,
            opts=kept,
        )
        self.file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            kms_key_id=key_arn,
            performance_mode=args.performance_mode,
            throughput_mode=args.throughput_mode,
            provisioned_throughput_in_mibps=args.provisioned_throughput_mibps,
            lifecycle_policies=_lifecycle_policies(args),
            tags={"Name": f"{args.name_prefix}-shared-storage"},
            opts=kept,
        )
        aws.efs.BackupPolicy(
            f"{name}-backup",
            file_system_id=self.file_system.id,
            backup_policy=aws.efs.BackupPolicyBackupPolicyArgs(status="ENABLED"),
            opts=self._child,
        )
        aws.efs.FileSystemPolicy(
            f"{name}-policy",
            file_system_id=self.file_system.id,
            policy=policy_document([deny_insecure_transport("*", self.file_system.arn)]),
            opts=self._child,
        )
        self._network(name, args)
        self.access_point = aws.efs.AccessPoint(
            f"{name}-access-point",
            file_system_id=self.file_system.id,
            root_directory=aws.efs.AccessPointRootDirectoryArgs(
                path=ACCESS_POINT_PATH,
                creation_info=aws.efs.AccessPointRootDirectoryCreationInfoArgs(
                    owner_uid=OWNER_ID, owner_gid=OWNER_ID, permissions="755"
                ),
            ),
            posix_user=aws.efs.AccessPointPosixUserArgs(uid=OWNER_ID, gid=OWNER_ID),
            tags={"Name": f"{args.name_prefix}-shared"},
            opts=self._child,
        )
        self._monitoring(name, args)
        self.file_system_id = self.file_system.id
        self.file_system_arn = self.file_system.arn
        self.access_point_id = self.access_point.id
        self.access_point_arn = self.access_point.arn
        self.security_group_id = self.security_group.id
        self.register_outputs(
            {
                "file_system_id": self.file_system_id,
                "access_point_id": self.access_point_id,
                "security_group_id": self.security_group_id,
                "dashboard_name": self.dashboard_name,
            }
        )

    def attachment(self, mount_path: str = "/mnt/shared", read_only: bool = False) -> ServiceAttachment:
        """What a service needs to mount the access point at `mount_path` over TLS with its task role."""
        if not mount_path.startswith("/") or mount_path in ("/", "/tmp"):  # noqa: S108 (refusing it)
            raise ValueError(f"mount_path={mount_path!r} must be an absolute path other than / and /tmp")
        actions = ["elasticfilesystem:ClientMount"] if read_only else [
            "elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"
        ]  # fmt: skip
        statement = allow(actions, [self.file_system.arn], sid="MountSharedStorage")
        statement["Condition"] = {"StringEquals": {"elasticfilesystem:AccessPointArn": self.access_point.arn}}
        volume = aws.ecs.TaskDefinitionVolumeArgs(
            name=self._name,
            efs_volume_configuration=aws.ecs.TaskDefinitionVolumeEfsVolumeConfigurationArgs(
                file_system_id=self.file_system.id,
                root_directory="/",  # the access point's root (/shared) is what the task sees as /
                transit_encryption="ENABLED",
                authorization_config=aws.ecs.TaskDefinitionVolumeEfsVolumeConfigurationAuthorizationConfigArgs(
                    access_point_id=self.access_point.id, iam="ENABLED"
                ),
            ),
        )
        return ServiceAttachment(
            name=self._name,
            environment={"STORAGE_PATH": mount_path},
            volumes=[volume],
            mount_points=[MountPoint(self._name, mount_path, read_only)],
            task_role_statements=[statement],
            peer_security_group_id=self.security_group.id,
            port=NFS_PORT,
        )

    # --- Network ---

    def _network(self, name: str, args: SharedStorageArgs) -> None:
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            description=f"{args.name_prefix} EFS: NFS only from services that mount it",
            revoke_rules_on_delete=True,
            opts=self._child,
        )
        subnet_ids = pulumi.Output.from_input(args.private_subnet_ids).apply(
            lambda ids: check_subnet_count(ids, args.subnet_count)
        )
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-mount-{index}",
                file_system_id=self.file_system.id,
                subnet_id=subnet_ids.apply(lambda ids, i=index: ids[i]),
                security_groups=[self.security_group.id],
                opts=self._child,
            )
            for index in range(args.subnet_count)
        ]

    # --- Monitoring ---

    def _monitoring(self, name: str, args: SharedStorageArgs) -> None:
        dimensions = {"FileSystemId": self.file_system.id}
        self.alarms: list[aws.cloudwatch.MetricAlarm] = []
        # Only bursting file systems spend burst credits; provisioned and elastic ones never run out.
        if args.throughput_mode == "bursting":
            self.alarms.append(
                alarm(
                    f"{name}-burst-credits-low",
                    topic_arn=args.topic_arn,
                    description=f"{args.name_prefix} EFS: burst credit balance is low",
                    namespace="AWS/EFS",
                    metric_name="BurstCreditBalance",
                    dimensions=dimensions,
                    threshold=BURST_CREDIT_ALARM_BYTES,
                    comparison="LessThanThreshold",
                    opts=self._child,
                )
            )
        self.dashboard_widgets = self.file_system.id.apply(lambda fs_id: efs_widgets(args.region, fs_id))
        self.dashboard: aws.cloudwatch.Dashboard | None = None
        self.dashboard_name = None
        if args.own_dashboard:
            self.dashboard = aws.cloudwatch.Dashboard(
                f"{name}-dashboard",
                dashboard_name=f"{args.name_prefix}-efs",
                dashboard_body=self.dashboard_widgets.apply(lambda widgets: json.dumps({"widgets": widgets})),
                opts=self._child,
            )
            self.dashboard_name = self.dashboard.dashboard_name


def _lifecycle_policies(args: SharedStorageArgs) -> list[aws.efs.FileSystemLifecyclePolicyArgs]:
    policy = aws.efs.FileSystemLifecyclePolicyArgs
    policies = [policy(transition_to_ia=f"AFTER_{args.transition_to_ia_days}_DAY{_plural(args.transition_to_ia_days)}")]
    if args.transition_to_archive_days is not None:
        days = args.transition_to_archive_days
        policies.append(policy(transition_to_archive=f"AFTER_{days}_DAY{_plural(days)}"))
    policies.append(policy(transition_to_primary_storage_class="AFTER_1_ACCESS"))
    return policies


def _plural(days: int) -> str:
    return "" if days == 1 else "S"


def check_subnet_count(subnet_ids: Sequence[str], count: int) -> list[str]:
    """The subnets, if there are exactly `count` of them (a mount target per subnet, none missing)."""
    if len(subnet_ids) != count:
        raise ValueError(f"subnet_count={count} but private_subnet_ids has {len(subnet_ids)} subnets; make them agree")
    return list(subnet_ids)


def efs_dashboard_body(region: str, file_system_id: str) -> str:
    return json.dumps({"widgets": efs_widgets(region, file_system_id)})


def efs_widgets(region: str, file_system_id: str) -> list[dict[str, Any]]:
    """The seed's I/O and connection widgets, plus burst credits and stored bytes."""
    fs = ["FileSystemId", file_system_id]
    widgets: list[dict[str, Any]] = [
        graph_widget("EFS I/O bytes", region, [["AWS/EFS", "TotalIOBytes", *fs, {"stat": "Sum"}]]),
        graph_widget(
            "EFS connections and burst credits",
            region,
            [
                ["AWS/EFS", "ClientConnections", *fs, {"stat": "Sum"}],
                ["AWS/EFS", "BurstCreditBalance", *fs, {"stat": "Average", "yAxis": "right"}],
            ],
        ),
        graph_widget("EFS storage bytes", region, [["AWS/EFS", "StorageBytes", *fs, "StorageClass", "Total"]]),
    ]
    for widget in widgets:
        widget.update({"width": 12, "height": 6})
    return widgets
