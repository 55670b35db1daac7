"""Read what the offline runner evaluates: resources from a file, and a policy-pack config file.

Resource files come in three formats, detected from their shape:
- `pulumi stack export` (deployment v3): `{"deployment": {"resources": [{urn, type, inputs, outputs, ...}]}}`
- `pulumi preview --json`: `{"steps": [{"op", "newState": {urn, type, inputs, ...}}]}` (deletes skipped)
- a plain list: `[{"type", "name", "props"}]` (URNs synthesized)

Secret values the file does not reveal (a stack export's ciphertext, preview's `[secret]`) become unknown
values, so policies report them as not checked instead of guessing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.records import SECRET_SIG_KEY, SECRET_SIG_VALUE, UNKNOWN_VALUE, ResourceRecord

FORMATS = (
    'a `pulumi stack export` file ({"deployment": {"resources": [...]}}), '
    'a `pulumi preview --json` file ({"steps": [...]}), '
    'or a JSON list of {"type", "name", "props"} objects'
)
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")
SKIPPED_TYPES = ("pulumi:pulumi:Stack",)
SKIPPED_STEPS = ("delete", "delete-replaced", "discard", "discard-replaced", "read-discard", "remove-pending-replace")
PREVIEW_SECRET = "[secret]"
OFFLINE_STACK = "offline"
OFFLINE_PROJECT = "offline"


class PolicyInputError(Exception):
    """An input file cannot be used; the message names the file, what is wrong and what is allowed."""


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyInputError(f"{path}: cannot read the {what} ({error})") from error
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as error:
        raise PolicyInputError(
            f"{path}: the {what} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from error


# --- Resources --------------------------------------------------------------------------------------------


def load_resources(path: Path) -> list[ResourceRecord]:
    """Every resource in a stack export, preview JSON or plain list file."""
    data = _read_json(path, "resource file")
    if isinstance(data, Mapping) and isinstance(data.get("deployment"), Mapping):
        return _from_stack_export(path, data["deployment"])
    if isinstance(data, Mapping) and isinstance(data.get("steps"), list):
        return _from_preview(path, data["steps"])
    if isinstance(data, list):
        return _from_plain_list(path, data)
    raise PolicyInputError(f"{path}: unknown resource file format; expected {FORMATS}")


def _from_stack_export(path: Path, deployment: Mapping[str, Any]) -> list[ResourceRecord]:
    resources = deployment.get("resources")
    resources = [] if resources is None else resources
    if not isinstance(resources, list):
        raise PolicyInputError(f"{path}: deployment.resources must be a list; expected {FORMATS}")
    stack_urns = {r.get("urn") for r in resources if isinstance(r, Mapping) and r.get("type") in SKIPPED_TYPES}
    return [
        _state_record(path, f"deployment.resources[{i}]", state, stack_urns)
        for i, state in enumerate(resources)
        if not (isinstance(state, Mapping) and (state.get("type") in SKIPPED_TYPES or state.get("delete")))
    ]


def _from_preview(path: Path, steps: list[Any]) -> list[ResourceRecord]:
    states = [
        (i, step["newState"])
        for i, step in enumerate(steps)
        if isinstance(step, Mapping) and step.get("op") not in SKIPPED_STEPS and step.get("newState")
    ]
    stack_urns = {s.get("urn") for _, s in states if isinstance(s, Mapping) and s.get("type") in SKIPPED_TYPES}
    return [
        _state_record(path, f"steps[{i}].newState", state, stack_urns)
        for i, state in states
        if not (isinstance(state, Mapping) and state.get("type") in SKIPPED_TYPES)
    ]


def _state_record(path: Path, where: str, state: Any, stack_urns: set[Any]) -> ResourceRecord:
    if (
        not isinstance(state, Mapping)
        or not isinstance(state.get("urn"), str)
        or not isinstance(state.get("type"), str)
    ):
        raise PolicyInputError(f"{path}: {where} must be an object with string `urn` and `type`")
    urn = state["urn"]
    parent = state.get("parent")
    return ResourceRecord(
        urn=urn,
        type=state["type"],
        name=urn.rsplit("::", 1)[-1],
        inputs=_object(path, where, state, "inputs"),
        outputs=_object(path, where, state, "outputs"),
        parent=None if not parent or parent in stack_urns else str(parent),
        custom=bool(state.get("custom", True)),
    )


def _object(path: Path, where: str, state: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = state.get(key)
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise PolicyInputError(f"{path}: {where}.{key} must be an object")
    return {k: _file_secret(v) for k, v in value.items()}


def _file_secret(value: Any) -> Any:
    """A secret as the engine would send it: wrapped plaintext when the file has it, else unknown."""
    if value == PREVIEW_SECRET:
        return UNKNOWN_VALUE
    if isinstance(value, Mapping) and value.get(SECRET_SIG_KEY) == SECRET_SIG_VALUE:
        if "plaintext" in value:
            return {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": _file_secret(json.loads(value["plaintext"]))}
        if "value" in value:
            return {SECRET_SIG_KEY: SECRET_SIG_VALUE, "value": _file_secret(value["value"])}
        return UNKNOWN_VALUE
    if isinstance(value, Mapping):
        return {k: _file_secret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_file_secret(v) for v in value]
    return value


def _from_plain_list(path: Path, items: list[Any]) -> list[ResourceRecord]:
    records = []
    for i, item in enumerate(items):
        if (
            not isinstance(item, Mapping)
            or not isinstance(item.get("type"), str)
            or not isinstance(item.get("name"), str)
        ):
            raise PolicyInputError(
                f'{path}: item {i} must be an object with string "type" and "name"; expected {FORMATS}'
            )
        props = item.get("props")
        props = {} if props is None else props
        if not isinstance(props, Mapping):
            raise PolicyInputError(f'{path}: item {i} ("{item["name"]}"): "props" must be an object')
        records.append(
            ResourceRecord(
                urn=f"urn:pulumi:{OFFLINE_STACK}::{OFFLINE_PROJECT}::{item['type']}::{item['name']}",
                type=item["type"],
                name=item["name"],
                inputs=dict(props),
            )
        )
    return records


# --- Policy-pack config -----------------------------------------------------------------------------------


def load_policy_config(path: Path) -> dict[str, Any]:
    """A `--policy-pack-config` file: `{"<policy name>" | "all": "<level>" | {"enforcementLevel"?, ...}}`."""
    data = _read_json(path, "policy config")
    if data is None:
        return {}
    try:
        return validate_policy_config(data)
    except ValueError as error:
        raise PolicyInputError(f"{path}: {error}") from error


def validate_policy_config(data: Any) -> dict[str, Any]:
    """The config's shape, checked as the engine does; raises ValueError naming the bad entry."""
    if not isinstance(data, Mapping):
        raise ValueError(
            'the policy config must be a JSON object keyed by policy name or "all", e.g. '
            '{"all": "advisory", "aws-ecs-taskdefinition-disallow-root-user": {"enforcementLevel": "disabled"}}'
        )
    for key, value in data.items():
        if isinstance(value, str):
            _check_level(key, value)
        elif isinstance(value, Mapping):
            if "enforcementLevel" in value:
                _check_level(key, value["enforcementLevel"])
        else:
            raise ValueError(f'"{key}": {json.dumps(value)} is not valid; use an enforcement level or an object')
    return dict(data)


# A program declares policy config it knows from its stack (e.g. the routes its stack makes public on purpose) as
# this stack output; the runner applies it under the --policy-config file's entries.
PROGRAM_POLICY_CONFIG_OUTPUT = "policyPackConfig"


def with_program_policy_config(given: Mapping[str, Any] | None, outputs: Mapping[str, Any]) -> dict[str, Any] | None:
    """`given` (the --policy-config file) over the program's `policyPackConfig` output, per policy and property: the
    file's level or property wins, the program's other properties stay."""
    declared = outputs.get(PROGRAM_POLICY_CONFIG_OUTPUT)
    if not declared:
        return dict(given) if given is not None else None
    try:
        merged = {name: _as_entry(entry) for name, entry in validate_policy_config(declared).items()}
    except ValueError as error:
        raise PolicyInputError(f"the program's {PROGRAM_POLICY_CONFIG_OUTPUT} output: {error}") from error
    for name, entry in (given or {}).items():
        merged[name] = {**merged.get(name, {}), **_as_entry(entry)}
    return merged


def _as_entry(entry: Any) -> dict[str, Any]:
    return {"enforcementLevel": entry} if isinstance(entry, str) else dict(entry)


def _check_level(key: str, level: Any) -> None:
    if level not in ENFORCEMENT_LEVELS:
        raise ValueError(f'"{key}": enforcement level {json.dumps(level)} is not one of {list(ENFORCEMENT_LEVELS)}')


# --- Stack-reference outputs ------------------------------------------------------------------------------

STACK_OUTPUT_FORMATS = (
    "a JSON object of outputs (`pulumi stack output --json --show-secrets`) "
    'or a `pulumi stack export --show-secrets` file ({"deployment": {"resources": [...]}})'
)


def load_stack_outputs(path: Path) -> tuple[dict[str, Any], frozenset[str]]:
    """Another stack's outputs and the names of its secret outputs, from an outputs object or a stack export.

    Secrets the file does not reveal (`[secret]`, ciphertext) become unknown values, as in a preview.
    """
    data = _read_json(path, "stack outputs file")
    if isinstance(data, Mapping) and isinstance(data.get("deployment"), Mapping):
        data = _stack_resource_outputs(path, data["deployment"])
    if not isinstance(data, Mapping):
        raise PolicyInputError(f"{path}: expected {STACK_OUTPUT_FORMATS}")
    outputs: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in data.items():
        plain = _file_secret(value)
        if plain != value or value == PREVIEW_SECRET:
            secrets.add(str(key))
        outputs[str(key)] = plain.get("value") if isinstance(plain, Mapping) and SECRET_SIG_KEY in plain else plain
    return outputs, frozenset(secrets)


def _stack_resource_outputs(path: Path, deployment: Mapping[str, Any]) -> Any:
    resources = deployment.get("resources")
    for state in resources if isinstance(resources, list) else []:
        if isinstance(state, Mapping) and state.get("type") == SKIPPED_TYPES[0]:
            return state.get("outputs") or {}
    raise PolicyInputError(f"{path}: the stack export has no pulumi:pulumi:Stack resource, so no outputs")
