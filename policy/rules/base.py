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


# Resource types each resource policy checks, by policy name (compliance reports tell "not applicable" from "pass").
RESOURCE_TYPES: dict[str, frozenset[str]] = {}


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
    RESOURCE_TYPES[name] = types

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
    resource_types: Sequence[str] = (),
) -> StackValidationPolicy:
    """A policy that runs `check` once over every resource of the stack; `resource_types` are the resources it is
    about (a compliance report tells "not applicable" from "pass" by them)."""
    if resource_types:
        RESOURCE_TYPES[name] = frozenset(resource_types)

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


# --- Container definitions, read the way the AWS provider reads them ----------------------------------------

Shape = Mapping[str, "Shape | None"]
"""The fields of a JSON object the provider decodes into a struct: API (camelCase) name -> shape of the value.

A nested shape means the value is that struct (or a list of it); None means a scalar, a list of scalars or a
free-form map (`dockerLabels`, `options`), whose keys are data and are never folded."""

_NAME_VALUE: Shape = {"name": None, "value": None}
_SECRET: Shape = {"name": None, "valueFrom": None}
CONTAINER_FIELDS: Shape = {
    "name": None,
    "image": None,
    "repositoryCredentials": {"credentialsParameter": None},
    "cpu": None,
    "memory": None,
    "memoryReservation": None,
    "links": None,
    "portMappings": {
        "containerPort": None,
        "hostPort": None,
        "protocol": None,
        "name": None,
        "appProtocol": None,
        "containerPortRange": None,
    },
    "essential": None,
    "restartPolicy": {"enabled": None, "ignoredExitCodes": None, "restartAttemptPeriod": None},
    "entryPoint": None,
    "command": None,
    "environment": _NAME_VALUE,
    "environmentFiles": {"value": None, "type": None},
    "mountPoints": {"sourceVolume": None, "containerPath": None, "readOnly": None},
    "volumesFrom": {"sourceContainer": None, "readOnly": None},
    "linuxParameters": {
        "capabilities": {"add": None, "drop": None},
        "devices": {"hostPath": None, "containerPath": None, "permissions": None},
        "initProcessEnabled": None,
        "sharedMemorySize": None,
        "tmpfs": {"containerPath": None, "size": None, "mountOptions": None},
        "maxSwap": None,
        "swappiness": None,
    },
    "secrets": _SECRET,
    "dependsOn": {"containerName": None, "condition": None},
    "startTimeout": None,
    "stopTimeout": None,
    "versionConsistency": None,
    "hostname": None,
    "user": None,
    "workingDirectory": None,
    "disableNetworking": None,
    "privileged": None,
    "readonlyRootFilesystem": None,
    "dnsServers": None,
    "dnsSearchDomains": None,
    "extraHosts": {"hostname": None, "ipAddress": None},
    "dockerSecurityOptions": None,
    "interactive": None,
    "pseudoTerminal": None,
    "dockerLabels": None,
    "ulimits": {"name": None, "softLimit": None, "hardLimit": None},
    "logConfiguration": {"logDriver": None, "options": None, "secretOptions": _SECRET},
    "healthCheck": {"command": None, "interval": None, "timeout": None, "retries": None, "startPeriod": None},
    "systemControls": {"namespace": None, "value": None},
    "resourceRequirements": {"value": None, "type": None},
    "firelensConfiguration": {"type": None, "options": None},
    "credentialSpecs": None,
}
"""Every field of the ECS API's ContainerDefinition (and of the structs inside it) that the provider decodes."""

# Go's case folding (encoding/json foldName) also maps these two non-ASCII runes onto ASCII letters.
_NON_ASCII_FOLDS = str.maketrans({"\u017f": "s", "\u212a": "k"})


def fold_key(key: str) -> str:
    """A JSON key folded the way Go's encoding/json matches it to a struct field (case-insensitively)."""
    return key.translate(_NON_ASCII_FOLDS).lower()


class ApiObject(Mapping[str, Any]):
    """A JSON object seen with its keys renamed to the API's camelCase field names, decoded as the provider does.

    terraform-provider-aws (which pulumi-aws wraps) decodes `containerDefinitions` with Go's encoding/json into
    the SDK's `ContainerDefinition` structs, whose field names are matched case-insensitively: `"Privileged"`,
    `"PRIVILEGED"` and `"privileged"` all set the same field, unknown keys are dropped, a later duplicate key
    replaces an earlier value, and duplicate objects merge. Values are read lazily from the source, so a preview
    unknown raises `UnknownValueError` only when that field is read (as with the SDK's proxy).
    """

    def __init__(self, sources: Sequence[Mapping[str, Any]], shape: Shape) -> None:
        self._sources = tuple(sources)
        self._shape = shape
        by_fold = {fold_key(name): name for name in shape}
        self._keys: dict[str, list[tuple[int, str]]] = {}
        for index, source in enumerate(self._sources):
            for key in source:
                name = by_fold.get(fold_key(str(key)))
                if name is not None:
                    self._keys.setdefault(name, []).append((index, key))

    def __getitem__(self, name: str) -> Any:
        places = self._keys[name]
        values = [self._sources[index][key] for index, key in places]
        return _decoded(values, self._shape[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"ApiObject({list(self._keys)})"


class _ApiList(Sequence[Any]):
    """A JSON array whose object items are read as `ApiObject`s of one shape."""

    def __init__(self, items: Sequence[Any], shape: Shape) -> None:
        self._items = items
        self._shape = shape

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return _as_api(self._items[index], self._shape)

    def __len__(self) -> int:
        return len(self._items)


def _as_api(value: Any, shape: Shape) -> Any:
    if isinstance(value, Mapping):
        return ApiObject([value], shape)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return _ApiList(value, shape)
    return value


def _decoded(values: Sequence[Any], shape: Shape | None) -> Any:
    """The value Go ends up with after decoding each of `values` into the same field, in order."""
    merged: list[Mapping[str, Any]] = []
    last: Any = None
    for value in values:
        if isinstance(value, Mapping):
            merged = [*merged, value] if isinstance(last, Mapping) else [value]
        last = value
    if isinstance(last, Mapping):
        if shape is None:  # a free-form map: later keys win, keys kept as written
            return {key: item for mapping in merged for key, item in mapping.items()}
        return ApiObject(merged, shape)
    return _as_api(last, shape) if shape is not None else last


def container_definitions(props: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The containers of an `aws:ecs/taskDefinition` as the provider and ECS read them.

    `containerDefinitions` is a JSON string input (an already decoded list is accepted too). Each container
    comes back as a read-only mapping keyed by the ECS API's camelCase names (`user`, `privileged`,
    `environment`, `linuxParameters.capabilities.add`, ...), nested objects included, whatever key casing the
    program used. Every ECS rule reads containers through this function. Raises `InvalidJson` for text that is
    not JSON; an absent input gives no containers.
    """
    parsed = parse_json_prop(props, "containerDefinitions")
    return read_containers(parsed)


def read_containers(value: Any) -> list[Mapping[str, Any]]:
    """A list of container definitions (or a single one) read with `CONTAINER_FIELDS` (see `ApiObject`)."""
    if value is None:
        return []
    return [_as_api(item, CONTAINER_FIELDS) if isinstance(item, Mapping) else item for item in as_list(value)]
