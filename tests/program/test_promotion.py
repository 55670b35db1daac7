"""Build once, promote by digest: staging and prod deploy exactly the digests CI built, scanned and ran in dev.

CI's build job pushes each image once and passes its digest on; the deploy jobs set `images.build: false` and
`images.digests.*`. These tests run the whole program with the real stack files plus those keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import config as config_module
from components.config import (
    OFFLINE_DIGEST,
    ConfigError,
    parse_stack_config,
    refuse_ci_without_boundary,
    refuse_placeholders,
)
from runner.plan import run_program
from tests.program.test_program import ROOT, copy_program, recorded
from tests.support import inputs, json_input

API_DIGEST = "sha256:" + "1a" * 32
WORKER_DIGEST = "sha256:" + "2b" * 32
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"  # the mocks' account
BOUNDARY = "arn:aws:iam::210987654322:policy/container-platform/boundary"


def stack_file_with(stack: str, images: dict[str, Any]) -> str:
    """The committed stack file of `stack`, with `images` merged into its images object, as CI sets it."""
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    merged = {**document["config"].get("container-platform:images", {}), **images}
    document["config"]["container-platform:images"] = merged
    return yaml.safe_dump(document)


def promoted_plan(tmp_path: Path, stack: str, images: dict[str, Any]):
    return recorded(run_program(copy_program(tmp_path, stack_file_with(stack, images)), "bad"))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_each_stack_deploys_exactly_the_digests_given_and_builds_nothing(tmp_path, stack):
    plan = promoted_plan(tmp_path, stack, {"build": False, "digests": {"api": API_DIGEST, "worker": WORKER_DIGEST}})
    assert plan.of_type("docker:index/image:Image") == [], "a promoted image is never rebuilt"
    images = {
        container["name"]: container["image"]
        for task in plan.of_type("aws:ecs/taskDefinition:TaskDefinition")
        for container in json_input(task, "containerDefinitions")
    }
    assert images == {
        "api": f"{REGISTRY}/jobs-{stack}-api@{API_DIGEST}",
        "worker": f"{REGISTRY}/jobs-{stack}-worker@{WORKER_DIGEST}",
    }
    assert plan.outputs["imageRefs"] == images


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_never_build_and_a_real_deploy_needs_every_digest(monkeypatch, stack):
    config = load_stack_config_of(stack)
    assert config.images.build is False
    monkeypatch.setattr(config_module, "running_offline", lambda: False)
    with pytest.raises(ConfigError) as caught:
        refuse_placeholders(config)
    missing = [p for p in caught.value.problems if p.startswith("images.digests.")]
    assert [p.split(":")[0] for p in missing] == ["images.digests.api", "images.digests.worker"]
    assert all("allowed: sha256:<64 lowercase hex>" in p for p in missing)


def test_offline_a_missing_digest_is_a_marked_placeholder(tmp_path):
    plan = promoted_plan(tmp_path, "staging", {"digests": {"api": API_DIGEST}})
    assert plan.of_type("docker:index/image:Image") == []
    assert plan.outputs["imageRefs"] == {
        "api": f"{REGISTRY}/jobs-staging-api@{API_DIGEST}",
        "worker": f"{REGISTRY}/jobs-staging-worker@{OFFLINE_DIGEST}",
    }
    listed = [p.split(":")[0] for p in plan.outputs["offlineOnlyPlaceholders"]]
    assert "images.digests.worker" in listed
    assert "images.digests.api" not in listed


def load_stack_config_of(stack: str):
    document = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    prefix = "container-platform:"
    raw = {key[len(prefix) :]: value for key, value in document["config"].items() if key.startswith(prefix)}
    return parse_stack_config(raw, document["config"].get("aws:region"))


@pytest.mark.parametrize(
    ("digests", "problem"),
    [
        ({"api": "sha256:" + "A" * 64}, "images.digests.api: 'sha256:" + "A" * 64 + "'; allowed: sha256:<64"),
        ({"api": "latest"}, "images.digests.api: 'latest'; allowed: sha256:<64"),
        ({"web": API_DIGEST}, "images.digests.web: unknown key"),
    ],
)
def test_a_digest_that_is_not_one_is_refused(digests, problem):
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"environment": "staging", "images": {"digests": digests}})
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_a_digest_and_a_full_reference_for_one_image_are_refused():
    image = f"{REGISTRY}/jobs-staging-api@{API_DIGEST}"
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(
            {"environment": "staging", "service": {"image": image}, "images": {"digests": {"api": API_DIGEST}}}
        )
    assert caught.value.problems == [
        "images.digests.api: set together with service.image; allowed: one of them (a digest in this stack's "
        "repository, or a full pinned reference)"
    ]


# --- The CI deploy role creates roles only with the bootstrap's permissions boundary ---


def test_a_ci_deployment_without_the_boundary_stops_before_anything_is_registered(monkeypatch):
    monkeypatch.setattr(config_module, "running_offline", lambda: False)
    config = parse_stack_config({"environment": "staging"})
    with pytest.raises(ConfigError) as caught:
        refuse_ci_without_boundary(config, {"CI": "true", "GITHUB_ACTIONS": "true"})
    (problem,) = caught.value.problems
    assert problem.startswith("iam.permissionsBoundaryArn: missing in a CI deployment")
    assert "pulumi config set --path iam.permissionsBoundaryArn" in problem


@pytest.mark.parametrize(
    ("environ", "boundary", "offline"),
    [
        ({}, None, False),  # a person's `pulumi up` with their own rights
        ({"CI": "true"}, BOUNDARY, False),
        ({"CI": "true", "GITHUB_ACTIONS": "true"}, None, True),  # the offline plan runs in CI too
    ],
)
def test_the_boundary_is_required_only_for_real_ci_deployments(monkeypatch, environ, boundary, offline):
    monkeypatch.setattr(config_module, "running_offline", lambda: offline)
    raw: dict[str, Any] = {"environment": "staging"}
    if boundary:
        raw["iam"] = {"permissionsBoundaryArn": BOUNDARY}
    refuse_ci_without_boundary(parse_stack_config(raw), environ)


def test_pull_principals_let_the_next_account_pull_only(tmp_path):
    """One account per environment: staging's account pulls dev's digest to promote it, and may do nothing else."""
    plan = promoted_plan(tmp_path, "dev", {"pullPrincipals": ["210987654322"]})
    policies = plan.of_type("aws:ecr/repositoryPolicy:RepositoryPolicy")
    assert len(policies) == 2, "one per repository"
    for policy in policies:
        (statement,) = json.loads(inputs(policy)["policy"])["Statement"]
        assert statement["Principal"] == {"AWS": ["210987654322"]}  # IAM reads an account id as its root
        assert sorted(statement["Action"]) == [
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
        ]


def test_a_pull_principal_that_is_neither_account_nor_role_is_refused():
    with pytest.raises(ConfigError) as caught:
        parse_stack_config({"environment": "dev", "images": {"pullPrincipals": ["*"]}})
    assert caught.value.problems == [
        "images.pullPrincipals.0: '*'; allowed: a 12-digit account id or an IAM role ARN (arn:aws:iam::<account>:role/...)"
    ]
