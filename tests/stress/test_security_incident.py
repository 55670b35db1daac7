"""The security-incident row: the runtime-security responder on GuardDuty-shaped findings, under moto."""

from __future__ import annotations

from typing import Any, cast

import botocore.session
from botocore.model import ListShape, Shape, StructureShape

from stress.scenarios import SCENARIOS, security_incident


def _json_name(member: Shape, name: str) -> str:
    serialization = cast(dict[str, Any], member.serialization)
    return serialization.get("name", name)


def unknown_keys(value: Any, shape: Shape, path: str) -> list[str]:
    """Keys of `value` that the GuardDuty model's `shape` does not define (by their JSON names), recursively."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        defined = cast(dict[str, Shape], shape.members)  # a cached property, typed as such by botocore's stubs
        members = {_json_name(member, name): member for name, member in defined.items()}
        found: list[str] = []
        for key, item in value.items():
            if key not in members:
                found.append(f"{path}.{key}")
            else:
                found += unknown_keys(item, members[key], f"{path}.{key}")
        return found
    if isinstance(shape, ListShape) and isinstance(value, list):
        member = cast(Shape, shape.member)
        return [key for index, item in enumerate(value) for key in unknown_keys(item, member, f"{path}[{index}]")]
    return []


def test_the_sample_finding_uses_guardduty_field_names_for_an_ecs_task() -> None:
    model = botocore.session.get_session().get_service_model("guardduty")
    event = security_incident.finding_event(
        "arn:aws:ecs:us-east-1:123456789012:cluster/jobs",
        "arn:aws:ecs:us-east-1:123456789012:task/jobs/abc",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/api:1",
    )
    assert event["detail-type"] == "GuardDuty Finding"
    assert unknown_keys(event["detail"], model.shape_for("Finding"), "detail") == []
    details = event["detail"]["resource"]["ecsClusterDetails"]["taskDetails"]
    assert details["arn"].startswith("arn:aws:ecs:")


def test_the_responder_stops_exactly_the_high_severity_task_once_and_only_alerts_for_the_rest() -> None:
    result = SCENARIOS["security-incident"](True)
    assert result.problems == [], result.problems
    assert (result.jobs, result.accepted, result.duplicated) == (4, 4, 0)
    assert result.succeeded == 3  # three distinct findings, each with its audit record
    assert result.notes[0] == "responses: contained, duplicate, alerted, alerted"
    assert "STOPPED (high severity), RUNNING (low severity); another cluster's: RUNNING" in result.notes[1]
