"""EFS: file systems and access points (backup and mount-target checks are stack policies)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from .base import HIGH, MANDATORY, MEDIUM, Resource, as_number, boolean, is_true, option, resource_policy

FILE_SYSTEM = "aws:efs/fileSystem:FileSystem"
ACCESS_POINT = "aws:efs/accessPoint:AccessPoint"
BACKUP_POLICY = "aws:efs/backupPolicy:BackupPolicy"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"


def check_encryption(resource: Resource) -> Iterator[str]:
    if not is_true(resource.props.get("encrypted")):
        yield "encrypted is not true, so the file system is stored unencrypted"
    elif resource.config.get("requireCustomerManagedKey") and not resource.props.get("kmsKeyId"):
        yield "the file system uses the AWS-managed key; set kmsKeyId to a customer-managed key"


def check_root_directory(resource: Resource) -> Iterator[str]:
    root = resource.props.get("rootDirectory")
    path = root.get("path") if isinstance(root, Mapping) else None
    if not path or str(path).rstrip("/") == "":
        yield "the access point exposes the file system root '/'"


def check_posix_user(resource: Resource) -> Iterator[str]:
    user = resource.props.get("posixUser")
    if not isinstance(user, Mapping):
        yield "the access point does not enforce a POSIX user"
    elif as_number(user.get("uid")) == 0:
        yield "the access point's POSIX user is root (uid 0)"


POLICIES = [
    resource_policy(
        name="aws-efs-filesystem-enable-encryption",
        description="EFS file systems must be encrypted at rest.",
        resource_types=[FILE_SYSTEM],
        check=check_encryption,
        severity=HIGH,
        level=MANDATORY,
        fsbp="EFS.1",
        config=option(
            {"requireCustomerManagedKey": boolean("Also require kmsKeyId (a customer-managed KMS key).", False)}
        ),
        remediation="Set `encrypted: true` (and `kmsKeyId` for a customer-managed key); encryption can only be "
        "chosen at creation, so migrate the data to a new file system.",
    ),
    resource_policy(
        name="aws-efs-accesspoint-disallow-root-directory",
        description="EFS access points should confine clients to a directory below the root.",
        resource_types=[ACCESS_POINT],
        check=check_root_directory,
        severity=MEDIUM,
        fsbp="EFS.3",
        remediation="Set `rootDirectory.path` to an application directory (with `creationInfo` owner and permissions).",
    ),
    resource_policy(
        name="aws-efs-accesspoint-enforce-posix-user",
        description="EFS access points should enforce a non-root POSIX user.",
        resource_types=[ACCESS_POINT],
        check=check_posix_user,
        severity=MEDIUM,
        fsbp="EFS.4",
        remediation="Set `posixUser` with the application's non-zero `uid` and `gid`.",
    ),
]
