"""Customer-managed KMS keys: every key the platform makes rotates yearly and has a 30-day deletion window."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.iam import kms_key_policy


def rotating_key(
    name: str,
    *,
    description: str,
    account_id: pulumi.Input[str],
    region: str,
    opts: pulumi.ResourceOptions,
    service_principals: Sequence[str] = (),
) -> aws.kms.Key:
    """A key the account administers and the named services may use on its behalf."""
    return aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=kms_key_policy(account_id, region, service_principals),
        opts=opts,
    )
