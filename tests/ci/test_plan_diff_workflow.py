"""The pull-request plan diff: computed without credentials, posted by a job that never runs the PR's code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
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
    assert "--method PATCH" in script["run"], "one comment per stack, updated in place"


GH_STUB = """#!/bin/sh
echo "gh $*" >> "$CALLS"
while [ $# -gt 0 ]; do
  if [ "$1" = --jq ]; then jq -r "$2" "$COMMENTS"; exit; fi
  if [ "$1" = body="${1#body=}" ]; then printf '%s\\n---\\n' "${1#body=}" >> "$BODIES"; fi
  shift
done
"""


def test_the_comment_script_updates_only_its_own_comments_and_says_no_change_for_untouched_stacks(tmp_path: Path):
    script = next(step for step in jobs()["plan-diff-comment"]["steps"] if "run" in step)["run"]
    bot, someone = {"login": "github-actions[bot]"}, {"login": "mallory"}
    comments = [
        {"id": 11, "user": someone, "body": "<!-- plan-diff:dev -->\nfake"},
        {"id": 12, "user": bot, "body": "<!-- plan-diff:dev -->\nold dev diff"},
        {"id": 13, "user": bot, "body": "<!-- plan-diff:prod -->\nold prod diff"},
        {"id": 14, "user": bot, "body": "unrelated"},
    ]
    (tmp_path / "comments.json").write_text(json.dumps(comments))
    (tmp_path / "plan-diff").mkdir()
    (tmp_path / "plan-diff" / "stacks.txt").write_text("dev\nstaging\n")
    (tmp_path / "plan-diff" / "dev.md").write_text("new dev diff")
    (tmp_path / "plan-diff" / "staging.md").write_text("new staging diff")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "gh").write_text(GH_STUB)
    (tmp_path / "bin" / "gh").chmod(0o755)
    completed = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env={
            "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
            "CALLS": str(tmp_path / "calls.txt"),
            "BODIES": str(tmp_path / "bodies.txt"),
            "COMMENTS": str(tmp_path / "comments.json"),
            "REPOSITORY": "acme/platform",
            "PR": "7",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    calls = [
        line.split(" -f ")[0]
        for line in (tmp_path / "calls.txt").read_text().splitlines()
        if line.startswith("gh api --method")
    ]
    assert calls == [
        "gh api --method PATCH repos/acme/platform/issues/comments/12",  # dev: ours, not mallory's 11
        "gh api --method POST repos/acme/platform/issues/7/comments",  # staging: first time
        "gh api --method PATCH repos/acme/platform/issues/comments/13",  # prod: no longer touched
    ]
    bodies = (tmp_path / "bodies.txt").read_text().split("\n---\n")
    assert bodies[0].startswith("<!-- plan-diff:dev -->") and "new dev diff" in bodies[0]
    assert bodies[2].startswith("<!-- plan-diff:prod -->") and "`prod`: no change" in bodies[2]


PROGRAM = """import pulumi
import pulumi_aws as aws

if pulumi.get_stack() == "broken":
    raise ValueError("this stack is broken on purpose")
aws.sqs.Queue("queue", name=f"demo-{{pulumi.get_stack()}}", sqs_managed_sse_enabled=True,
              visibility_timeout_seconds={timeout})
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "--message", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def two_commits(tmp_path: Path) -> tuple[Path, str]:
    """A tiny Pulumi program: the base has stacks `test` and `broken`; the head changes `test`'s queue and adds
    the stack `extra`."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "--quiet", "--initial-branch", "main")
    stack = "config:\n  aws:region: us-east-1\n"
    base = commit(
        repo,
        {
            "Pulumi.yaml": "name: demo\nruntime: python\n",
            "__main__.py": PROGRAM.format(timeout=30),
            "Pulumi.test.yaml": stack,
            "Pulumi.broken.yaml": stack,
        },
        "base",
    )
    commit(repo, {"__main__.py": PROGRAM.format(timeout=60), "Pulumi.extra.yaml": stack}, "head")
    return repo, base


def test_the_script_notes_new_and_failed_stacks_lists_touched_ones_and_fails_at_the_end(two_commits):
    repo, base = two_commits
    summary = repo.parent / "summary.md"
    completed = subprocess.run(
        ["bash", str(ROOT / ".github/scripts/plan-diff.sh"), base, str(repo.parent / "out")],
        cwd=repo,
        env={
            **os.environ,
            "PLAN_DIFF_PYTHON": sys.executable,
            "PYTHONPATH": str(ROOT),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = repo.parent / "out"
    assert completed.returncode == 1, completed.stderr
    assert "plan diff failed for: broken" in completed.stderr
    assert sorted((out / "stacks.txt").read_text().split()) == ["broken", "extra", "test"]
    assert "new stack, no base to compare" in (out / "extra.md").read_text()
    assert "the plan diff failed" in (out / "broken.md").read_text()
    assert "broken on purpose" in (out / "broken.md").read_text()
    assert json.loads((out / "test.json").read_text())["empty"] is False
    assert "visibility" in (out / "test.md").read_text().lower()
    assert all(f"`{stack}`" in summary.read_text() or stack in summary.read_text() for stack in ("extra", "broken"))
