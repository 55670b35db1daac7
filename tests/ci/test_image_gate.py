"""The deploy workflow's build job: each image gated with pipeline-owned config, pushed and promoted by digest.

The scripts under .github/scripts run here against stub `hadolint`, `docker`, `trivy`, `skopeo` and `curl` that
record their arguments (no Docker engine, no registry): the tests check what each tool is told and that every
failure fails the script.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from components import buildspec

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / ".github" / "scripts"
DIGEST = "sha256:" + "d" * 64
IMAGE_ID = "sha256:" + "c" * 64

STUBS = {
    "hadolint": 'echo "hadolint $*" >> "$CALLS"; echo "cwd $PWD" >> "$CALLS"; exit "${HADOLINT_EXIT:-0}"',
    "trivy": 'echo "trivy $*" >> "$CALLS"; echo "cwd $PWD" >> "$CALLS"; exit "${TRIVY_EXIT:-0}"',
    "docker": """echo "docker $*" >> "$CALLS"
case "$1 $2" in
  "buildx build") while [ $# -gt 0 ]; do [ "$1" = --iidfile ] && printf '%s' "$IMAGE_ID" > "$2"; shift; done ;;
  "image inspect") printf '%s\\n' "$IMAGE_USER" ;;
esac""",
    "skopeo": """echo "skopeo $*" >> "$CALLS"
case "$1" in
  inspect)
    case "$*" in
      *--raw*"@$DIGEST"*) [ -n "${TARGET_HAS_IMAGE:-}" ] || exit 1; echo "{\\"config\\": {\\"digest\\": \\"$CONFIG_DIGEST\\"}}" ;;
      *--raw*) echo "{\\"config\\": {\\"digest\\": \\"$CONFIG_DIGEST\\"}}" ;;
      *) echo "$REPORTED_DIGEST" ;;
    esac ;;
  copy) : ;;
esac""",
}


def run(script: str, args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    defaults = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "CALLS": str(calls),
        "IMAGE_ID": IMAGE_ID,
        "IMAGE_USER": "1001:1001",
        "IMAGE_PLATFORM": "linux/amd64",
        "GATE_DIR": str(tmp_path / "gate"),
        "DIGEST": DIGEST,
        "REPORTED_DIGEST": DIGEST,
        "CONFIG_DIGEST": IMAGE_ID,
    }
    result = subprocess.run(
        ["bash", str(SCRIPTS / script), *args],
        cwd=ROOT,
        env={**defaults, **env},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def _call(calls: list[str], tool: str) -> list[str]:
    [line] = [line for line in calls if line.startswith(f"{tool} ")]
    return shlex.split(line)


def gate(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    return run("gate-image.sh", ["api", "services/api/Dockerfile", "."], tmp_path, **env)


def test_a_clean_image_passes_every_gate_in_order(tmp_path: Path):
    result, calls = gate(tmp_path)
    assert result.returncode == 0, result.stderr
    order = [line.split()[0] + (" " + line.split()[1] if line.startswith("docker") else "") for line in calls]
    tools = [entry for entry in order if entry != "cwd"]
    assert tools == ["hadolint", "docker buildx", "docker image", "docker image", "trivy"]


def test_gates_use_pipeline_owned_config_never_the_sources(tmp_path: Path):
    _, calls = gate(tmp_path)
    hadolint = _call(calls, "hadolint")
    config_dir = tmp_path / "gate" / "config"
    assert hadolint[hadolint.index("--config") + 1] == str(config_dir / "hadolint.yaml")
    assert {"--disable-ignore-pragma", "--failure-threshold"} <= set(hadolint)
    assert "DL3002" in (config_dir / "hadolint.yaml").read_text()
    trivy = _call(calls, "trivy")
    assert trivy[trivy.index("--config") + 1] == str(config_dir / "trivy.yaml")
    assert trivy[trivy.index("--ignorefile") + 1] == str(config_dir / "trivyignore")
    assert (config_dir / "trivyignore").read_text() == ""
    assert trivy[trivy.index("--secret-config") + 1].startswith(str(config_dir))
    assert trivy[trivy.index("--scanners") + 1] == "vuln,secret"
    assert trivy[trivy.index("--severity") + 1] == "HIGH,CRITICAL"
    assert trivy[trivy.index("--exit-code") + 1] == "1"
    # Both tools run in an empty directory: no .hadolint.yaml, trivy.yaml or .trivyignore of the source is found.
    assert {line for line in calls if line.startswith("cwd ")} == {f"cwd {tmp_path / 'gate' / 'work'}"}


def test_the_build_targets_one_platform_and_records_the_image_id(tmp_path: Path):
    _, calls = gate(tmp_path, IMAGE_PLATFORM="linux/arm64")
    build = _call(calls, "docker buildx")
    assert build[build.index("--platform") + 1] == "linux/arm64"
    assert build[build.index("--file") + 1] == str(ROOT / "services/api/Dockerfile")
    assert (tmp_path / "gate" / "api.id").read_text() == IMAGE_ID


@pytest.mark.parametrize("user", ["", "root", "0", "00", "+0", "0:0", "root:root", ":1000", " 0 "])
def test_an_image_that_runs_as_root_fails(tmp_path: Path, user: str):
    result, calls = gate(tmp_path, IMAGE_USER=user)
    assert result.returncode == 1
    assert "runs as root" in result.stdout
    assert not any(line.startswith("trivy ") for line in calls)


@pytest.mark.parametrize("user", ["1001", "1001:1001", "app", "10:0"])
def test_a_non_root_user_passes(tmp_path: Path, user: str):
    assert gate(tmp_path, IMAGE_USER=user)[0].returncode == 0


@pytest.mark.parametrize("failing", ["HADOLINT_EXIT", "TRIVY_EXIT"])
def test_a_lint_or_scan_finding_fails_the_gate(tmp_path: Path, failing: str):
    assert gate(tmp_path, **{failing: "1"})[0].returncode == 1


def test_push_prints_the_registry_digest_of_exactly_the_gated_image(tmp_path: Path):
    repository = "123456789012.dkr.ecr.us-east-1.amazonaws.com/jobs-dev-api"
    result, calls = run("push-image.sh", [IMAGE_ID, repository, "release-x"], tmp_path, TARGET_HAS_IMAGE="1")
    assert (result.returncode, result.stdout.strip()) == (0, DIGEST), result.stderr
    assert f"docker image push {repository}:release-x" in calls
    other_image = {"CONFIG_DIGEST": "sha256:" + "e" * 64, "TARGET_HAS_IMAGE": "1"}
    other = run("push-image.sh", [IMAGE_ID, repository, "release-x"], tmp_path, **other_image)
    assert other[0].returncode == 1
    assert "is not the gated image" in other[0].stderr


def test_promote_copies_by_digest_preserving_it(tmp_path: Path):
    source = "111111111111.dkr.ecr.us-east-1.amazonaws.com/jobs-dev-api"
    target = "222222222222.dkr.ecr.us-east-1.amazonaws.com/jobs-staging-api"
    result, calls = run("promote-image.sh", [source, target, DIGEST, "release-x"], tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, DIGEST), result.stderr
    copy = _call(calls, "skopeo copy")
    assert copy[2:] == ["--all", "--preserve-digests", f"docker://{source}@{DIGEST}", f"docker://{target}:release-x"]


def test_promote_fails_when_the_target_reports_another_digest(tmp_path: Path):
    source, target = "a.example/jobs-dev-api", "b.example/jobs-staging-api"
    result, _ = run("promote-image.sh", [source, target, DIGEST, "t"], tmp_path, REPORTED_DIGEST="sha256:" + "0" * 64)
    assert result.returncode == 1
    assert "not " + DIGEST in result.stderr


def test_promote_tags_an_image_already_there_without_copying_it_again_and_refuses_bad_input(tmp_path: Path):
    source, target = "a.example/jobs-dev-api", "b.example/jobs-staging-api"
    result, calls = run("promote-image.sh", [source, target, DIGEST, "release-y"], tmp_path, TARGET_HAS_IMAGE="1")
    assert result.returncode == 0, result.stderr
    copy = _call(calls, "skopeo copy")
    assert copy[2:] == ["--all", "--preserve-digests", f"docker://{target}@{DIGEST}", f"docker://{target}:release-y"]
    assert f"docker://{target}:release-y" in _call(calls, "skopeo inspect --format"), "the tag is what is checked"
    assert run("promote-image.sh", [source, target, "latest", "t"], tmp_path)[0].returncode == 1
    assert run("promote-image.sh", [source, source, DIGEST, "t"], tmp_path)[0].returncode == 1


def test_gate_tools_are_the_versions_and_sums_codebuild_uses():
    script = (SCRIPTS / "install-gate-tools.sh").read_text()
    values = dict(re.findall(r"^(\w+)=(\S+)", script, flags=re.MULTILINE))
    assert values["HADOLINT_VERSION"] == buildspec.HADOLINT_VERSION
    assert values["TRIVY_VERSION"] == buildspec.TRIVY_VERSION
    assert values["HADOLINT_SHA256"] == buildspec.TOOL_SHA256["hadolint", "linux/amd64"]
    assert values["TRIVY_SHA256"] == buildspec.TOOL_SHA256["trivy", "linux/amd64"]
    assert script.count("sha256sum --check --strict") == 2


def test_the_root_user_pattern_is_codebuild_s():
    script = (SCRIPTS / "gate-image.sh").read_text()
    [pattern] = re.findall(r"^root_user='([^']+)'$", script, flags=re.MULTILINE)
    assert pattern == buildspec.ROOT_USER_PATTERN


def test_nothing_in_the_scripts_swallows_a_failure():
    swallowed = re.compile(r"\|\|\s*(true|:|echo)\b|set \+e")
    for path in SCRIPTS.glob("*.sh"):
        text = path.read_text()
        assert text.splitlines()[1:] and "set -euo pipefail" in text, path.name
        assert swallowed.search(text) is None, path.name


def test_registry_login_logs_in_to_each_stack_s_registry_and_refuses_anything_but_ecr(tmp_path: Path):
    stubs = tmp_path / "login-bin"
    stubs.mkdir()
    for tool, body in {"aws": "echo token", "docker": 'cat > /dev/null; echo "docker $*" >> "$CALLS"',
                       "skopeo": 'cat > /dev/null; echo "skopeo $*" >> "$CALLS"'}.items():  # fmt: skip
        (stubs / tool).write_text(f"#!/bin/sh\n{body}\n")
        (stubs / tool).chmod(0o755)
    dev = '{"api": "111111111111.dkr.ecr.eu-west-1.amazonaws.com/jobs-dev-api"}'
    staging = '{"worker": "222222222222.dkr.ecr.eu-west-1.amazonaws.com/jobs-staging-worker"}'

    def login(*args: str) -> tuple[int, list[str]]:
        calls = tmp_path / "login-calls.txt"
        calls.unlink(missing_ok=True)
        result = subprocess.run(
            ["bash", str(SCRIPTS / "registry-login.sh"), *args],
            env={"PATH": f"{stubs}:/usr/bin:/bin", "CALLS": str(calls)},
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        return result.returncode, calls.read_text().splitlines() if calls.exists() else []

    assert login("--docker", dev) == (
        0,
        [
            "docker login --username AWS --password-stdin 111111111111.dkr.ecr.eu-west-1.amazonaws.com",
            "skopeo login --username AWS --password-stdin 111111111111.dkr.ecr.eu-west-1.amazonaws.com",
        ],
    )
    assert login(dev, staging)[1] == [
        "skopeo login --username AWS --password-stdin 111111111111.dkr.ecr.eu-west-1.amazonaws.com",
        "skopeo login --username AWS --password-stdin 222222222222.dkr.ecr.eu-west-1.amazonaws.com",
    ]
    assert login('{"api": "evil.example.com/x"}') == (1, [])
