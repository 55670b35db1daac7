"""Test 3 of issue 13: every stack's resources, as the AWS API requests the provider would send, are valid
against botocore's service models (required, types, enums, min and max, patterns), the constraints AWS
documents beyond them, and the JSON payloads AWS parses (IAM policies, event patterns, dashboards, lifecycle
policies, queue attributes, alarm metric math)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from moto.events.models import EventPattern

from runner.plan import MOCK_ACCOUNT_ID, Plan
from tests.shapes.check import STACKS, ResourceReport, aws_resources
from tests.shapes.mappings import MAPPINGS, NOT_AWS_REQUESTS

SCAN_EVENTS = Path(__file__).resolve().parents[1] / "lambdas" / "events"


@pytest.mark.parametrize("stack", STACKS)
def test_every_request_is_one_aws_accepts(stack: str, reports: dict[str, list[ResourceReport]]) -> None:
    problems = [f"{report.label}: {problem}" for report in reports[stack] for problem in report.problems]
    assert not problems, f"{stack}: {len(problems)} request problem(s):\n" + "\n".join(problems)


@pytest.mark.parametrize("stack", STACKS)
def test_every_resource_type_is_mapped_or_excluded_with_a_reason(stack: str, plans: dict[str, Plan]) -> None:
    types = {r.type for r in plans[stack].resources if r.custom}
    unmapped = sorted(types - set(MAPPINGS) - set(NOT_AWS_REQUESTS))
    assert not unmapped, f"{stack}: types with no API mapping in tests/shapes/mappings.py: {unmapped}"


@pytest.mark.parametrize("stack", STACKS)
def test_only_mocked_values_are_skipped(stack: str, reports: dict[str, list[ResourceReport]]) -> None:
    """Skipping is for stand-ins (other resources' outputs, encrypted config), never for the program's own
    values; and every pattern met could be checked."""
    skipped = [(r.label, name, source) for r in reports[stack] for s in r.skipped for name, source in s.unknown]
    not_mocks = [s for s in skipped if not s[2].startswith(("output `", "built from output `", "an encrypted"))]
    assert not not_mocks, not_mocks
    uncheckable = [(r.label, p) for r in reports[stack] for s in r.skipped for p in s.uncheckable_patterns]
    assert not uncheckable, f"patterns no Python engine could compile: {uncheckable}"


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_s_own_values_are_validated(stack: str, reports: dict[str, list[ResourceReport]]) -> None:
    """The container definitions reach the validator as values, not as skipped stand-ins."""
    task_definitions = [r for r in reports[stack] if r.resource.type == "aws:ecs/taskDefinition:TaskDefinition"]
    assert task_definitions
    for report in task_definitions:
        container = report.requests["RegisterTaskDefinition"]["containerDefinitions"][0]
        assert container["user"] == "1001:1001"
        assert isinstance(container["logConfiguration"]["logDriver"], str)


def _scan_event(name: str, repository: str) -> Any:
    text = (
        (SCAN_EVENTS / name).read_text().replace("app-dev-worker", repository).replace("123456789012", MOCK_ACCOUNT_ID)
    )
    return json.loads(text)


@pytest.mark.parametrize("stack", STACKS)
def test_the_scan_rule_matches_the_events_the_registry_emits(stack: str, plans: dict[str, Plan]) -> None:
    """The rule's pattern, evaluated by moto's EventBridge matcher, fires for the scan events of this stack's
    registry: `ECR Image Scan` (basic scanning) or Inspector's `Inspector2 Scan` (enhanced)."""
    resources = aws_resources(plans[stack])
    # The scan-complete rule; the findings rule (continuous scanning) is checked in tests/components/test_scanning.py.
    rules = [
        r
        for r in resources
        if r.type == "aws:cloudwatch/eventRule:EventRule" and r.inputs["name"].endswith("-image-scan-complete")
    ]
    repositories = [r.inputs["name"] for r in resources if r.type == "aws:ecr/repository:Repository"]
    enhanced = any(
        r.inputs.get("scanType") == "ENHANCED"
        for r in resources
        if r.type == "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
    )
    event_file = "inspector-initial-scan.json" if enhanced else "ecr-scan-clean.json"
    assert len(rules) == 1 and repositories
    pattern = EventPattern.load(rules[0].inputs["eventPattern"])
    for repository in repositories:
        assert pattern.matches_event(_scan_event(event_file, repository)), (stack, repository, event_file)
    assert not pattern.matches_event(_scan_event(event_file, "another-teams-repository"))
