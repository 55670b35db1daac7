"""Helpers for tests that build components or whole programs under recording mocks."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.plan import record
from runner.records import ResourceRecord, unwrap_secrets


@dataclass
class Recorded:
    """The resources a build registered, with lookups by type and name."""

    resources: list[ResourceRecord]
    outputs: dict[str, Any]

    def of_type(self, type_: str) -> list[ResourceRecord]:
        return [r for r in self.resources if r.type == type_]

    def find(self, type_: str, name: str) -> ResourceRecord:
        matches = [r for r in self.resources if r.type == type_ and r.name == name]
        names = sorted(r.name for r in self.of_type(type_))
        assert len(matches) == 1, f"expected one {type_} named {name!r}; found these: {names}"
        return matches[0]

    def one(self, type_: str) -> ResourceRecord:
        matches = self.of_type(type_)
        assert len(matches) == 1, f"expected one {type_}; found {[r.name for r in matches]}"
        return matches[0]

    def children_of(self, parent: ResourceRecord) -> list[ResourceRecord]:
        return [r for r in self.resources if r.parent == parent.urn]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for resource in self.resources:
            counts[resource.type] = counts.get(resource.type, 0) + 1
        return counts


def build(fn: Callable[[], object], config: Mapping[str, str] | None = None, stack: str = "test") -> Recorded:
    resources, outputs, _ = record(fn, stack=stack, config=config)
    return Recorded(resources, outputs)


def inputs(resource: ResourceRecord) -> dict[str, Any]:
    """Plain inputs (secrets unwrapped), for assertions."""
    return unwrap_secrets(dict(resource.inputs))


def json_input(resource: ResourceRecord, key: str) -> Any:
    """An input that holds a JSON document (policies, container definitions, dashboards)."""
    return json.loads(inputs(resource)[key])


def statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def actions_of(document: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in statements(document):
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def env_map(entries: Iterable[Mapping[str, Any]], value_key: str = "value") -> dict[str, Any]:
    return {e["name"]: e[value_key] for e in entries}
