"""Compliance reports (runner/compliance.py): our stacks fail no mandatory control, a deliberately insecure program
fails each control it breaks with the evidence, Dockerfile items come from hadolint and the structural checks, every
format is what its tools read, and the HTML renders in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from runner import check, compliance
from runner.check import Report
from runner.compliance import FSBP, ComplianceReport
from runner.engine import PolicyPackProcess
from tests.plans import planned

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(scope="module")
def pack() -> Iterator[PolicyPackProcess]:
    """One policy pack process for every report of this module (as `--all` runs do)."""
    process = PolicyPackProcess()
    process.launch()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def ours(pack: PolicyPackProcess) -> dict[str, ComplianceReport]:
    """What `./platform compliance <stack>` reports, from the session's shared plans (tests/plans.py)."""
    reports = {}
    for stack in ("dev", "staging", "prod"):
        plan = planned(stack)
        report = Report(plan.stack, plan.resources, plan.outputs, opaque=plan.opaque)
        report.policy = pack.evaluate(plan.resources)
        reports[stack] = compliance.compliance_report(report, f"program . (stack {stack})", [ROOT], ROOT)
    return reports


@pytest.fixture(scope="module")
def insecure(pack: PolicyPackProcess) -> ComplianceReport:
    args = compliance.parse_args(["--program", str(FIXTURES / "insecure_program"), "--stack", "test"])
    return compliance.build(args, pack)


def by_id(report: ComplianceReport) -> dict[str, compliance.ControlResult]:
    return {f"{'FSBP' if c.framework == FSBP else 'CIS'} {c.control_id}": c for c in report.controls}


def test_our_stacks_fail_no_mandatory_control(ours: dict[str, ComplianceReport]) -> None:
    for stack, report in ours.items():
        assert report.failing_mandatory == [], (stack, [c.control_id for c in report.failing_mandatory])
        assert report.exit_code == 0
        controls = by_id(report)
        for key in ("FSBP ECS.20", "FSBP ECS.4", "CIS 4.1", "CIS 4.9", "CIS 5.4", "CIS 5.12"):
            assert controls[key].status == "pass", (stack, key, controls[key].reason)
            assert controls[key].evidence, (stack, key)
    prod = by_id(ours["prod"])
    assert prod["FSBP GuardDuty.12"].status == "pass"
    assert by_id(ours["dev"])["FSBP GuardDuty.12"].status == "not checked"  # the account's detector is prod's
    # The advisory findings we accept (docs: README "Accepted advisory findings") stay visible as failures.
    assert prod["FSBP CodeBuild.5"].status == "fail" and not prod["FSBP CodeBuild.5"].mandatory


def test_every_claimed_control_has_a_status_and_every_fsbp_id_of_the_pack_is_listed(ours) -> None:
    from policy.rules.catalog import ALL_POLICIES

    claimed = {p.framework.reference for p in ALL_POLICIES if p.framework is not None}
    listed = {c.control_id for c in ours["prod"].controls if c.framework == FSBP}
    assert claimed <= listed
    assert {c.control_id for c in ours["prod"].controls if c.framework != FSBP} == {
        item.control_id for item in compliance.CIS_ITEMS
    }
    assert all(c.status in compliance.STATUSES and c.reason for c in ours["prod"].controls)


def test_the_insecure_program_fails_each_control_it_breaks_with_evidence(insecure: ComplianceReport) -> None:
    assert insecure.exit_code == 1
    failing = {c.control_id for c in insecure.failing_mandatory}
    assert {"ECS.2", "ECS.4", "ECS.8", "ECS.20", "4.1", "4.2", "4.10", "5.4"} <= failing
    controls = by_id(insecure)
    privileged = controls["FSBP ECS.4"]
    assert [(e.resource, e.source) for e in privileged.evidence] == [
        ("aws:ecs/taskDefinition:TaskDefinition insecure-task", "aws-ecs-taskdefinition-disallow-privileged-containers")
    ]
    assert "privileged" in privileged.evidence[0].property
    for control in insecure.controls:
        if control.status == "fail":
            assert control.evidence and all(e.resource and e.property and e.source for e in control.evidence)
    # Nothing of RDS in the program: its controls are not applicable, not passed.
    assert controls["FSBP RDS.3"].status == "not applicable"


def test_dockerfile_items_come_from_hadolint_and_the_structural_checks(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        "FROM python:latest\nADD . /app\nRUN apt-get update\nRUN apt-get install -y --no-install-recommends curl\n"
        'CMD ["python", "app.py"]\n'
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "Dockerfile").write_text("FROM scratch\n")  # fixtures are not the program's images
    report = compliance.compliance_report(Report(stack="team", resources=[]), "team", [tmp_path], tmp_path)
    assert report.dockerfiles == ["app/Dockerfile"]
    controls = by_id(report)
    expected = {"CIS 4.1": "CP-USER", "CIS 4.2": "DL3007", "CIS 4.6": "CP-HEALTHCHECK", "CIS 4.7": "CP-UPDATE-ALONE",
                "CIS 4.9": "DL3020"}  # fmt: skip
    for key, rule in expected.items():
        assert controls[key].status == "fail", key
        assert any(rule in e.source for e in controls[key].evidence), (key, controls[key].evidence)
    assert next(e for e in controls["CIS 4.9"].evidence).resource == "app/Dockerfile:2"
    assert controls["CIS 4.3"].status == "pass"  # --no-install-recommends
    assert report.failing_mandatory and report.exit_code == 1


def test_the_formats_are_what_their_tools_read(insecure: ComplianceReport) -> None:
    sarif = json.loads(compliance.render(insecure, "sarif"))
    assert sarif["version"] == "2.1.0"
    results = sarif["runs"][0]["results"]
    assert len(results) == len(insecure.controls)
    assert {r["kind"] for r in results} <= {"fail", "pass", "notApplicable", "review"}
    assert all(r["level"] == "error" for r in results if r["ruleId"] == "FSBP/ECS.4")
    suites = ET.fromstring(compliance.render(insecure, "junit"))
    failures = sum(int(suite.get("failures", "0")) for suite in suites)
    assert failures == sum(1 for c in insecure.controls if c.status == "fail")
    document = json.loads(compliance.render(insecure, "json"))
    assert document["exit_code"] == 1 and "ECS.4" in document["failing_mandatory"]
    markdown = compliance.render(insecure, "markdown")
    assert "| ECS.4 | ❌ fail | yes |" in markdown


def test_every_format_is_written_for_ci(tmp_path: Path, insecure: ComplianceReport) -> None:
    written = compliance.write_all(insecure, tmp_path)
    assert sorted(p.name for p in written) == sorted(
        f"compliance-test.{suffix}" for suffix in ("md", "html", "sarif", "junit.xml", "json")
    )


def browser() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True, check=False, timeout=600)
        found = shutil.which("chromium")
    return found


def test_the_html_report_renders_in_a_browser(tmp_path: Path, insecure: ComplianceReport) -> None:
    chromium = browser()
    if chromium is None:
        pytest.skip("no chromium and it could not be installed (apt-get install -y chromium)")
    page = tmp_path / "compliance.html"
    page.write_text(compliance.render(insecure, "html"), encoding="utf-8")
    shot = tmp_path / "compliance.png"
    run = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1280,2000", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2000)
    # The page drew more than a blank canvas: a rendered table compresses far worse than a white page.
    assert len(png) > 20_000
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    assert "mandatory control(s) fail" in dom and 'class="fail"' in dom


def test_sarif_follows_the_2_1_0_schema(insecure: ComplianceReport) -> None:
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(json.loads(compliance.render(insecure, "sarif")))


def test_an_export_gets_a_report_and_its_dockerfiles_when_given(tmp_path: Path, pack: PolicyPackProcess) -> None:
    definitions = [{"name": "web", "image": "nginx:latest", "privileged": True, "essential": True}]
    export = tmp_path / "resources.json"
    export.write_text(json.dumps([
        {"type": "aws:ecs/taskDefinition:TaskDefinition", "name": "web",
         "props": {"family": "web", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"], "cpu": "256",
                   "memory": "512", "containerDefinitions": json.dumps(definitions)}},
    ]))  # fmt: skip
    (tmp_path / "Dockerfile").write_text("FROM nginx:1.27\nUSER 101\nHEALTHCHECK CMD true\n")
    report = compliance.build(compliance.parse_args(["--export", str(export)]), pack)
    controls = by_id(report)
    assert controls["FSBP ECS.4"].status == "fail"
    assert controls["CIS 4.9"].status == "not checked"  # no Dockerfiles given with an export
    with_files = compliance.build(
        compliance.parse_args(["--export", str(export), "--dockerfiles", str(tmp_path)]), pack
    )
    assert by_id(with_files)["CIS 4.9"].status == "pass"
    assert with_files.dockerfiles == ["Dockerfile"]


def test_policy_check_prints_the_compliance_report_teams_ci_asks_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "resources.json"
    export.write_text(json.dumps([{"type": "aws:ecr/repository:Repository", "name": "app", "props": {}}]))
    assert check.main(["--export", str(export), "--format", "compliance-json"]) == compliance.main(
        ["--export", str(export), "--format", "json"]
    )
    via_check, direct = capsys.readouterr().out.split("\n{", 1)
    assert json.loads(via_check) == json.loads("{" + direct)
    assert {c["control_id"] for c in json.loads(via_check)["controls"] if c["status"] == "fail"} >= {"ECR.1"}
    with pytest.raises(SystemExit):
        check.main(["--all", "--format", "compliance-html"])
    assert "reports on one --stack or --export" in capsys.readouterr().err


def test_every_policy_a_report_cites_names_the_resources_it_is_about() -> None:
    """Without them a control on a stack with only the other types it checks (BucketV2, awsx's Repository) would
    read "not applicable" instead of "pass"."""
    from policy.rules.base import RESOURCE_TYPES
    from policy.rules.catalog import ALL_POLICIES

    cited = {p.name for p in ALL_POLICIES if getattr(getattr(p, "framework", None), "reference", None)}
    cited |= {name for item in compliance.CIS_ITEMS for name in item.policies}
    assert sorted(cited - set(RESOURCE_TYPES) - set(compliance.DERIVED_CHECKS)) == []
    assert RESOURCE_TYPES["aws-s3-bucket-enforce-tls"] >= {"aws:s3/bucketV2:BucketV2"}
    assert RESOURCE_TYPES["aws-ecr-repository-enable-image-scanning"] >= {"awsx:ecr:Repository"}
