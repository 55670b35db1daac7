"""One environment's share of an AWS account: the ARNs named with its prefix, the tag it carries, its region.

Everything a platform stack creates is named `<applicationName>-<env>...` (`StackConfig.name_prefix`), and where an
ARN holds only an id (VPCs, security groups, KMS keys, file systems, target groups, ...) the resource carries the
stack's environment tag (`aws:defaultTags`). The statement builders here turn that into IAM: allow by name, allow
by `aws:ResourceTag`, allow creating a resource only with the environment's tag in the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .settings import BootstrapSettings

Statement = dict[str, Any]


@dataclass(frozen=True)
class AwsAccount:
    """Where the policies apply: ARN partition and account id."""

    partition: str
    account_id: str

    def iam_arn(self, resource: str) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:{resource}"

    def s3_arn(self, resource: str) -> str:
        return f"arn:{self.partition}:s3:::{resource}"

    def arn(self, service: str, resource: str) -> str:
        """A regional ARN in this account, any region (`aws:RequestedRegion` limits the region)."""
        return f"arn:{self.partition}:{service}:*:{self.account_id}:{resource}"


@dataclass(frozen=True)
class EnvironmentScope:
    settings: BootstrapSettings
    account: AwsAccount
    environment: str

    @property
    def prefix(self) -> str:
        """`<applicationName>-<env>`, e.g. `jobs-dev`."""
        return self.settings.name_prefix(self.environment)

    @property
    def tag_key(self) -> str:
        return self.settings.environment_tag_key

    def arns(self, service: str, *resources: str) -> list[str]:
        return [self.account.arn(service, resource) for resource in resources]

    # --- Conditions ---

    def region(self) -> dict[str, Any]:
        return {"StringEquals": {"aws:RequestedRegion": list(self.settings.allowed_regions)}}

    def tagged(self) -> dict[str, Any]:
        """The resource already carries this environment's tag."""
        return {"StringEquals": {f"aws:ResourceTag/{self.tag_key}": self.environment}}

    def tagging_request(self) -> dict[str, Any]:
        """The request creates the resource with this environment's tag."""
        return {"StringEquals": {f"aws:RequestTag/{self.tag_key}": self.environment}}

    # --- Statements (every one limited to the allowed regions unless `global_service`) ---

    def allow(
        self,
        sid: str,
        actions: Iterable[str],
        resources: str | Sequence[str],
        *conditions: Mapping[str, Any],
        global_service: bool = False,
    ) -> Statement:
        merged: dict[str, Any] = {} if global_service else _copy(self.region())
        for condition in conditions:
            for operator, checks in condition.items():
                merged.setdefault(operator, {}).update(checks)
        statement: Statement = {
            "Sid": sid,
            "Effect": "Allow",
            "Action": sorted(set(actions)),
            "Resource": resources if isinstance(resources, str) else sorted(set(resources)),
        }
        if merged:
            statement["Condition"] = merged
        return statement

    def allow_tagged(self, sid: str, actions: Iterable[str]) -> Statement:
        """Existing resources of this environment, found by tag (ARNs with an id and no name)."""
        return self.allow(sid, actions, "*", self.tagged())

    def allow_create(self, sid: str, created: Mapping[str, Iterable[str]], service: str) -> list[Statement]:
        """Create actions, each only on the type of resource it creates (`{action: [ARN resource part]}`) and only
        with the environment's tag: a parent resource the call also names (the VPC of a new subnet) is then
        authorized by `allow_tagged`, so a subnet can never be added to another environment's VPC. Actions that
        create the same resource types share a statement."""
        grouped: dict[tuple[str, ...], list[str]] = {}
        for action, resources in created.items():
            grouped.setdefault(tuple(sorted(resources)), []).append(action)
        statements = []
        for index, (resources, actions) in enumerate(sorted(grouped.items())):
            arns = "*" if resources == ("*",) else [self.account.arn(service, r) for r in resources]
            statements.append(self.allow(f"{sid}{index}", actions, arns, self.tagging_request()))
        return statements


def _copy(condition: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {operator: dict(checks) for operator, checks in condition.items()}
