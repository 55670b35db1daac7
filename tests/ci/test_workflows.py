"""The repository's workflows hold the security and delivery properties issue 9 asks for."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ci import workflow_rules as rules

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
STACKS = ["dev", "staging", "prod"]


def _workflow(name: str) -> dict:
    return rules.load(WORKFLOW_DIR / name)


def test_expected_files_exist():
    assert {path.name for path in WORKFLOWS} == {
        "checks.yml",
        "deploy.yml",
        "policy-pack.yml",
        "pull-request.yml",
    }
    assert [path.parent.name for path in ACTIONS] == ["setup"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_every_rule(path: Path):
    workflow = rules.load(path)
    findings = (
        rules.check_no_pr_code_in_privileged_triggers(workflow)
        + rules.check_pinned(workflow)
        + rules.check_permissions(workflow)
        + rules.check_id_token_only_for_oidc(workflow)
        + rules.check_security_events_only_for_sarif_upload(workflow)
        + rules.check_oidc_credentials(workflow, path.read_text(encoding="utf-8"))
        + rules.check_deploy_jobs(workflow)
        + rules.check_fork_prs_get_no_credentials(workflow)
    )
    assert findings == []


@pytest.mark.parametrize("path", ACTIONS, ids=lambda p: p.parent.name)
def test_composite_action_is_pinned_and_keyless(path: Path):
    action = rules.load(path)
    assert rules.check_pinned(action) == []
    assert rules.check_oidc_credentials(action, path.read_text(encoding="utf-8")) == []


def test_no_workflow_uses_privileged_triggers():
    for path in WORKFLOWS:
        assert not rules.triggers(rules.load(path)) & rules.PRIVILEGED_TRIGGERS, path.name


def test_pull_request_runs_checks_then_previews_every_stack_with_the_pack():
    workflow = _workflow("pull-request.yml")
    assert rules.triggers(workflow) == {"pull_request"}
    jobs = rules.jobs(workflow)
    assert jobs["checks"]["uses"] == "./.github/workflows/checks.yml"
    preview = jobs["preview"]
    assert preview["needs"] == "checks"
    assert preview["strategy"]["matrix"]["stack"] == STACKS
    [step] = rules.steps_using(preview, rules.PULUMI_ACTION)
    assert step["with"]["command"] == "preview"
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["comment-on-pr"] is True
    assert step["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    [aws] = rules.steps_using(preview, rules.AWS_CREDENTIALS_ACTION)
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"


def test_checks_run_offline_policy_check_per_stack_without_credentials():
    workflow = _workflow("checks.yml")
    assert rules.triggers(workflow) == {"workflow_call"}
    text = (WORKFLOW_DIR / "checks.yml").read_text(encoding="utf-8")
    assert "secrets." not in text
    assert "id-token" not in text
    offline = rules.jobs(workflow)["policy-offline"]
    assert offline["strategy"]["matrix"]["stack"] == STACKS
    test_job = rules.jobs(workflow)["test"]
    assert set(test_job["services"]) == {"postgres", "redis"}
    assert test_job["services"]["postgres"]["env"]["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert any(step.get("run") == "./platform test" for step in rules.steps(test_job))


def _run_step(job: dict, name_start: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run one step's bash script with a stub `uv` that prints its arguments."""
    [step] = [step for step in rules.steps(job) if str(step.get("name", "")).startswith(name_start)]
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "uv").write_text('#!/bin/sh\necho "uv $*"\n')
    (stub / "uv").chmod(0o755)
    return subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env={"PATH": f"{stub}:/usr/bin:/bin", "GITHUB_WORKSPACE": "/ws", **env},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )


@pytest.mark.parametrize(
    ("policy_config", "expected"),
    [
        ("", "uv run python -m policy.check --program . --stack prod"),
        (
            "policy/prod.json",
            "uv run python -m policy.check --program . --stack prod --policy-config policy/prod.json",
        ),
    ],
)
def test_offline_step_runs_the_policy_check_for_its_stack(tmp_path: Path, policy_config: str, expected: str):
    offline = rules.jobs(_workflow("checks.yml"))["policy-offline"]
    result = _run_step(offline, "Plan", {"STACK": "prod", "POLICY_CONFIG": policy_config}, tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, expected)


def test_reusable_offline_step_checks_the_callers_program_or_export(tmp_path: Path):
    offline = rules.jobs(_workflow("policy-pack.yml"))["offline"]
    env = {
        "STACK": "dev",
        "PROGRAM_DIR": "infra",
        "EXPORT_FILE": "",
        "POLICY_CONFIG": "infra/policy.json",
        "STACK_OUTPUTS": "acme/platform/prod=infra/platform.json\n",
        "RUNNER_TEMP": "/tmp/runner",
    }
    program = _run_step(offline, "Plan", env, tmp_path)
    export_env = {**env, "EXPORT_FILE": "out/preview.json", "POLICY_CONFIG": "", "STACK_OUTPUTS": ""}
    export = _run_step(offline, "Plan", export_env, tmp_path)
    strict = "--strict --source-root /ws --report sarif=/tmp/runner/policy-dev.sarif"
    assert program.stdout.strip() == (
        "uv run python -m policy.check --program /ws/infra --stack dev --policy-config /ws/infra/policy.json "
        f"--stack-outputs acme/platform/prod=/ws/infra/platform.json {strict}"
    )
    assert export.stdout.strip() == f"uv run python -m policy.check --export /ws/out/preview.json {strict}"
    # The produced command lines must be ones the runner's own parser accepts.
    from policy.check import parse_args

    for result in (program, export):
        parse_args(result.stdout.split()[5:])


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"PLATFORM_REF": "main"}, "platform-ref must be a full 40-character commit SHA, got 'main'"),
        (
            {"PROGRAM_DIR": "../other"},
            "paths must be relative to your repository root without '..', got '../other'",
        ),
        ({"POLICY_CONFIG": "/etc/passwd"}, "paths must be relative to your repository root without '..'"),
        ({"STACK_OUTPUTS": "acme/platform/prod"}, "stack-outputs lines must be NAME=FILE, got 'acme/platform/prod'"),
        ({"STACK_OUTPUTS": "p=../../secrets.json"}, "paths must be relative to your repository root without '..'"),
    ],
)
def test_reusable_workflow_rejects_bad_inputs_with_a_clear_error(tmp_path: Path, overrides: dict, error: str):
    offline = rules.jobs(_workflow("policy-pack.yml"))["offline"]
    good = {"PLATFORM_REF": "a" * 40, "PROGRAM_DIR": ".", "EXPORT_FILE": "", "POLICY_CONFIG": "", "STACK_OUTPUTS": ""}
    assert _run_step(offline, "Validate", good, tmp_path).returncode == 0
    result = _run_step(offline, "Validate", {**good, **overrides}, tmp_path)
    assert result.returncode == 1
    assert f"::error::{error}" in result.stdout


def test_deploy_goes_dev_then_staging_then_prod_each_in_its_environment():
    workflow = _workflow("deploy.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    jobs = rules.jobs(workflow)
    assert [rules.deployed_stacks(jobs[f"deploy-{stack}"]) for stack in STACKS] == [[s] for s in STACKS]
    assert [jobs[f"deploy-{stack}"]["needs"] for stack in STACKS] == [
        "checks",
        "deploy-dev",
        "deploy-staging",
    ]
    for stack in STACKS:
        job = jobs[f"deploy-{stack}"]
        assert rules.environment_name(job) == stack
        assert job["concurrency"] == {"group": f"pulumi-deploy-{stack}", "cancel-in-progress": False}
        [aws] = rules.steps_using(job, rules.AWS_CREDENTIALS_ACTION)
        assert aws["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
        [up] = rules.steps_using(job, rules.PULUMI_ACTION)
        assert up["with"]["policyPacks"] == "policy"


def test_reusable_policy_workflow_takes_the_callers_program_and_config():
    workflow = _workflow("policy-pack.yml")
    call = workflow[True]["workflow_call"]
    assert {
        "platform-repository",
        "platform-ref",
        "program-dir",
        "export-file",
        "policy-config",
        "stacks",
    } <= set(call["inputs"])
    assert (call["inputs"]["preview"]["type"], call["inputs"]["preview"]["default"]) == ("boolean", False)
    assert set(call["secrets"]) == {"PULUMI_ACCESS_TOKEN"}
    jobs = rules.jobs(workflow)
    assert jobs["offline"]["permissions"] == {"contents": "read", "security-events": "write"}
    assert "--policy-config" in str(jobs["offline"]["steps"])
    # The SARIF report goes to code scanning with an action pinned to the commit of its tag.
    [upload] = rules.sarif_uploads(jobs["offline"])
    assert upload["uses"] == "github/codeql-action/upload-sarif@8aad20d150bbac5944a9f9d289da16a4b0d87c1e"
    assert "!cancelled()" in upload["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in upload["if"]
    assert upload["with"]["sarif_file"] == "${{ runner.temp }}/policy-${{ matrix.stack }}.sarif"
    assert {"stack-outputs", "upload-sarif"} <= set(call["inputs"])
    preview = jobs["preview"]
    assert preview["needs"] == "offline"
    assert "inputs.preview" in preview["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
