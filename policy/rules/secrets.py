"""Plaintext-secret detection shared by the ECS, CodeBuild and Lambda environment policies.

A variable holds a plaintext secret when its name looks like one (PASSWORD, SECRET, TOKEN, API_KEY, ...) and
its value is not a reference (an ARN), or when its value looks like a credential whatever the name (an AWS
access key, a PEM private key, a JWT, a URL with a password, well-known token formats). Messages name the
variable and the reason, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .base import option, string_list

# Name fragments that mark a secret; matched case-insensitively anywhere in the name. They cover FSBP ECS.8's
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and ECS_ENGINE_AUTH_DATA.
DEFAULT_NAME_PATTERNS = [
    r"PASSW(OR)?D",
    r"SECRET",
    r"TOKEN",
    r"API_?KEY",
    r"PRIVATE_?KEY",
    r"ACCESS_?KEY",
    r"CREDENTIAL",
    r"AUTH_DATA",
    r"CONNECTION_?STRING",
]

# Names ending like this hold a reference or a setting, not a secret (e.g. DATABASE_SECRET_ARN).
DEFAULT_IGNORED_SUFFIXES = ["_ARN", "_NAME", "_PATH", "_FILE", "_URL", "_ENDPOINT", "_REGION", "_TTL", "_LENGTH"]

# Value shapes that are credentials whatever the variable is called, each with the label used in messages.
VALUE_PATTERNS: dict[str, str] = {
    r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b": "an AWS access key id",
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----": "a PEM private key",
    r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*": "a JWT",
    r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@": "a URL with embedded credentials",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}\b": "a GitHub token",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}": "a GitHub token",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}": "a Slack token",
    r"\b[sr]k_live_[A-Za-z0-9]{16,}": "a Stripe live key",
    r"\bAIza[0-9A-Za-z_-]{35}\b": "a Google API key",
}

REFERENCE_VALUE = re.compile(r"^arn:aws[a-z-]*:(secretsmanager|ssm|kms):", re.IGNORECASE)

SECRET_CONFIG = option(
    {
        "secretNamePatterns": string_list(
            "Regular expressions (case-insensitive) for variable names that hold secrets; replaces the defaults.",
            DEFAULT_NAME_PATTERNS,
        ),
        "secretValuePatterns": string_list(
            "Regular expressions for values that are credentials whatever the name; replaces the defaults.",
            list(VALUE_PATTERNS),
        ),
        "allowedNames": string_list(
            "Variable names (case-insensitive) never flagged by name; their values are still checked.", []
        ),
        "ignoredNameSuffixes": string_list(
            "Name suffixes (case-insensitive) that mark a reference or setting rather than a secret.",
            DEFAULT_IGNORED_SUFFIXES,
        ),
    }
)


@dataclass(frozen=True)
class SecretDetector:
    name_patterns: tuple[re.Pattern[str], ...]
    value_patterns: tuple[re.Pattern[str], ...]
    allowed_names: frozenset[str]
    ignored_suffixes: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SecretDetector:
        return cls(
            name_patterns=_compile(config, "secretNamePatterns", re.IGNORECASE),
            value_patterns=_compile(config, "secretValuePatterns", 0),
            allowed_names=frozenset(n.upper() for n in config.get("allowedNames", [])),
            ignored_suffixes=tuple(s.upper() for s in config.get("ignoredNameSuffixes", [])),
        )

    def reason(self, name: Any, value: Any) -> str | None:
        """Why `name=value` is a plaintext secret, or None when it is not one."""
        text = "" if value is None else str(value)
        if not text.strip() or REFERENCE_VALUE.match(text):
            return None
        for pattern in self.value_patterns:
            if pattern.search(text):
                return f"its value looks like {VALUE_PATTERNS.get(pattern.pattern, 'a configured secret pattern')}"
        upper = str(name or "").upper()
        if upper in self.allowed_names or upper.endswith(self.ignored_suffixes):
            return None
        if any(p.search(upper) for p in self.name_patterns):
            return "its name marks it as a secret"
        return None


def _compile(config: Mapping[str, Any], key: str, flags: int) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in config.get(key, []):
        try:
            compiled.append(re.compile(pattern, flags))
        except re.error as error:
            raise ValueError(f"policy config {key}: {pattern!r} is not a valid regular expression ({error})") from error
    return tuple(compiled)


def secret_message(where: str, name: Any, reason: str, fix: str) -> str:
    return f"{where} environment variable '{name}' is a plaintext secret: {reason}; {fix}."
