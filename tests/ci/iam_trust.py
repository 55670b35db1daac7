"""IAM evaluation for the bootstrap tests.

`allows`: a small evaluator of role trust policies for GitHub OIDC tokens. It supports what trust policies for web identity use: Allow/Deny statements, a Federated principal,
StringEquals / StringLike conditions on token claims. Any other operator raises, so a policy that
relies on one cannot pass a test by accident.

`decisions`: identity policies and a permissions boundary evaluated by iam-simulate (the AWS evaluation logic),
with request context such as resource and request tags.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from tests.iam.simulator import simulate

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


def allows(trust_policy: Mapping[str, Any], provider_arn: str, claims: Mapping[str, str]) -> bool:
    """Would STS let a token with these claims (keys like `<host>:sub`) assume the role?"""
    matching = [statement for statement in trust_policy["Statement"] if _applies(statement, provider_arn, claims)]
    return any(s["Effect"] == "Allow" for s in matching) and not any(s["Effect"] == "Deny" for s in matching)


def _applies(statement: Mapping[str, Any], provider_arn: str, claims: Mapping[str, str]) -> bool:
    actions = statement["Action"]
    if WEB_IDENTITY_ACTION not in (actions if isinstance(actions, list) else [actions]):
        return False
    if statement.get("Principal", {}).get("Federated") != provider_arn:
        return False
    return all(
        _condition_holds(operator, key, expected, claims)
        for operator, checks in statement.get("Condition", {}).items()
        for key, expected in checks.items()
    )


def _condition_holds(operator: str, key: str, expected: str | list[str], claims: Mapping[str, str]) -> bool:
    if key not in claims:
        return False
    values = expected if isinstance(expected, list) else [expected]
    if operator == "StringEquals":
        return claims[key] in values
    if operator == "StringLike":
        return any(fnmatchcase(claims[key], pattern) for pattern in values)
    raise ValueError(f"unsupported condition operator {operator}")


# --- Identity policies, through the real evaluator -------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One call to evaluate: `context` holds request keys such as `aws:ResourceTag/environment`;
    `resource_policy` is the resource's own policy (a KMS key policy must delegate to IAM, as AWS requires);
    `resource_account` the account that owns the resource, when it is not the principal's (cross-account)."""

    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)
    resource_policy: Mapping[str, Any] | None = None
    resource_account: str | None = None


def decisions(
    principal: str,
    identity_policies: Mapping[str, Mapping[str, Any]],
    requests: Sequence[Request],
    boundary: Mapping[str, Any] | None = None,
) -> list[str]:
    """`Allowed`, `ExplicitlyDenied`, `ImplicitlyDenied` or `Error` per request, from iam-simulate through
    tests/iam/simulator.py (the same evaluator the IAM contract uses)."""
    account = principal.split(":")[4]
    results = simulate(
        [
            {
                "id": index,
                "principal": principal,
                "action": request.action,
                "resource": request.resource,
                "accountId": request.resource_account or account,
                "identityPolicies": [{"name": name, "policy": policy} for name, policy in identity_policies.items()],
                "permissionBoundaryPolicies": [{"name": "boundary", "policy": boundary}] if boundary else [],
                "resourcePolicy": request.resource_policy,
                "context": {"aws:SecureTransport": "true", **request.context},
            }
            for index, request in enumerate(requests)
        ]
    )
    return [
        result["result"] if result["result"] != "Error" else f"Error: {json.dumps(result['errors'])[:400]}"
        for result in results
    ]
