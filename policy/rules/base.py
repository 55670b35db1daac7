"""The machinery every policy of the pack is built with.

A policy is a plain check function plus metadata. `resource_policy` and `stack_policy` wrap the check into the
SDK's `ResourceValidationPolicy` / `StackValidationPolicy`, so that every policy in the pack:
- only looks at the resource types it names,
- gets its configuration with the schema defaults filled in (the engine does this too; direct calls do not),
- reports each message its check yields as one violation,
- treats preview unknowns as "could not be checked": the SDK's proxy raises `UnknownValueError` on access,
  which the analyzer turns into an advisory "can't run policy ... during preview" diagnostic, never a
  violation. `per_item` keeps one unknown item from hiding findings in the others.

This module must import nothing outside the pack directory: the pack runs on other teams' stacks.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY
LOW, MEDIUM, HIGH, CRITICAL = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL

FSBP_NAME = "aws-foundational-security-best-practices"
FSBP_VERSION = "1.0.0"
FSBP_URL = "https://docs.aws.amazon.com/securityhub/latest/userguide/{service}-controls.html"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Resource:
    """What a resource check sees: the (unknown-checking) props, the policy's config and where it is."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def stack(self) -> str:
        """Stack name from the URN (`urn:pulumi:<stack>::<project>::...`)."""
        return stack_of(self.urn)


@dataclass(frozen=True)
class Stack:
    """What a stack check sees: every resource of the stack and the policy's config."""

    resources: Sequence[PolicyResource]
    config: Mapping[str, Any]

    def of_type(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if r.resource_type in types]


ResourceCheck = Callable[[Resource], Iterable[str]]
StackFinding = tuple[str, str | None]
"""A stack violation: message and the URN of the offending resource (None: the stack as a whole)."""
StackCheck = Callable[[Stack], Iterable[StackFinding]]


def stack_of(urn: str) -> str:
    parts = urn.split(":", 3)
    return parts[2] if len(parts) > 3 and parts[0] == "urn" else ""


def option(properties: dict[str, dict[str, Any]], required: list[str] | None = None) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties, required=required)


def string_list(description: str, default: list[str]) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string"}, "description": description, "default": default}


def integer(description: str, default: int, minimum: int = 0) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "description": description, "default": default}


def boolean(description: str, default: bool) -> dict[str, Any]:
    return {"type": "boolean", "description": description, "default": default}


ENVIRONMENTS_OPTION = {
    "requiredInStacks": string_list(
        "Stack names (case-insensitive) in which this control applies; other stacks pass.",
        ["prod", "production"],
    )
}


def applies_to_stack(resource: Resource) -> bool:
    stacks = [s.lower() for s in resource.config.get("requiredInStacks", [])]
    return resource.stack.lower() in stacks


def _framework(fsbp: str | None) -> PolicyComplianceFramework | None:
    if fsbp is None:
        return None
    return PolicyComplianceFramework(name=FSBP_NAME, version=FSBP_VERSION, reference=fsbp)


def _tags(service: str, fsbp: str | None) -> list[str]:
    return ["aws", service, "security", *([fsbp] if fsbp else [])]


def _url(service: str, fsbp: str | None) -> str | None:
    if fsbp is None:
        return None
    return FSBP_URL.format(service=fsbp.split(".")[0].lower())


def config_with_defaults(schema: PolicyConfigSchema | None, given: Mapping[str, Any]) -> dict[str, Any]:
    defaults = {k: v["default"] for k, v in (schema.properties if schema else {}).items() if "default" in v}
    return {**defaults, **given}


def resource_policy(
    *,
    name: str,
    description: str,
    resource_types: Sequence[str],
    check: ResourceCheck,
    severity: Severity,
    remediation: str,
    level: EnforcementLevel = ADVISORY,
    fsbp: str | None = None,
    config: PolicyConfigSchema | None = None,
) -> ResourceValidationPolicy:
    """A policy that runs `check` on each resource of one of `resource_types`."""
    types = frozenset(resource_types)

    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type not in types:
            return
        resource = Resource(
            type=args.resource_type,
            name=args.name,
            urn=args.urn,
            props=args.props,
            config=config_with_defaults(config, args.get_config()),
        )
        for message in check(resource):
            report(message, None)

    service = name.split("-")[1]
    return ResourceValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=config,
        severity=severity,
        framework=_framework(fsbp),
        tags=_tags(service, fsbp),
        remediation_steps=remediation,
        url=_url(service, fsbp),
    )


def stack_policy(
    *,
    name: str,
    description: str,
    check: StackCheck,
    severity: Severity,
    remediation: str,
    level: EnforcementLevel = ADVISORY,
    fsbp: str | None = None,
    config: PolicyConfigSchema | None = None,
) -> StackValidationPolicy:
    """A policy that runs `check` once over every resource of the stack."""

    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        stack = Stack(resources=args.resources, config=config_with_defaults(config, args.get_config()))
        for message, urn in check(stack):
            report(message, urn)

    service = name.split("-")[1]
    return StackValidationPolicy(
        name=name,
        description=description,
        validate=validate,
        enforcement_level=level,
        config_schema=config,
        severity=severity,
        framework=_framework(fsbp),
        tags=[*_tags(service, fsbp), "stack"],
        remediation_steps=remediation,
        url=_url(service, fsbp),
    )


# --- Reading props ----------------------------------------------------------------------------------------


def per_item(items: Iterable[T], check: Callable[[T], Iterable[R]]) -> Iterator[R]:
    """Run `check` on every item; an unknown value in one item does not hide findings in the others.

    The first unknown is raised again at the end, so the policy is still reported as not fully checked.
    """
    first_unknown: UnknownValueError | None = None
    for item in items:
        try:
            yield from check(item)
        except UnknownValueError as unknown:
            first_unknown = first_unknown or unknown
    if first_unknown is not None:
        raise first_unknown


def as_list(value: Any) -> list[Any]:
    """A list-valued prop as a list: absent is empty, a single value is a one-item list."""
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def is_true(value: Any) -> bool:
    """True for a boolean true and for its string forms (some exports carry booleans as strings)."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def is_false(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "false"
    return value is False


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


class InvalidJson(ValueError):
    """A prop that must hold JSON does not."""


def parse_json_prop(props: Mapping[str, Any], key: str) -> Any:
    """A JSON-string input (task definitions' containerDefinitions, bucket policies), parsed and proxied.

    An already-decoded value (some exports carry one) is returned as it is: the SDK has proxied it already.
    A parsed string is wrapped the way the SDK wraps props, so an unknown sentinel inside it raises
    `UnknownValueError` on access too.
    """
    raw = props.get(key)
    if not isinstance(raw, str):
        return raw
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidJson(f"{key} is not valid JSON ({error.msg} at position {error.pos})") from error
    return unknown_checking_proxy({key: parsed})[key]
