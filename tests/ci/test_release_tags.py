"""Every image CI deploys carries the tag prefix the ECR lifecycle policy never expires, so rollbacks keep working."""

from __future__ import annotations

from pathlib import Path

import yaml

from components.scanning import RELEASE_TAG_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def test_the_build_tags_releases_with_the_protected_prefix():
    build = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"]["build"]
    assert build["env"]["RELEASE_TAG"].startswith(RELEASE_TAG_PREFIX)


def test_every_push_and_promotion_applies_the_release_tag():
    jobs = yaml.safe_load((ROOT / ".github/workflows/deploy.yml").read_text())["jobs"]
    calls = [
        line
        for job in jobs.values()
        for step in job.get("steps", [])
        for line in step.get("run", "").splitlines()
        if "push-image.sh" in line or "promote-image.sh" in line
    ]
    assert len(calls) >= 3, "build pushes, staging and prod promote"
    assert all('"$RELEASE_TAG"' in line for line in calls), calls
