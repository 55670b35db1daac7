"""A realistic secure team app (awsx + aws, PascalCase container keys, Aurora, private bucket) under mocks: the
pack must not flag it. This is the false-positive measurement README reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine import EvaluationReport, PolicyPackProcess
from runner.plan import run_program

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "secure_team_app"


@pytest.fixture(scope="module")
def report(pack: PolicyPackProcess) -> EvaluationReport:
    return pack.evaluate(run_program(FIXTURE, "test").resources)


def test_the_secure_team_app_has_no_violation(report: EvaluationReport) -> None:
    assert [(v.policy, v.urn.rsplit("::", 1)[-1], v.message) for v in report.violations] == []
    assert report.checked >= 20


def test_its_awsx_service_and_pascal_case_task_are_really_checked(report: EvaluationReport) -> None:
    # Nothing is silently skipped: no policy was "not checked" for an unknown value on the app's containers.
    skipped = {(n.policy, n.urn.rsplit("::", 1)[-1]) for n in report.not_checked if n.policy.startswith("aws-ecs")}
    assert skipped == set()
