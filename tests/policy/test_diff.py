"""`python -m runner.diff`: resources, policy results and cost of a change, between revisions or stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest

from runner import diff
from runner.diff import compare, render_markdown, resource_key
from runner.plan import _asset_or_archive

ROOT = Path(__file__).resolve().parents[2]
TEAM_APP = ROOT / "tests" / "fixtures" / "secure_team_app"


def urn(stack: str, type_: str, name: str) -> str:
    return f"urn:pulumi:{stack}::proj::container-platform:cluster:ContainerCluster${type_}::{name}"


def report(stack: str, resources: list[tuple[str, str, dict[str, Any], float]], violations=()) -> dict[str, Any]:
    """A runner.check JSON report: (type, name, inputs, monthly cost) per resource."""
    return {
        "stack": stack,
        "resources": [{"urn": urn(stack, t, n), "type": t, "name": n, "inputs": i} for t, n, i, _ in resources],
        "violations": [
            {"policy": p, "level": "mandatory", "urn": urn(stack, t, n), "message": m} for p, t, n, m in violations
        ],
        "cost": {
            "per_month": sum(c for *_, c in resources),
            "per_day": sum(c for *_, c in resources) / 30.4167,
            "resources": [{"urn": urn(stack, t, n), "type": t, "per_month": c} for t, n, _, c in resources if c],
        },
    }


BUCKET = "aws:s3/bucket:Bucket"
DB = "aws:rds/instance:Instance"
NAT = "aws:ec2/natGateway:NatGateway"


def test_resources_added_removed_and_changed_with_the_inputs_that_changed():
    base = report("dev", [(BUCKET, "logs", {"tags": {"a": "1"}}, 0.0), (NAT, "nat", {}, 32.85),
                          (DB, "db", {"instanceClass": "db.t4g.micro", "password": "[secret]"}, 12.41)])  # fmt: skip
    head = report("dev", [(BUCKET, "logs", {"tags": {"a": "1"}}, 0.0), (BUCKET, "new", {}, 0.02),
                          (DB, "db", {"instanceClass": "db.t4g.small", "password": "[secret]"}, 24.82)])  # fmt: skip
    result = compare(base, head, "abc123", "working tree")
    assert [c.name for c in result.added] == ["new"]
    assert [c.name for c in result.removed] == ["nat"]
    assert [(c.name, c.paths) for c in result.changed] == [("db", ["instanceClass"])]
    assert result.cost_before["per_month"] == 45.26
    assert result.cost_after["per_month"] == 24.84
    assert [(d["resource"].rsplit("::", 1)[1], d["delta_per_month"]) for d in result.cost_drivers] == [
        ("nat", -32.85),
        ("db", 12.41),
        ("new", 0.02),
    ]


def test_a_file_asset_changes_with_its_content_not_its_path(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for side, text in (("a", "print(1)"), ("b", "print(1)")):
        (tmp_path / side / "handler.py").write_text(text)

    def code(side: str) -> dict[str, Any]:
        return _asset_or_archive(
            pulumi.AssetArchive({"handler.py": pulumi.FileAsset(str(tmp_path / side / "handler.py"))})
        )

    # The same file planned from two checkouts: another path, the same content.
    assert diff.changed_paths(code("a"), code("b")) == []
    (tmp_path / "b" / "handler.py").write_text("print(2)")
    assert diff.changed_paths(code("a"), code("b")) == ["assets.handler.py"]


def test_violations_added_and_fixed_match_across_stacks():
    base = report("dev", [(BUCKET, "logs", {}, 0.0)], [("s3-public", BUCKET, "logs", "public ACL")])
    head = report("prod", [(BUCKET, "logs", {}, 0.0)], [("s3-versioning", BUCKET, "logs", "no versioning")])
    result = compare(base, head, "stack dev", "stack prod")
    assert result.stack == "dev → prod"
    assert [v["policy"] for v in result.violations_added] == ["s3-versioning"]
    assert [v["policy"] for v in result.violations_fixed] == ["s3-public"]
    assert result.added == result.removed == result.changed == []


def test_the_same_resource_in_two_stacks_has_one_key():
    assert resource_key(urn("dev", BUCKET, "logs")) == resource_key(urn("prod", BUCKET, "logs"))


def test_markdown_is_one_comment_with_counts_details_and_cost():
    base = report("dev", [(NAT, "nat", {}, 32.85)])
    head = report("dev", [(BUCKET, "logs", {"acl": "private"}, 0.02)])
    text = render_markdown(compare(base, head, "abc123", "working tree"))
    assert text.startswith("### Plan diff: `dev` (abc123 → working tree)")
    assert "**1** to add, **0** to change, **1** to remove" in text
    assert (
        "| `container-platform:cluster:ContainerCluster$aws:ec2/natGateway:NatGateway::nat` | $32.85 | $0.00 |" in text
    )
    assert "-$32.83/month" in text


def test_no_change_says_so():
    same = report("dev", [(BUCKET, "logs", {}, 0.0)])
    assert render_markdown(compare(same, same, "abc", "working tree")).endswith(
        "No change to resources, policy results or cost."
    )


# --- Against a real git revision of a team's program ---


def git(directory: Path, *arguments: str) -> None:
    subprocess.run(["git", *arguments], cwd=directory, check=True, capture_output=True)


@pytest.fixture
def team_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "team"
    shutil.copytree(TEAM_APP, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "base")
    return repo


def test_a_revision_against_the_working_tree(team_repo: Path, capsys: pytest.CaptureFixture[str]):
    program = team_repo / "__main__.py"
    source = program.read_text()
    assert "visibility_timeout_seconds=60" in source
    program.write_text(
        source.replace("visibility_timeout_seconds=60", "visibility_timeout_seconds=120")
        + '\naws.sqs.Queue("orders-retries", visibility_timeout_seconds=60)\n'
    )
    assert diff.main(["--stack", "test", "--program", str(team_repo), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["base"] != "working tree" and result["head"] == "working tree"
    assert [r["name"] for r in result["resources"]["added"]] == ["orders-retries"]
    assert [(r["name"], r["changed_inputs"]) for r in result["resources"]["changed"]] == [
        ("orders-events", ["visibilityTimeoutSeconds"])
    ]
    assert result["resources"]["removed"] == []


def test_a_plan_that_fails_names_the_side_and_exits_2(team_repo: Path, capsys: pytest.CaptureFixture[str]):
    (team_repo / "__main__.py").write_text("raise SystemExit('broken on purpose')\n")
    assert diff.main(["--stack", "test", "--program", str(team_repo), "--base", "HEAD"]) == 2
    assert "the plan of 'test'" in capsys.readouterr().err


def test_an_unknown_revision_is_a_clear_error(team_repo: Path, capsys: pytest.CaptureFixture[str]):
    assert diff.main(["--stack", "test", "--program", str(team_repo), "--base", "no-such-ref"]) == 2
    assert "no-such-ref" in capsys.readouterr().err
