"""What stops a first real `pulumi up` from going wrong: placeholders refused, and deployments followed to the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import config as config_module
from components.config import (
    ConfigError,
    environment_tag_problems,
    parse_stack_config,
    placeholder_problems,
    refuse_placeholders,
    refuse_untagged_deployment,
)
from components.ecs_task import DeploymentRolledBack, require_revision_running
from runner import plan as plan_module
from runner.plan import PlanError, run_program
from tests.support import Recorded, inputs

ROOT = Path(__file__).resolve().parents[2]
REAL_CERT = "arn:aws:acm:us-east-1:210987654322:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"
BUILT_HERE = {"build": True}  # staging and prod otherwise need CI's digests (tests/program/test_promotion.py)
DOC_CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"


# --- Placeholders ---


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("certificateArn", DOC_CERT, "names account 123456789012, an example account ID"),
        ("certificateArn", DOC_CERT.replace("123456789012", "111122223333"), "an example account ID"),
        ("certificateArn", DOC_CERT.replace("123456789012", "000000000000"), "an example account ID"),
        ("alertEmail", "oncall@example.com", "is at example.com, a domain reserved for examples"),
        ("alertEmail", "oncall@alerts.example.org", "is at alerts.example.org, a domain reserved for examples"),
        ("alertEmail", "ops@corp.example", "a domain reserved for examples"),
        ("alertEmail", "ops@qa.test", "a domain reserved for examples"),
    ],
)
def test_each_placeholder_is_named_with_what_is_allowed(key, value, reason):
    config = parse_stack_config({"environment": "staging", key: value, "images": BUILT_HERE})
    (problem,) = placeholder_problems(config)
    assert problem.startswith(f"{key}: {value!r}")
    assert reason in problem
    assert "allowed:" in problem


def test_nested_values_are_checked_too():
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobs-dev-api@sha256:" + "a" * 64
    config = parse_stack_config({"environment": "dev", "service": {"image": image}})
    assert [p.split(":")[0] for p in placeholder_problems(config)] == ["service.image"]


def test_real_values_are_not_placeholders():
    config = parse_stack_config(
        {
            "environment": "prod",
            "certificateArn": REAL_CERT,
            "alertEmail": "oncall@examples-corp.com",
            "images": BUILT_HERE,
        }
    )
    assert placeholder_problems(config) == []


def test_a_real_deployment_stops_on_placeholders_before_anything_is_registered(monkeypatch):
    monkeypatch.setattr(config_module, "running_offline", lambda: False)
    config = parse_stack_config({"environment": "prod", "certificateArn": DOC_CERT, "alertEmail": "a@example.net"})
    with pytest.raises(ConfigError) as caught:
        refuse_placeholders(config)
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems[:2]] == ["alertEmail", "certificateArn"]
    assert "pulumi config set" in problems[-1]


def test_the_offline_plan_lists_the_stack_files_placeholders():
    plan = run_program(ROOT, "prod")
    keys = [p.split(":")[0] for p in plan.outputs["offlineOnlyPlaceholders"]]
    # An unbuilt console (web/dist, built by `./platform local` or the browser tests) plans offline as one more.
    unbuilt = not (ROOT / "web" / "dist" / "index.html").is_file()
    assert ("console.buildDirectory" in keys) == unbuilt
    assert [key for key in keys if key != "console.buildDirectory"] == [
        "alertEmail",
        "certificateArn",
        "console.customDomain.domainName",  # the web console's domain, certificate and the ALB's name (issue 19)
        "console.customDomain.certificateArn",
        "console.apiOriginDomain",
        "images.digests.api",  # prod deploys only digests CI promotes (tests/program/test_promotion.py)
        "images.digests.worker",
    ]
    dev = run_program(ROOT, "dev").outputs
    assert [p.split(":")[0] for p in dev.get("offlineOnlyPlaceholders", [])] == (
        ["console.buildDirectory"] if unbuilt else []
    )


# --- Deployments followed to the end ---


@pytest.mark.parametrize(
    ("environment", "wait", "minutes"), [("dev", False, 20), ("staging", True, 20), ("prod", True, 30)]
)
def test_profiles_wait_for_deployments_outside_dev(environment, wait, minutes):
    extra = {"certificateArn": REAL_CERT} if environment == "prod" else {}
    deployment = parse_stack_config({"environment": environment, **extra}).deployment
    assert (deployment.waitForSteadyState, deployment.timeoutMinutes) == (wait, minutes)


def test_timeout_is_bounded():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"environment": "dev", "deployment": {"timeoutMinutes": 2}})
    assert caught.value.problems == ["deployment.timeoutMinutes: 2; allowed: 5-180"]


@pytest.mark.parametrize(("stack", "wait", "timeout"), [("dev", False, "20m"), ("prod", True, "30m")])
def test_services_wait_with_the_configured_timeout(stack, wait, timeout):
    planned = run_program(ROOT, stack)
    plan = Recorded(planned.resources, planned.outputs)
    services = plan.of_type("aws:ecs/service:Service")
    assert {s.name for s in services} == {f"jobs-{stack}-api-service", f"jobs-{stack}-worker-service"}
    for service in services:
        assert inputs(service)["waitForSteadyState"] is wait
        assert service.custom_timeouts == {"create": timeout, "update": timeout}


def test_a_rolled_back_deployment_fails():
    with pytest.raises(DeploymentRolledBack, match=r"is running .*:task-definition/api:6, not the deployed .*:7"):
        require_revision_running(
            "jobs-prod-api", "arn:aws:ecs:r:1:task-definition/api:7", "arn:aws:ecs:r:1:task-definition/api:6"
        )
    require_revision_running("jobs-prod-api", "arn:t:7", "arn:t:7")
    require_revision_running("jobs-prod-api", None, "arn:t:6")  # unknown during a preview: not judged


def test_the_program_fails_when_ecs_reports_an_older_revision(monkeypatch):
    """The provider reports success once a rolled-back service is steady again; the program must not."""
    original = plan_module.mock_call

    def rolled_back(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
        if token == "aws:ecs/getService:getService":
            return {**args, "taskDefinition": "arn:aws:ecs:us-east-1:000000000000:task-definition/previous:1"}
        return original(token, args, region)

    monkeypatch.setattr(plan_module, "mock_call", rolled_back)
    with pytest.raises(PlanError, match="circuit breaker rolled it back"):
        run_program(ROOT, "staging")
    pulumi.runtime.settings.ROOT.set(None)


# --- Every resource carries the environment tag the CI deploy roles are scoped by ---


def test_a_real_deployment_without_the_environment_tag_stops(monkeypatch):
    monkeypatch.setattr(config_module, "running_offline", lambda: False)
    config = parse_stack_config({"environment": "staging", "images": BUILT_HERE})
    for tags, found in ((None, "missing"), ({"tags": {"environment": "prod"}}, "'prod'")):
        with pytest.raises(ConfigError) as caught:
            refuse_untagged_deployment(config, tags)
        assert caught.value.problems == [
            f"aws:defaultTags.tags.environment: {found}; allowed: 'staging', this stack's environment (set it in "
            "the stack file: `pulumi config set --path 'aws:defaultTags.tags.environment' staging`)"
        ]
    refuse_untagged_deployment(config, {"tags": {"environment": "staging", "team": "platform"}})


@pytest.mark.parametrize("stack_file", sorted(ROOT.glob("Pulumi.*.yaml")), ids=lambda p: p.name)
def test_every_stack_file_tags_its_environment_and_uses_its_iam_path(stack_file):
    document = yaml.safe_load(stack_file.read_text())["config"]
    prefix = "container-platform:"
    raw = {key[len(prefix) :]: value for key, value in document.items() if key.startswith(prefix)}
    config = parse_stack_config(raw, document.get("aws:region"))
    assert environment_tag_problems(config, document.get("aws:defaultTags")) == []
    assert config.iam.path == f"/container-platform/{config.environment}/"
