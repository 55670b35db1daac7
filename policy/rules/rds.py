"""RDS: DB instances and parameter groups (PostgreSQL-first, engine-aware where it matters)."""

from __future__ import annotations

import re
from collections.abc import Iterator

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
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"

# PostgreSQL 15 and later default rds.force_ssl to 1; older families default to 0.
FORCE_SSL_DEFAULT_FROM = 15
LOG_EXPORTS = {"postgres": "postgresql", "mysql": "error", "mariadb": "error"}


def _engine(resource: Resource) -> str:
    return str(resource.props.get("engine") or "").lower()


def check_public_access(resource: Resource) -> Iterator[str]:
    if is_true(resource.props.get("publiclyAccessible")):
        yield "publiclyAccessible is true, so the instance gets a public endpoint"


def check_storage_encryption(resource: Resource) -> Iterator[str]:
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


def check_managed_password(resource: Resource) -> Iterator[str]:
    props = resource.props
    restored = props.get("snapshotIdentifier") is not None or props.get("replicateSourceDb") is not None
    if props.get("password") is not None:
        yield "the master password is set as a literal `password` input and is stored in the Pulumi state"
    elif not restored and not is_true(props.get("manageMasterUserPassword")):
        yield "manageMasterUserPassword is not true"


def check_force_ssl(resource: Resource) -> Iterator[str]:
    family = str(resource.props.get("family") or "").lower()
    match = re.match(r"postgres(\d+)", family)
    if not match:
        return
    for parameter in as_list(resource.props.get("parameters")):
        if parameter.get("name") == "rds.force_ssl":
            if str(parameter.get("value")).strip() != "1":
                yield f"rds.force_ssl is '{parameter.get('value')}', so clients may connect without TLS"
            return
    if int(match.group(1)) < FORCE_SSL_DEFAULT_FROM:
        yield f"rds.force_ssl is not set and defaults to 0 in {family}"


POLICIES = [
    resource_policy(
        name="aws-rds-instance-disallow-public-access",
        description="RDS instances must not be publicly accessible.",
        resource_types=[INSTANCE],
        check=check_public_access,
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="RDS.2",
        remediation="Set `publiclyAccessible: false` and place the instance in private subnets.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-storage-encryption",
        description="RDS instances must encrypt their storage at rest.",
        resource_types=[INSTANCE],
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
        description="RDS instances in production stacks should have deletion protection.",
        resource_types=[INSTANCE],
        check=check_deletion_protection,
        severity=LOW,
        fsbp="RDS.8",
        config=option(dict(ENVIRONMENTS_OPTION)),
        remediation="Set `deletionProtection: true` in the stacks listed in `requiredInStacks`.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-enhanced-monitoring",
        description="RDS instances should have enhanced monitoring enabled.",
        resource_types=[INSTANCE],
        check=check_enhanced_monitoring,
        severity=LOW,
        fsbp="RDS.6",
        remediation="Set `monitoringInterval` (e.g. 60) and `monitoringRoleArn`.",
    ),
    resource_policy(
        name="aws-rds-instance-export-logs",
        description="RDS instances should export their database logs to CloudWatch Logs.",
        resource_types=[INSTANCE],
        check=check_log_exports,
        severity=MEDIUM,
        fsbp="RDS.9",
        remediation="Set `enabledCloudwatchLogsExports` (for PostgreSQL: `postgresql`, `upgrade`).",
    ),
    resource_policy(
        name="aws-rds-instance-enable-iam-authentication",
        description="RDS instances should allow IAM database authentication.",
        resource_types=[INSTANCE],
        check=check_iam_authentication,
        severity=MEDIUM,
        fsbp="RDS.10",
        remediation="Set `iamDatabaseAuthenticationEnabled: true` and connect with IAM auth tokens.",
    ),
    resource_policy(
        name="aws-rds-instance-configure-backup-retention",
        description="RDS instances should keep automated backups for a minimum number of days.",
        resource_types=[INSTANCE],
        check=check_backup_retention,
        severity=MEDIUM,
        fsbp="RDS.11",
        config=option({"minimumRetentionDays": integer("Minimum backupRetentionPeriod in days.", 7, 1)}),
        remediation="Set `backupRetentionPeriod` to at least `minimumRetentionDays`.",
    ),
    resource_policy(
        name="aws-rds-instance-enable-auto-minor-version-upgrade",
        description="RDS instances should apply minor engine upgrades automatically.",
        resource_types=[INSTANCE],
        check=check_minor_version_upgrade,
        severity=HIGH,
        fsbp="RDS.13",
        remediation="Remove `autoMinorVersionUpgrade: false` (the default is true).",
    ),
    resource_policy(
        name="aws-rds-instance-enable-copy-tags-to-snapshot",
        description="RDS instances should copy their tags to snapshots.",
        resource_types=[INSTANCE],
        check=check_copy_tags,
        severity=LOW,
        fsbp="RDS.17",
        remediation="Set `copyTagsToSnapshot: true`.",
    ),
    resource_policy(
        name="aws-rds-instance-use-managed-master-password",
        description="RDS instance master passwords should be generated and kept by Secrets Manager.",
        resource_types=[INSTANCE],
        check=check_managed_password,
        severity=HIGH,
        remediation="Remove `password` and set `manageMasterUserPassword: true`; read the credentials from the "
        "`masterUserSecrets` secret.",
    ),
    resource_policy(
        name="aws-rds-parametergroup-enforce-ssl",
        description="RDS PostgreSQL parameter groups should require TLS connections.",
        resource_types=[PARAMETER_GROUP],
        check=check_force_ssl,
        severity=MEDIUM,
        fsbp="RDS.38",
        remediation="Add the parameter `rds.force_ssl` with value `1` to the parameter group.",
    ),
]
