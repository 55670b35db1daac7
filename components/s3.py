"""A private, encrypted, TLS-only S3 bucket with expiry: the one way the platform makes a bucket."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.iam import deny_insecure_transport, policy_document


@dataclass(frozen=True)
class PrivateBucket:
    bucket: aws.s3.Bucket
    """The bucket."""
    policy: aws.s3.BucketPolicy
    """Its policy: depend on it before a service writes (ELB checks access when logging is enabled)."""


def private_bucket(
    name: str,
    *,
    bucket_prefix: str,
    expiration_days: int,
    opts: pulumi.ResourceOptions,
    kms_key_arn: pulumi.Input[str] | None = None,
    versioned: bool = False,
    force_destroy: bool = False,
    object_lock_enabled: bool = False,
    grants: Callable[[pulumi.Output[str]], Sequence[Mapping[str, Any]]] | None = None,
    keep_current: bool = False,
) -> PrivateBucket:
    """Public access blocked, bucket-owner-enforced, encrypted (KMS when a key is given, else SSE-S3), objects
    (and old versions) expiring after `expiration_days`, and a policy that denies plaintext transport and adds
    `grants(bucket_arn)`. With `keep_current` (a versioned bucket whose objects are the content, e.g. a website)
    current objects never expire, only replaced and deleted versions do. `object_lock_enabled` (needs `versioned`)
    allows object lock, set only at creation."""
    if keep_current and not versioned:
        raise ValueError("keep_current needs versioned: only old versions can expire when current objects do not")
    if object_lock_enabled and not versioned:
        raise ValueError(f"{name}: object_lock_enabled needs versioned (S3 object lock works on versions)")
    bucket = aws.s3.Bucket(
        name,
        bucket_prefix=bucket_prefix,
        force_destroy=force_destroy,
        object_lock_enabled=object_lock_enabled or None,
        opts=opts,
    )
    aws.s3.BucketPublicAccessBlock(
        f"{name}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    aws.s3.BucketOwnershipControls(
        f"{name}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    if versioned:
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=opts,
        )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{name}-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms" if kms_key_arn else "AES256", kms_master_key_id=kms_key_arn
                ),
                bucket_key_enabled=True if kms_key_arn else None,
            )
        ],
        opts=opts,
    )
    aws.s3.BucketLifecycleConfiguration(
        f"{name}-lifecycle",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-old-versions" if keep_current else "expire-objects",
                status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                expiration=None
                if keep_current
                else aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=expiration_days),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=expiration_days
                )
                if versioned
                else None,
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=7
                ),
            )
        ],
        opts=opts,
    )
    deny_plaintext = deny_insecure_transport("s3:*", [bucket.arn, pulumi.Output.concat(bucket.arn, "/*")])
    policy = aws.s3.BucketPolicy(
        f"{name}-policy",
        bucket=bucket.id,
        policy=policy_document([*(grants(bucket.arn) if grants else ()), deny_plaintext]),
        opts=opts,
    )
    return PrivateBucket(bucket, policy)
