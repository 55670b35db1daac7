"""The one shape every part of the offline runner speaks: a recorded resource.

The plan (a program run under mocks), a `pulumi stack export` file and a `pulumi preview --json` file are all
turned into a list of `ResourceRecord`; the policy evaluation and the cost estimate read only this. It must not
import `components/`: the pack and the runner are used on other teams' programs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Pulumi's wire marker for a secret value: {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": <plaintext>}.
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270"
# Pulumi's wire marker for a value not known until apply (preview).
UNKNOWN_VALUE = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
REDACTED = "[secret]"


@dataclass(frozen=True)
class ResourceRecord:
    """One resource as the engine would show it to a policy pack."""

    urn: str
    """Full URN, `urn:pulumi:<stack>::<project>::<parent types$>type::name`."""
    type: str
    """Resource type token, e.g. `aws:ecs/taskDefinition:TaskDefinition`."""
    name: str
    """Logical name."""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    """Inputs with camelCase keys; secret values stay wrapped in Pulumi's secret marker."""
    parent: str | None = None
    """URN of the parent resource, None for the stack's direct children."""
    custom: bool = True
    """False for component resources (which have no cloud counterpart)."""
    outputs: Mapping[str, Any] = field(default_factory=dict)
    """Outputs where known (exports carry them; the mock plan echoes inputs plus mock ids)."""
    dependencies: tuple[str, ...] = ()
    """URNs the resource waits for (explicit `depends_on` and those its inputs come from), where known."""
    custom_timeouts: Mapping[str, str] = field(default_factory=dict)
    """`create`/`update`/`delete` timeouts the engine gives the provider, where set."""


def is_secret(value: Any) -> bool:
    return isinstance(value, Mapping) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE


def unwrap_secrets(value: Any) -> Any:
    """Plaintext view of a value, as the engine gives it to policies."""
    if is_secret(value):
        return unwrap_secrets(value.get("value"))
    if isinstance(value, Mapping):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def redact_secrets(value: Any) -> Any:
    """Printable view of a value: every secret replaced by `[secret]`."""
    if is_secret(value):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value
