"""ElastiCache: Redis/Valkey replication groups."""

from __future__ import annotations

from collections.abc import Iterator

from .base import (
    ENVIRONMENTS_OPTION,
    HIGH,
    MANDATORY,
    MEDIUM,
    Resource,
    applies_to_stack,
    as_list,
    as_number,
    integer,
    is_true,
    option,
    resource_policy,
)
from .rds import check_minor_version_upgrade

REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


def check_at_rest_encryption(resource: Resource) -> Iterator[str]:
    setting = resource.props.get("atRestEncryptionEnabled")
    # CreateReplicationGroup: AtRestEncryptionEnabled defaults to true for Valkey, false for Redis OSS.
    if setting is None and str(resource.props.get("engine") or "").lower() == "valkey":
        return
    if not is_true(setting):
        yield "atRestEncryptionEnabled is not true"


def check_transit_encryption(resource: Resource) -> Iterator[str]:
    if not is_true(resource.props.get("transitEncryptionEnabled")):
        yield "transitEncryptionEnabled is not true, so clients talk to the cache in cleartext"


def check_auth(resource: Resource) -> Iterator[str]:
    if not resource.props.get("authToken") and not as_list(resource.props.get("userGroupIds")):
        yield "neither authToken nor userGroupIds is set, so any client in the network can connect"


def check_snapshot_retention(resource: Resource) -> Iterator[str]:
    days = as_number(resource.props.get("snapshotRetentionLimit")) or 0
    minimum = int(resource.config.get("minimumRetentionDays", 1))
    if days < minimum:
        yield f"snapshotRetentionLimit is {days:g} days; at least {minimum} required"


def check_automatic_failover(resource: Resource) -> Iterator[str]:
    if applies_to_stack(resource) and not is_true(resource.props.get("automaticFailoverEnabled")):
        yield f"automaticFailoverEnabled is not true in stack '{resource.stack}'"


def check_subnet_group(resource: Resource) -> Iterator[str]:
    group = resource.props.get("subnetGroupName")
    if not group or str(group).lower() == "default":
        yield "the replication group uses the default subnet group (the default VPC)"


POLICIES = [
    resource_policy(
        name="aws-elasticache-replicationgroup-enable-at-rest-encryption",
        description="ElastiCache replication groups must encrypt data at rest.",
        resource_types=[REPLICATION_GROUP],
        check=check_at_rest_encryption,
        severity=HIGH,
        level=MANDATORY,
        fsbp="ElastiCache.4",
        remediation="Set `atRestEncryptionEnabled: true` (optionally `kmsKeyId`); this replaces the group.",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-enable-transit-encryption",
        description="ElastiCache replication groups must encrypt data in transit (Redis/Valkey without TLS).",
        resource_types=[REPLICATION_GROUP],
        check=check_transit_encryption,
        severity=HIGH,
        level=MANDATORY,
        fsbp="ElastiCache.5",
        remediation="Set `transitEncryptionEnabled: true` and connect with TLS (`rediss://`).",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-enable-auth",
        description="ElastiCache replication groups should require authentication.",
        resource_types=[REPLICATION_GROUP],
        check=check_auth,
        severity=MEDIUM,
        fsbp="ElastiCache.6",
        remediation="Set `authToken` from a secret (requires transit encryption) or attach RBAC `userGroupIds`.",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-configure-snapshot-retention",
        description="ElastiCache replication groups should keep automatic backups.",
        resource_types=[REPLICATION_GROUP],
        check=check_snapshot_retention,
        severity=HIGH,
        fsbp="ElastiCache.1",
        config=option({"minimumRetentionDays": integer("Minimum snapshotRetentionLimit in days.", 1, 1)}),
        remediation="Set `snapshotRetentionLimit` to at least `minimumRetentionDays`.",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-enable-auto-minor-version-upgrade",
        description="ElastiCache replication groups should apply minor engine upgrades automatically.",
        resource_types=[REPLICATION_GROUP],
        check=check_minor_version_upgrade,
        severity=HIGH,
        fsbp="ElastiCache.2",
        remediation="Remove `autoMinorVersionUpgrade: false` (the default is true).",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-enable-automatic-failover",
        description="ElastiCache replication groups in production stacks should fail over automatically.",
        resource_types=[REPLICATION_GROUP],
        check=check_automatic_failover,
        severity=MEDIUM,
        fsbp="ElastiCache.3",
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `automaticFailoverEnabled: true` with at least one replica (`numCacheClusters` >= 2).",
    ),
    resource_policy(
        name="aws-elasticache-replicationgroup-disallow-default-subnet-group",
        description="ElastiCache replication groups should use a dedicated subnet group, not the default one.",
        resource_types=[REPLICATION_GROUP],
        check=check_subnet_group,
        severity=HIGH,
        fsbp="ElastiCache.7",
        remediation="Create an `aws.elasticache.SubnetGroup` with private subnets and set `subnetGroupName`.",
    ),
]
