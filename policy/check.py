"""Offline plan and policy check: `python -m policy.check (--program DIR --stack NAME | --export FILE)`.

Runs a Pulumi Python program under mocks with its stack file (no CLI, no credentials), or reads a
`pulumi stack export` / `pulumi preview --json` / plain resource list file, then evaluates the policy pack on
every resource and on the stack, exactly as `pulumi preview --policy-pack policy` would, and prices the result.
Prints the resource tree, counts by type, the exports, the violations grouped by resource and the estimated
cost per resource, per component and in total.
Secret values are never printed.
Exit codes: 0 no mandatory violation, 1 mandatory violations, 2 bad input (the message says what was wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.engine import EvaluationReport, PolicyPackError, evaluate
from policy.exports import PolicyInputError, load_policy_config, load_resources
from policy.plan import PlanError, run_program
from policy.records import REDACTED, ResourceRecord, redact_secrets
from policy.rules.costing import Assumptions, CostError, CostEstimate, estimate

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Report:
    """Everything one run found; each section is added by the step that computes it."""

    stack: str
    resources: list[ResourceRecord]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()
    policy: EvaluationReport | None = None
    cost: CostEstimate | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_VIOLATIONS if self.policy is not None and self.policy.mandatory_count else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "stack": self.stack,
            "resources": [
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent,
                    "inputs": redact_secrets(dict(r.inputs)),
                }
                for r in self.resources
            ],
            "outputs": {
                k: REDACTED if k in self.secret_outputs else redact_secrets(v) for k, v in self.outputs.items()
            },
            "counts": dict(sorted(Counter(r.type for r in self.resources).items())),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
        if self.policy is not None:
            document.update(self.policy.to_dict())
        if self.cost is not None:
            document["cost"] = self.cost.to_json()
        return document


# --- Text rendering ---------------------------------------------------------------------------------------


def resource_tree(resources: Sequence[ResourceRecord]) -> list[str]:
    """Indented lines: each component followed by its children, in registration order."""
    children: dict[str | None, list[ResourceRecord]] = defaultdict(list)
    known = {r.urn for r in resources}
    for resource in resources:
        children[resource.parent if resource.parent in known else None].append(resource)
    lines: list[str] = []

    def walk(parent: str | None, depth: int) -> None:
        for resource in children.get(parent, []):
            lines.append(f"{'  ' * depth}{resource.type}  {resource.name}")
            walk(resource.urn, depth + 1)

    walk(None, 0)
    return lines


def render_text(report: Report) -> str:
    total = sum(report.seconds.values())
    lines = [f"Stack {report.stack}: {len(report.resources)} resources ({total:.1f} s)", "", "Resource tree:"]
    lines += [f"  {line}" for line in resource_tree(report.resources)]
    lines += ["", "Counts by type:"]
    counts = Counter(r.type for r in report.resources)
    lines += [f"  {count:4d}  {type_}" for type_, count in sorted(counts.items())]
    if report.outputs:
        lines += ["", "Outputs:"]
        for key, value in sorted(report.outputs.items()):
            shown = REDACTED if key in report.secret_outputs else json.dumps(redact_secrets(value))
            lines.append(f"  {key}: {shown}")
    if report.policy is not None:
        lines += ["", *render_policy(report.policy, report.resources)]
    if report.cost is not None:
        lines += ["", report.cost.render_text()]
    return "\n".join(lines)


def render_policy(policy: EvaluationReport, resources: Sequence[ResourceRecord]) -> list[str]:
    names = {r.urn: f"{r.type}  {r.name}" for r in resources}
    by_resource: dict[str, list[str]] = defaultdict(list)
    for violation in sorted(policy.violations, key=lambda v: (v.level != "mandatory", v.policy)):
        by_resource[violation.urn].append(f"    [{violation.level}] {violation.policy}: {violation.message}")
    lines = ["Policy violations:" if by_resource else "Policy violations: none"]
    for urn, found in sorted(by_resource.items(), key=lambda item: item[0]):
        lines.append(f"  {names.get(urn, urn or 'the stack')}")
        lines += found
    if policy.not_checked:
        lines += ["", "Not checked (values unknown until apply):"]
        lines += [f"  {n.policy} on {names.get(n.urn, n.urn)}: {n.reason}" for n in policy.not_checked]
    lines += [
        "",
        f"Checked {policy.checked} resources against {len(policy.policies)} policies: "
        f"{policy.mandatory_count} mandatory, {policy.advisory_count} advisory violations.",
    ]
    return lines


# --- Running ----------------------------------------------------------------------------------------------


def build_report(args: argparse.Namespace) -> Report:
    started = time.perf_counter()
    config = load_policy_config(Path(args.policy_config)) if args.policy_config else None
    if args.export:
        report = Report(stack=Path(args.export).name, resources=load_resources(Path(args.export)))
    else:
        plan = run_program(Path(args.program), args.stack)
        report = Report(plan.stack, plan.resources, plan.outputs, plan.secret_outputs)
    report.seconds["plan"] = time.perf_counter() - started
    if not args.no_policy:
        started = time.perf_counter()
        report.policy = evaluate(report.resources, config)
        report.seconds["policy"] = time.perf_counter() - started
    if not args.no_cost:
        started = time.perf_counter()
        assumptions = Assumptions.from_file(args.assumptions) if args.assumptions else None
        report.cost = estimate(report.resources, region=args.region, assumptions=assumptions)
        report.seconds["cost"] = time.perf_counter() - started
    return report


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m policy.check",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: run the program with its Pulumi.<stack>.yaml under mocks")
    source.add_argument("--export", help="a `pulumi stack export`, `pulumi preview --json` or resource list file")
    parser.add_argument("--program", default=".", help="Pulumi Python program directory, with --stack (default: .)")
    parser.add_argument("--policy-config", help="policy pack config JSON, as for --policy-pack-config")
    parser.add_argument("--no-policy", action="store_true", help="only the plan: skip the policy evaluation")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost estimate")
    parser.add_argument("--assumptions", help="cost usage assumptions JSON (see docs/cost.md)")
    parser.add_argument("--region", help="price for this region (default: inferred from the resources' ARNs)")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = build_report(args)
    except (PlanError, PolicyInputError, PolicyPackError, CostError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report.to_json(), indent=2) if args.json else render_text(report))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
