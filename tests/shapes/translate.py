"""Turn a planned resource's inputs into the AWS API request(s) its provider would send.

Pulumi's input names are the API's members in camelCase, except where a type's rename table says otherwise.
Every input key must land on an API member, or be declared provider-only with a reason: a new input can never
slip past validation unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore.model import Shape, StructureShape

from runner.records import ResourceRecord, unwrap_secrets
from tests.shapes.unknowns import MockValues
from tests.shapes.validator import Problem, Unknown, members, operation_model

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class To:
    """Where an input goes in the request.

    `target` is a member path: `Member.Sub` relative to the structure the input's parent maps to, `/Member` from
    the request's root, `Operation:Member` in another request the provider sends for the same resource, `.` to
    merge the input's members into the parent's structure (the API has them flat).
    """

    target: str
    convert: Converter | None = None


@dataclass(frozen=True)
class ProviderOnly:
    """An input the provider consumes itself; nothing of it reaches an API request."""

    reason: str


@dataclass(frozen=True)
class ApiMapping:
    """How one Pulumi resource type becomes API requests."""

    service: str
    """botocore service name, e.g. `ecs`."""
    operation: str
    """The create request, e.g. `RegisterTaskDefinition`."""
    renames: Mapping[str, To | ProviderOnly] = field(default_factory=dict)
    """The one rename table: dotted Pulumi input path (list items add no segment) to its API member."""
    provider_sends: Mapping[str, Callable[[ResourceRecord], Any]] = field(default_factory=dict)
    """Members the provider fills in itself (auto-names, idempotency tokens), by target path as in `To`."""


@dataclass
class Translation:
    requests: dict[str, dict[str, Any]]
    problems: list[Problem]


def translate(resource: ResourceRecord, mapping: ApiMapping, unknowns: MockValues) -> Translation:
    walker = _Walker(mapping, unknowns)
    root = walker.requests[mapping.operation]
    walker.structure(unwrap_secrets(resource.inputs), walker.root_shape(mapping.operation), root, "", mapping.operation)
    for target, fill in mapping.provider_sends.items():
        # A follow-up request is sent only when some input calls for it.
        follow_up = target.split(":", 1)[0] if ":" in target else None
        if follow_up is None or follow_up in walker.requests:
            walker.place(fill(resource), target, root, walker.root_shape(mapping.operation), mapping.operation, "")
    return Translation(requests=walker.requests, problems=walker.problems)


class _Walker:
    def __init__(self, mapping: ApiMapping, unknowns: MockValues) -> None:
        self.mapping = mapping
        self.unknowns = unknowns
        self.requests: dict[str, dict[str, Any]] = {mapping.operation: {}}
        self.problems: list[Problem] = []

    def root_shape(self, operation: str) -> StructureShape:
        shape = operation_model(self.mapping.service, operation).input_shape
        assert isinstance(shape, StructureShape), f"{self.mapping.service} {operation} takes no input structure"
        return shape

    def structure(
        self, values: Mapping[str, Any], shape: StructureShape, out: dict[str, Any], path: str, op: str
    ) -> None:
        for key, value in values.items():
            if value is None:
                continue
            input_path = f"{path}.{key}" if path else key
            rule = self.mapping.renames.get(input_path)
            if isinstance(rule, ProviderOnly):
                continue
            if rule is None:
                member = match_member(key, shape)
                if member is None:
                    self.problems.append(Problem(f"input {input_path}", _unmapped(key, shape)))
                    continue
                rule = To(member)
            converted = rule.convert(value) if rule.convert else value
            if rule.target == ".":
                self.structure(converted, shape, out, input_path, op)
            else:
                self.place(converted, rule.target, out, shape, op, input_path)

    def place(self, value: Any, target: str, out: dict[str, Any], shape: Shape, op: str, path: str) -> None:
        """Put `value` at `target` (see `To`), creating the containers on the way."""
        if ":" in target:
            op, target = target.split(":", 1)
            out, shape = self.requests.setdefault(op, {}), self.root_shape(op)
        elif target.startswith("/"):
            out, shape, target = self.requests[op], self.root_shape(op), target[1:]
        container: Any = out
        segments = target.split(".")
        for index, segment in enumerate(segments):
            name, item = _split_item(segment)
            child = _child_shape(shape, name, target)
            last = index == len(segments) - 1
            if item is None:
                if last:
                    container[name] = self.value(value, child, path, op)
                    return
                container, shape = container.setdefault(name, {}), child
                continue
            items = container.setdefault(name, [])
            if item == "+" and last and isinstance(value, list):  # several items at once (flattened attributes)
                items.extend(self.value(v, child.member, path, op) for v in value)  # type: ignore[attr-defined]
                return
            if item == "+" or not items:
                items.append({} if not last else None)
            item_shape = child.member  # type: ignore[attr-defined]
            if last:
                items[-1] = self.value(value, item_shape, path, op)
                return
            container, shape = items[-1], item_shape

    def value(self, value: Any, shape: Shape, path: str, op: str) -> Any:
        if isinstance(shape, StructureShape) and isinstance(value, Mapping) and not shape.is_document_type:
            translated: dict[str, Any] = {}
            self.structure(value, shape, translated, path, op)
            return translated
        if shape.type_name == "list" and isinstance(value, list):
            return [self.value(item, shape.member, path, op) for item in value]  # type: ignore[attr-defined]
        if shape.type_name == "list" and isinstance(value, Mapping):
            return self.value(_as_key_value_list(value, shape.member), shape, path, op)  # type: ignore[attr-defined]
        if shape.type_name == "map" and isinstance(value, Mapping):
            return {
                self.value(k, shape.key, path, op): self.value(v, shape.value, path, op)  # type: ignore[attr-defined]
                for k, v in value.items()
            }
        if isinstance(value, str):
            source = self.unknowns.source_of(value)
            return Unknown(source) if source else value
        return value


def _split_item(segment: str) -> tuple[str, str | None]:
    """`Name[]` is the last item of list `Name` (created if absent), `Name[+]` a new item appended to it (or
    several, when the value is a list)."""
    for suffix, item in (("[]", ""), ("[+]", "+")):
        if segment.endswith(suffix):
            return segment[: -len(suffix)], item
    return segment, None


def _child_shape(shape: Shape, name: str, target: str) -> Shape:
    if shape.type_name == "map":
        return shape.value  # type: ignore[attr-defined]
    members = getattr(shape, "members", {})
    assert name in members, f"rename target {target!r}: {shape.name} has no member {name!r} ({', '.join(members)})"
    return members[name]


def match_member(key: str, shape: StructureShape) -> str | None:
    """The member an input key names: same name, or same name but for case (the provider's JSON decoding and
    camelCase naming both ignore case)."""
    names = members(shape)
    if key in names:
        return key
    folded = [name for name in names if name.lower() == key.lower()]
    return folded[0] if len(folded) == 1 else None


def _as_key_value_list(values: Mapping[str, Any], item_shape: Shape) -> list[dict[str, Any]]:
    """A Pulumi map (tags, dimensions) as the API's list of key/value structures."""
    members = list(getattr(item_shape, "members", {}))
    key = next((m for m in members if m.lower() in ("key", "name", "tagkey")), None)
    value = next((m for m in members if m.lower() in ("value", "tagvalue")), None)
    assert key and value, f"{item_shape.name} is not a key/value structure (members: {members})"
    return [{key: k, value: v} for k, v in values.items()]


def _unmapped(key: str, shape: StructureShape) -> str:
    return (
        f"`{key}` matches no member of {shape.name} ({', '.join(members(shape))}); name its API member in the "
        "type's rename table, or mark it provider-only with the reason"
    )
