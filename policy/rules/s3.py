"""S3: public access granted through ACLs (canned or grants) and through bucket policies.

What counts as public follows S3's own definition ("The meaning of public", S3 User Guide): an ACL grant to
the AllUsers or AuthenticatedUsers group, or a policy statement that allows `*` unless a condition pins it to
fixed values of the keys S3 accepts as restricting (aws:SourceIp CIDRs, aws:SourceArn, aws:SourceVpc,
aws:SourceVpce, aws:SourceOwner, aws:SourceAccount, aws:userid, ...). The public access block settings are a
stack policy in `stack.py`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

from .base import CRITICAL, MANDATORY, InvalidJson, Resource, as_list, parse_json_prop, resource_policy

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
BUCKET_ACL_TYPES = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
OBJECT_TYPES = ("aws:s3/bucketObject:BucketObject", "aws:s3/bucketObjectv2:BucketObjectv2")
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"

PUBLIC_CANNED_ACLS = {"public-read", "public-read-write", "authenticated-read"}
PUBLIC_GROUPS = {
    "http://acs.amazonaws.com/groups/global/AllUsers": "AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers": "AuthenticatedUsers",
}
# Condition keys that keep a `*` principal from being public when pinned to fixed values (S3 "meaning of
# public"; IAM Access Analyzer also accepts the organization and principal keys).
RESTRICTING_KEYS = {
    "aws:sourceip",
    "aws:sourcearn",
    "aws:sourcevpc",
    "aws:sourcevpce",
    "aws:sourceowner",
    "aws:sourceaccount",
    "aws:userid",
    "aws:principalorgid",
    "aws:principalaccount",
    "aws:principalarn",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
    "s3:dataaccesspointaccount",
    "s3:dataaccesspointarn",
}
# Operators that only match the listed values; negated and ...IfExists operators let other requests through.
RESTRICTING_OPERATORS = {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike", "ipaddress"}
# S3 treats a CIDR shorter than /8 as public.
MIN_PRIVATE_PREFIX = 8


# --- ACLs -------------------------------------------------------------------------------------------------


def _grantee_group(grantee: Mapping[str, Any]) -> str | None:
    return PUBLIC_GROUPS.get(str(grantee.get("uri") or "").strip())


def public_acl_findings(resource: Resource) -> Iterator[str]:
    props = resource.props
    acl = str(props.get("acl") or "").strip().lower()
    if acl in PUBLIC_CANNED_ACLS:
        yield f"acl is '{acl}', which grants access to everyone"
    for grant in as_list(props.get("grants")):  # aws.s3.Bucket's inline grants
        group = _grantee_group(grant)
        if group:
            yield f"a grant gives {as_list(grant.get('permissions'))} to the {group} group"
    policy = props.get("accessControlPolicy")  # aws.s3.BucketAcl
    for grant in as_list(policy.get("grants")) if isinstance(policy, Mapping) else []:
        grantee = grant.get("grantee")
        group = _grantee_group(grantee) if isinstance(grantee, Mapping) else None
        if group:
            yield f"accessControlPolicy grants {grant.get('permission')} to the {group} group"


# --- Bucket policies --------------------------------------------------------------------------------------


def _is_everyone(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        return any(str(p).strip() == "*" for p in as_list(principal.get("AWS")))
    return False


def _fixed(value: Any, key: str) -> bool:
    text = str(value)
    if "*" in text or "?" in text or "${" in text:
        return False
    if key == "aws:sourceip":
        try:
            return ipaddress.ip_network(text, strict=False).prefixlen >= MIN_PRIVATE_PREFIX
        except ValueError:
            return False
    return bool(text.strip())


def restricts(condition: Any) -> bool:
    """True when a statement's Condition pins a restricting key to fixed values."""
    if not isinstance(condition, Mapping):
        return False
    for operator, tests in condition.items():
        operator_name = str(operator).lower()
        if operator_name.split(":")[-1] not in RESTRICTING_OPERATORS or not isinstance(tests, Mapping):
            continue  # ForAnyValue:/ForAllValues: prefixes keep the operator after the colon
        for key, values in tests.items():
            key_name = str(key).lower()
            if key_name in RESTRICTING_KEYS and as_list(values) and all(_fixed(v, key_name) for v in as_list(values)):
                return True
    return False


def public_statements(document: Any) -> Iterator[str]:
    """The Sid (or 1-based position) of every Allow statement that grants access to everyone."""
    if not isinstance(document, Mapping):
        return
    for index, statement in enumerate(as_list(document.get("Statement"))):
        if not isinstance(statement, Mapping) or str(statement.get("Effect")) != "Allow":
            continue
        everyone = _is_everyone(statement.get("Principal")) or statement.get("NotPrincipal") is not None
        if everyone and not restricts(statement.get("Condition")):
            yield str(statement.get("Sid") or f"#{index + 1}")


def public_policy_findings(resource: Resource) -> Iterator[str]:
    if resource.type not in (BUCKET_POLICY, *BUCKET_TYPES):
        return
    try:
        document = parse_json_prop(resource.props, "policy")
    except InvalidJson as error:
        yield f"{error}; it cannot be checked for public access"
        return
    for sid in public_statements(document):
        yield f"policy statement {sid} allows Principal '*' without a condition that restricts who can use it"


POLICIES = [
    resource_policy(
        name="aws-s3-bucket-disallow-public-acl",
        description="S3 buckets and objects must not grant access to everyone through ACLs.",
        resource_types=[*BUCKET_TYPES, *BUCKET_ACL_TYPES, *OBJECT_TYPES],
        check=public_acl_findings,
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="S3.2",
        remediation="Remove the public canned ACL or AllUsers/AuthenticatedUsers grant, keep object ownership at "
        "`BucketOwnerEnforced` (ACLs disabled) and serve public content through CloudFront with origin access "
        "control.",
    ),
    resource_policy(
        name="aws-s3-bucket-disallow-public-policy",
        description="S3 bucket policies must not allow access to everyone.",
        resource_types=[BUCKET_POLICY, *BUCKET_TYPES],
        check=public_policy_findings,
        severity=CRITICAL,
        level=MANDATORY,
        fsbp="S3.2",
        remediation="Name the principals (accounts, roles, service principals) instead of `*`, or pin `*` with a "
        "condition on aws:SourceVpce, aws:SourceArn, aws:SourceAccount or aws:PrincipalOrgID.",
    ),
]
