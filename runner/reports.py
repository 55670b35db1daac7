"""Report formats of the offline runner for tools other than a terminal: SARIF 2.1.0 (code scanning), JUnit XML
(CI test reports) and Markdown (a pull-request comment). Each takes the runner's `Report` and returns text.

SARIF: one result per violation, with the policy as the rule (id, description, help URI, remediation, a
`security-severity` GitHub ranks alerts by) and a location at the program file and line that registered the
resource when the plan found one (else the program's entry point or the export file).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.engine import PolicySummary, Violation

if TYPE_CHECKING:
    from runner.check import Report

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
TOOL_NAME = "container-platform-policy-pack"
TOOL_URI = "https://github.com/pulumi/pulumi-policy"
SOURCE_ROOT = "SRCROOT"
# GitHub code scanning ranks security alerts by this number (critical >= 9.0, high >= 7.0, medium >= 4.0).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "": "5.0"}
SEVERITY_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "": "warning"}


@dataclass(frozen=True)
class Origin:
    """Where findings point when no registration frame is known: the program's entry point or the export file."""

    default_file: Path
    source_root: Path
    locations: Mapping[str, tuple[Path, int]] = field(default_factory=dict)
    """Absolute file and line of each resource's registration, by URN."""


def sarif_level(violation_level: str, severity: str) -> str:
    """A mandatory violation is an error whatever its severity; an advisory one follows the severity."""
    return "error" if violation_level == "mandatory" else SEVERITY_LEVEL.get(severity, "warning")


def _relative_uri(path: Path, root: Path) -> tuple[str, str | None]:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix(), SOURCE_ROOT
    except ValueError:
        return path.resolve().as_uri(), None


def _rule(policy: PolicySummary) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": policy.name,
        "name": "".join(part.capitalize() for part in policy.name.split("-")),
        "shortDescription": {"text": policy.description},
        "fullDescription": {"text": policy.description},
        "defaultConfiguration": {"level": sarif_level(policy.level, policy.severity)},
        "properties": {
            "security-severity": SECURITY_SEVERITY.get(policy.severity, "5.0"),
            "severity": policy.severity,
            "enforcementLevel": policy.level,
            "tags": ["security", "pulumi-policy", policy.kind],
        },
    }
    if policy.remediation:
        rule["help"] = {"text": policy.remediation, "markdown": policy.remediation}
    if policy.url:
        rule["helpUri"] = policy.url
    return rule


def render_sarif(report: Report, origin: Origin) -> str:
    policy = report.policy
    policies = list(policy.policies) if policy is not None else []
    index = {p.name: i for i, p in enumerate(policies)}
    severities = {p.name: p.severity for p in policies}
    names = {r.urn: r for r in report.resources}
    results = []
    for violation in policy.violations if policy is not None else []:
        path, line = origin.locations.get(violation.urn, (origin.default_file, 1))
        uri, base = _relative_uri(path, origin.source_root)
        artifact: dict[str, Any] = {"uri": uri, **({"uriBaseId": base} if base else {})}
        resource = names.get(violation.urn)
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": artifact, "region": {"startLine": max(line, 1)}},
        }
        if violation.urn:
            location["logicalLocations"] = [
                {
                    "name": resource.name if resource else violation.urn,
                    "fullyQualifiedName": violation.urn,
                    "kind": "resource",
                }
            ]
        subject = f"{resource.type} '{resource.name}'" if resource else "the stack"
        result: dict[str, Any] = {
            "ruleId": violation.policy,
            "level": sarif_level(violation.level, severities.get(violation.policy, "")),
            "message": {"text": f"{subject}: {violation.message}"},
            "locations": [location],
            "partialFingerprints": {"policyResource/v1": f"{violation.policy}|{violation.urn}"},
            "properties": {"enforcementLevel": violation.level, "urn": violation.urn},
        }
        if violation.policy in index:
            result["ruleIndex"] = index[violation.policy]
        results.append(result)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": TOOL_NAME, "informationUri": TOOL_URI, "rules": [_rule(p) for p in policies]}},
        "automationDetails": {"id": f"policy-pack/{report.stack}/"},
        "originalUriBaseIds": {SOURCE_ROOT: {"uri": origin.source_root.resolve().as_uri() + "/"}},
        "results": results,
    }
    if report.opaque:
        run["properties"] = {"notChecked": [_opaque_entry(r) for r in report.opaque]}
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}, indent=2)


def _opaque_entry(resource: Any) -> dict[str, str]:
    return {"urn": resource.urn, "type": resource.type, "name": resource.name, "reason": OPAQUE_REASON}


OPAQUE_REASON = "multi-language component: its child resources are created by its provider and not visible offline"


# --- JUnit ------------------------------------------------------------------------------------------------


def render_junit(report: Report) -> str:
    """One test case per policy that passed (skipped when disabled), one failing case per violation, and one
    case per component the runner cannot see inside (failing under --strict, else skipped)."""
    suite = ET.Element("testsuite", name=f"policy pack on stack {report.stack}")
    policy = report.policy
    by_policy: dict[str, list[Violation]] = defaultdict(list)
    for violation in policy.violations if policy is not None else []:
        by_policy[violation.policy].append(violation)
    names = {r.urn: f"{r.type} {r.name}" for r in report.resources}
    failures = skipped = 0
    for summary in policy.policies if policy is not None else []:
        found = by_policy.get(summary.name, [])
        if not found:
            case = ET.SubElement(suite, "testcase", classname=f"policy.{summary.kind}", name=summary.name)
            if summary.level == "disabled":
                ET.SubElement(case, "skipped", message="disabled by the policy config")
                skipped += 1
            continue
        for violation in found:
            where = names.get(violation.urn, "the stack")
            case = ET.SubElement(
                suite, "testcase", classname=f"policy.{summary.kind}", name=f"{summary.name} on {where}"
            )
            failure = ET.SubElement(case, "failure", message=violation.message, type=violation.level)
            failure.text = f"[{violation.level}] {summary.description}\n{where}: {violation.message}"
            failures += 1
    for resource in report.opaque:
        case = ET.SubElement(suite, "testcase", classname="not-checked", name=f"{resource.type} {resource.name}")
        if report.strict:
            ET.SubElement(case, "failure", message=OPAQUE_REASON, type="not-checked")
            failures += 1
        else:
            ET.SubElement(case, "skipped", message=OPAQUE_REASON)
            skipped += 1
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", "0")
    suite.set("skipped", str(skipped))
    suite.set("time", f"{sum(report.seconds.values()):.3f}")
    suites = ET.Element("testsuites", name="runner.check")
    suites.append(suite)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


# --- Markdown ---------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    policy = report.policy
    lines = [f"### Policy pack: stack `{report.stack}`", ""]
    if policy is not None:
        verdict = "❌ fails" if report.exit_code else "✅ passes"
        lines += [
            f"{verdict}: **{policy.mandatory_count} mandatory**, {policy.advisory_count} advisory violations "
            f"on {policy.checked} resources ({len(policy.policies)} policies).",
            "",
        ]
        if policy.violations:
            names = {r.urn: f"`{r.type}` {r.name}" for r in report.resources}
            lines += ["| level | policy | resource | finding |", "| --- | --- | --- | --- |"]
            ordered = sorted(policy.violations, key=lambda v: (v.level != "mandatory", v.policy, v.urn))
            lines += [
                f"| {v.level} | `{v.policy}` | {_cell(names.get(v.urn, 'the stack'))} | {_cell(v.message)} |"
                for v in ordered
            ]
            lines.append("")
    lines += _markdown_not_checked(report)
    if report.cost is not None:
        lines += [f"Estimated cost: **${report.cost.per_month:,.2f}/month** (${report.cost.per_day:,.2f}/day).", ""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_not_checked(report: Report) -> list[str]:
    if not report.opaque:
        return []
    lines = [
        f"**Not checked** ({len(report.opaque)}): multi-language components whose resources the offline runner "
        "cannot see; check them with `pulumi preview --policy-pack`.",
        "",
    ]
    lines += [f"- `{r.type}` {r.name}" for r in report.opaque]
    return [*lines, ""]


FORMATS: Sequence[str] = ("text", "json", "sarif", "junit", "markdown")
