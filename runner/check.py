"""Offline plan and policy check: `python -m runner.check (--program DIR --stack NAME | --export FILE)`.

Runs a Pulumi Python program under mocks with its stack file (no CLI, no credentials), or reads a
`pulumi stack export` / `pulumi preview --json` / plain resource list file, then evaluates the policy pack on
every resource and on the stack, exactly as `pulumi preview --policy-pack policy` would, and prices the result.
Prints the resource tree, counts by type, the exports, the violations grouped by resource and the estimated
cost per resource, per component and in total.
Secret values are never printed.
Multi-language components (awsx and other `remote` components) register no children under mocks: they are
listed as not checked and not priced, and `--strict` fails the run on them. `--format` picks what stdout gets
(text, json, sarif, junit, markdown); `--report FORMAT=FILE` also writes other formats to files.
Exit codes: 0 no mandatory violation, 1 mandatory violations (or, with --strict, components not checked),
2 bad input or a program that could not run to the end (the message says what was wrong).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.rules.costing import Assumptions, CostError, CostEstimate, estimate
from runner import reports
from runner.engine import EvaluationReport, PolicyPackError, PolicyPackProcess, evaluate
from runner.exports import (
    PolicyInputError,
    load_policy_config,
    load_resources,
    load_stack_outputs,
    with_program_policy_config,
)
from runner.plan import PlanError, StackOutputs, read_program, run_program
from runner.records import REDACTED, ResourceRecord, redact_secrets

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2
MULTI_STACK_UNSUPPORTED = ("sarif", "junit")
# `--format compliance-<format>`: the compliance report of runner/compliance.py instead of the plan's report.
COMPLIANCE_FORMATS = tuple(f"compliance-{format_}" for format_ in ("markdown", "html", "sarif", "junit", "json"))


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
    opaque: list[ResourceRecord] = field(default_factory=list)
    """Components whose children the runner cannot see (multi-language components under mocks)."""
    strict: bool = False
    """Fail when any component could not be checked."""

    @property
    def exit_code(self) -> int:
        if self.policy is not None and self.policy.mandatory_count:
            return EXIT_VIOLATIONS
        return EXIT_VIOLATIONS if self.strict and self.opaque else EXIT_OK

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
            "not_checked_components": [
                {"urn": r.urn, "type": r.type, "name": r.name, "reason": reports.OPAQUE_REASON} for r in self.opaque
            ],
            "strict": self.strict,
            "exit_code": self.exit_code,
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
    lines += render_opaque(report)
    if report.cost is not None:
        lines += ["", report.cost.render_text()]
    return "\n".join(lines)


def render_opaque(report: Report) -> list[str]:
    if not report.opaque:
        return []
    consequence = "--strict: the run fails" if report.strict else "pass --strict to fail the run on them"
    lines = ["", f"Not checked: {len(report.opaque)} multi-language component(s) ({consequence}):"]
    lines += [f"  {r.type}  {r.name}: {reports.OPAQUE_REASON}" for r in report.opaque]
    lines.append("  Check them with `pulumi preview --policy-pack policy/`, where their resources exist.")
    return lines


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


def build_report(
    args: argparse.Namespace, stack: str | None = None, pack: PolicyPackProcess | None = None
) -> tuple[Report, reports.Origin]:
    started = time.perf_counter()
    config = load_policy_config(Path(args.policy_config)) if args.policy_config else None
    if args.export:
        export = Path(args.export)
        report = Report(stack=export.name, resources=load_resources(export), strict=args.strict)
        origin = reports.Origin(default_file=export, source_root=Path(args.source_root or export.parent))
    else:
        program = Path(args.program).resolve()
        plan = run_program(program, stack or args.stack, stack_outputs=read_stack_outputs(args.stack_outputs))
        report = Report(plan.stack, plan.resources, plan.outputs, plan.secret_outputs, strict=args.strict)
        report.opaque = plan.opaque
        config = with_program_policy_config(config, plan.outputs)
        locations = {urn: (program / where.path, where.line) for urn, where in plan.locations.items()}
        origin = reports.Origin(read_program(program).main, Path(args.source_root or program), locations)
    report.seconds["plan"] = time.perf_counter() - started
    if not args.no_policy:
        started = time.perf_counter()
        report.policy = evaluate(report.resources, config, pack=pack)
        report.seconds["policy"] = time.perf_counter() - started
    if not args.no_cost:
        started = time.perf_counter()
        assumptions = Assumptions.from_file(args.assumptions) if args.assumptions else None
        opaque = [r.urn for r in report.opaque]
        report.cost = estimate(
            report.resources, region=args.region, assumptions=assumptions, opaque=opaque, free_tier=args.free_tier
        )
        report.seconds["cost"] = time.perf_counter() - started
    return report, origin


def read_stack_outputs(entries: Sequence[str]) -> dict[str, StackOutputs]:
    """`NAME=FILE` entries of --stack-outputs, each file read as outputs object or stack export."""
    given: dict[str, StackOutputs] = {}
    for entry in entries:
        name, separator, file = entry.partition("=")
        if not separator or not name or not file:
            raise PolicyInputError(
                f"--stack-outputs {entry!r}: expected NAME=FILE, e.g. acme/platform/prod=platform-outputs.json "
                "(NAME exactly as the program passes it to pulumi.StackReference)"
            )
        outputs, secret_names = load_stack_outputs(Path(file))
        given[name] = StackOutputs(outputs, secret_names)
    return given


def stacks_to_plan(args: argparse.Namespace) -> list[str]:
    """The stacks of one run: --stack, --stacks a,b,c or --all (every Pulumi.<stack>.yaml of the program)."""
    if args.all:
        spec = read_program(Path(args.program).resolve())
        found = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in spec.directory.glob("Pulumi.*.yaml"))
        if not found:
            raise PolicyInputError(f"--all: no Pulumi.<stack>.yaml in {spec.directory}")
        return found
    if args.stacks is not None:
        names = [name.strip() for name in args.stacks.split(",")]
        if not all(names) or len(set(names)) != len(names):
            raise PolicyInputError(f"--stacks {args.stacks!r}: expected distinct stack names separated by commas")
        return names
    return [args.stack] if args.stack else []


def render_many(reports_: Sequence[Report], format_: str) -> str:
    """Several stacks' reports, one after another; text ends with a summary line per stack."""
    if format_ == "json":
        return json.dumps({"stacks": [report.to_json() for report in reports_]}, indent=2)
    if format_ == "markdown":
        return "\n\n".join(reports.render_markdown(report) for report in reports_)
    summary = ["Summary:", *(f"  {summary_line(report)}" for report in reports_)]
    return "\n\n".join([*(render_text(report) for report in reports_), "\n".join(summary)])


def summary_line(report: Report) -> str:
    policy = report.policy
    violations = f"{policy.mandatory_count} mandatory, {policy.advisory_count} advisory" if policy else "not checked"
    cost = f", ${report.cost.per_day:,.2f}/day" if report.cost else ""
    seconds = sum(report.seconds.values())
    return f"{report.stack}: {len(report.resources)} resources, {violations}{cost} ({seconds:.1f} s)"


def render(report: Report, origin: reports.Origin, format_: str) -> str:
    if format_ == "json":
        return json.dumps(report.to_json(), indent=2)
    if format_ == "sarif":
        return reports.render_sarif(report, origin)
    if format_ == "junit":
        return reports.render_junit(report)
    if format_ == "markdown":
        return reports.render_markdown(report)
    return render_text(report)


def report_files(entries: Sequence[str]) -> list[tuple[str, Path]]:
    files = []
    for entry in entries:
        format_, separator, file = entry.partition("=")
        if not separator or format_ not in reports.FORMATS or not file:
            raise PolicyInputError(
                f"--report {entry!r}: expected FORMAT=FILE with FORMAT one of {', '.join(reports.FORMATS)}"
            )
        files.append((format_, Path(file)))
    return files


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runner.check",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="stack name: run the program with its Pulumi.<stack>.yaml under mocks")
    source.add_argument("--stacks", help="several stacks, comma-separated, planned one after another in one process")
    source.add_argument("--all", action="store_true", help="every stack with a Pulumi.<stack>.yaml in --program")
    source.add_argument("--export", help="a `pulumi stack export`, `pulumi preview --json` or resource list file")
    parser.add_argument("--program", default=".", help="Pulumi Python program directory, with --stack (default: .)")
    parser.add_argument("--policy-config", help="policy pack config JSON, as for --policy-pack-config")
    parser.add_argument("--no-policy", action="store_true", help="only the plan: skip the policy evaluation")
    parser.add_argument("--no-cost", action="store_true", help="skip the cost estimate")
    parser.add_argument("--assumptions", help="cost usage assumptions JSON (see docs/cost.md)")
    parser.add_argument("--region", help="price for this region (default: inferred from the resources' ARNs)")
    parser.add_argument(
        "--free-tier",
        nargs="?",
        const="always",
        default="none",
        choices=("none", "always", "new-account"),
        help="deduct the account's free tier once (always-free offers; new-account adds the 12-month ones)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout (= --format json)")
    parser.add_argument(
        "--format",
        choices=(*reports.FORMATS, *COMPLIANCE_FORMATS),
        help="what stdout gets: text (default), json, sarif, junit, markdown; or compliance-markdown|html|sarif|"
        "junit|json for the compliance report (runner/compliance.py, docs/compliance.md) of one --stack or --export",
    )
    parser.add_argument(
        "--report",
        action="append",
        default=[],
        metavar="FORMAT=FILE",
        help="also write the report in FORMAT to FILE (repeatable), e.g. sarif=policy.sarif",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a component could not be checked (awsx and other multi-language components under mocks)",
    )
    parser.add_argument(
        "--stack-outputs",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="outputs of the stack the program reads with pulumi.StackReference(NAME): a JSON object of outputs "
        "or a `pulumi stack export` file (repeatable)",
    )
    parser.add_argument(
        "--source-root", help="directory SARIF file locations are relative to (default: the program directory)"
    )
    args = parser.parse_args(argv)
    if args.json and args.format not in (None, "json"):
        parser.error(f"--json and --format {args.format} contradict each other; use one of them")
    args.format = "json" if args.json else args.format or "text"
    several = args.all or args.stacks is not None
    if args.format in COMPLIANCE_FORMATS and (several or args.report):
        parser.error(f"--format {args.format} reports on one --stack or --export, without --report")
    if several and (args.format in MULTI_STACK_UNSUPPORTED or args.report):
        parser.error(
            f"--stacks/--all write text, json or markdown to stdout; for {args.format} or --report, "
            "run one --stack at a time"
        )
    return args


@contextlib.contextmanager
def early_pack(args: argparse.Namespace) -> Iterator[PolicyPackProcess | None]:
    """The policy pack, launched before the first plan so that its start-up overlaps with the program's; one pack
    serves every stack of the run (each evaluation reconfigures it)."""
    if args.no_policy:
        yield None
        return
    pack = PolicyPackProcess()
    try:
        pack.launch()
        yield pack
    finally:
        pack.stop()


def main_many(args: argparse.Namespace) -> int:
    try:
        with early_pack(args) as pack:
            planned = [build_report(args, stack, pack)[0] for stack in stacks_to_plan(args)]
    except (PlanError, PolicyInputError, PolicyPackError, CostError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render_many(planned, args.format))
    return max(report.exit_code for report in planned)


def collect_garbage_less_often() -> None:
    """A plan allocates millions of objects that live to its end (pulumi_aws's classes, the resource graph) and
    almost no garbage cycles: at CPython's default thresholds the collector runs ~800 times and takes about a
    quarter of a plan's CPU to free nothing (peak memory is the same either way; bench/plan_speed.py)."""
    gc.set_threshold(50_000, 20, 100)


def compliance_main(args: argparse.Namespace) -> int:
    """`--format compliance-<format>`: what `python -m runner.compliance` prints for the same stack or export."""
    from runner import compliance  # it builds on this module

    given = ["--format", args.format.removeprefix("compliance-"), "--program", args.program]
    given += ["--stack", args.stack] if args.stack else ["--export", args.export]
    if args.policy_config:
        given += ["--policy-config", args.policy_config]
    return compliance.main(given)


def main(argv: Sequence[str] | None = None) -> int:
    collect_garbage_less_often()
    args = parse_args(argv)
    if args.format in COMPLIANCE_FORMATS:
        return compliance_main(args)
    if args.all or args.stacks is not None:
        return main_many(args)
    try:
        files = report_files(args.report)
        with early_pack(args) as pack:
            report, origin = build_report(args, pack=pack)
        for format_, path in files:
            path.write_text(render(report, origin, format_) + "\n", encoding="utf-8")
    except (PlanError, PolicyInputError, PolicyPackError, CostError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render(report, origin, args.format))
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
