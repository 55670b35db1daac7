"""The repository's workflows hold the security and delivery properties issues 9 and 14 ask for."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.ci import workflow_rules as rules

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
ACTIONS = sorted((ROOT / ".github" / "actions").glob("*/action.yml"))
STACKS = ["dev", "staging", "prod"]
IMAGES = ["api", "worker"]


def _locked_pulumi_version() -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    [version] = [package["version"] for package in lock["package"] if package["name"] == "pulumi"]
    return version


def _workflow(name: str) -> dict:
    return rules.load(WORKFLOW_DIR / name)


def test_expected_files_exist():
    assert {path.name for path in WORKFLOWS} == {
        "checks.yml",
        "deploy.yml",
        "policy-pack.yml",
        "policy-pack-preview.yml",
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
        + rules.check_no_stored_pulumi_token_on_pull_request(workflow)
        + rules.check_pulumi_cli_pinned(workflow)
    )
    assert findings == []


def test_every_pulumi_cli_is_the_version_the_lock_tests_with():
    versions = {
        str(step["with"]["pulumi-version"])
        for path in WORKFLOWS
        for job in rules.jobs(rules.load(path)).values()
        for step in rules.steps_using(job, rules.PULUMI_ACTION)
    }
    assert versions == {_locked_pulumi_version()}


def test_no_workflow_holds_a_stored_pulumi_token():
    # Every Pulumi token is exchanged from the job's OIDC token (pulumi/auth-actions), scoped to one team.
    for path in WORKFLOWS:
        assert "PULUMI_ACCESS_TOKEN" not in path.read_text(encoding="utf-8"), path.name


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
    assert "env" not in step
    [aws] = rules.steps_using(preview, rules.AWS_CREDENTIALS_ACTION)
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    # The Pulumi token is a team token exchanged from OIDC, for the team that may only read the stacks.
    [auth] = rules.steps_using(preview, rules.PULUMI_AUTH_ACTION)
    assert auth["with"]["requested-token-type"] == "urn:pulumi:token-type:access_token:team"
    assert auth["with"]["scope"] == "team:${{ vars.PULUMI_PREVIEW_TEAM }}"
    steps = rules.steps(preview)
    assert steps.index(auth) < steps.index(step)
    [setup] = [s for s in steps if s.get("uses") == "./.github/actions/setup"]
    assert setup["with"]["policy-pack"] == "policy"


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
        ("", "uv run python -m runner.check --program . --stack prod"),
        (
            "policy/prod.json",
            "uv run python -m runner.check --program . --stack prod --policy-config policy/prod.json",
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
        "uv run python -m runner.check --program /ws/infra --stack dev --policy-config /ws/infra/policy.json "
        f"--stack-outputs acme/platform/prod=/ws/infra/platform.json {strict}"
    )
    assert export.stdout.strip() == f"uv run python -m runner.check --export /ws/out/preview.json {strict}"
    # The produced command lines must be ones the runner's own parser accepts.
    from runner.check import parse_args

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


DEPLOY_JOBS = [f"deploy-{stack}" for stack in STACKS]
BUILD_OUTPUTS = {"API_DIGEST": "api-digest", "WORKER_DIGEST": "worker-digest", "RELEASE_TAG": "release-tag"}
# What builds an image: docker/buildx, BuildKit's CLI, pulumi-docker through `pulumi up` with images.build true.
BUILDS_IMAGES = re.compile(r"docker\s+(image\s+)?build|buildx|buildctl|gate-image\.sh|docker/build-push-action")


def _deploy_jobs() -> dict[str, dict]:
    jobs = rules.jobs(_workflow("deploy.yml"))
    return {job_id: jobs[job_id] for job_id in DEPLOY_JOBS}


def _run_scripts(job: dict) -> str:
    """Every shell script a job runs, with the repository scripts it calls inlined."""
    text = ""
    for step in rules.steps(job):
        script = str(step.get("run", ""))
        text += script + "\n"
        for called in re.findall(r"\.github/scripts/[\w.-]+\.sh", script):
            text += (ROOT / called).read_text(encoding="utf-8") + "\n"
    return text


def test_deploy_goes_build_then_dev_then_staging_then_prod_each_in_its_environment():
    workflow = _workflow("deploy.yml")
    assert workflow[True]["push"]["branches"] == ["main"]
    jobs = rules.jobs(workflow)
    assert jobs["build"]["needs"] == "checks"
    assert [rules.deployed_stacks(jobs[job_id]) for job_id in DEPLOY_JOBS] == [[s] for s in STACKS]
    assert [jobs[job_id]["needs"] for job_id in DEPLOY_JOBS] == [
        "build",
        ["build", "deploy-dev"],
        ["build", "deploy-staging"],
    ]
    for stack, job_id in zip(STACKS, DEPLOY_JOBS, strict=True):
        job = jobs[job_id]
        assert rules.environment_name(job) == stack
        assert job["concurrency"] == {"group": f"pulumi-deploy-{stack}", "cancel-in-progress": False}
        [aws] = rules.steps_using(job, rules.AWS_CREDENTIALS_ACTION)
        assert aws["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
        [auth] = rules.steps_using(job, rules.PULUMI_AUTH_ACTION)
        assert auth["with"]["scope"] == "team:${{ vars.PULUMI_DEPLOY_TEAM }}"
        up = [s for s in rules.steps_using(job, rules.PULUMI_ACTION) if s["with"].get("command") == "up"]
        assert [s["with"]["policyPacks"] for s in up] == ["policy"]


def test_images_are_built_and_gated_once_before_any_credential():
    build = rules.jobs(_workflow("deploy.yml"))["build"]
    steps = rules.steps(build)
    gates = [s for s in steps if "gate-image.sh" in str(s.get("run", ""))]
    assert [s["run"].split()[1:] for s in gates] == [
        ["api", "services/api/Dockerfile", "."],
        ["worker", "services/worker/Dockerfile", "."],
    ]
    first_credential = min(steps.index(s) for action in rules.OIDC_ACTIONS for s in rules.steps_using(build, action))
    assert all(steps.index(gate) < first_credential for gate in gates)
    assert set(build["outputs"]) == {"api-digest", "worker-digest", "release-tag"}


def test_the_build_covers_exactly_the_programs_images():
    import ast

    tree = ast.parse((ROOT / "__main__.py").read_text(encoding="utf-8"))
    [images] = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "IMAGES" for t in node.targets)
    ]
    assert isinstance(images, ast.Dict)
    program = {
        ast.literal_eval(key): {kw.arg: ast.literal_eval(kw.value) for kw in value.keywords}
        for key, value in zip(images.keys, images.values, strict=True)
        if key is not None and isinstance(value, ast.Call)
    }
    build = rules.jobs(_workflow("deploy.yml"))["build"]
    gated = {
        step["run"].split()[1]: {"dockerfile": step["run"].split()[2], "context": step["run"].split()[3]}
        for step in rules.steps(build)
        if "gate-image.sh" in str(step.get("run", ""))
    }
    assert gated == program


@pytest.mark.parametrize("job_id", DEPLOY_JOBS)
def test_deploy_jobs_never_build_images(job_id: str):
    job = _deploy_jobs()[job_id]
    builds = BUILDS_IMAGES.search(_run_scripts(job))
    assert builds is None, f"{job_id} builds an image: {builds.group(0)!r}"
    assert not any("docker" in str(step.get("uses", "")) for step in rules.steps(job))


@pytest.mark.parametrize("job_id", DEPLOY_JOBS)
def test_each_deploy_passes_exactly_the_build_jobs_digests(job_id: str, tmp_path: Path):
    job = _deploy_jobs()[job_id]
    for variable, output in BUILD_OUTPUTS.items():
        assert job["env"][variable] == f"${{{{ needs.build.outputs.{output} }}}}"
    # Run the config step with a stub pulumi: images.build false and the two digests, nothing else.
    [config_step] = [s for s in rules.steps(job) if "set-image-config.sh" in str(s.get("run", ""))]
    steps = rules.steps(job)
    [up] = [s for s in rules.steps_using(job, rules.PULUMI_ACTION) if s["with"].get("command") == "up"]
    assert steps.index(config_step) < steps.index(up)
    api, worker = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    calls = tmp_path / "calls"
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "pulumi").write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n')
    (stub / "pulumi").chmod(0o755)
    env = {"PATH": f"{stub}:/usr/bin:/bin", "CALLS": str(calls), "STACK": job["env"]["STACK"]}
    env |= {"PULUMI_ORG": "acme", "API_DIGEST": api, "WORKER_DIGEST": worker}
    result = subprocess.run(
        ["bash", "-e", "-c", config_step["run"]], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    stack = f"acme/{job['env']['STACK']}"
    assert calls.read_text().splitlines() == [
        f"config set --stack {stack} --path images.build false",
        f"config set --stack {stack} --path images.digests.api {api}",
        f"config set --stack {stack} --path images.digests.worker {worker}",
    ]


def test_staging_promotes_from_dev_and_prod_from_staging():
    jobs = _deploy_jobs()
    assert jobs["deploy-dev"]["env"]["SOURCE_REPOSITORY_URLS"] == ""
    assert jobs["deploy-staging"]["env"]["SOURCE_REPOSITORY_URLS"] == "${{ needs.deploy-dev.outputs.repository-urls }}"
    assert jobs["deploy-prod"]["env"]["SOURCE_REPOSITORY_URLS"] == (
        "${{ needs.deploy-staging.outputs.repository-urls }}"
    )
    for job_id, job in jobs.items():
        steps = rules.steps(job)
        [promote] = [s for s in steps if "promote-image.sh" in str(s.get("run", ""))]
        assert promote["if"] == "env.STACK != 'dev'", job_id
        [up] = [s for s in rules.steps_using(job, rules.PULUMI_ACTION) if s["with"].get("command") == "up"]
        assert steps.index(promote) < steps.index(up)
        assert job["outputs"]["repository-urls"] == "${{ steps.repositories.outputs.urls }}"


def test_every_stack_runs_the_platform_the_build_builds_for():
    import yaml

    build = rules.jobs(_workflow("deploy.yml"))["build"]
    platform = build["env"]["IMAGE_PLATFORM"]
    for stack in STACKS:
        config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))["config"]
        images = config.get("container-platform:images") or {}
        assert images.get("platform", "linux/amd64") == platform, stack


# --- The reusable policy pack workflows, and the calls docs/ci.md tells other teams to copy ---

REUSABLE = {"policy-pack.yml", "policy-pack-preview.yml"}


def _documented_calls() -> list[dict]:
    """Every job in docs/ci.md's YAML examples that calls one of our reusable workflows."""
    import yaml

    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    calls = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        document = yaml.safe_load(block)
        for job in (document or {}).get("jobs", {}).values():
            if any(str(job.get("uses", "")).split("@")[0].endswith(f"/{name}") for name in REUSABLE):
                calls.append(job)
    return calls


def _called(job: dict) -> tuple[str, dict]:
    name = str(job["uses"]).split("@")[0].rsplit("/", 1)[-1]
    return name, _workflow(name)


def test_the_offline_and_preview_checks_are_separate_workflows_with_least_privilege():
    offline = _workflow("policy-pack.yml")
    assert {job_id: job["permissions"] for job_id, job in rules.jobs(offline).items()} == {
        "offline": {"contents": "read"}
    }
    preview = _workflow("policy-pack-preview.yml")
    assert {job_id: job["permissions"] for job_id, job in rules.jobs(preview).items()} == {
        "preview": {"contents": "read", "id-token": "write", "pull-requests": "write"}
    }
    for workflow in (offline, preview):
        assert set(workflow[True]["workflow_call"]["secrets"]) == {"platform-token"}
        assert workflow[True]["workflow_call"]["secrets"]["platform-token"]["required"] is False
        for job in rules.jobs(workflow).values():
            [platform] = [s for s in rules.steps_using(job, rules.CHECKOUT_ACTION) if "repository" in s["with"]]
            assert platform["with"]["token"] == "${{ secrets.platform-token || github.token }}"
            assert platform["with"]["persist-credentials"] is False


def test_docs_show_both_calls():
    assert sorted(_called(job)[0] for job in _documented_calls()) == sorted(REUSABLE)


@pytest.mark.parametrize("index", range(2))
def test_documented_call_matches_the_reusable_workflow(index: int):
    job = _documented_calls()[index]
    name, workflow = _called(job)
    call = workflow[True]["workflow_call"]
    inputs, secrets = call.get("inputs") or {}, call.get("secrets") or {}
    given = job.get("with") or {}
    assert set(given) <= set(inputs), f"{name}: unknown inputs {set(given) - set(inputs)}"
    required = {key for key, spec in inputs.items() if spec.get("required")}
    assert required <= set(given), f"{name}: missing required inputs {required - set(given)}"
    assert set(job.get("secrets") or {}) <= set(secrets)
    # GitHub checks each called job's permissions against the caller's grant before any `if:`: the documented
    # grant must cover every scope every job asks for, at its level.
    granted = job["permissions"]
    for job_id, called_job in rules.jobs(workflow).items():
        for scope, level in called_job["permissions"].items():
            assert granted.get(scope) in ({"read", "write"} if level == "read" else {"write"}), (
                f"{name} job {job_id} asks for {scope}: {level}, the documented call grants {granted.get(scope)}"
            )
    ref = str(job["uses"]).split("@")[1]
    assert re.fullmatch(r"<40-char-sha>|[0-9a-f]{40}", ref)


def test_a_caller_granting_only_contents_read_gets_the_offline_check():
    offline = [job for job in _documented_calls() if _called(job)[0] == "policy-pack.yml"]
    assert [job["permissions"] for job in offline] == [{"contents": "read"}]


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
        "stack-outputs",
    } <= set(call["inputs"])
    offline = rules.jobs(workflow)["offline"]
    assert "--policy-config" in str(offline["steps"])
    # The SARIF report is kept as an artifact, also after violations; uploading it needs security-events: write,
    # which only the caller's own (documented) job asks for.
    [keep] = rules.steps_using(offline, "actions/upload-artifact")
    assert "!cancelled()" in keep["if"]
    assert keep["with"]["path"] == "${{ runner.temp }}/policy-${{ matrix.stack }}.sarif"
    [setup] = [s for s in rules.steps(offline) if str(s.get("uses", "")).endswith("/.github/actions/setup")]
    assert setup["uses"] == "./.container-platform/.github/actions/setup"
    preview = rules.jobs(_workflow("policy-pack-preview.yml"))["preview"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in preview["if"]
    [auth] = rules.steps_using(preview, rules.PULUMI_AUTH_ACTION)
    assert auth["with"]["scope"] == "team:${{ inputs.pulumi-team }}"


@pytest.mark.parametrize(
    ("policy_config", "expected"),
    [
        ("", "uv run python -m runner.compliance --program . --stack prod --out-dir compliance"),
        (
            "policy/prod.json",
            "uv run python -m runner.compliance --program . --stack prod --out-dir compliance "
            "--policy-config policy/prod.json",
        ),
    ],
)
def test_every_stacks_compliance_report_is_an_artifact(tmp_path: Path, policy_config: str, expected: str):
    offline = rules.jobs(_workflow("checks.yml"))["policy-offline"]
    summary = tmp_path / "summary.md"
    env = {"STACK": "prod", "POLICY_CONFIG": policy_config, "GITHUB_STEP_SUMMARY": str(summary)}
    result = _run_step(offline, "Compliance report", env, tmp_path)
    assert (result.returncode, summary.read_text().strip()) == (0, expected)
    [upload] = [
        step for step in rules.steps(offline) if str(step.get("uses", "")).startswith("actions/upload-artifact")
    ]
    assert upload["with"]["path"] == "compliance/"
    assert upload["with"]["name"] == "compliance-${{ matrix.stack }}"
