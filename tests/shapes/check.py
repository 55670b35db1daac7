"""Validate a whole plan: every AWS resource's requests against botocore's models, the constraints AWS
documents beyond them, and the JSON payloads AWS parses. `python -m tests.shapes.check [stack ...]` prints
every problem."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.model import StructureShape

from runner.plan import Plan, run_program
from runner.records import ResourceRecord, unwrap_secrets
from tests.shapes.documented import documented_problems
from tests.shapes.mappings import MAPPINGS, NOT_AWS_REQUESTS
from tests.shapes.payloads import (
    PolicyDocument,
    dashboard_problems,
    event_pattern_problems,
    lifecycle_policy_problems,
    policy_problems,
)
from tests.shapes.translate import match_member, translate
from tests.shapes.unknowns import MockValues
from tests.shapes.validator import Problem, Skipped, operation_model, validate_request

STACKS = ("dev", "staging", "prod", "dev-lean", "shop")

# JSON text inputs AWS parses server-side: resource type -> input -> checker.
PAYLOAD_CHECKS: dict[str, dict[str, Callable[[str], list[str]]]] = {
    "aws:cloudwatch/eventRule:EventRule": {"eventPattern": event_pattern_problems},
    "aws:cloudwatch/dashboard:Dashboard": {"dashboardBody": dashboard_problems},
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": {"policy": lifecycle_policy_problems},
}

# IAM policy documents: resource type -> (input, kind in payloads.POLICY_KINDS).
POLICY_INPUTS: dict[str, tuple[str, str]] = {
    "aws:iam/role:Role": ("assumeRolePolicy", "trust"),
    "aws:iam/rolePolicy:RolePolicy": ("policy", "identity"),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", "s3-bucket"),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", "sqs-queue"),
    "aws:kms/key:Key": ("policy", "kms-key"),
    "aws:efs/fileSystemPolicy:FileSystemPolicy": ("policy", "efs-file-system"),
    "aws:sns/topic:Topic": ("policy", "sns-topic"),
}


@dataclass
class ResourceReport:
    resource: ResourceRecord
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.resource.type} {self.resource.name}"


def check_resource(resource: ResourceRecord, unknowns: MockValues) -> ResourceReport:
    if resource.type not in MAPPINGS:
        problem = Problem(
            resource.type,
            "no API mapping: add one to tests/shapes/mappings.py MAPPINGS (or to NOT_AWS_REQUESTS with the reason)",
        )
        return ResourceReport(resource, [problem])
    mapping = MAPPINGS[resource.type]
    translation = translate(resource, mapping, unknowns)
    report = ResourceReport(resource, list(translation.problems), requests=translation.requests)
    for operation, params in translation.requests.items():
        problems, skipped = validate_request(mapping.service, operation, params)
        report.problems.extend(problems)
        report.problems.extend(documented_problems(mapping.service, operation, params))
        report.skipped.append(skipped)
    report.problems.extend(_payload_problems(resource))
    report.problems.extend(universal_target_problems(resource))
    return report


# EventBridge Scheduler's universal target: `arn:aws:scheduler:::aws-sdk:<service>:<apiAction>`, the input the
# API's request as JSON. Scheduler takes the SDK's member casing (`DbInstanceIdentifier` for RDS's
# `DBInstanceIdentifier`), so members are matched ignoring case, then the request is validated as any other.
UNIVERSAL_TARGET = re.compile(r"^arn:aws[a-z-]*:scheduler:::aws-sdk:(?P<service>[a-z0-9-]+):(?P<action>[a-zA-Z0-9]+)$")


@dataclass(frozen=True)
class UniversalTarget:
    """What an EventBridge Scheduler schedule with a universal target calls on each run."""

    service: str
    """The target API's service (`rds`)."""
    operation: str
    """Its operation as botocore names it (`StopDBInstance`)."""
    payload: dict[str, Any]
    """The request, from the target's `input` (members in the SDK's casing)."""


def universal_target(inputs: Mapping[str, Any]) -> UniversalTarget | None:
    """The call a schedule's universal target makes, from the schedule's inputs; None for any other target."""
    target = inputs.get("target")
    match = UNIVERSAL_TARGET.match(str(target.get("arn", ""))) if isinstance(target, Mapping) else None
    if not isinstance(target, Mapping) or match is None:
        return None
    operation = match["action"][0].upper() + match["action"][1:]
    return UniversalTarget(match["service"], operation, json.loads(target.get("input") or "{}"))


def universal_target_problems(resource: ResourceRecord) -> list[Problem]:
    called = (
        universal_target(unwrap_secrets(resource.inputs))
        if resource.type == "aws:scheduler/schedule:Schedule"
        else None
    )
    if called is None:
        return []
    service, operation, payload = called.service, called.operation, called.payload
    shape = operation_model(service, operation).input_shape
    assert isinstance(shape, StructureShape), f"{service} {operation} takes no input"
    params: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in payload.items():
        member = match_member(key, shape)
        if member is None:
            problems.append(Problem("input target.input", f"{key}: no member of {operation}'s request"))
        else:
            params[member] = value
    return problems + validate_request(service, operation, params)[0]


def _payload_problems(resource: ResourceRecord) -> Iterable[Problem]:
    inputs = unwrap_secrets(resource.inputs)
    for key, check in PAYLOAD_CHECKS.get(resource.type, {}).items():
        if isinstance(inputs.get(key), str):
            yield from (Problem(f"input {key}", message) for message in check(inputs[key]))


def policy_documents(resources: Iterable[ResourceRecord]) -> list[tuple[ResourceRecord, PolicyDocument]]:
    found = []
    for resource in resources:
        key, kind = POLICY_INPUTS.get(resource.type, ("", ""))
        text = unwrap_secrets(resource.inputs).get(key) if key else None
        if isinstance(text, str):
            found.append((resource, PolicyDocument(f"{resource.type} {resource.name}", kind, text)))
    return found


def aws_resources(plan: Plan) -> list[ResourceRecord]:
    return [r for r in plan.resources if r.custom and r.type not in NOT_AWS_REQUESTS]


def check_plans(plans: Iterable[Plan]) -> dict[str, list[ResourceReport]]:
    """`check_plan` for several stacks, linting all their policy documents in one run."""
    plans = list(plans)
    policy_problems(document for plan in plans for _, document in policy_documents(aws_resources(plan)))
    return {plan.stack: check_plan(plan) for plan in plans}


def check_plan(plan: Plan) -> list[ResourceReport]:
    """One report per AWS resource of the plan, with every problem found."""
    resources = aws_resources(plan)
    unknowns = MockValues.of(plan.resources)
    reports = [check_resource(r, unknowns) for r in resources]
    by_label = {report.label: report for report in reports}
    documents = policy_documents(resources)
    for label, messages in policy_problems(document for _, document in documents).items():
        by_label[label].problems.extend(Problem("policy document", message) for message in messages)
    return reports


def main() -> int:
    failed = 0
    plans = [run_program(Path("."), stack) for stack in sys.argv[1:] or STACKS]
    for stack, reports in check_plans(plans).items():
        for report in reports:
            for problem in report.problems:
                failed += 1
                print(f"{stack} {report.label}: {problem}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
