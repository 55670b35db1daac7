"""`--format sarif|junit|markdown` and `--report FORMAT=FILE`, validated by real consumers: the official SARIF
2.1.0 schema (tests/policy/data/sarif-schema-2.1.0.json, the OASIS errata01 file from oasis-tcs/sarif-spec
commit a560296ca8c921f3bdb8d4a8db57ab83dae968a7, sarif-2.1/schema/) and the junitparser library."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import junitparser
import pytest

from runner import check

ROOT = Path(__file__).resolve().parents[2]
INSECURE = ROOT / "tests" / "fixtures" / "insecure_program"
SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One run of the insecure fixture program writing every format (the pack starts once)."""
    out = tmp_path_factory.mktemp("reports")
    files = {fmt: out / f"report.{fmt}" for fmt in ("sarif", "junit", "markdown", "json")}
    argv = ["--program", str(INSECURE), "--stack", "test", "--no-cost", "--source-root", str(ROOT)]
    argv += [arg for fmt, path in files.items() for arg in ("--report", f"{fmt}={path}")]
    assert check.main(argv) == 1
    return files


def test_sarif_is_valid_against_the_official_schema(reports: dict[str, Path]) -> None:
    sarif = json.loads(reports["sarif"].read_text())
    jsonschema.Draft4Validator(SCHEMA).validate(sarif)
    assert sarif["version"] == "2.1.0"


def test_sarif_has_one_result_per_violation_with_rule_metadata(reports: dict[str, Path]) -> None:
    [run] = json.loads(reports["sarif"].read_text())["runs"]
    violations = json.loads(reports["json"].read_text())["violations"]
    assert len(run["results"]) == len(violations) > 0
    rules = run["tool"]["driver"]["rules"]
    root = next(r for r in run["results"] if r["ruleId"] == "aws-ecs-taskdefinition-disallow-root-user")
    rule = rules[root["ruleIndex"]]
    assert rule["id"] == root["ruleId"]
    assert rule["shortDescription"]["text"] == "ECS containers must run as a non-root user."
    assert rule["helpUri"].startswith("https://docs.aws.amazon.com/securityhub/")
    assert rule["properties"]["security-severity"] == "8.0"
    assert root["level"] == "error"  # mandatory
    advisory = next(r for r in run["results"] if r["properties"]["enforcementLevel"] == "advisory")
    assert advisory["level"] in ("warning", "note", "error")


def test_sarif_points_at_the_line_that_registered_the_resource(reports: dict[str, Path]) -> None:
    [run] = json.loads(reports["sarif"].read_text())["runs"]
    source = (INSECURE / "__main__.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, start=1) if text.startswith("chaos_task = aws.ecs.TaskDefinition("))
    root = next(
        r
        for r in run["results"]
        if r["ruleId"] == "aws-ecs-taskdefinition-disallow-root-user"
        and r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].endswith("::chaos-task")
    )
    location = root["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {
        "uri": "tests/fixtures/insecure_program/__main__.py",
        "uriBaseId": "SRCROOT",
    }
    assert location["region"]["startLine"] == line


def test_junit_is_read_by_a_junit_consumer(reports: dict[str, Path]) -> None:
    xml = junitparser.JUnitXml.fromfile(str(reports["junit"]))
    [suite] = list(xml)
    violations = json.loads(reports["json"].read_text())["violations"]
    cases = list(suite)
    failed = [c for c in cases if any(isinstance(r, junitparser.Failure) for r in c.result)]
    assert suite.failures == len(failed) == len(violations)
    assert suite.tests == len(cases)
    root = next(c for c in failed if c.name.startswith("aws-ecs-taskdefinition-disallow-root-user on "))
    assert root.result[0].type == "mandatory"


def test_markdown_summarises_for_a_pull_request(reports: dict[str, Path]) -> None:
    text = reports["markdown"].read_text()
    report = json.loads(reports["json"].read_text())
    assert text.startswith("### Policy pack: stack `test`")
    assert f"**{report['mandatory']} mandatory**" in text
    assert "| mandatory | `aws-ecs-taskdefinition-disallow-root-user` |" in text
    assert "super-secret-password-123" not in text


def test_format_on_stdout_and_bad_report_entries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps([{"type": "aws:sqs/queue:Queue", "name": "q", "props": {}}]))
    assert check.main(["--export", str(resources), "--format", "sarif", "--no-cost"]) == 0
    jsonschema.Draft4Validator(SCHEMA).validate(json.loads(capsys.readouterr().out))
    assert check.main(["--export", str(resources), "--report", "pdf=out.pdf"]) == 2
    assert (
        "--report 'pdf=out.pdf': expected FORMAT=FILE with FORMAT one of text, json, sarif" in capsys.readouterr().err
    )
