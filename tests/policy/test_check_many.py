"""`runner.check --stacks a,b` and `--all`: several stacks in one process, one pack, a report per stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner import check

ROOT = Path(__file__).resolve().parents[2]
STACK_FILES = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))


def test_several_stacks_give_one_report_each_in_order(capsys: pytest.CaptureFixture[str]):
    assert check.main(["--program", str(ROOT), "--stacks", "prod,dev", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)["stacks"]
    assert [r["stack"] for r in reports] == ["prod", "dev"]
    for report in reports:
        assert report["mandatory"] == 0
        assert all(f"urn:pulumi:{report['stack']}::" in r["urn"] for r in report["resources"])
    # Each stack was planned with clean state: prod's multi-AZ database is not in dev's plan.
    multi_az = {r["stack"]: [x["inputs"].get("multiAz") for x in r["resources"] if x["type"] == "aws:rds/instance:Instance"]
                for r in reports}  # fmt: skip
    assert multi_az == {"prod": [True], "dev": [False]}


def test_all_plans_every_stack_file_and_ends_with_a_summary(capsys: pytest.CaptureFixture[str]):
    assert check.main(["--program", str(ROOT), "--all", "--no-policy", "--no-cost"]) == 0
    text = capsys.readouterr().out
    summary = text[text.rindex("Summary:") :].splitlines()[1:]
    assert [line.split(":")[0].strip() for line in summary] == STACK_FILES


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--stacks", "dev,dev"], "expected distinct stack names"),
        (["--stacks", "dev,nope"], "Pulumi.nope.yaml does not exist"),
    ],
)
def test_bad_stack_lists_are_refused(arguments, message, capsys: pytest.CaptureFixture[str]):
    assert check.main(["--program", str(ROOT), *arguments, "--no-policy", "--no-cost"]) == 2
    assert message in capsys.readouterr().err


def test_formats_that_hold_one_stack_are_refused_for_several(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exited:
        check.main(["--program", str(ROOT), "--all", "--format", "sarif"])
    assert exited.value.code == 2
    assert "run one --stack at a time" in capsys.readouterr().err


def test_free_tier_flag_takes_the_allowances_off_once(capsys: pytest.CaptureFixture[str]):
    def cost(*flags: str) -> dict:
        assert check.main(["--program", str(ROOT), "--stack", "dev", "--no-policy", "--json", *flags]) == 0
        return json.loads(capsys.readouterr().out)["cost"]

    full, always = cost(), cost("--free-tier")
    assert always["free_tier"]["mode"] == "always"
    deducted = always["free_tier"]["per_month"]
    assert deducted > 0
    assert full["per_month"] - always["per_month"] == pytest.approx(deducted, abs=0.001)  # JSON rounds to 4 places
    assert cost("--free-tier", "new-account")["per_month"] <= always["per_month"]
