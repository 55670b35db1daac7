"""Lambda packages from the installed, locked distributions: pure Python only, deterministic, complete."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from components.lambda_package import lambda_environment, python_lambda_package, required_distributions

HANDLER_DIR = Path(__file__).resolve().parents[2] / "lambdas" / "db_roles"


def package(handler_dir: Path = HANDLER_DIR, distributions: tuple[str, ...] = ("pg8000",), python: str = "3.13"):
    return python_lambda_package(handler_dir, list(distributions), python_version=python, architecture="arm64")


def test_the_requirements_of_the_runtime_are_followed_transitively() -> None:
    built = package()
    assert [d.split("==")[0] for d in built.distributions] == [
        "asn1crypto", "pg8000", "python-dateutil", "scramp", "six"
    ]  # fmt: skip
    assert "six.py" in built.archive.assets


def test_the_digest_changes_exactly_when_the_code_does(tmp_path: Path) -> None:
    copy = tmp_path / "handler"
    shutil.copytree(HANDLER_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert package(copy).digest == package(HANDLER_DIR).digest
    (copy / "handler.py").write_text((copy / "handler.py").read_text() + "\n# changed\n")
    assert package(copy).digest != package(HANDLER_DIR).digest


def test_native_distributions_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^psycopg-binary is not pure Python \(.*\.so"):
        package(distributions=("psycopg-binary",))


def test_a_runtime_the_distribution_does_not_support_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^scramp requires Python >=3\.11; the Lambda runtime is Python 3\.10"):
        package(python="3.10")


def test_a_distribution_that_is_not_installed_is_named() -> None:
    with pytest.raises(ValueError, match=r"^no-such-dist is not installed; add it with `uv add no-such-dist`"):
        required_distributions(["no-such-dist"], lambda_environment("3.13", "arm64"))
