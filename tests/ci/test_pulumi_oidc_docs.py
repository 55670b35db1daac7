"""docs/ci.md's Pulumi OIDC rules name the same `sub` claims the bootstrap's AWS trust policies admit: the subject
template applies to every token of the repository, the one exchanged for a Pulumi token too."""

from __future__ import annotations

import re
from pathlib import Path

from bootstrap.github_oidc.policies import deploy_subjects, preview_subjects
from bootstrap.github_oidc.settings import BootstrapSettings

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\s*\| `platform-(?P<team>[a-z-]+)` \| `(?P<sub>repo:[^`]+)` \|\s*$", re.MULTILINE)


def documented_subjects() -> dict[str, str]:
    return {m["team"]: m["sub"] for m in ROW.finditer((ROOT / "docs" / "ci.md").read_text())}


def test_every_pulumi_rule_names_the_subject_the_aws_roles_trust():
    settings = BootstrapSettings(
        github_org="ORG", github_repo="REPO", allowed_regions=("eu-west-1",), bucket_prefix="jobs-"
    )
    expected = {
        "preview": preview_subjects(settings)[0],
        **{f"deploy-{env}": deploy_subjects(settings, env)[0] for env in settings.environments},
    }
    documented = {team: sub.replace("<org>/<repo>", "ORG/REPO") for team, sub in documented_subjects().items()}
    assert documented == expected


def test_no_rule_uses_the_default_subject_format():
    assert all("job_workflow_ref:" in sub for sub in documented_subjects().values())
