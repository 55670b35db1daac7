"""RDS: DB instances, Aurora / Multi-AZ DB clusters and their instances, and parameter groups.

Each rule names the resource types the setting exists on: storage, backups, logs, IAM auth and deletion
protection belong to the cluster in Aurora; public access, monitoring and minor upgrades to its instances.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .base import (
    CRITICAL,
    ENVIRONMENTS_OPTION,
    HIGH,
    LOW,
    MANDATORY,
    MEDIUM,
    Resource,
    applies_to_stack,
    as_list,
    as_number,
    integer,
    is_false,
    is_true,
    option,
    resource_policy,
)

INSTANCE = "aws:rds/instance:Instance"
CLUSTER = "aws:rds/cluster:Cluster"
CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
CLUSTER_PARAMETER_GROUP = "aws:rds/clusterParameterGroup:ClusterParameterGroup"

# PostgreSQL 15 and later default rds.force_ssl to 1; older families default to 0.
FORCE_SSL_DEFAULT_FROM = 15
LOG_EXPORTS = {"postgres": "postgresql", "mysql": "error", "mariadb": "error"}


def _engine(resource: Resource) -> str:
    """The engine family: Aurora's `aurora-postgresql` reads as `postgresql`, `aurora` (MySQL 5.6) as `mysql`."""
    engine = str(resource.props.get("engine") or "").lower()
    return "mysql" if engine == "aurora" else engine.removeprefix("aurora-")


def _is_multi_az_db_cluster(props: Mapping[str, Any]) -> bool:
    return props.get("dbClusterInstanceClass") is not None


def _defaults_to_public(props: Mapping[str, Any]) -> bool:
    """Multi-AZ DB clusters default to public without a (non-default) subnet group (pulumi-aws rds.Cluster docs)."""
    subnet_group = str(props.get("dbSubnetGroupName") or "default")
    return _is_multi_az_db_cluster(props) and props.get("publiclyAccessible") is None and subnet_group == "default"


def check_public_access(resource: Resource) -> Iterator[str]:
    props = resource.props
    if is_true(props.get("publiclyAccessible")):
        yield "publiclyAccessible is true, so the database gets a public endpoint"
    elif resource.type == CLUSTER and _defaults_to_public(props):
        yield "publiclyAccessible is not set and no DB subnet group is given, so the cluster defaults to public"


def check_storage_encryption(resource: Resource) -> Iterator[str]:
    # Aurora Serverless v1 clusters are always encrypted; everything else defaults to unencrypted.
    if resource.type == CLUSTER and str(resource.props.get("engineMode") or "").lower() == "serverless":
        return
    if not is_true(resource.props.get("storageEncrypted")):
        yield "storageEncrypted is not true"


def check_multi_az(resource: Resource) -> Iterator[str]:
    if applies_to_stack(resource) and not is_true(resource.props.get("multiAz")):
        yield f"multiAz is not true in stack '{resource.stack}'"


def check_deletion_protection(resource: Resource) -> Iterator[str]:
    if applies_to_stack(resource) and not is_true(resource.props.get("deletionProtection")):
        yield f"deletionProtection is not true in stack '{resource.stack}'"


def check_enhanced_monitoring(resource: Resource) -> Iterator[str]:
    interval = as_number(resource.props.get("monitoringInterval")) or 0
    if interval <= 0:
        yield "monitoringInterval is 0, so enhanced monitoring is off"


def check_log_exports(resource: Resource) -> Iterator[str]:
    exports = [str(e) for e in as_list(resource.props.get("enabledCloudwatchLogsExports"))]
    engine = _engine(resource)
    required = next((log for prefix, log in LOG_EXPORTS.items() if engine.startswith(prefix)), None)
    if not exports:
        yield "enabledCloudwatchLogsExports is empty, so database logs stay on the instance"
    elif required and required not in exports:
        yield f"enabledCloudwatchLogsExports does not include '{required}'"


def check_iam_authentication(resource: Resource) -> Iterator[str]:
    if not is_true(resource.props.get("iamDatabaseAuthenticationEnabled")):
        yield "iamDatabaseAuthenticationEnabled is not true"


def check_backup_retention(resource: Resource) -> Iterator[str]:
    days = as_number(resource.props.get("backupRetentionPeriod"))
    minimum = int(resource.config.get("minimumRetentionDays", 7))
    if days is None:
        yield f"backupRetentionPeriod is not set (the provider default is 1 day; at least {minimum} required)"
    elif days < minimum:
        yield f"backupRetentionPeriod is {days:g} days; at least {minimum} required"


def check_minor_version_upgrade(resource: Resource) -> Iterator[str]:
    if is_false(resource.props.get("autoMinorVersionUpgrade")):
        yield "autoMinorVersionUpgrade is false"


def check_copy_tags(resource: Resource) -> Iterator[str]:
    if not is_true(resource.props.get("copyTagsToSnapshot")):
        yield "copyTagsToSnapshot is not true"


# Databases created from another one take its credentials (snapshots, replicas, global secondaries, restores).
INHERITED_CREDENTIALS = (
    "snapshotIdentifier",
    "replicateSourceDb",
    "replicationSourceIdentifier",
    "restoreToPointInTime",
    "globalClusterIdentifier",
)


def check_managed_password(resource: Resource) -> Iterator[str]:
    props = resource.props
    password_input = "masterPassword" if resource.type == CLUSTER else "password"
    restored = any(props.get(key) is not None for key in INHERITED_CREDENTIALS)
    if props.get(password_input) is not None:
        yield (f"the master password is set as a literal `{password_input}` input and is stored in the Pulumi state")
    elif not restored and not is_true(props.get("manageMasterUserPassword")):
        yield "manageMasterUserPassword is not true"


def check_force_ssl(resource: Resource) -> Iterator[str]:
    family = str(resource.props.get("family") or "").lower()
    match = re.match(r"(aurora-)?postgres(?:ql)?(\d+)", family)
    if not match:
        return
    for parameter in as_list(resource.props.get("parameters")):
        if parameter.get("name") == "rds.force_ssl":
            if str(parameter.get("value")).strip() != "1":
                yield f"rds.force_ssl is '{parameter.get('value')}', so clients may connect without TLS"
            return
    # Aurora PostgreSQL's default cluster parameter groups keep rds.force_ssl at 0 (AWS re:Post
    # aurora-postgresql-ssl-certificates); RDS for PostgreSQL turns it on from version 15.
    if match.group(1) or int(match.group(2)) < FORCE_SSL_DEFAULT_FROM:
        yield f"rds.force_ssl is not set and defaults to 0 in {family}"


POLICIES = [
    resource_policy(
        name="aws-rds-instance-disallow-public-access",
        description="RDS instances, Aurora cluster instances and Multi-AZ DB clusters must not be publicly accessible.",
        resource_types=[INSTANCE, CLUSTER, CLUSTER_INSTANCE],
        check=check_public_access,
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="RDS.2",
        remediation="Set `publiclyAccessible: false` and place the instance in private subnets.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-storage-encryption",
        description="RDS instances and clusters must encrypt their storage at rest.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_storage_encryption,
        severity=HIGH,
        level=MANDATORY,
        fsbp="RDS.3",
        remediation="Set `storageEncrypted: true` (optionally `kmsKeyId`); existing instances need a restore "
        "from an encrypted snapshot copy.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-multi-az",
        description="RDS instances in production stacks should be deployed across multiple AZs.",
        resource_types=[INSTANCE],
        check=check_multi_az,
        severity=MEDIUM,
        fsbp="RDS.5",
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `multiAz: true` in the stacks listed in `requiredInStacks`.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-deletion-protection",
        description="RDS instances and clusters in production stacks should have deletion protection.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_deletion_protection,
        severity=LOW,
        fsbp="RDS.8",
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `deletionProtection: true` in the stacks listed in `requiredInStacks`.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-enhanced-monitoring",
        description="RDS instances and Aurora cluster instances should have enhanced monitoring enabled.",
        resource_types=[INSTANCE, CLUSTER_INSTANCE],
        check=check_enhanced_monitoring,
        severity=LOW,
        fsbp="RDS.6",
        remediation="Set `monitoringInterval` (e.g. 60) and `monitoringRoleArn`.",
    ),
    resource_policy(
        name="aws-rds-instance-export-logs",
        description="RDS instances and clusters should export their database logs to CloudWatch Logs.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_log_exports,
        severity=MEDIUM,
        fsbp="RDS.9",
        remediation="Set `enabledCloudwatchLogsExports` (for PostgreSQL: `postgresql`, `upgrade`).",
    ),
    resource_policy(
        name="aws-rds-instance-enable-iam-authentication",
        description="RDS instances and clusters should allow IAM database authentication.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_iam_authentication,
        severity=MEDIUM,
        fsbp="RDS.10",
        remediation="Set `iamDatabaseAuthenticationEnabled: true` and connect with IAM auth tokens.",
    ),
    resource_policy(
        name="aws-rds-instance-configure-backup-retention",
        description="RDS instances and clusters should keep automated backups for a minimum number of days.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_backup_retention,
        severity=MEDIUM,
        fsbp="RDS.11",
        config=option({"minimumRetentionDays": integer("Minimum backupRetentionPeriod in days.", 7, 1)}),
        remediation="Set `backupRetentionPeriod` to at least `minimumRetentionDays`.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-auto-minor-version-upgrade",
        description="RDS instances, clusters and cluster instances should apply minor engine upgrades automatically.",
        resource_types=[INSTANCE, CLUSTER, CLUSTER_INSTANCE],
        check=check_minor_version_upgrade,
        severity=HIGH,
        fsbp="RDS.13",
        remediation="Remove `autoMinorVersionUpgrade: false` (the default is true).",
    ),
    resource_policy(
        name="aws-rds-instance-enable-copy-tags-to-snapshot",
        description="RDS instances and clusters should copy their tags to snapshots.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_copy_tags,
        severity=LOW,
        fsbp="RDS.17",
        remediation="Set `copyTagsToSnapshot: true`.",
    ),
    resource_policy(
        name="aws-rds-instance-use-managed-master-password",
        description="RDS instance and cluster master passwords should be generated and kept by Secrets Manager.",
        resource_types=[INSTANCE, CLUSTER],
        check=check_managed_password,
        severity=HIGH,
        remediation="Remove `password` (`masterPassword` on clusters) and set `manageMasterUserPassword: true`; read the credentials from the "
        "`masterUserSecrets` secret.",
    ),
    resource_policy(
        name="aws-rds-parametergroup-enforce-ssl",
        description="RDS and Aurora PostgreSQL parameter groups should require TLS connections.",
        resource_types=[PARAMETER_GROUP, CLUSTER_PARAMETER_GROUP],
        check=check_force_ssl,
        severity=MEDIUM,
        fsbp="RDS.38",
        remediation="Add the parameter `rds.force_ssl` with value `1` to the parameter group.",
    ),
]
