"""A small evaluator of role trust policies for GitHub OIDC tokens (test helper).

Supports what trust policies for web identity use: Allow/Deny statements, a Federated principal,
StringEquals / StringLike conditions on token claims. Any other operator raises, so a policy that
relies on one cannot pass a test by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

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
