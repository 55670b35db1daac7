"""The scan pipeline's generated buildspec, run as CodeBuild runs it (tests/pipeline/codebuild.py) with stub tools,
for both source kinds and the variables CodeBuild sets for each.

Guards against: a build that pushes after a finding, a failed push or a missing variable; a tag that is empty,
invalid, or the same for two builds (the repositories are IMMUTABLE, so a reused tag fails the second push, and an
S3 source has no CODEBUILD_RESOLVED_SOURCE_VERSION at all); reports that are not uploaded when a gate fails; any
tool call whose failure does not fail the build (bash's `set -e` does not reach into `if` conditions or `&&`/`||`
lists); a scanned source that switches a gate off with its own `.hadolint.yaml`, inline pragma, `trivy.yaml`,
`.trivyignore` or `trivy-secret.yaml`; an image that runs as root; a pull request build that can push.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.buildspec import TAG_PATTERN
from components.scanning import ImageScanning, ImageScanningArgs, ImageSource
from tests.pipeline.codebuild import BuildResult, base_environment, run_build
from tests.pipeline.stubs import FINDING_ID, install_stubs
from tests.support import build, inputs

ACCOUNT = "123456789012"
REGION = "us-east-1"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
REPOSITORIES = [f"{REGISTRY}/app-dev-api", f"{REGISTRY}/app-dev-worker"]
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"
# An S3 object version id as S3 documents them: not a valid Docker tag, so it cannot be used as one.
S3_VERSION_ID = "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"
SOURCE_TYPES = ("S3", "GITHUB")


PUSH_PROJECT = "app-dev-images"
PULL_REQUEST_PROJECT = "app-dev-images-pr"
NON_ROOT_DOCKERFILE = "FROM scratch\nUSER 1001:1001\n"


@functools.cache
def project_buildspec(source_type: str, project_name: str = PUSH_PROJECT) -> tuple[dict[str, Any], dict[str, str]]:
    """The buildspec and environment variables the ImageScanning component gives one of its CodeBuild projects."""
    github = "https://github.com/acme/platform.git" if source_type == "GITHUB" else None
    args = ImageScanningArgs(
        name_prefix="app-dev",
        region=REGION,
        account_id=ACCOUNT,
        images={
            "api": ImageSource(context=".", dockerfile="services/api/Dockerfile"),
            "worker": ImageSource(context=".", dockerfile="services/worker/Dockerfile"),
        },
        alert_topic_arn=f"arn:aws:sns:{REGION}:{ACCOUNT}:alerts",
        alert_topic_kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
        log_kms_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/k",
        build_images=False,
        source_repository_url=github,
    )
    recorded = build(lambda: ImageScanning("images", args), config={"aws:region": REGION})
    (project,) = [
        p for p in map(inputs, recorded.of_type("aws:codebuild/project:Project")) if p["name"] == project_name
    ]
    variables = {v["name"]: v["value"] for v in project["environment"].get("environmentVariables", [])}
    return yaml.safe_load(project["source"]["buildspec"]), variables


def codebuild_environment(source_type: str, number: int, source_dir: Path, event: str = "PUSH") -> dict[str, str]:
    """What CodeBuild sets for a build of this project (build-env-ref-env-vars), per source kind."""
    build_id = f"app-dev-images:00000000-0000-4000-8000-{number:012d}"
    common = {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "CODEBUILD_BUILD_ID": build_id,
        "CODEBUILD_BUILD_ARN": f"arn:aws:codebuild:{REGION}:{ACCOUNT}:build/{build_id}",
        "CODEBUILD_BUILD_NUMBER": str(number),
        "CODEBUILD_BUILD_IMAGE": "aws/codebuild/amazonlinux-x86_64-standard:5.0",
        "CODEBUILD_SRC_DIR": str(source_dir),
    }
    if source_type == "S3":
        # No CODEBUILD_RESOLVED_SOURCE_VERSION: "For Amazon S3, this does not apply".
        return common | {
            "CODEBUILD_INITIATOR": "platform-admin",
            "CODEBUILD_SOURCE_REPO_URL": "s3://app-dev-scan-reports/source/source.zip",
            "CODEBUILD_SOURCE_VERSION": S3_VERSION_ID,
        }
    pull_request = event.startswith("PULL_REQUEST")
    return common | {
        "CODEBUILD_INITIATOR": "GitHub-Hookshot/4c8f2a1",
        "CODEBUILD_RESOLVED_SOURCE_VERSION": COMMIT,
        "CODEBUILD_SOURCE_REPO_URL": "https://github.com/acme/platform.git",
        "CODEBUILD_SOURCE_VERSION": "pr/7" if pull_request else COMMIT,
        "CODEBUILD_WEBHOOK_EVENT": event,
        "CODEBUILD_WEBHOOK_TRIGGER": "pr/7" if pull_request else "branch/main",
        "CODEBUILD_WEBHOOK_HEAD_REF": "refs/heads/feature" if pull_request else "refs/heads/main",
    }


def normalized(calls: list[str]) -> list[str]:
    gate_config = [re.sub(r"/\S*/tmp/tmp\.\w+", "$GATE_CONFIG", call) for call in calls]
    return [re.sub(r"/\S*/build-\d+/src/", "$SOURCE/", call) for call in gate_config]


@dataclass
class Build:
    result: BuildResult
    calls: list[str]
    source_dir: Path

    @property
    def shapes(self) -> list[str]:
        """The calls with this build's temporary paths replaced, comparable across builds."""
        return normalized(self.calls)

    def tool_calls(self, prefix: str) -> list[str]:
        return [call for call in self.calls if call.startswith(prefix)]

    @property
    def pushed(self) -> list[str]:
        return [call.removeprefix("docker push ") for call in self.tool_calls("docker push")]

    @property
    def pushed_tags(self) -> set[str]:
        return {reference.rsplit(":", 1)[1] for reference in self.pushed}


@dataclass
class Pipeline:
    """One CodeBuild project: builds are numbered in order and share the (immutable) registry."""

    root: Path
    source_type: str
    builds: list[Build] = field(default_factory=list)

    def run(
        self,
        source: Path,
        *,
        event: str = "PUSH",
        overrides: Mapping[str, str | None] | None = None,
        knobs: Mapping[str, str] | None = None,
    ) -> Build:
        """One build of `source`; `overrides` replace (None: remove) CodeBuild's variables, `knobs` steer the stubs."""
        number = len(self.builds) + 1
        build_dir = self.root / f"build-{number}"
        source_dir = build_dir / "src"
        shutil.copytree(source, source_dir)  # every build gets a fresh checkout (or S3 extract)
        project = PULL_REQUEST_PROJECT if event.startswith("PULL_REQUEST") else PUSH_PROJECT
        spec, project_variables = project_buildspec(self.source_type, project)
        environment = {
            **base_environment(self.root / "tools" / "bin"),
            **project_variables,
            **codebuild_environment(self.source_type, number, source_dir, event),
            "STUB_BUILD": str(build_dir),
            "STUB_REGISTRY": str(self.root / "registry"),
            # mktemp's directory: the build's own, so that nothing outlives the test.
            "TMPDIR": str(build_dir / "tmp"),
        }
        (build_dir / "tmp").mkdir()
        environment |= knobs or {}
        for name, value in (overrides or {}).items():
            if value is None:
                environment.pop(name, None)
            else:
                environment[name] = value
        # The install phase downloads the real tools: the stubs on PATH stand in for them.
        result = run_build(spec, source_dir, environment, skip=("install",))
        calls_log = build_dir / "calls.log"
        self.builds.append(Build(result, calls_log.read_text().splitlines() if calls_log.exists() else [], source_dir))
        return self.builds[-1]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A checkout of the two services, as CodeBuild extracts or clones it."""
    root = tmp_path / "checkout"
    for service in ("api", "worker"):
        (root / "services" / service).mkdir(parents=True)
        (root / "services" / service / "Dockerfile").write_text(NON_ROOT_DOCKERFILE)
        (root / "services" / service / "app.py").write_text(f"SERVICE = {service!r}\n")
    return root


def make_pipeline(tmp_path: Path, source_type: str) -> Pipeline:
    install_stubs(tmp_path / "pipeline" / "tools" / "bin")
    return Pipeline(tmp_path / "pipeline", source_type)


@pytest.fixture(params=SOURCE_TYPES)
def pipeline(request: pytest.FixtureRequest, tmp_path: Path) -> Pipeline:
    return make_pipeline(tmp_path, request.param)


def test_a_clean_build_pushes_exactly_one_valid_tag_per_image(pipeline: Pipeline, source: Path) -> None:
    built = pipeline.run(source)
    assert built.result.succeeded, built.result.log
    assert [reference.rsplit(":", 1)[0] for reference in built.pushed] == REPOSITORIES
    (tag,) = built.pushed_tags
    assert re.match(TAG_PATTERN, tag), tag
    revision = COMMIT if pipeline.source_type == "GITHUB" else r"s3-[0-9a-f]{20}"
    assert re.fullmatch(rf"ci-{revision}-1", tag), tag
    assert built.result.exported["IMAGE_TAG"] == tag
    digests = (built.source_dir / "reports" / "pushed-digests.txt").read_text().split()
    assert [d.split("@")[0] for d in digests] == REPOSITORIES
    (upload,) = built.tool_calls("aws s3 cp")
    assert upload.endswith(f"s3://{project_buildspec(pipeline.source_type)[1]['REPORTS_BUCKET']}/reports/"
                           f"{built.result.exported['SOURCE_REVISION']}/1/")  # fmt: skip


def test_s3_builds_of_different_sources_get_different_tags_and_a_rebuild_gets_its_own(
    tmp_path: Path, source: Path
) -> None:
    pipeline = make_pipeline(tmp_path, "S3")
    first = pipeline.run(source)
    changed = tmp_path / "changed"
    shutil.copytree(source, changed)
    (changed / "services" / "api" / "app.py").write_text("SERVICE = 'api v2'\n")
    second = pipeline.run(changed)
    rebuild = pipeline.run(source)
    assert all(b.result.succeeded for b in pipeline.builds), [b.result.log for b in pipeline.builds]
    revisions = [b.result.exported["SOURCE_REVISION"] for b in pipeline.builds]
    assert revisions[0] != revisions[1]
    assert revisions[0] == revisions[2], "the same source content must name the same revision"
    tags = [b.pushed_tags for b in (first, second, rebuild)]
    assert all(len(t) == 1 for t in tags)
    assert len(set().union(*tags)) == 3, f"tags collide in an IMMUTABLE repository: {tags}"


@pytest.mark.parametrize(
    ("failure", "built_images"),
    [({"FAIL_LINT": "services/worker/Dockerfile"}, 0), ({"FAIL_SCAN": "app-dev-worker"}, 2)],
    ids=["lint-finding", "scan-finding"],
)
def test_a_finding_fails_the_build_pushes_nothing_and_still_uploads_the_reports(
    pipeline: Pipeline, source: Path, failure: dict[str, str], built_images: int
) -> None:
    built = pipeline.run(source, knobs=failure)
    assert not built.result.succeeded
    assert built.result.phases["build"] == "FAILED"
    assert built.pushed == []
    assert len(built.tool_calls("docker build")) == built_images
    assert built.calls[-1].startswith("aws s3 cp --recursive --only-show-errors reports/ s3://")


def test_a_failed_push_fails_the_build_and_the_retry_pushes_under_its_own_tag(pipeline: Pipeline, source: Path) -> None:
    failed = pipeline.run(source, knobs={"FAIL_PUSH": "app-dev-worker"})
    assert not failed.result.succeeded
    assert failed.result.phases["build"] == "FAILED"
    assert failed.pushed == [f"{r}:{tag}" for r, tag in zip(REPOSITORIES, [*failed.pushed_tags] * 2, strict=True)]
    retry = pipeline.run(source)
    assert retry.result.succeeded, retry.result.log
    assert retry.pushed_tags.isdisjoint(failed.pushed_tags)
    assert len(retry.pushed) == 2


MISSING = [
    (source_type, variable)
    for source_type in SOURCE_TYPES
    for variable in ("REGISTRY", "REPORTS_BUCKET", "AWS_REGION", "CODEBUILD_BUILD_NUMBER")
] + [("GITHUB", "CODEBUILD_RESOLVED_SOURCE_VERSION")]


@pytest.mark.parametrize("empty", [False, True], ids=["unset", "empty"])
@pytest.mark.parametrize(("source_type", "variable"), MISSING, ids=[f"{s}-{v}" for s, v in MISSING])
def test_a_missing_variable_fails_the_build_before_anything_is_built(
    tmp_path: Path, source: Path, source_type: str, variable: str, empty: bool
) -> None:
    built = make_pipeline(tmp_path, source_type).run(source, overrides={variable: "" if empty else None})
    assert not built.result.succeeded
    assert built.result.phases["pre_build"] == "FAILED"
    assert f"{variable}" in built.result.log
    assert built.tool_calls("docker build") == []
    assert built.pushed == []


def test_a_failed_registry_login_fails_the_build(pipeline: Pipeline, source: Path) -> None:
    built = pipeline.run(source, knobs={"FAIL_LOGIN": "yes"})
    assert built.result.phases["pre_build"] == "FAILED"
    assert built.tool_calls("docker build") == []


def test_a_pull_request_build_runs_every_gate_in_its_own_project_and_never_touches_the_registry(
    tmp_path: Path, source: Path
) -> None:
    built = make_pipeline(tmp_path, "GITHUB").run(source, event="PULL_REQUEST_UPDATED")
    assert built.result.succeeded, built.result.log
    assert len([c for c in built.tool_calls("trivy image") if "--exit-code 1" in c]) == 2
    assert len(built.tool_calls("hadolint")) == 2
    assert built.pushed == []
    assert built.tool_calls("docker login") == [] and built.tool_calls("aws") == []
    assert all("gates.local/" in c for c in built.tool_calls("docker build")), "a PR image is named for no registry"
    assert project_buildspec("GITHUB", PULL_REQUEST_PROJECT)[1] == {}, "the PR project gets no registry or bucket"


def test_the_push_project_refuses_a_pull_request_event(tmp_path: Path, source: Path) -> None:
    pipeline = make_pipeline(tmp_path, "GITHUB")
    spec, variables = project_buildspec("GITHUB", PUSH_PROJECT)
    environment = {
        **base_environment(pipeline.root / "tools" / "bin"),
        **variables,
        **codebuild_environment("GITHUB", 1, source, "PULL_REQUEST_CREATED"),
        "STUB_BUILD": str(tmp_path),
        "STUB_REGISTRY": str(tmp_path / "registry"),
    }
    result = run_build(spec, source, environment, skip=("install",))
    assert result.phases["pre_build"] == "FAILED"
    assert "never in the one that pushes" in result.log


def clean_calls(tmp_path: Path, source: Path) -> list[str]:
    built = make_pipeline(tmp_path / "clean", "S3").run(source)
    assert built.result.succeeded, built.result.log
    assert all("$GATE_CONFIG" in c for c in built.shapes if c.startswith(("hadolint", "trivy image")))
    return built.shapes


def test_every_tool_call_that_fails_fails_the_build_and_nothing_is_pushed_after_it(
    tmp_path: Path, source: Path
) -> None:
    """No call is exempt from `set -e` (inside an `if` condition or an `&&`/`||` list) or otherwise ignored."""
    calls = clean_calls(tmp_path, source)
    assert len(calls) >= 15, calls
    failed: set[str] = set()
    for number in range(1, len(calls) + 1):
        built = make_pipeline(tmp_path / f"fail-{number}", "S3").run(source, knobs={"FAIL_CALL": str(number)})
        (call,) = normalized((built.source_dir.parent / "failed-on-purpose").read_text().splitlines())
        failed.add(call)
        assert not built.result.succeeded, f"call {number} ({call}) failed, but the build succeeded"
        after = built.shapes[built.shapes.index(call) + 1 :]
        assert [c for c in after if c.startswith("docker push")] == [], f"pushed after {call} failed"
    # The two sides of `aws ecr get-login-password | docker login` log in either order, so which of them is the
    # N-th call varies; the login failure has its own test above.
    login = {c for c in calls if c.startswith(("aws ecr get-login-password", "docker login"))}
    assert len(login) == 2 and failed & login
    assert set(calls) - login <= failed, f"never made to fail: {sorted(set(calls) - login - failed)}"


# What a scanned source could add to switch the gates off, were they read from it.
SOURCE_GATE_OVERRIDES = {
    ".trivyignore": f"{FINDING_ID}\n",
    ".trivyignore.yaml": f"vulnerabilities:\n  - id: {FINDING_ID}\n",
    "trivy.yaml": "scan:\n  skip-dirs:\n    - /usr\n",
    "trivy-secret.yaml": "disable-rules:\n  - aws-access-key-id\n",
    ".hadolint.yaml": "ignored:\n  - DL3002\nfailure-threshold: none\n",
}


@pytest.mark.parametrize("overrides", [".trivyignore", "trivy.yaml", "trivy-secret.yaml"])
def test_the_source_s_own_trivy_files_do_not_pass_the_scan_gate(tmp_path: Path, source: Path, overrides: str) -> None:
    (source / overrides).write_text(SOURCE_GATE_OVERRIDES[overrides])
    # The threat is real: Trivy run in the source with its defaults reads the file and passes.
    install_stubs(tmp_path / "probe" / "bin")
    (tmp_path / "probe" / "images").write_text("registry.local/app:1\n")
    probe = subprocess.run(
        [str(tmp_path / "probe" / "bin" / "trivy"), "image", "--exit-code", "1", "registry.local/app:1"],
        cwd=source, env={"STUB_BUILD": str(tmp_path / "probe"), "FAIL_SCAN": "app", "PATH": os.defpath},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stdout + probe.stderr
    built = make_pipeline(tmp_path, "S3").run(source, knobs={"FAIL_SCAN": "app-dev-worker"})
    assert built.result.phases["build"] == "FAILED"
    assert built.pushed == []
    assert f"Total: 1 (HIGH: 1, CRITICAL: 0) {FINDING_ID}" in built.result.log


ROOT_DOCKERFILES = {
    "user-root": "FROM scratch\nUSER root\n",
    "user-0": "FROM scratch\nUSER 0\n",
    "user-0-0": "FROM scratch\nUSER 0:0\n",
    "no-user": "FROM scratch\nCOPY app.py /app.py\n",
    "root-group-only": "FROM scratch\nUSER :1001\n",
    "root-in-final-stage-only": "FROM scratch AS build\nUSER 1001\nFROM scratch\nCOPY --from=build /app.py /app.py\n",
}


@pytest.mark.parametrize("dockerfile", list(ROOT_DOCKERFILES), ids=list(ROOT_DOCKERFILES))
def test_an_image_that_runs_as_root_fails_the_build_whatever_the_source_says(
    tmp_path: Path, source: Path, dockerfile: str
) -> None:
    (source / "services" / "api" / "Dockerfile").write_text("# hadolint ignore=DL3002\n" + ROOT_DOCKERFILES[dockerfile])
    (source / ".hadolint.yaml").write_text(SOURCE_GATE_OVERRIDES[".hadolint.yaml"])
    built = make_pipeline(tmp_path, "S3").run(source)
    assert built.result.phases["build"] == "FAILED"
    assert built.pushed == []
    assert "DL3002" in built.result.log or "the image runs as root" in built.result.log


def test_a_final_user_root_is_a_lint_error_before_anything_is_built(tmp_path: Path, source: Path) -> None:
    (source / "services" / "api" / "Dockerfile").write_text("FROM scratch\n# hadolint ignore=DL3002\nUSER root\n")
    (source / ".hadolint.yaml").write_text(SOURCE_GATE_OVERRIDES[".hadolint.yaml"])
    built = make_pipeline(tmp_path, "S3").run(source)
    assert built.result.phases["build"] == "FAILED"
    assert "DL3002 error: Last USER should not be root" in built.result.log
    assert built.tool_calls("docker build") == []


def test_each_dockerfiles_cis_report_is_written_next_to_the_scan_reports_even_when_a_gate_fails(
    pipeline: Pipeline, source: Path
) -> None:
    (source / "services" / "worker" / "Dockerfile").write_text("FROM python\nADD app.py /app.py\nUSER 1001\n")
    built = pipeline.run(source)
    assert not built.result.succeeded  # hadolint's gate refuses the worker's Dockerfile
    reports = built.source_dir / "reports"
    api = json.loads((reports / "api-cis-docker.json").read_text())
    worker = json.loads((reports / "worker-cis-docker.json").read_text())
    assert api["dockerfile"] == "services/api/Dockerfile"
    assert {item["id"]: item["status"] for item in worker["items"]} == {
        "4.1": "pass", "4.2": "fail", "4.3": "pass", "4.6": "fail", "4.7": "pass", "4.9": "fail"
    }  # fmt: skip
    assert json.loads((reports / "worker-hadolint.json").read_text())  # the raw findings, too
    assert built.calls[-1].startswith("aws s3 cp --recursive --only-show-errors reports/ s3://")
