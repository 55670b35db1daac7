"""The pull-request plan diff: computed without credentials, posted by a job that never runs the PR's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def jobs() -> dict[str, Any]:
    return yaml.safe_load((ROOT / ".github/workflows/pull-request.yml").read_text())["jobs"]


def test_the_diff_runs_for_every_pull_request_with_read_only_rights():
    job = jobs()["plan-diff"]
    assert job["permissions"] == {"contents": "read"}
    assert "if" not in job, "fork pull requests get the diff too (in the job summary)"
    text = yaml.safe_dump(job)
    assert "secrets." not in text and "id-token" not in text
    checkout = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be there to plan"
    run = next(step for step in job["steps"] if "plan-diff.sh" in step.get("run", ""))
    assert run["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"


def test_the_comment_job_only_posts():
    job = jobs()["plan-diff-comment"]
    assert job["needs"] == "plan-diff"
    assert job["permissions"] == {"pull-requests": "write"}
    assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    uses = [str(step.get("uses", "")) for step in job["steps"]]
    assert not any(u.startswith("actions/checkout@") or u.startswith("./") for u in uses), "never the PR's code"
    script = next(step for step in job["steps"] if "run" in step)
    assert "${{" not in script["run"], "event values reach the script through env only"
    assert 'marker="<!-- plan-diff:$stack -->"' in script["run"]
    assert "--method PATCH" in script["run"], "one comment per stack, updated in place"


def test_the_diff_script_lists_only_touched_stacks():
    script = (ROOT / ".github/scripts/plan-diff.sh").read_text()
    assert "python -m runner.diff" in script and '--base "$base"' in script
    assert """if [[ "$(jq -r '.empty' "$out/$stack.json")" == "false" ]]""" in script
