"""Conventions every policy and the pack itself must keep."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from pulumi_policy import EnforcementLevel, Policy

from policy.rules import ALL_POLICIES
from runner import docs
from runner.engine import PACK_DIR, _schema_problem

NAME = re.compile(r"^aws-[a-z0-9]+-[a-z0-9]+-[a-z0-9]+(-[a-z0-9]+)*$")
# Names users were promised verbatim (the cost issue names its policy `cost-budget`).
NAMED_BY_CONTRACT = {"cost-budget"}
FSBP_ID = re.compile(r"^[A-Za-z0-9]+\.\d+$")
SUPPORTED_SCHEMA_KEYS = {"type", "items", "description", "default", "enum", "minimum", "maximum"}

# Exactly the controls the issue makes mandatory by default.
MANDATORY = {
    "aws-ecs-taskdefinition-disallow-root-user",
    "aws-ecs-taskdefinition-disallow-privileged-containers",
    "aws-ecs-taskdefinition-disallow-plaintext-secrets",
    "aws-codebuild-project-disallow-plaintext-secrets",
    "aws-lambda-function-disallow-plaintext-secrets",
    "aws-ecr-repository-enable-image-scanning",
    "aws-ecs-taskdefinition-allowed-image-registries",
    "aws-ecs-taskdefinition-disallow-latest-tag",
    "aws-efs-filesystem-enable-encryption",
    "aws-rds-instance-enable-storage-encryption",
    "aws-elasticache-replicationgroup-enable-at-rest-encryption",
    "aws-sqs-queue-enable-encryption",
    "aws-sns-topic-enable-encryption",
    "aws-rds-instance-disallow-public-access",
    "aws-ecs-service-disallow-public-ip",
    # issue 15: "must not" rules with high or critical severity, and the classes of misses it names
    "aws-ecs-taskdefinition-disallow-added-capabilities",
    "aws-ecs-taskdefinition-disallow-host-pid-mode",
    "aws-ecs-taskdefinition-disallow-host-ipc-mode",
    "aws-ecs-taskdefinition-disallow-host-network-mode",
    "aws-ecs-taskdefinition-disallow-mutable-image-tags",
    "aws-lambda-function-disallow-mutable-image-tags",
    "aws-ecs-service-disallow-open-default-security-group",
    "aws-ec2-securitygroup-disallow-public-ingress",
    "aws-elasticache-replicationgroup-enable-transit-encryption",
    "aws-s3-bucket-configure-public-access-block",
    "aws-s3-bucket-disallow-public-acl",
    "aws-s3-bucket-disallow-public-policy",
    # issue 19: the web console's CloudFront distribution
    "aws-cloudfront-distribution-require-https",
    "aws-cloudfront-distribution-require-tls-1-2-2021",
    "aws-cloudfront-distribution-use-origin-access-control",
    "aws-cloudfront-distribution-disallow-s3-website-origins",
}


def ids(policies: list[Policy]) -> list[str]:
    return [p.name for p in policies]


def test_names_are_unique_and_follow_the_pattern() -> None:
    names = ids(ALL_POLICIES)
    assert len(names) == len(set(names))
    assert [n for n in names if not NAME.match(n) and n not in NAMED_BY_CONTRACT] == []


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=ids(ALL_POLICIES))
def test_policy_metadata(policy: Policy) -> None:
    assert re.fullmatch(r"[A-Z][^.]*(\.[a-z0-9][^.]*)*\.", policy.description), "one sentence ending in a period"
    assert policy.severity is not None
    assert policy.remediation_steps and policy.remediation_steps.endswith(".")
    assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)
    assert policy.tags and policy.name.split("-")[1] in policy.tags
    if policy.framework is not None:
        assert FSBP_ID.match(policy.framework.reference or "")
        assert policy.framework.reference in policy.tags
        assert policy.url and policy.url.startswith("https://docs.aws.amazon.com/securityhub/")


def test_mandatory_by_default_are_exactly_the_issue_list() -> None:
    assert {p.name for p in ALL_POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY} == MANDATORY


@pytest.mark.parametrize("policy", [p for p in ALL_POLICIES if p.config_schema], ids=lambda p: p.name)
def test_config_schemas_use_what_the_engine_validates_and_defaults_fit_them(policy: Policy) -> None:
    assert policy.config_schema is not None
    for key, schema in policy.config_schema.properties.items():
        assert set(schema) <= SUPPORTED_SCHEMA_KEYS, key
        assert "description" in schema and "default" in schema, key
        assert _schema_problem(schema["default"], schema) is None, key


def test_pack_files() -> None:
    project = yaml.safe_load((PACK_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    pins = dict(
        line.split("==")
        for line in (PACK_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pins == {
        "pulumi-policy": version("pulumi-policy"),
        "pulumi": version("pulumi"),
        "detect-secrets": version("detect-secrets"),
    }


PACK_FILES = {"PulumiPolicy.yaml", "__init__.py", "__main__.py", "requirements.txt", "requirements.lock", "check.py"}


def test_the_pack_directory_holds_only_the_pack() -> None:
    """What `pulumi preview --policy-pack policy` installs and teams publish: the pack, its requirements, and the
    `policy.check` entry point other teams' CI calls (the runner itself lives in runner/)."""
    tracked = subprocess.run(
        ["git", "ls-files", "policy"], cwd=PACK_DIR.parent, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = [f for f in tracked if not f.startswith("policy/rules/") and f.removeprefix("policy/") not in PACK_FILES]
    assert outside == [], "the runner's modules belong in runner/"
    shim = ast.parse((PACK_DIR / "check.py").read_text())
    top_level_imports = [n for n in shim.body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert [ast.unparse(n) for n in top_level_imports] == ["import sys"], "the entry point imports runner lazily"


def test_the_entry_point_teams_call_still_works() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "policy.check", "--program", ".", "--stack", "dev", "--no-cost", "--json"],
        cwd=PACK_DIR.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["stack"] == "dev"


def test_rules_import_nothing_outside_the_pack() -> None:
    # The pack runs alone in another team's repo: only the standard library, what requirements.txt installs
    # (the policy SDK and detect-secrets) and itself.
    allowed = set(sys.stdlib_module_names) | {"pulumi_policy", "detect_secrets", "rules"}
    for path in [*sorted((PACK_DIR / "rules").glob("*.py")), PACK_DIR / "__main__.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] in allowed, (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert {a.name.split(".")[0] for a in node.names} <= allowed, (path.name, ast.dump(node))


def test_committed_policy_doc_is_up_to_date() -> None:
    assert Path(docs.DOC_PATH).read_text(encoding="utf-8") == docs.render(), "run `uv run python -m runner.docs`"
