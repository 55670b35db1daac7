"""IAM and KMS policy documents as plain data, so tests and the policy pack read them as JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi

Statement = Mapping[str, Any]


def policy_document(statements: Sequence[pulumi.Input[Statement]]) -> pulumi.Output[str]:
    """A policy document JSON string from statements that may hold Outputs (ARNs)."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(actions: Sequence[str], resources: Sequence[pulumi.Input[str]], sid: str | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": sorted(actions), "Resource": list(resources)}
    if sid:
        statement["Sid"] = sid
    return statement


def deny_insecure_transport(action: str, resources: pulumi.Input[str] | Sequence[pulumi.Input[str]]) -> dict[str, Any]:
    """Resource-policy statement refusing every request that does not use TLS."""
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resources,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def assume_role_policy(service: str, account_id: pulumi.Input[str] | None = None) -> pulumi.Output[str]:
    """Trust policy for an AWS service; with `account_id`, only on behalf of this account (confused deputy)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    if account_id is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account_id}}
    return policy_document([statement])


def kms_key_policy(
    account_id: pulumi.Input[str],
    region: str,
    service_principals: Sequence[str],
) -> pulumi.Output[str]:
    """Key policy: the account administers the key; each named service may use it for this account only."""
    admin = {
        "Sid": "AccountAdministers",
        "Effect": "Allow",
        "Principal": {"AWS": pulumi.Output.concat("arn:aws:iam::", account_id, ":root")},
        "Action": "kms:*",
        "Resource": "*",
    }
    return policy_document([admin, *(_service_use(p, account_id, region) for p in sorted(service_principals))])


def _service_use(principal: str, account_id: pulumi.Input[str], region: str) -> dict[str, Any]:
    condition: dict[str, Any]
    if principal == "logs.amazonaws.com":
        # CloudWatch Logs uses its regional principal and scopes by the log group ARN in the encryption context.
        principal = f"logs.{region}.amazonaws.com"
        log_groups = pulumi.Output.concat("arn:aws:logs:", region, ":", account_id, ":*")
        condition = {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}}
    else:
        condition = {"StringEquals": {"aws:SourceAccount": account_id}}
    return {
        "Sid": "Use" + principal.split(".")[0].title().replace("-", ""),
        "Effect": "Allow",
        "Principal": {"Service": principal},
        "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"],
        "Resource": "*",
        "Condition": condition,
    }
