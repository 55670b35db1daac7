"""The component contract, checked on every component module (style anchors 3 and 8; DEVELOPERS.md)."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from components import docgen

COMPONENTS = Path(__file__).resolve().parents[2] / "components"
MODULES = sorted(p.stem for p in COMPONENTS.glob("*.py") if p.stem not in {"__init__", "docgen"})


def args_classes(source: str) -> list[ast.ClassDef]:
    tree = ast.parse(source)
    return [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith(("Args", "Spec", "Attachment"))]


@pytest.mark.parametrize("module", MODULES)
def test_every_args_field_is_documented_with_its_default(module):
    source = (COMPONENTS / f"{module}.py").read_text()
    docs = docgen.field_docstrings(source)
    for cls in args_classes(source):
        fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
        undocumented = [f for f in fields if f not in docs[cls.name]]
        assert not undocumented, f"{module}.{cls.name}: fields without a docstring: {undocumented}"
        has_default = [
            n.target.id
            for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value is not None
        ]
        missing = [f for f in has_default if "Default:" not in docs[cls.name][f]]  # type: ignore[index]
        assert not missing, f"{module}.{cls.name}: docstrings that do not state the default: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_component_type_tokens_follow_the_convention(module):
    loaded = importlib.import_module(f"components.{module}")
    source = inspect.getsource(loaded)
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("container-platform:")
        ):
            parts = node.value.split(":")
            assert len(parts) == 3 and parts[1] and parts[2][0].isupper(), node.value


def test_readme_config_table_is_current():
    readme = docgen.README.read_text()
    assert docgen.render(readme) == readme, (
        "README stack config table is stale: run `uv run python -m components.docgen`"
    )


def test_the_stack_file_schema_is_current():
    assert docgen.SCHEMA.read_text() == docgen.render_schema(), (
        "schema/stack-config.schema.json is stale: run `uv run python -m components.docgen`"
    )


@pytest.mark.parametrize("stack_file", sorted(docgen.ROOT.glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_every_stack_file_matches_the_editor_schema(stack_file):
    import jsonschema
    import yaml

    jsonschema.validate(yaml.safe_load(stack_file.read_text()), docgen.stack_file_schema())


@pytest.mark.parametrize(
    "config",
    [
        {"container-platform:environment": "qa"},
        {"container-platform:environment": "dev", "container-platform:service": {"cpus": 1}},
        {"container-platform:environment": "dev", "container-platform:colour": "blue"},
        {"container-platform:environment": "dev", "container-platform:service": {"cpu": "lots"}},
    ],
)
def test_the_editor_schema_flags_what_the_program_refuses(config):
    import jsonschema

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"config": config}, docgen.stack_file_schema())
