"""Dependabot watches every kind of pin in the repository, and CODEOWNERS gives every sensitive path an owner."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SENSITIVE = ["/.github/", "/policy/", "/bootstrap/", "/components/"]


def _updates() -> list[dict]:
    return yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text(encoding="utf-8"))["updates"]


def _directories(update: dict) -> list[str]:
    return update.get("directories") or [update["directory"]]


def test_dependabot_covers_every_ecosystem_the_repository_pins():
    covered = {(u["package-ecosystem"], d) for u in _updates() for d in _directories(u)}
    expected = {
        ("github-actions", "/"),
        ("github-actions", "/.github/actions/*"),
        ("uv", "/"),
        ("pip", "/services"),
        ("pip", "/services/shop"),
        ("pip", "/policy"),
        ("docker", "/services/api"),
        ("docker", "/services/worker"),
        ("docker", "/services/shop/*"),
        ("npm", "/"),
        ("npm", "/web"),
    }
    assert covered == expected
    for ecosystem, directory in covered:
        if ecosystem == "docker":
            assert list(ROOT.glob(directory.lstrip("/") + "/Dockerfile")), f"no Dockerfile in {directory}"
        if ecosystem == "pip":
            assert (ROOT / directory.lstrip("/") / "requirements.txt").is_file()
        if ecosystem == "npm":
            assert (ROOT / directory.lstrip("/") / "package-lock.json").is_file()
    assert all(update["cooldown"]["default-days"] >= 7 for update in _updates())


def _owners() -> dict[str, list[str]]:
    rules = {}
    for line in (ROOT / ".github" / "CODEOWNERS").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            pattern, *owners = line.split()
            rules[pattern] = owners
    return rules


def test_codeowners_owns_every_sensitive_path_with_a_team():
    owners = _owners()
    assert {path: owners.get(path) for path in SENSITIVE} == {path: ["@acme/platform-team"] for path in SENSITIVE}
    team = re.compile(r"^@[A-Za-z0-9-]+/[A-Za-z0-9_.-]+$")
    assert all(team.match(owner) for names in owners.values() for owner in names)


def test_docs_tell_adopters_to_replace_the_owner_and_require_code_owner_review():
    ci = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    assert "@acme/platform-team" in ci
    assert "Require review from Code Owners" in ci
