"""Stack policies: rules that span resources (a repository and its lifecycle policy, a bucket and its
public-access block, a security group and the load balancer it belongs to, ...).

Resources refer to each other by id, name or ARN. When a reference cannot be resolved because an id is not
known (a preview, or a plan whose mocks have no ids), the resource is reported as not checked rather than
as a violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from . import ecr, ecs, efs, encryption_logging, lb, network
from .base import (
    HIGH,
    MANDATORY,
    MEDIUM,
    InvalidJson,
    Stack,
    StackFinding,
    as_list,
    boolean,
    is_true,
    option,
    per_item,
    stack_policy,
    string_list,
)
from .images import parse_image

AWSX_VPC = "awsx:ec2:Vpc"
IMMUTABLE_REPOSITORIES_OPTION = {
    "immutableRepositories": string_list(
        "Image prefixes of repositories with immutable tags managed outside this stack "
        "(e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com/shared/`).",
        [],
    )
}
SUBNET = "aws:ec2/subnet:Subnet"


def cannot_tell(resource: PolicyResource, what: str) -> UnknownValueError:
    return UnknownValueError(UNKNOWN_STRING_VALUE, [resource.name, what])


def identities(resource: PolicyResource, keys: Sequence[str]) -> set[str]:
    return {str(resource.props.get(key)) for key in keys if resource.props.get(key)}


def referenced_values(resources: Iterable[PolicyResource], key: str) -> tuple[set[str], bool]:
    """Every known value of `key` across `resources`, and whether any of them was unknown."""
    values: set[str] = set()
    any_unknown = False
    for resource in resources:
        try:
            values.update(str(v) for v in as_list(resource.props.get(key)) if v)
        except UnknownValueError:
            any_unknown = True
    return values, any_unknown


class Links:
    """Which targets (e.g. file systems) are referenced by other resources (e.g. backup policies)."""

    def __init__(
        self, targets: Sequence[PolicyResource], keys: Sequence[str], references: tuple[set[str], bool]
    ) -> None:
        self.keys = keys
        self.references, self.references_unknown = references
        known: set[str] = set()
        for target in targets:
            try:
                known |= identities(target, keys)
            except UnknownValueError:
                continue
        self.unresolved = bool(self.references - known)

    def is_referenced(self, target: PolicyResource) -> bool:
        if identities(target, self.keys) & self.references:
            return True
        if self.references_unknown:
            raise cannot_tell(target, "references")
        if self.unresolved and "id" not in target.props:
            # Some reference points at an id we do not know: it may be this resource's.
            raise cannot_tell(target, "id")
        return False


def _label(resource: PolicyResource, *keys: str) -> str:
    for key in keys:
        value = resource.props.get(key)
        if value:
            return str(value)
    return resource.name


# --- ECR --------------------------------------------------------------------------------------------------


def check_repository_scanning(stack: Stack) -> Iterator[StackFinding]:
    if stack.config.get("registryScanningManagedElsewhere"):
        return
    registry_configs = [r.props for r in stack.of_type(ecr.REGISTRY_SCANNING)]

    def check(repository: PolicyResource) -> Iterator[StackFinding]:
        name = _label(repository, "name")
        if not ecr.scans_on_push(repository.props) and not ecr.registry_scans(registry_configs, name):
            yield f"repository '{name}' has scanOnPush off and no registry scanning rule covers it", repository.urn

    yield from per_item(stack.of_type(*ecr.REPOSITORY_TYPES), check)


def check_repository_lifecycle(stack: Stack) -> Iterator[StackFinding]:
    repositories = stack.of_type(ecr.REPOSITORY)
    links = Links(repositories, ("name", "id"), referenced_values(stack.of_type(ecr.LIFECYCLE_POLICY), "repository"))

    def check(repository: PolicyResource) -> Iterator[StackFinding]:
        if ecr.has_default_lifecycle_policy(repository.resource_type, repository.props):
            return
        if not links.is_referenced(repository):
            yield f"repository '{_label(repository, 'name')}' has no lifecycle policy", repository.urn

    yield from per_item(stack.of_type(*ecr.REPOSITORY_TYPES), check)


def stack_images(stack: Stack) -> Iterator[tuple[PolicyResource, str, str]]:
    """(resource, container name, image) for every container of the stack's task definitions and awsx
    components. Invalid JSON is reported by the ECS policies; an unknown image or definition is raised again
    after the others are yielded, so the policy is reported as not fully checked (`per_item`)."""

    def containers(resource: PolicyResource) -> Iterator[tuple[PolicyResource, str, str]]:
        try:
            named = ecs.containers_of(resource.resource_type, resource.props, resource.name)
        except InvalidJson:
            return
        for name, container in named:
            image = container.get("image")
            if not image and resource.resource_type != ecs.TASK_DEFINITION:
                raise cannot_tell(resource, f"{name}.image")  # an awsx input computed from an unknown output
            if image:
                yield resource, name, str(image)

    yield from per_item(stack.of_type(*ecs.TASK_DEFINITION_TYPES), containers)


def check_images_from_scanned_repositories(stack: Stack) -> Iterator[StackFinding]:
    registry_configs = [r.props for r in stack.of_type(ecr.REGISTRY_SCANNING)]
    scanned: set[str] = set()
    for repository in stack.of_type(*ecr.REPOSITORY_TYPES):
        name = _label(repository, "name")
        if ecr.scans_on_push(repository.props) or ecr.registry_scans(registry_configs, name):
            scanned.add(name)
    allowed = [str(p) for p in stack.config.get("allowedRepositories", [])]

    for resource, name, image in stack_images(stack):
        ref = parse_image(image)
        if (ref.ecr_account and ref.repository in scanned) or any(image.startswith(p) for p in allowed):
            continue
        yield (
            f"container '{name}' image '{image}' is not from a scanned ECR repository of this stack nor from "
            "allowedRepositories",
            resource.urn,
        )


def mutable_tag_problem(image: str, repositories: Sequence[PolicyResource], immutable_prefixes: list[str]) -> str:
    """Why `image` can change under the same reference, or "" when it cannot (a digest, or a tag that an
    IMMUTABLE repository of the stack or a configured immutable repository keeps). `latest` and a missing tag
    are reported by aws-ecs-taskdefinition-disallow-latest-tag."""
    ref = parse_image(image)
    if ref.digest or ref.uses_latest or ref.tag is None:
        return ""
    if any(image.startswith(prefix) for prefix in immutable_prefixes):
        return ""
    for repository in repositories:
        if ref.ecr_account and _label(repository, "name") == ref.repository:
            if ecr.tag_is_immutable(repository.props, ref.tag):
                return ""
            return f"uses tag '{ref.tag}', which repository '{ref.repository}' of this stack lets anyone overwrite"
    return f"uses tag '{ref.tag}', which is not a digest nor a tag of an IMMUTABLE repository of this stack"


def check_container_image_tags(stack: Stack) -> Iterator[StackFinding]:
    repositories = stack.of_type(*ecr.REPOSITORY_TYPES)
    prefixes = [str(p) for p in stack.config.get("immutableRepositories", [])]
    for resource, name, image in stack_images(stack):
        problem = mutable_tag_problem(image, repositories, prefixes)
        if problem:
            yield f"container '{name}' image '{image}' {problem}", resource.urn


def check_function_image_tags(stack: Stack) -> Iterator[StackFinding]:
    repositories = stack.of_type(*ecr.REPOSITORY_TYPES)
    prefixes = [str(p) for p in stack.config.get("immutableRepositories", [])]

    def check(function: PolicyResource) -> Iterator[StackFinding]:
        image = function.props.get("imageUri")
        if not image:
            return
        ref = parse_image(str(image))
        problem = mutable_tag_problem(str(image), repositories, prefixes)
        if ref.digest is None and (ref.uses_latest or ref.tag is None):
            problem = "uses the mutable 'latest' tag"
        if problem:
            yield f"function '{_label(function, 'name')}' image '{image}' {problem}", function.urn

    yield from per_item(stack.of_type(encryption_logging.LAMBDA_FUNCTION), check)


# --- EFS --------------------------------------------------------------------------------------------------


def check_file_system_backups(stack: Stack) -> Iterator[StackFinding]:
    enabled = [
        p
        for p in stack.of_type(efs.BACKUP_POLICY)
        if str((p.props.get("backupPolicy") or {}).get("status") or "").upper() == "ENABLED"
    ]
    file_systems = stack.of_type(efs.FILE_SYSTEM)
    links = Links(file_systems, ("id", "arn"), referenced_values(enabled, "fileSystemId"))

    def check(file_system: PolicyResource) -> Iterator[StackFinding]:
        if not links.is_referenced(file_system):
            yield f"file system '{file_system.name}' has no ENABLED backup policy", file_system.urn

    yield from per_item(file_systems, check)


def public_subnet_ids(stack: Stack) -> set[str]:
    ids, _ = referenced_values(stack.of_type(AWSX_VPC), "publicSubnetIds")
    for subnet in stack.of_type(SUBNET):
        try:
            if is_true(subnet.props.get("mapPublicIpOnLaunch")) and subnet.props.get("id"):
                ids.add(str(subnet.props["id"]))
        except UnknownValueError:
            continue
    return ids | {str(s) for s in stack.config.get("publicSubnetIds", [])}


def check_mount_targets(stack: Stack) -> Iterator[StackFinding]:
    public = public_subnet_ids(stack)

    def check(mount_target: PolicyResource) -> Iterator[StackFinding]:
        subnet = str(mount_target.props.get("subnetId") or "")
        if subnet in public:
            yield f"mount target '{mount_target.name}' is in public subnet '{subnet}'", mount_target.urn

    yield from per_item(stack.of_type(efs.MOUNT_TARGET), check)


# --- Security groups --------------------------------------------------------------------------------------


def check_public_ingress_on_load_balancers(stack: Stack) -> Iterator[StackFinding]:
    load_balancer_groups, groups_unknown = referenced_values(stack.of_type(*lb.LOAD_BALANCER_TYPES), "securityGroups")
    allowed = network.allowed_public_ports(stack.config)

    def check(resource: PolicyResource) -> Iterator[StackFinding]:
        for rule in network.public_ingress(resource.resource_type, resource.props):
            if not rule.only_on(allowed):
                continue  # any other port is reported by aws-ec2-securitygroup-disallow-public-ingress
            group = rule.security_group_id or resource.props.get("id")
            if str(group) in load_balancer_groups:
                continue
            if group is None or groups_unknown:
                raise cannot_tell(resource, "id")
            yield (
                f"security group '{group}' is open to {rule.cidr} on {rule.ports} but no load balancer in the "
                "stack uses it",
                resource.urn,
            )

    yield from per_item(stack.of_type(*network.INGRESS_TYPES), check)


# --- S3 ---------------------------------------------------------------------------------------------------


def _buckets_without(stack: Stack, links: Links, problem: str) -> Iterator[StackFinding]:
    def check(bucket: PolicyResource) -> Iterator[StackFinding]:
        if not links.is_referenced(bucket):
            yield f"bucket '{_label(bucket, 'bucket')}' {problem}", bucket.urn

    yield from per_item(stack.of_type(*encryption_logging.BUCKET_TYPES), check)


def check_public_access_block(stack: Stack) -> Iterator[StackFinding]:
    # Since April 2023 S3 turns all four Block Public Access settings on for every new bucket, so a bucket with
    # no block resource is not public (S3 User Guide, "Blocking public access"). A block resource replaces the
    # whole configuration, and the provider sends false for every flag it omits: that turns protection off.
    account_blocks = stack.of_type(encryption_logging.ACCOUNT_PUBLIC_ACCESS_BLOCK)
    if any(encryption_logging.blocks_public_access(b.props) for b in account_blocks):
        return  # S3 applies the most restrictive of the account and bucket settings

    def check(block: PolicyResource) -> Iterator[StackFinding]:
        off = [flag for flag in encryption_logging.PUBLIC_ACCESS_FLAGS if not is_true(block.props.get(flag))]
        if off:
            yield (
                f"the public access block of bucket '{_label(block, 'bucket')}' turns off {', '.join(off)}, so "
                "ACLs or a bucket policy can make the bucket public",
                block.urn,
            )

    yield from per_item(stack.of_type(encryption_logging.PUBLIC_ACCESS_BLOCK), check)


def _denies_insecure_transport(policy: PolicyResource) -> bool:
    try:
        return encryption_logging.denies_insecure_transport(policy.props.get("policy"))
    except json.JSONDecodeError:
        return False


def check_bucket_tls(stack: Stack) -> Iterator[StackFinding]:
    policies = [p for p in stack.of_type(encryption_logging.BUCKET_POLICY) if _denies_insecure_transport(p)]
    buckets = stack.of_type(*encryption_logging.BUCKET_TYPES)
    links = Links(buckets, ("bucket", "id"), referenced_values(policies, "bucket"))
    yield from _buckets_without(stack, links, "has no bucket policy denying requests without TLS")


POLICIES = [
    stack_policy(
        name="aws-ecr-repository-enable-image-scanning",
        resource_types=ecr.REPOSITORY_TYPES,
        description="ECR repositories must scan images, on push or through registry scanning.",
        check=check_repository_scanning,
        severity=HIGH,
        level=MANDATORY,
        fsbp="ECR.1",
        config=option(
            {
                "registryScanningManagedElsewhere": boolean(
                    "Registry-level scanning is configured outside this stack (e.g. by a platform account).",
                    False,
                )
            }
        ),
        remediation="Set `imageScanningConfiguration.scanOnPush: true`, or add an "
        "`aws.ecr.RegistryScanningConfiguration` (ENHANCED, CONTINUOUS_SCAN) whose filter matches the repository.",
    ),
    stack_policy(
        name="aws-ecr-repository-configure-lifecycle-policy",
        resource_types=ecr.REPOSITORY_TYPES,
        description="ECR repositories should have a lifecycle policy.",
        check=check_repository_lifecycle,
        severity=MEDIUM,
        fsbp="ECR.3",
        remediation="Add an `aws.ecr.LifecyclePolicy` for the repository that expires untagged and old images.",
    ),
    stack_policy(
        name="aws-ecs-taskdefinition-use-scanned-repositories",
        resource_types=ecs.TASK_DEFINITION_TYPES,
        description="ECS container images should come from a scanned ECR repository of the stack or an allowed one.",
        check=check_images_from_scanned_repositories,
        severity=MEDIUM,
        config=option(
            {
                "allowedRepositories": string_list(
                    "Image prefixes of repositories scanned outside this stack (e.g. a shared registry).", []
                )
            }
        ),
        remediation="Build into a scan-on-push ECR repository of this stack, or list the repository that is "
        "scanned elsewhere in `allowedRepositories`.",
    ),
    stack_policy(
        name="aws-ecs-taskdefinition-disallow-mutable-image-tags",
        resource_types=ecs.TASK_DEFINITION_TYPES,
        description="ECS container images must be pinned by digest or by a tag of an immutable repository.",
        check=check_container_image_tags,
        severity=HIGH,
        level=MANDATORY,
        config=option(dict(IMMUTABLE_REPOSITORIES_OPTION)),
        remediation="Deploy by digest (`repo@sha256:...`), or push to an ECR repository of the stack with "
        "`imageTagMutability: IMMUTABLE`; list immutable repositories of other stacks in `immutableRepositories`.",
    ),
    stack_policy(
        name="aws-lambda-function-disallow-mutable-image-tags",
        resource_types=[encryption_logging.LAMBDA_FUNCTION],
        description="Lambda container images must be pinned by digest or by a tag of an immutable repository.",
        check=check_function_image_tags,
        severity=HIGH,
        level=MANDATORY,
        config=option(dict(IMMUTABLE_REPOSITORIES_OPTION)),
        remediation="Set `imageUri` to `repo@sha256:...`, or to a tag of an ECR repository with "
        "`imageTagMutability: IMMUTABLE`; list immutable repositories of other stacks in `immutableRepositories`.",
    ),
    stack_policy(
        name="aws-efs-filesystem-configure-backup-policy",
        resource_types=[efs.FILE_SYSTEM],
        description="EFS file systems should have automatic backups enabled.",
        check=check_file_system_backups,
        severity=MEDIUM,
        fsbp="EFS.2",
        remediation="Add an `aws.efs.BackupPolicy` with `backupPolicy.status: ENABLED` for the file system.",
    ),
    stack_policy(
        name="aws-efs-mounttarget-disallow-public-subnet",
        resource_types=[efs.MOUNT_TARGET],
        description="EFS mount targets should not be placed in public subnets.",
        check=check_mount_targets,
        severity=MEDIUM,
        fsbp="EFS.6",
        config=option({"publicSubnetIds": string_list("Public subnet ids created outside this stack.", [])}),
        remediation="Create mount targets in private subnets only.",
    ),
    stack_policy(
        name="aws-ec2-securitygroup-restrict-public-ingress-to-load-balancers",
        resource_types=network.INGRESS_TYPES,
        description="Security groups may be open to the internet on the web ports only when a load balancer uses them.",
        check=check_public_ingress_on_load_balancers,
        severity=HIGH,
        fsbp="EC2.19",
        config=option(dict(network.PUBLIC_PORTS_OPTION)),
        remediation="Remove the public rule, or attach the group to the load balancer that serves the traffic "
        "and reach tasks from the load balancer's security group.",
    ),
    stack_policy(
        name="aws-s3-bucket-configure-public-access-block",
        resource_types=encryption_logging.BUCKET_TYPES,
        description="S3 buckets must not turn off any Block Public Access setting.",
        check=check_public_access_block,
        severity=HIGH,
        level=MANDATORY,
        fsbp="S3.8",
        remediation="Set all four settings of the `aws.s3.BucketPublicAccessBlock` to true (or drop the resource: "
        "new buckets block public access by default); serve public content through CloudFront.",
    ),
    stack_policy(
        name="aws-s3-bucket-enforce-tls",
        resource_types=encryption_logging.BUCKET_TYPES,
        description="S3 buckets should deny requests that do not use TLS.",
        check=check_bucket_tls,
        severity=MEDIUM,
        fsbp="S3.5",
        remediation="Add a bucket policy statement that denies `s3:*` when `aws:SecureTransport` is false.",
    ),
]
