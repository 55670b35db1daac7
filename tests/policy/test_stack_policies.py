"""Stack policies: rules that span resources, including references they cannot resolve (not checked)."""

from __future__ import annotations

import json
from typing import Any

from runner.records import UNKNOWN_VALUE
from tests.policy import baselines as b
from tests.policy.baselines import container, task_definition, with_props
from tests.policy.helpers import run_stack_policy, urn

REGISTRY_SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
BACKUP = "aws:efs/backupPolicy:BackupPolicy"
MOUNT_TARGET = "aws:efs/mountTarget:MountTarget"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"

Resources = list[tuple[str, str, dict[str, Any]]]


def repository(scan: bool = True, name: str = "app") -> tuple[str, str, dict[str, Any]]:
    return b.REPOSITORY, name, with_props(b.REPOSITORY, name=name, imageScanningConfiguration={"scanOnPush": scan})


# --- ECR scanning -----------------------------------------------------------------------------------------


def test_repository_without_scan_on_push_fails() -> None:
    outcome = run_stack_policy("aws-ecr-repository-enable-image-scanning", [repository(scan=False)])
    assert outcome.messages == ["repository 'app' has scanOnPush off and no registry scanning rule covers it"]
    assert outcome.urns == [urn(b.REPOSITORY, "app")]


def test_registry_scanning_covers_repositories_matching_its_filter() -> None:
    registry = (
        REGISTRY_SCANNING,
        "registry",
        {
            "scanType": "ENHANCED",
            "rules": [
                {
                    "scanFrequency": "CONTINUOUS_SCAN",
                    "repositoryFilters": [{"filter": "team-*", "filterType": "WILDCARD"}],
                }
            ],
        },
    )
    resources = [repository(False, "team-api"), repository(False, "other"), registry]
    assert run_stack_policy("aws-ecr-repository-enable-image-scanning", resources).messages == [
        "repository 'other' has scanOnPush off and no registry scanning rule covers it"
    ]


def test_registry_scanning_managed_elsewhere() -> None:
    config = {"registryScanningManagedElsewhere": True}
    assert run_stack_policy("aws-ecr-repository-enable-image-scanning", [repository(False)], config).messages == []


# --- ECR lifecycle ----------------------------------------------------------------------------------------


def test_repository_lifecycle_policy() -> None:
    name = "aws-ecr-repository-configure-lifecycle-policy"
    lifecycle = (LIFECYCLE, "app-lifecycle", {"repository": "app", "policy": "{}"})
    assert run_stack_policy(name, [repository(), lifecycle]).messages == []
    assert run_stack_policy(name, [repository()]).messages == ["repository 'app' has no lifecycle policy"]


def test_lifecycle_policy_referring_to_an_unknown_id_is_not_checked() -> None:
    lifecycle = (LIFECYCLE, "lifecycle", {"repository": "app-id-from-mocks"})
    outcome = run_stack_policy("aws-ecr-repository-configure-lifecycle-policy", [repository(name="other"), lifecycle])
    assert (outcome.messages, outcome.unknown) == ([], "string value at .other.id can't be known during preview")


def test_unknown_lifecycle_reference_is_not_checked() -> None:
    lifecycle = (LIFECYCLE, "lifecycle", {"repository": UNKNOWN_VALUE})
    outcome = run_stack_policy("aws-ecr-repository-configure-lifecycle-policy", [repository(), lifecycle])
    assert outcome.messages == []
    assert outcome.unknown is not None


# --- Images from scanned repositories ---------------------------------------------------------------------


def test_images_must_come_from_scanned_repositories_in_the_stack_or_allowed_ones() -> None:
    name = "aws-ecs-taskdefinition-use-scanned-repositories"
    shared = "999999999999.dkr.ecr.us-east-1.amazonaws.com/shared/base:3"
    task = (b.TASK_DEFINITION, "task", task_definition(container(), container(name="base", image=shared)))
    assert run_stack_policy(name, [repository(), task]).messages == [
        f"container 'base' image '{shared}' is not from a scanned ECR repository of this stack nor from "
        "allowedRepositories"
    ]
    allowed = {"allowedRepositories": ["999999999999.dkr.ecr.us-east-1.amazonaws.com/shared/"]}
    assert run_stack_policy(name, [repository(), task], allowed).messages == []
    assert len(run_stack_policy(name, [repository(scan=False), task], allowed).messages) == 1


# --- EFS --------------------------------------------------------------------------------------------------


def file_system(id_: str | None = "fs-1") -> tuple[str, str, dict[str, Any]]:
    return b.FILE_SYSTEM, "files", with_props(b.FILE_SYSTEM, id=id_)


def test_file_system_needs_an_enabled_backup_policy() -> None:
    name = "aws-efs-filesystem-configure-backup-policy"
    enabled = (BACKUP, "backup", {"fileSystemId": "fs-1", "backupPolicy": {"status": "ENABLED"}})
    disabled = (BACKUP, "backup", {"fileSystemId": "fs-1", "backupPolicy": {"status": "DISABLED"}})
    assert run_stack_policy(name, [file_system(), enabled]).messages == []
    assert run_stack_policy(name, [file_system(), disabled]).messages == [
        "file system 'files' has no ENABLED backup policy"
    ]
    assert run_stack_policy(name, [file_system(None)]).messages == ["file system 'files' has no ENABLED backup policy"]
    assert run_stack_policy(name, [file_system(None), enabled]).unknown == (
        "string value at .files.id can't be known during preview"
    )


def test_mount_targets_must_not_be_in_public_subnets() -> None:
    name = "aws-efs-mounttarget-disallow-public-subnet"
    vpc = ("awsx:ec2:Vpc", "vpc", {"publicSubnetIds": ["subnet-pub"], "privateSubnetIds": ["subnet-priv"]})
    public = (MOUNT_TARGET, "mt-a", {"fileSystemId": "fs-1", "subnetId": "subnet-pub"})
    private = (MOUNT_TARGET, "mt-b", {"fileSystemId": "fs-1", "subnetId": "subnet-priv"})
    assert run_stack_policy(name, [vpc, public, private]).messages == [
        "mount target 'mt-a' is in public subnet 'subnet-pub'"
    ]
    subnet = ("aws:ec2/subnet:Subnet", "s", {"id": "subnet-priv", "mapPublicIpOnLaunch": True})
    assert len(run_stack_policy(name, [subnet, private]).messages) == 1
    assert len(run_stack_policy(name, [private], {"publicSubnetIds": ["subnet-priv"]}).messages) == 1


# --- Security groups on load balancers --------------------------------------------------------------------


def test_public_web_ingress_only_on_load_balancer_groups() -> None:
    name = "aws-ec2-securitygroup-restrict-public-ingress-to-load-balancers"
    web = {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "0.0.0.0/0"}
    on_alb = (b.INGRESS_RULE, "alb-https", {**web, "securityGroupId": "sg-alb"})
    on_task = (b.INGRESS_RULE, "task-https", {**web, "securityGroupId": "sg-task"})
    alb = (b.LOAD_BALANCER, "alb", b.BASELINES[b.LOAD_BALANCER])
    outcome = run_stack_policy(name, [alb, on_alb, on_task])
    assert outcome.messages == [
        "security group 'sg-task' is open to 0.0.0.0/0 on port 443 but no load balancer in the stack uses it"
    ]
    assert outcome.urns == [urn(b.INGRESS_RULE, "task-https")]


def test_inline_public_ingress_on_a_group_without_id_is_not_checked() -> None:
    name = "aws-ec2-securitygroup-restrict-public-ingress-to-load-balancers"
    group = (
        b.SECURITY_GROUP,
        "web",
        {"ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidrBlocks": ["0.0.0.0/0"]}]},
    )
    outcome = run_stack_policy(name, [group])
    assert (outcome.messages, outcome.unknown) == ([], "string value at .web.id can't be known during preview")
    with_id = (b.SECURITY_GROUP, "web", {**group[2], "id": "sg-alb"})
    alb = (b.LOAD_BALANCER, "alb", b.BASELINES[b.LOAD_BALANCER])
    assert run_stack_policy(name, [with_id, alb]).messages == []


# --- S3 ---------------------------------------------------------------------------------------------------


def bucket() -> tuple[str, str, dict[str, Any]]:
    return BUCKET, "assets", {"bucket": "assets-bucket", "id": "assets-bucket"}


def tls_policy(secure_transport: Any) -> str:
    return json.dumps(
        {
            "Statement": [
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": "*",
                    "Condition": {"Bool": {"aws:SecureTransport": secure_transport}},
                }
            ]
        }
    )


def test_bucket_public_access_block() -> None:
    name = "aws-s3-bucket-configure-public-access-block"
    flags = {
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    block = (PUBLIC_ACCESS_BLOCK, "pab", {"bucket": "assets-bucket", **flags})
    partial = (PUBLIC_ACCESS_BLOCK, "pab", {"bucket": "assets-bucket", **flags, "restrictPublicBuckets": False})
    omitted = (PUBLIC_ACCESS_BLOCK, "pab", {"bucket": "assets-bucket", "blockPublicAcls": True})
    account = ("aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock", "account", flags)
    assert run_stack_policy(name, [bucket(), block]).messages == []
    # GIVEN no block resource: S3 blocks public access on new buckets by default (since April 2023)
    assert run_stack_policy(name, [bucket()]).messages == []
    assert run_stack_policy(name, [bucket(), partial, account]).messages == []
    assert run_stack_policy(name, [bucket(), partial]).messages == [
        "the public access block of bucket 'assets-bucket' turns off restrictPublicBuckets, so ACLs or a bucket "
        "policy can make the bucket public"
    ]
    # AND the provider sends false for every flag a block resource omits
    assert run_stack_policy(name, [bucket(), omitted]).messages == [
        "the public access block of bucket 'assets-bucket' turns off blockPublicPolicy, ignorePublicAcls, "
        "restrictPublicBuckets, so ACLs or a bucket policy can make the bucket public"
    ]


def test_bucket_policy_must_deny_insecure_transport() -> None:
    name = "aws-s3-bucket-enforce-tls"
    assert (
        run_stack_policy(
            name, [bucket(), (BUCKET_POLICY, "p", {"bucket": "assets-bucket", "policy": tls_policy("false")})]
        ).messages
        == []
    )
    assert (
        run_stack_policy(
            name, [bucket(), (BUCKET_POLICY, "p", {"bucket": "assets-bucket", "policy": tls_policy(False)})]
        ).messages
        == []
    )
    assert run_stack_policy(
        name, [bucket(), (BUCKET_POLICY, "p", {"bucket": "assets-bucket", "policy": tls_policy("true")})]
    ).messages == ["bucket 'assets-bucket' has no bucket policy denying requests without TLS"]
    assert (
        len(
            run_stack_policy(
                name, [bucket(), (BUCKET_POLICY, "p", {"bucket": "assets-bucket", "policy": "{"})]
            ).messages
        )
        == 1
    )
