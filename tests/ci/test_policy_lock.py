"""The policy pack's venv in CI installs policy/requirements.lock: every package pinned and hashed, the versions
policy/requirements.txt and uv.lock say (so CI runs the pack with what the test suite ran). And the setup action
installs uv itself from hash-pinned wheels."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.ci import workflow_rules as rules

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, hash count) of a pip requirements file with `\\`-continued lines."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    entries = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"{path.name}: not an exact pin: {line!r}"
        entries[_normalise(match[1])] = (match[2], line.count("--hash=sha256:"))
    return entries


def _uv_lock_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {_normalise(package["name"]): package["version"] for package in lock["package"] if "version" in package}


def test_every_locked_package_is_pinned_and_hashed():
    lock = _entries(ROOT / "policy" / "requirements.lock")
    assert lock
    assert {name for name, (_, hashes) in lock.items() if hashes == 0} == set()


def test_the_lock_has_the_packs_requirements_at_their_pins():
    wanted = _entries(ROOT / "policy" / "requirements.txt")
    lock = _entries(ROOT / "policy" / "requirements.lock")
    assert {name: lock.get(name, ("missing", 0))[0] for name in wanted} == {n: v for n, (v, _) in wanted.items()}


def test_the_lock_matches_the_versions_the_tests_run():
    locked = _uv_lock_versions()
    lock = _entries(ROOT / "policy" / "requirements.lock")
    drift = {
        name: (version, locked[name]) for name, (version, _) in lock.items() if locked.get(name, version) != version
    }
    assert drift == {}, "run ./platform lock-policy"


def test_ci_installs_the_pack_and_uv_with_hashes_and_syncs_locked():
    action = rules.load(ROOT / ".github" / "actions" / "setup" / "action.yml")
    scripts = "\n".join(str(step.get("run", "")) for step in action["runs"]["steps"])
    assert "uv sync --locked" in scripts and "--frozen" not in scripts
    assert re.search(
        r"pip\" install .*--require-hashes --requirement \"\$UV_REQUIREMENTS\"", scripts.replace("\\\n", "")
    )
    assert re.search(r"uv pip install .*--require-hashes", scripts.replace("\\\n", ""))
    uv = _entries(ROOT / ".github" / "actions" / "setup" / "uv-requirements.txt")
    assert list(uv) == ["uv"] and uv["uv"][1] > 0
