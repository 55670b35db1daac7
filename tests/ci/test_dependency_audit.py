"""Every pull request audits uv.lock and services/requirements.txt for known vulnerabilities, and a finding fails it.

The audit step is run here with stub `uv`/`uvx` (no network, no vulnerability database on this machine): the test
checks what it exports and audits, and that pip-audit's exit status decides the job.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.ci import workflow_rules as rules

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
JOB = "dependency-audit"
PINNED_PIP_AUDIT = re.compile(r"^pip-audit==\d+(\.\d+){1,2}$")
# Ways a shell step or a job keeps going after a failed command.
SWALLOWED_FAILURE = re.compile(r"\|\|\s*(true|:|echo|exit 0)\b|set \+e|continue-on-error")

STUB_UV = """#!/bin/sh
echo "uv $*" >> "$CALLS"
while [ $# -gt 0 ]; do
  if [ "$1" = "--output-file" ] || [ "$1" = "-o" ]; then printf 'six==1.17.0 --hash=sha256:00\\n' > "$2"; fi
  shift
done
"""
STUB_UVX = """#!/bin/sh
echo "uvx $*" >> "$CALLS"
exit "${AUDIT_EXIT:-0}"
"""


def audit_job() -> dict:
    jobs = rules.jobs(rules.load(WORKFLOWS / "checks.yml"))
    assert JOB in jobs, f"checks.yml has no {JOB!r} job (jobs: {sorted(jobs)})"
    return jobs[JOB]


def audit_step(job: dict) -> dict:
    steps = [step for step in rules.steps(job) if "pip-audit" in str(step.get("run", ""))]
    assert len(steps) == 1, f"{JOB}: expected one step that runs pip-audit, found {len(steps)}"
    return steps[0]


def run_audit(tmp_path: Path, audit_exit: int) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    step = audit_step(audit_job())
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, script in (("uv", STUB_UV), ("uvx", STUB_UVX)):
        (stubs / name).write_text(script)
        (stubs / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {
        **{str(k): str(v) for k, v in (step.get("env") or {}).items()},
        "PATH": f"{stubs}:/usr/bin:/bin",
        "RUNNER_TEMP": str(tmp_path),
        "CALLS": str(calls),
        "AUDIT_EXIT": str(audit_exit),
    }
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=10, check=False
    )
    recorded = [shlex.split(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result, recorded


def option_values(argv: list[str], *names: str) -> list[str]:
    values = []
    for index, argument in enumerate(argv[:-1]):
        if argument in names:
            values.append(argv[index + 1])
    values += [a.split("=", 1)[1] for a in argv if any(a.startswith(f"{n}=") for n in names)]
    return values


def test_the_audit_runs_on_every_pull_request() -> None:
    pull_request = rules.load(WORKFLOWS / "pull-request.yml")
    assert "pull_request" in rules.triggers(pull_request)
    callers = rules.jobs(pull_request)
    assert any(job.get("uses") == "./.github/workflows/checks.yml" and "if" not in job for job in callers.values())
    job = audit_job()
    assert "if" not in job, f"{JOB} must not be skipped on some pull requests: if: {job['if']}"
    assert job["permissions"] == {"contents": "read"}


def test_a_finding_fails_the_job_and_nothing_swallows_it() -> None:
    job = audit_job()
    swallowed = SWALLOWED_FAILURE.search(str(job))  # the parsed job: its keys, every step and every script
    assert swallowed is None, f"{JOB} keeps going after a failure: {swallowed.group(0)!r}"
    assert PINNED_PIP_AUDIT.match(str(audit_step(job).get("env", {}).get("PIP_AUDIT", ""))), (
        "pin pip-audit to one version in the step's env (PIP_AUDIT: pip-audit==X.Y.Z)"
    )


def test_the_step_audits_the_lock_and_the_image_requirements(tmp_path: Path) -> None:
    result, calls = run_audit(tmp_path, audit_exit=0)
    assert result.returncode == 0, result.stdout + result.stderr
    [export] = [argv for argv in calls if argv[:2] == ["uv", "export"]]
    assert {"--frozen", "--all-groups"} <= set(export), f"export the whole lock as it is: {export}"
    [audit] = [argv for argv in calls if argv[0] == "uvx"]
    assert option_values(audit, "--from") == [audit_step(audit_job())["env"]["PIP_AUDIT"]]
    audited = option_values(audit, "-r", "--requirement")
    images = ["services/requirements.txt", "services/shop/requirements.txt"]
    assert sorted(audited) == sorted([*option_values(export, "--output-file", "-o"), *images])
    assert {"--strict", "--require-hashes"} <= set(audit), f"audit exactly the hashed pins, strictly: {audit}"


@pytest.mark.parametrize("audit_exit", [1, 2])
def test_a_pip_audit_finding_or_error_fails_the_step(tmp_path: Path, audit_exit: int) -> None:
    result, _ = run_audit(tmp_path, audit_exit=audit_exit)
    assert result.returncode != 0, "pip-audit reported a finding (non-zero exit) but the step succeeded"
