"""Docs generated from the config models: the stack config reference in README.md and a JSON Schema for editors.

`python -m components.docgen` rewrites the README block between the markers and `schema/stack-config.schema.json`;
tests fail when either drifts. Descriptions are the fields' docstrings, attached here (`describe_config_models`)
rather than by pydantic's `use_attribute_docstrings`, which would read the source at every plan's import.
"""

from __future__ import annotations

import ast
import functools
import itertools
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BaseModel

from components import config as config_module
from components.config import ENVIRONMENTS, ConfigModel, StackConfig, parse_stack_config

EXAMPLE_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
BEGIN, END = "<!-- BEGIN STACK CONFIG (python -m components.docgen) -->", "<!-- END STACK CONFIG -->"
ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCHEMA = ROOT / "schema" / "stack-config.schema.json"
PROJECT = "container-platform"


def field_docstrings(source: str) -> dict[str, dict[str, str]]:
    """{class name: {field name: docstring}} for every class in a module's source (components' Args dataclasses)."""
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        for current, following in itertools.pairwise(node.body):
            if (
                isinstance(current, ast.AnnAssign)
                and isinstance(current.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[current.target.id] = " ".join(following.value.value.split())
        found[node.name] = docs
    return found


@functools.cache
def describe_config_models() -> None:
    """Give every config field its docstring as description (what `use_attribute_docstrings` would). Models are
    rebuilt in definition order, so each one that nests another embeds the described version."""
    docs = field_docstrings(Path(config_module.__file__).read_text())
    models = [m for m in vars(config_module).values() if isinstance(m, type) and issubclass(m, ConfigModel)]
    for model in models:
        for name, info in model.model_fields.items():
            if info.description is None and name in docs.get(model.__name__, {}):
                info.description = docs[model.__name__][name]
        model.model_rebuild(force=True)


def config_rows() -> list[tuple[str, str, list[str], str]]:
    """(key, type, default per environment, description) for every stack config key."""
    describe_config_models()
    defaults = {env: parse_stack_config({"environment": env, "certificateArn": EXAMPLE_CERT}) for env in ENVIRONMENTS}
    rows: list[tuple[str, str, list[str], str]] = []

    def walk(model: type[BaseModel], path: str, values: dict[str, Any]) -> None:
        for name, info in model.model_fields.items():
            key = f"{path}{name}"
            nested = _section(info.annotation)
            if nested is not None:
                walk(nested, f"{key}.", {env: getattr(v, name) for env, v in values.items()})
                continue
            shown = [_show(getattr(values[env], name)) for env in ENVIRONMENTS]
            if key == "certificateArn":
                shown = ["—", "—", "required"]
            rows.append((key, _type_name(info.annotation), shown, " ".join((info.description or "").split())))

    walk(StackConfig, "", dict(defaults))
    return rows


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Annotated:
        return _type_name(get_args(hint)[0])
    if get_origin(hint) is dict:
        return f"map of {_type_name(get_args(hint)[1])}"
    if get_origin(hint) is list:
        return f"list of {_type_name(get_args(hint)[0])}"
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return "object"
    if get_origin(hint) is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(hint))
    options = [a for a in get_args(hint) if a is not type(None)]
    if type(None) in get_args(hint) and options:
        return _type_name(options[0]) + " (optional)"
    if options:  # float | int
        return "number"
    return {int: "integer", str: "string", bool: "boolean", float: "number"}.get(hint, str(hint))


def config_table() -> str:
    lines = [
        "| key | type | dev | staging | prod | description |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, type_name, defaults, description in config_rows():
        lines.append(f"| `{key}` | {type_name} | {' | '.join(defaults)} | {description} |")
    return "\n".join(lines)


def render(readme: str) -> str:
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md must contain the markers {BEGIN!r} and {END!r}")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{config_table()}\n{END}{tail}"


def stack_file_schema() -> dict[str, Any]:
    """JSON Schema of a `Pulumi.<stack>.yaml`: each section under `container-platform:<key>`, as stack files
    write it. Rules across keys (Fargate sizes, prod's requirements) are the program's, not the schema's."""
    describe_config_models()
    sections = StackConfig.model_json_schema(ref_template="#/$defs/{model}")
    definitions = sections.pop("$defs", {})
    properties = {f"{PROJECT}:{key}": value for key, value in sections["properties"].items() if key != "region"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "container-platform stack file (Pulumi.<stack>.yaml)",
        "description": "Generated by `python -m components.docgen` from components/config.py; do not edit.",
        "type": "object",
        "required": ["config"],
        "properties": {
            "config": {
                "type": "object",
                "required": [f"{PROJECT}:environment"],
                "properties": {**properties, "aws:region": {"type": "string"}},
                "patternProperties": {"^(?!container-platform:).+:.+$": {}},
                "additionalProperties": False,
            },
            "secretsprovider": {"type": "string"},
            "encryptedkey": {"type": "string"},
            "encryptionsalt": {"type": "string"},
        },
        "$defs": definitions,
    }


def render_schema() -> str:
    return json.dumps(stack_file_schema(), indent=2) + "\n"


def main() -> int:
    README.write_text(render(README.read_text()))
    SCHEMA.parent.mkdir(exist_ok=True)
    SCHEMA.write_text(render_schema())
    print(f"updated {README} and {SCHEMA}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
