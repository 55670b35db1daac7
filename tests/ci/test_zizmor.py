"""zizmor (PyPI, dev group) finds nothing at medium or above in .github/, and every ignored finding says why."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / ".github"
# zizmor's inline suppression: `# zizmor: ignore[rule]`, followed on the same line by the reason.
IGNORE = re.compile(r"#\s*zizmor:\s*ignore\[[\w,\s-]+\](?P<reason>.*)$")


def _zizmor(*args: str) -> list[dict]:
    beside_python = Path(sys.executable).parent / "zizmor"
    if not beside_python.exists():
        pytest.fail("zizmor is not installed: run `uv sync` (dev group: zizmor)")
    result = subprocess.run(
        [str(beside_python), "--offline", "--format", "json", "--no-progress", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def _where(finding: dict) -> str:
    location = finding["locations"][0]
    path = location["symbolic"]["key"]["Local"]["verbatim_path"]
    return f"{path}:{location['concrete']['location']['start_point']['row'] + 1} {finding['ident']}"


def test_no_finding_at_any_severity_that_is_not_fixed_or_justified():
    findings = _zizmor(str(GITHUB))
    assert [f"{_where(f)} ({f['determinations']['severity']})" for f in findings] == []


def test_no_finding_at_medium_or_above_even_when_ignores_are_disregarded():
    findings = _zizmor("--no-ignores", "--min-severity", "medium", str(GITHUB))
    assert [_where(f) for f in findings] == []


def test_every_ignore_comment_gives_its_reason():
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(GITHUB.rglob("*.y*ml"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if (match := IGNORE.search(line)) and len(match["reason"].strip()) < 15
    ]
    assert unexplained == []


def test_zizmor_reports_a_dangerous_workflow(tmp_path: Path):
    workflow = tmp_path / "bad.yml"
    workflow.write_text(
        "on: pull_request_target\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "        with:\n"
        "          ref: ${{ github.event.pull_request.head.sha }}\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    idents = {finding["ident"] for finding in _zizmor(str(workflow))}
    assert {"dangerous-triggers", "template-injection", "unpinned-uses"} <= idents
