"""The account and region's ECR pull-through cache for public.ecr.aws, owned by exactly one stack.

Images the platform runs from public registries (the tracing collector) are pulled through this account's ECR, so
the pack's registry rule holds and the images are scanned like ours. The rule is one per account, region and
prefix, like the registry scanning configuration: `images.managePullThroughCache` in one stack only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.tracing import PULL_THROUGH_CACHE_PREFIX, PULL_THROUGH_CACHE_UPSTREAM


@dataclass(frozen=True)
class PullThroughCacheArgs:
    ecr_repository_prefix: str = PULL_THROUGH_CACHE_PREFIX
    """Prefix of the cached repositories in this registry. Default: ecr-public."""
    upstream_registry_url: str = PULL_THROUGH_CACHE_UPSTREAM
    """Public registry cached (ECR Public needs no credentials). Default: public.ecr.aws."""


class PullThroughCache(pulumi.ComponentResource):
    rule_prefix: pulumi.Output[str]
    """The cached repositories' prefix, as created."""

    def __init__(self, name: str, args: PullThroughCacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("container-platform:registry-cache:PullThroughCache", name, None, opts)
        rule = aws.ecr.PullThroughCacheRule(
            f"{name}-rule",
            ecr_repository_prefix=args.ecr_repository_prefix,
            upstream_registry_url=args.upstream_registry_url,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.rule_prefix = rule.ecr_repository_prefix
        self.register_outputs({"rule_prefix": self.rule_prefix})
