"""ECR: repository settings (scanning and lifecycle coverage are stack policies in `stack.py`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .base import LOW, MEDIUM, Resource, as_list, is_true, resource_policy

REPOSITORY = "aws:ecr/repository:Repository"
AWSX_REPOSITORY = "awsx:ecr:Repository"
"""awsx's repository component: one resource under mocks, with the same repository inputs as aws.ecr.Repository."""
REPOSITORY_TYPES = [REPOSITORY, AWSX_REPOSITORY]
LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
REGISTRY_SCANNING = "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"

SCANNING_FREQUENCIES = ("SCAN_ON_PUSH", "CONTINUOUS_SCAN")


def scans_on_push(props: Mapping[str, Any]) -> bool:
    config = props.get("imageScanningConfiguration")
    return isinstance(config, Mapping) and is_true(config.get("scanOnPush"))


def registry_scans(registry_configs: Sequence[Mapping[str, Any]], repository: str) -> bool:
    """True when a registry scanning configuration scans `repository` on push or continuously."""
    for config in registry_configs:
        for rule in as_list(config.get("rules")):
            if str(rule.get("scanFrequency") or "").upper() not in SCANNING_FREQUENCIES:
                continue
            for repository_filter in as_list(rule.get("repositoryFilters")):
                if fnmatch.fnmatchcase(repository, str(repository_filter.get("filter") or "")):
                    return True
    return False


def tag_is_immutable(props: Mapping[str, Any], tag: str) -> bool:
    """Whether the repository keeps `tag` from being overwritten, exclusion filters included.

    IMMUTABLE_WITH_EXCLUSION leaves tags matching a filter mutable; MUTABLE_WITH_EXCLUSION makes them immutable
    (ECR's filters are wildcards: `*` matches any characters).
    """
    mutability = str(props.get("imageTagMutability") or "MUTABLE").upper()
    filters = [str(f.get("filter") or "") for f in as_list(props.get("imageTagMutabilityExclusionFilters"))]
    excluded = any(fnmatch.fnmatchcase(tag, pattern) for pattern in filters if pattern)
    if mutability == "IMMUTABLE":
        return True
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return not excluded
    return mutability == "MUTABLE_WITH_EXCLUSION" and excluded


def has_default_lifecycle_policy(repository_type: str, props: Mapping[str, Any]) -> bool:
    """awsx repositories get a lifecycle policy (untagged images expire after a day) unless told to skip it."""
    lifecycle = props.get("lifecyclePolicy")
    skipped = isinstance(lifecycle, Mapping) and is_true(lifecycle.get("skip"))
    return repository_type == AWSX_REPOSITORY and not skipped


def check_tag_immutability(resource: Resource) -> Iterator[str]:
    mutability = str(resource.props.get("imageTagMutability") or "MUTABLE").upper()
    if not mutability.startswith("IMMUTABLE"):
        yield f"imageTagMutability is {mutability}, so a pushed tag can be overwritten"


def check_customer_managed_key(resource: Resource) -> Iterator[str]:
    for config in as_list(resource.props.get("encryptionConfigurations")):
        if str(config.get("encryptionType") or "").upper() == "KMS" and config.get("kmsKey"):
            return
    yield "the repository is not encrypted with a customer-managed KMS key"


POLICIES = [
    resource_policy(
        name="aws-ecr-repository-enable-immutable-tags",
        description="ECR repositories should make image tags immutable.",
        resource_types=REPOSITORY_TYPES,
        check=check_tag_immutability,
        severity=MEDIUM,
        fsbp="ECR.2",
        remediation="Set `imageTagMutability: IMMUTABLE` and publish every build under a new tag.",
    ),
    resource_policy(
        name="aws-ecr-repository-use-customer-managed-key",
        description="ECR repositories should be encrypted with a customer-managed KMS key.",
        resource_types=REPOSITORY_TYPES,
        check=check_customer_managed_key,
        severity=LOW,
        fsbp="ECR.5",
        remediation="Add `encryptionConfigurations: [{encryptionType: KMS, kmsKey: <key arn>}]` (set at "
        "creation; changing it replaces the repository).",
    ),
]
