"""ImageScanning under recording mocks: repositories, the pipeline's gates, scan alerts, image builds, deploy gate."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components import buildspec
from components.scanning import (
    ImageScanning,
    ImageScanningArgs,
    ImageSource,
    assert_pinned_reference,
)
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
        (tmp_path / "services" / service / "Dockerfile").write_text("FROM scratch\n")
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
        image_tag="0123abc",
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


def rendered_buildspec(recorded: Recorded) -> dict[str, Any]:
    return yaml.safe_load(inputs(recorded.one(PROJECT))["source"]["buildspec"])


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


def test_lifecycle_expires_untagged_after_a_day_and_keeps_the_newest_tagged(project_root: Path) -> None:
    recorded = build_scanning(keep_tagged_images=7)
    lifecycle = recorded.find(LIFECYCLE, "scanning-api-lifecycle")
    assert inputs(lifecycle)["repository"] == "app-dev-api"
    untagged, tagged = json_input(lifecycle, "policy")["rules"]
    assert untagged["selection"] == {
        "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1,
    }  # fmt: skip
    assert tagged["selection"] == {
        "tagStatus": "tagged", "tagPatternList": ["*"], "countType": "imageCountMoreThan", "countNumber": 7,
    }  # fmt: skip
    assert [untagged["rulePriority"], tagged["rulePriority"]] == [1, 2]
    assert untagged["action"] == tagged["action"] == {"type": "expire"}


def test_continuous_scanning_turns_on_enhanced_scanning_for_our_repositories_only(project_root: Path) -> None:
    recorded = build_scanning(continuous_scanning=True)
    config = inputs(recorded.one("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration"))
    assert config["scanType"] == "ENHANCED"
    (rule,) = config["rules"]
    assert rule["scanFrequency"] == "CONTINUOUS_SCAN"
    assert rule["repositoryFilters"] == [
        {"filter": "app-dev-api", "filterType": "WILDCARD"},
        {"filter": "app-dev-worker", "filterType": "WILDCARD"},
    ]


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
    project = inputs(recorded.one(PROJECT))
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


def test_github_source_builds_main_pushes_and_pull_requests_with_fork_approval(project_root: Path) -> None:
    connection = f"arn:aws:codeconnections:{REGION}:{ACCOUNT}:connection/abc"
    recorded = build_scanning(source_repository_url="https://github.com/acme/platform.git",
                              source_connection_arn=connection)  # fmt: skip
    source = inputs(recorded.one(PROJECT))["source"]
    assert source["type"] == "GITHUB"
    assert source["location"] == "https://github.com/acme/platform.git"
    assert source["auth"] == {"type": "CODECONNECTIONS", "resource": connection}
    webhook = inputs(recorded.one("aws:codebuild/webhook:Webhook"))
    assert [group["filters"] for group in webhook["filterGroups"]] == [
        [{"type": "EVENT", "pattern": "PUSH"}, {"type": "HEAD_REF", "pattern": "^refs/heads/main$"}],
        [{"type": "EVENT", "pattern": "PULL_REQUEST_CREATED,PULL_REQUEST_UPDATED,PULL_REQUEST_REOPENED"}],
    ]
    assert webhook["pullRequestBuildPolicy"]["requiresCommentApproval"] == "FORK_PULL_REQUESTS"
    found = policy_statements(recorded, "scanning-build-policy")
    assert "ReadSource" not in found
    assert found["UseSourceConnection"]["Resource"] == [connection]


# --- Pipeline: the buildspec's gates ---


def test_buildspec_runs_bash_with_errexit_and_pipefail_in_every_phase(project_root: Path) -> None:
    spec = rendered_buildspec(build_scanning())
    assert spec["version"] == 0.2
    assert spec["env"]["shell"] == "bash"
    for phase, body in spec["phases"].items():
        assert body["commands"][0] == "set -euo pipefail", phase


def test_buildspec_has_no_escape_hatch_that_turns_a_failure_into_success(project_root: Path) -> None:
    spec = rendered_buildspec(build_scanning())
    commands = [c for body in spec["phases"].values() for key in ("commands", "finally") for c in body.get(key, [])]
    assert commands
    for command in commands:
        assert not any(escape in command for escape in FORBIDDEN_ESCAPES), command
        assert "||" not in command, command
    assert all("on-failure" not in body for body in spec["phases"].values())


def test_tools_are_pinned_and_verified_by_checksum_before_use(project_root: Path) -> None:
    install = rendered_buildspec(build_scanning())["phases"]["install"]["commands"]
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
    commands = rendered_buildspec(build_scanning(severity_threshold="MEDIUM"))["phases"]["build"]["commands"]
    for dockerfile in ("services/api/Dockerfile", "services/worker/Dockerfile"):
        assert f"hadolint --failure-threshold error {dockerfile}" in commands
    gates = [c for c in commands if c.startswith("trivy image") and "--exit-code 1" in c]
    assert len(gates) == 2
    for gate in gates:
        assert "--severity MEDIUM,HIGH,CRITICAL" in gate
        assert "--scanners vuln,secret" in gate


def test_push_is_the_last_step_of_the_build_phase_after_every_gate(project_root: Path) -> None:
    spec = rendered_buildspec(build_scanning())
    commands = spec["phases"]["build"]["commands"]
    pushes = [i for i, c in enumerate(commands) if "docker push" in c]
    gates = [i for i, c in enumerate(commands) if c.startswith(("hadolint", "trivy", "docker build"))]
    assert len(pushes) == 2
    assert max(gates) < min(pushes)
    assert pushes == list(range(len(commands) - 2, len(commands)))
    elsewhere = [c for p, body in spec["phases"].items() for k, cs in body.items() if isinstance(cs, list)
                 for c in cs if "docker push" in c and not (p == "build" and k == "commands")]  # fmt: skip
    assert elsewhere == []
    assert spec["phases"]["build"]["finally"] == [
        "aws s3 cp --recursive --only-show-errors reports/ "
        '"s3://$REPORTS_BUCKET/reports/${CODEBUILD_RESOLVED_SOURCE_VERSION}/${CODEBUILD_BUILD_NUMBER}/"'
    ]


STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$CALLS"
case "$(basename "$0") $*" in
  "hadolint "*"$FAIL_LINT"*) [ -n "$FAIL_LINT" ] && exit 1 ;;
esac
case "$(basename "$0") $*" in
  "trivy "*"--exit-code 1"*"$FAIL_SCAN"*) [ -n "$FAIL_SCAN" ] && exit 1 ;;
esac
exit 0
"""


def run_like_codebuild(spec: dict[str, Any], workdir: Path, **env: str) -> list[str]:
    """Run pre_build and build as CodeBuild does: stop a phase at the first failing command, then its `finally`."""
    bin_dir = workdir / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("hadolint", "trivy", "docker", "aws"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(stat.S_IRWXU)
    calls = workdir / "calls.log"
    calls.write_text("")
    environment = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "FAIL_LINT": "", "FAIL_SCAN": "",
        "REGISTRY": REGISTRY, "REPORTS_BUCKET": "reports-bucket", "AWS_REGION": REGION,
        "CODEBUILD_RESOLVED_SOURCE_VERSION": "0123abc", "CODEBUILD_BUILD_NUMBER": "7", **env,
    }  # fmt: skip
    for phase in ("pre_build", "build"):
        body = spec["phases"][phase]
        for command in body["commands"]:
            if subprocess.run(["bash", "-c", command], cwd=workdir, env=environment, check=False).returncode:
                break
        for command in body.get("finally", []):
            subprocess.run(["bash", "-c", command], cwd=workdir, env=environment, check=True)
    return calls.read_text().splitlines()


@pytest.mark.parametrize(
    ("failure", "expect_built"),
    [({"FAIL_LINT": "services/worker/Dockerfile"}, []), ({"FAIL_SCAN": "app-dev-worker"}, ["api", "worker"])],
    ids=["lint-finding", "scan-finding"],
)
def test_a_failing_gate_pushes_nothing_and_still_uploads_the_reports(
    project_root: Path, failure: dict[str, str], expect_built: list[str]
) -> None:
    calls = run_like_codebuild(rendered_buildspec(build_scanning()), project_root, **failure)
    assert not [c for c in calls if c.startswith("docker push")]
    built = [name for name in ("api", "worker") if any(c.startswith("docker build") and f"app-dev-{name}:" in c
                                                       for c in calls)]  # fmt: skip
    assert built == expect_built
    assert calls[-1].startswith(
        "aws s3 cp --recursive --only-show-errors reports/ s3://reports-bucket/reports/0123abc/7/"
    )


def test_a_clean_build_pushes_every_image_after_every_scan(project_root: Path) -> None:
    calls = run_like_codebuild(rendered_buildspec(build_scanning()), project_root)
    pushes = [i for i, c in enumerate(calls) if c.startswith("docker push")]
    scans = [i for i, c in enumerate(calls) if c.startswith("trivy")]
    assert [calls[i] for i in pushes] == [
        f"docker push {REGISTRY}/app-dev-api:ci-0123abc",
        f"docker push {REGISTRY}/app-dev-worker:ci-0123abc",
    ]
    assert len(scans) == 4
    assert max(scans) < min(pushes)


def test_a_pull_request_build_runs_every_gate_but_pushes_nothing(project_root: Path) -> None:
    calls = run_like_codebuild(rendered_buildspec(build_scanning()), project_root,
                               CODEBUILD_WEBHOOK_EVENT="PULL_REQUEST_UPDATED")  # fmt: skip
    assert len([c for c in calls if c.startswith("trivy") and "--exit-code 1" in c]) == 2
    assert not [c for c in calls if c.startswith("docker push")]


# --- Scan alerts ---


def test_scan_complete_rule_matches_completed_basic_scans_of_our_repositories(project_root: Path) -> None:
    recorded = build_scanning()
    rule = recorded.one("aws:cloudwatch/eventRule:EventRule")
    assert json_input(rule, "eventPattern") == {
        "source": ["aws.ecr"],
        "detail-type": ["ECR Image Scan"],
        "detail": {"scan-status": ["COMPLETE"], "repository-name": ["app-dev-api", "app-dev-worker"]},
    }
    function = recorded.one(FUNCTION)
    target = inputs(recorded.one("aws:cloudwatch/eventTarget:EventTarget"))
    assert target["rule"] == rule.outputs["name"]
    assert target["arn"] == function.outputs["arn"]
    permission = inputs(recorded.one("aws:lambda/permission:Permission"))
    assert permission["principal"] == "events.amazonaws.com"
    assert permission["sourceArn"] == rule.outputs["arn"]
    assert permission["function"] == function.outputs["name"]


def test_with_continuous_scanning_the_rule_also_matches_inspector_initial_scans(project_root: Path) -> None:
    recorded = build_scanning(continuous_scanning=True)
    pattern = json_input(recorded.one("aws:cloudwatch/eventRule:EventRule"), "eventPattern")
    arns = [recorded.find(REPOSITORY, f"scanning-{i}-repo").outputs["arn"] for i in ("api", "worker")]
    assert pattern["source"] == ["aws.ecr", "aws.inspector2"]
    assert pattern["detail-type"] == ["ECR Image Scan", "Inspector2 Scan"]
    assert pattern["detail"]["scan-status"] == ["COMPLETE", "INITIAL_SCAN_COMPLETE"]
    assert pattern["detail"]["repository-name"] == ["app-dev-api", "app-dev-worker", *sorted(arns)]


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


def test_images_are_built_for_the_platform_tagged_with_the_commit_and_deployed_by_digest(project_root: Path) -> None:
    recorded = build_scanning(platform="linux/arm64")
    image = inputs(recorded.find(IMAGE, "scanning-api-image"))
    assert image["imageName"] == f"{REGISTRY}/app-dev-api:0123abc"
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
    ({"image_tag": "latest"}, "image_tag: 'latest'"),
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
]


@pytest.mark.parametrize(("overrides", "message"), INVALID, ids=[m[:30] for _, m in INVALID])
def test_invalid_args_are_refused_naming_the_field_and_what_is_allowed(
    project_root: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ImageScanning("scanning", scanning_args(**overrides))
