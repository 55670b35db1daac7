"""Docs generated from the code: the stack config reference in README.md, from config.py's docstrings.

`python -m components.docgen` rewrites the block between the markers; a test fails when the README drifts.
Attribute docstrings (a string right after a field) are read from the source with `ast`.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
import sys
import typing
from pathlib import Path
from typing import Any, get_args, get_origin

from components import config as config_module
from components.config import ENVIRONMENTS, StackConfig, parse_stack_config

EXAMPLE_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
BEGIN, END = "<!-- BEGIN STACK CONFIG (python -m components.docgen) -->", "<!-- END STACK CONFIG -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def field_docstrings(source: str) -> dict[str, dict[str, str]]:
    """{class name: {field name: docstring}} for every class in a module's source."""
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        body = node.body
        for current, following in itertools.pairwise(body):
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


def config_rows() -> list[tuple[str, str, list[str], str]]:
    """(key, type, default per environment, description) for every stack config key."""
    docs = field_docstrings(Path(config_module.__file__).read_text())
    defaults = {env: parse_stack_config({"environment": env, "certificateArn": EXAMPLE_CERT}) for env in ENVIRONMENTS}
    rows: list[tuple[str, str, list[str], str]] = []

    def walk(cls: type, path: str, values: dict[str, Any]) -> None:
        hints = typing.get_type_hints(cls)
        for spec in dataclasses.fields(cls):
            hint = hints[spec.name]
            key = f"{path}{spec.name}"
            nested = [v for v in (hint, *get_args(hint)) if dataclasses.is_dataclass(v)]
            if nested:
                walk(typing.cast(type, nested[0]), f"{key}.", {env: getattr(v, spec.name) for env, v in values.items()})
                continue
            shown = [_show(getattr(values[env], spec.name)) for env in ENVIRONMENTS]
            if key == "certificateArn":
                shown = ["—", "—", "required"]
            rows.append((key, _type_name(hint), shown, docs.get(cls.__name__, {}).get(spec.name, "")))

    walk(StackConfig, "", dict(defaults))
    return rows


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(hint))
    options = [a for a in get_args(hint) if a is not type(None)]
    if options:
        return _type_name(options[0]) + " (optional)"
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


def main() -> int:
    README.write_text(render(README.read_text()))
    print(f"updated {README}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
