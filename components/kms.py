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


def shared_or_own_key(
    name: str,
    shared_key_arn: pulumi.Input[str] | None,
    *,
    description: str,
    account_id: pulumi.Input[str],
    region: str,
    opts: pulumi.ResourceOptions,
) -> tuple[aws.kms.Key | None, pulumi.Input[str]]:
    """(None, the stack's shared key ARN) when one is given, else (a new rotating key of the caller's own, its ARN).

    Callers of this grant no service principals in the key policy (their AWS services use the key through grants
    under the account's IAM delegation), so the shared key's policy (`rotating_key` with the platform key's
    principals) covers them.
    """
    if shared_key_arn is not None:
        return None, shared_key_arn
    key = rotating_key(name, description=description, account_id=account_id, region=region, opts=opts)
    return key, key.arn
