"""Offline plan and policy check: `python -m policy.check --program . --stack dev [--json]`.

Runs a Pulumi Python program under mocks with its stack file (no CLI, no credentials) and prints the resource
tree (component -> children), counts by type and the stack exports. Secret values are never printed.
Exit codes: 0 ok, 1 mandatory policy violations, 2 bad input (the message says what was wrong).
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

from policy.records import REDACTED, ResourceRecord, redact_secrets

EXIT_OK, EXIT_VIOLATIONS, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Report:
    """Everything one run found; each section is added by the step that computes it."""

    stack: str
    resources: list[ResourceRecord]
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
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
        }


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
    lines = [f"Stack {report.stack}: {len(report.resources)} resources ({report.seconds:.1f} s)", "", "Resource tree:"]
    lines += [f"  {line}" for line in resource_tree(report.resources)]
    lines += ["", "Counts by type:"]
    counts = Counter(r.type for r in report.resources)
    lines += [f"  {count:4d}  {type_}" for type_, count in sorted(counts.items())]
    lines += ["", "Outputs:"]
    for key, value in sorted(report.outputs.items()):
        shown = REDACTED if key in report.secret_outputs else json.dumps(redact_secrets(value))
        lines.append(f"  {key}: {shown}")
    return "\n".join(lines)


def build_report(args: argparse.Namespace) -> Report:
    from policy.plan import run_program

    started = time.perf_counter()
    plan = run_program(Path(args.program), args.stack)
    return Report(
        stack=args.stack,
        resources=plan.resources,
        outputs=plan.outputs,
        secret_outputs=plan.secret_outputs,
        seconds=time.perf_counter() - started,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m policy.check", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--program", default=".", help="Pulumi Python program directory (default: .)")
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml in the program")
    parser.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from policy.plan import PlanError

    args = parse_args(argv)
    try:
        report = build_report(args)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report.to_json(), indent=2) if args.json else render_text(report))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
