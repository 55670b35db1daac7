"""Encryption and logging across services: KMS, SQS, SNS, CloudWatch log groups, S3 helpers, and the
plaintext-secret checks of CodeBuild and Lambda environments."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from . import secrets
from .base import (
    CRITICAL,
    HIGH,
    LOW,
    MANDATORY,
    MEDIUM,
    Resource,
    as_list,
    as_number,
    integer,
    is_false,
    is_true,
    option,
    resource_policy,
    string_list,
)
from .secrets import SECRET_CONFIG

KMS_KEY = "aws:kms/key:Key"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
CODEBUILD_PROJECT = "aws:codebuild/project:Project"
LAMBDA_FUNCTION = "aws:lambda/function:Function"

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PUBLIC_ACCESS_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


# --- KMS, SQS, SNS, logs ----------------------------------------------------------------------------------


def check_key_rotation(resource: Resource) -> Iterator[str]:
    spec = str(resource.props.get("customerMasterKeySpec") or "SYMMETRIC_DEFAULT").upper()
    if spec == "SYMMETRIC_DEFAULT" and not is_true(resource.props.get("enableKeyRotation")):
        yield "enableKeyRotation is not true"


def check_queue_encryption(resource: Resource) -> Iterator[str]:
    # Since October 2022 SQS encrypts new queues with SSE-SQS unless told otherwise (SQS Developer Guide,
    # "Encryption at rest"), so only an explicit `sqsManagedSseEnabled: false` without a KMS key is unencrypted.
    if resource.props.get("kmsMasterKeyId"):
        return
    if is_false(resource.props.get("sqsManagedSseEnabled")):
        yield "sqsManagedSseEnabled is false and no kmsMasterKeyId is set, so messages are stored unencrypted"


def check_topic_encryption(resource: Resource) -> Iterator[str]:
    if not resource.props.get("kmsMasterKeyId"):
        yield "kmsMasterKeyId is not set, so messages are stored unencrypted"


def check_log_retention(resource: Resource) -> Iterator[str]:
    days = as_number(resource.props.get("retentionInDays"))
    minimum = int(resource.config.get("minimumRetentionDays", 7))
    if not days:
        yield "retentionInDays is not set, so logs are kept forever"
    elif days < minimum:
        yield f"retentionInDays is {days:g}; at least {minimum} required"


def check_log_group_key(resource: Resource) -> Iterator[str]:
    if not resource.props.get("kmsKeyId"):
        yield "kmsKeyId is not set, so the log group uses the service-owned key"


# --- CodeBuild and Lambda ---------------------------------------------------------------------------------


def check_codebuild_secrets(resource: Resource) -> Iterator[str]:
    yield from secrets.codebuild_messages(resource.props, resource.config)


def check_codebuild_privileged(resource: Resource) -> Iterator[str]:
    environment = resource.props.get("environment")
    if not isinstance(environment, Mapping) or not is_true(environment.get("privilegedMode")):
        return
    name = str(resource.props.get("name") or resource.name)
    if name not in [str(p) for p in resource.config.get("allowedProjects", [])]:
        yield f"project '{name}' runs in privilegedMode but is not listed in allowedProjects"


def check_lambda_secrets(resource: Resource) -> Iterator[str]:
    yield from secrets.lambda_messages(resource.props, resource.config)


# --- S3 (the stack policies in stack.py use these) --------------------------------------------------------


def blocks_public_access(props: Mapping[str, Any]) -> bool:
    return all(is_true(props.get(flag)) for flag in PUBLIC_ACCESS_FLAGS)


def denies_insecure_transport(policy_document: Any) -> bool:
    """True when a bucket policy denies requests made without TLS (`aws:SecureTransport` false)."""
    document = json.loads(policy_document) if isinstance(policy_document, str) else policy_document
    if not isinstance(document, Mapping):
        return False
    for statement in as_list(document.get("Statement")):
        if not isinstance(statement, Mapping) or str(statement.get("Effect")) != "Deny":
            continue
        condition = statement.get("Condition")
        bool_condition = condition.get("Bool") if isinstance(condition, Mapping) else None
        if isinstance(bool_condition, Mapping):
            values = as_list(bool_condition.get("aws:SecureTransport"))
            if any(str(v).lower() == "false" for v in values):
                return True
    return False


POLICIES = [
    resource_policy(
        name="aws-kms-key-enable-key-rotation",
        description="Symmetric KMS keys should rotate their key material automatically.",
        resource_types=[KMS_KEY],
        check=check_key_rotation,
        severity=MEDIUM,
        fsbp="KMS.4",
        remediation="Set `enableKeyRotation: true`.",
    ),
    resource_policy(
        name="aws-sqs-queue-enable-encryption",
        description="SQS queues must encrypt messages at rest.",
        resource_types=[QUEUE],
        check=check_queue_encryption,
        severity=MEDIUM,
        level=MANDATORY,
        fsbp="SQS.1",
        remediation="Remove `sqsManagedSseEnabled: false` (new queues use SSE-SQS by default), or set `kmsMasterKeyId` "
        "for a customer-managed key.",
    ),
    resource_policy(
        name="aws-sns-topic-enable-encryption",
        description="SNS topics must encrypt messages at rest.",
        resource_types=[TOPIC],
        check=check_topic_encryption,
        severity=MEDIUM,
        level=MANDATORY,
        fsbp="SNS.1",
        remediation="Set `kmsMasterKeyId` (e.g. `alias/aws/sns` or a customer-managed key).",
    ),
    resource_policy(
        name="aws-cloudwatch-loggroup-configure-retention",
        description="CloudWatch log groups should keep logs for a finite, minimum retention period.",
        resource_types=[LOG_GROUP],
        check=check_log_retention,
        severity=MEDIUM,
        fsbp="CloudWatch.16",
        config=option({"minimumRetentionDays": integer("Minimum retentionInDays.", 7, 1)}),
        remediation="Set `retentionInDays` to at least `minimumRetentionDays`.",
    ),
    resource_policy(
        name="aws-cloudwatch-loggroup-use-customer-managed-key",
        description="CloudWatch log groups should be encrypted with a customer-managed KMS key.",
        resource_types=[LOG_GROUP],
        check=check_log_group_key,
        severity=LOW,
        remediation="Set `kmsKeyId` to a KMS key whose policy allows the CloudWatch Logs service principal.",
    ),
    resource_policy(
        name="aws-codebuild-project-disallow-plaintext-secrets",
        description="CodeBuild project environment variables and inline buildspecs must not hold plaintext secrets.",
        resource_types=[CODEBUILD_PROJECT],
        check=check_codebuild_secrets,
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="CodeBuild.2",
        config=SECRET_CONFIG,
        remediation="Store the value in Secrets Manager or SSM and declare the variable with type "
        "`SECRETS_MANAGER` or `PARAMETER_STORE`; rotate the exposed credential.",
    ),
    resource_policy(
        name="aws-codebuild-project-restrict-privileged-mode",
        description="CodeBuild projects should run privileged only when they build Docker images.",
        resource_types=[CODEBUILD_PROJECT],
        check=check_codebuild_privileged,
        severity=HIGH,
        fsbp="CodeBuild.5",
        config=option(
            {"allowedProjects": string_list("Project names that build Docker images and may run privileged.", [])}
        ),
        remediation="Set `environment.privilegedMode: false`, or list the Docker-building project in "
        "`allowedProjects`.",
    ),
    resource_policy(
        name="aws-lambda-function-disallow-plaintext-secrets",
        description="Lambda function environment variables must not hold plaintext secrets.",
        resource_types=[LAMBDA_FUNCTION],
        check=check_lambda_secrets,
        severity=CRITICAL,
        level=MANDATORY,
        config=SECRET_CONFIG,
        remediation="Read the secret at runtime from Secrets Manager or SSM Parameter Store (e.g. the "
        "Parameters and Secrets Lambda extension) and rotate the exposed credential.",
    ),
]
