"""The seed's insecure stacks, run as a real Pulumi program under mocks: every fault is flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.engine import EvaluationReport, PolicyPackProcess
from runner.plan import run_program

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "insecure_program"


@pytest.fixture(scope="module")
def report(pack: PolicyPackProcess) -> EvaluationReport:
    plan = run_program(FIXTURE, "test")
    return pack.evaluate(plan.resources)


def flagged(report: EvaluationReport, resource: str) -> set[tuple[str, str]]:
    return {(v.policy, v.message) for v in report.violations if v.urn.endswith(f"::{resource}")}


def test_insecure_container_stack_faults(report: EvaluationReport) -> None:
    faults = flagged(report, "insecure-task")
    assert {
        ("aws-ecs-taskdefinition-disallow-root-user", "container 'Container' runs as root (user 'root')"),
        ("aws-ecs-taskdefinition-disallow-privileged-containers", "container 'Container' is privileged"),
        (
            "aws-ecs-taskdefinition-disallow-latest-tag",
            "container 'Container' image 'random-user/sketchy-app:latest' uses the mutable 'latest' tag",
        ),
        (
            "aws-ecs-taskdefinition-allowed-image-registries",
            "container 'Container' image 'random-user/sketchy-app:latest' comes from docker.io, not from a private ECR "
            "repository of an allowed account",
        ),
        (
            "aws-ecs-taskdefinition-configure-logging",
            "container 'Container' has no logConfiguration.logDriver, so its output is lost",
        ),
    } <= faults
    secrets = {m for p, m in faults if p == "aws-ecs-taskdefinition-disallow-plaintext-secrets"}
    assert {m.split("'")[3] for m in secrets} == {"DATABASE_PASSWORD", "API_KEY"}
    assert "super-secret-password-123" not in report.to_json()


def test_container_chaos_stack_faults(report: EvaluationReport) -> None:
    task = {p for p, _ in flagged(report, "chaos-task")}
    assert {
        "aws-ecs-taskdefinition-disallow-root-user",
        "aws-ecs-taskdefinition-disallow-plaintext-secrets",
        "aws-ecs-taskdefinition-allowed-image-registries",
        "aws-ecs-taskdefinition-disallow-latest-tag",
        "aws-ecs-taskdefinition-configure-logging",
    } <= task
    assert (
        "aws-ecs-service-disallow-public-ip",
        "networkConfiguration.assignPublicIp is true, so every task gets a public IP address",
    ) in flagged(report, "chaos-service")
    assert {p for p, _ in flagged(report, "chaos-cluster")} == {"aws-ecs-cluster-enable-container-insights"}


def test_the_fixture_fails_on_mandatory_violations(report: EvaluationReport) -> None:
    assert report.mandatory_count >= 11
    assert report.checked == 6
