"""Plan diff: what a change does to a stack, the way teams review infrastructure.

    python -m runner.diff --stack dev [--base REF | --against STACK] [--program DIR] [--format markdown|json|text]

Compares the offline plan of the working tree with the plan of a git revision (default: the merge base with
`main`) or with another stack of the same tree: resources added, removed and changed (which inputs; secret
values are redacted before they are compared, so they never show), policy violations added and fixed, and the
estimated cost per day and month before and after with the resources that drive the change. Each side is planned
by its own revision's runner and pack in a fresh process (`python -m runner.check --json`), so a change to the
pack is judged by the pack it ships. Exit codes: 0 the diff was made, 2 bad input or a plan that did not run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_BAD_INPUT = 0, 2
RUNNER_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASE_BRANCHES = ("origin/main", "main")
MAX_CHANGED_PATHS = 12
COST_DRIVERS = 8


class DiffError(RuntimeError):
    """A side of the diff could not be planned; the message says which and why."""


# --- Planning each side -------------------------------------------------------------------------------------


def runner_root(tree: Path) -> Path:
    """Where `runner.check` comes from: the tree's own runner and pack when it has them (this platform's
    repository), else this one (a team's program, judged by the pack they were given)."""
    return tree if (tree / "policy" / "check.py").is_file() else RUNNER_ROOT


def plan_report(program: Path, stack: str, runner: Path) -> dict[str, Any]:
    """The JSON report of `python -m runner.check` from `runner` for `stack` of `program`, in a fresh process."""
    completed = subprocess.run(  # noqa: S603 (this interpreter, fixed module)
        # `policy.check`: the entry point every revision has (the runner moved out of policy/ later, behind it).
        [sys.executable, "-m", "policy.check", "--program", str(program), "--stack", stack, "--json"],
        cwd=runner,
        env={**os.environ, "PYTHONPATH": str(runner)},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode not in (0, 1):  # 1 = mandatory violations: still a plan to compare
        raise DiffError(f"the plan of {stack!r} in {program} failed:\n{completed.stderr.strip()[-3000:]}")
    return json.loads(completed.stdout)


def git(root: Path, *arguments: str) -> str:
    completed = subprocess.run(["git", *arguments], cwd=root, capture_output=True, text=True, check=False)  # noqa: S603,S607 (git from PATH, fixed subcommands)
    if completed.returncode != 0:
        raise DiffError(f"git {' '.join(arguments)}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def default_base(root: Path) -> str:
    """The merge base of HEAD with main (origin/main first, as CI checks out), named by its commit."""
    for branch in DEFAULT_BASE_BRANCHES:
        try:
            return git(root, "merge-base", "HEAD", branch)
        except DiffError:
            continue
    raise DiffError(f"no merge base of HEAD with {' or '.join(DEFAULT_BASE_BRANCHES)}; pass --base REF")


@contextmanager
def checkout(root: Path, revision: str) -> Iterator[Path]:
    """The tracked files of `revision` in a temporary directory (`git archive`: no worktree bookkeeping)."""
    commit = git(root, "rev-parse", "--verify", f"{revision}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="plan-diff-") as directory:
        archive = Path(directory) / "tree.tar"
        with archive.open("wb") as out:
            completed = subprocess.run(["git", "archive", commit], cwd=root, stdout=out, check=False)  # noqa: S603,S607 (git from PATH, fixed subcommands)
        if completed.returncode != 0:
            raise DiffError(f"git archive {commit} failed")
        tree = Path(directory) / "tree"
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        yield tree


# --- Comparing ----------------------------------------------------------------------------------------------


def resource_key(urn: str) -> str:
    """A URN without its stack and project, so the same resource matches across stacks and revisions."""
    parts = urn.split("::")
    return "::".join(parts[2:]) if len(parts) >= 4 else urn


def changed_paths(before: Any, after: Any, path: str = "") -> list[str]:
    """Input paths whose values differ (objects compared key by key, lists and scalars as a whole; a file asset by
    its content hash, as the engine compares it: each revision is planned in its own checkout, at its own path)."""
    if isinstance(before, Mapping) and isinstance(after, Mapping) and "hash" in before and "hash" in after:
        return [] if before["hash"] == after["hash"] else [path or "(value)"]
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        paths: list[str] = []
        for key in sorted(set(before) | set(after)):
            paths += changed_paths(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return paths
    return [] if before == after else [path or "(value)"]


@dataclass
class ResourceChange:
    key: str
    type: str
    name: str
    paths: list[str] = field(default_factory=list)


@dataclass
class PlanDiff:
    stack: str
    base_label: str
    head_label: str
    added: list[ResourceChange]
    removed: list[ResourceChange]
    changed: list[ResourceChange]
    violations_added: list[dict[str, Any]]
    violations_fixed: list[dict[str, Any]]
    cost_before: dict[str, float]
    cost_after: dict[str, float]
    cost_drivers: list[dict[str, Any]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.violations_added or self.violations_fixed)

    def to_json(self) -> dict[str, Any]:
        def changes(items: Sequence[ResourceChange]) -> list[dict[str, Any]]:
            return [{"key": c.key, "type": c.type, "name": c.name, "changed_inputs": c.paths} for c in items]

        return {
            "stack": self.stack,
            "base": self.base_label,
            "head": self.head_label,
            "resources": {
                "added": changes(self.added),
                "removed": changes(self.removed),
                "changed": changes(self.changed),
            },
            "violations": {"added": self.violations_added, "fixed": self.violations_fixed},
            "cost": {"before": self.cost_before, "after": self.cost_after, "drivers": self.cost_drivers},
        }


def compare(base: Mapping[str, Any], head: Mapping[str, Any], base_label: str, head_label: str) -> PlanDiff:
    before = {resource_key(r["urn"]): r for r in base["resources"]}
    after = {resource_key(r["urn"]): r for r in head["resources"]}
    changed = []
    for key in sorted(set(before) & set(after)):
        paths = changed_paths(before[key]["inputs"], after[key]["inputs"])
        if paths:
            changed.append(ResourceChange(key, after[key]["type"], after[key]["name"], paths))
    return PlanDiff(
        stack=head["stack"] if head["stack"] == base["stack"] else f"{base['stack']} → {head['stack']}",
        base_label=base_label,
        head_label=head_label,
        added=[ResourceChange(k, after[k]["type"], after[k]["name"]) for k in sorted(set(after) - set(before))],
        removed=[ResourceChange(k, before[k]["type"], before[k]["name"]) for k in sorted(set(before) - set(after))],
        changed=changed,
        violations_added=_violations_only_in(head, base),
        violations_fixed=_violations_only_in(base, head),
        cost_before=_totals(base),
        cost_after=_totals(head),
        cost_drivers=_cost_drivers(base, head),
    )


def _violation_key(violation: Mapping[str, Any]) -> tuple[str, str, str]:
    return (violation["policy"], resource_key(violation["urn"]) if violation["urn"] else "", violation["message"])


def _violations_only_in(report: Mapping[str, Any], other: Mapping[str, Any]) -> list[dict[str, Any]]:
    known = {_violation_key(v) for v in other.get("violations", [])}
    return [
        {"policy": v["policy"], "level": v["level"], "resource": resource_key(v["urn"]) or "the stack",
         "message": v["message"]}
        for v in report.get("violations", [])
        if _violation_key(v) not in known
    ]  # fmt: skip


def _totals(report: Mapping[str, Any]) -> dict[str, float]:
    cost = report.get("cost") or {}
    return {"per_day": round(cost.get("per_day", 0.0), 2), "per_month": round(cost.get("per_month", 0.0), 2)}


def _cost_drivers(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The resources whose monthly cost changed most, largest change first."""

    def monthly(report: Mapping[str, Any]) -> dict[str, tuple[str, float]]:
        resources = (report.get("cost") or {}).get("resources", [])
        return {resource_key(r["urn"]): (r["type"], r["per_month"]) for r in resources}

    before, after = monthly(base), monthly(head)
    drivers = []
    for key in set(before) | set(after):
        old, new = before.get(key, ("", 0.0))[1], after.get(key, ("", 0.0))[1]
        if round(new - old, 2):
            type_ = (after.get(key) or before[key])[0]
            drivers.append({"resource": key, "type": type_, "before": round(old, 2), "after": round(new, 2),
                            "delta_per_month": round(new - old, 2)})  # fmt: skip
    drivers.sort(key=lambda d: (-abs(d["delta_per_month"]), d["resource"]))
    return drivers[:COST_DRIVERS]


# --- Rendering ----------------------------------------------------------------------------------------------


def money(value: float) -> str:
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def signed(value: float) -> str:
    return f"+{money(value)}" if value >= 0 else money(value)


def render_markdown(diff: PlanDiff) -> str:
    before, after = diff.cost_before, diff.cost_after
    lines = [
        f"### Plan diff: `{diff.stack}` ({diff.base_label} → {diff.head_label})",
        "",
        f"**{len(diff.added)}** to add, **{len(diff.changed)}** to change, **{len(diff.removed)}** to remove · "
        f"policy: **{len(diff.violations_added)}** new, **{len(diff.violations_fixed)}** fixed · "
        f"cost: {money(before['per_day'])} → {money(after['per_day'])}/day "
        f"({signed(after['per_month'] - before['per_month'])}/month)",
    ]
    if diff.empty and not diff.cost_drivers:
        return "\n".join([*lines, "", "No change to resources, policy results or cost."])
    for title, items in (("Added", diff.added), ("Removed", diff.removed), ("Changed", diff.changed)):
        if items:
            lines += ["", f"<details><summary>{title} ({len(items)})</summary>", ""]
            lines += [_markdown_change(item) for item in items]
            lines += ["", "</details>"]
    for title, violations in (("New policy violations", diff.violations_added), ("Fixed", diff.violations_fixed)):
        if violations:
            lines += ["", f"**{title}**", ""]
            lines += [f"- `{v['level']}` **{v['policy']}** on `{v['resource']}`: {v['message']}" for v in violations]
    if diff.cost_drivers:
        lines += ["", "| resource | before/month | after/month | change |", "| --- | ---: | ---: | ---: |"]
        lines += [
            f"| `{d['resource']}` | {money(d['before'])} | {money(d['after'])} | {signed(d['delta_per_month'])} |"
            for d in diff.cost_drivers
        ]
    return "\n".join(lines)


def _markdown_change(item: ResourceChange) -> str:
    shown = ", ".join(f"`{p}`" for p in item.paths[:MAX_CHANGED_PATHS])
    more = f" and {len(item.paths) - MAX_CHANGED_PATHS} more" if len(item.paths) > MAX_CHANGED_PATHS else ""
    return f"- `{item.type}` **{item.name}**" + (f": {shown}{more}" if item.paths else "")


def render_text(diff: PlanDiff) -> str:
    lines = [f"Plan diff of {diff.stack}: {diff.base_label} -> {diff.head_label}"]
    for sign, items in (("+", diff.added), ("-", diff.removed), ("~", diff.changed)):
        for item in items:
            lines.append(f"  {sign} {item.type}  {item.name}" + (f"  ({', '.join(item.paths)})" if item.paths else ""))
    for title, violations in (("new violation", diff.violations_added), ("fixed", diff.violations_fixed)):
        lines += [f"  {title}: [{v['level']}] {v['policy']} on {v['resource']}: {v['message']}" for v in violations]
    before, after = diff.cost_before, diff.cost_after
    lines.append(
        f"  cost: {money(before['per_day'])}/day -> {money(after['per_day'])}/day "
        f"({signed(after['per_month'] - before['per_month'])}/month)"
    )
    lines += [f"    {signed(d['delta_per_month'])}/month  {d['resource']}" for d in diff.cost_drivers]
    return "\n".join(lines)


# --- Command line -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runner.diff", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the stack whose plan is compared")
    against = parser.add_mutually_exclusive_group()
    against.add_argument("--base", help="git revision to compare with (default: the merge base with main)")
    against.add_argument("--against", help="another stack of the working tree to compare with")
    parser.add_argument("--program", default=".", help="the Pulumi program directory, a git checkout (default: .)")
    parser.add_argument("--format", choices=("markdown", "json", "text"), default="text", help="default: text")
    parser.add_argument("--json-out", help="also write the JSON diff to this file (CI: decide whether to comment)")
    return parser.parse_args(argv)


def make_diff(args: argparse.Namespace) -> PlanDiff:
    program = Path(args.program).resolve()
    root = Path(git(program, "rev-parse", "--show-toplevel")) if not args.against else program
    head = plan_report(program, args.stack, runner_root(root))
    if args.against:
        base = plan_report(program, args.against, runner_root(root))
        return compare(base, head, f"stack {args.against}", f"stack {args.stack}")
    revision = args.base or default_base(root)
    label = git(root, "rev-parse", "--short", revision)
    with checkout(root, revision) as tree:
        base = plan_report(tree / program.relative_to(root), args.stack, runner_root(tree))
    return compare(base, head, label, "working tree")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        diff = make_diff(args)
    except DiffError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    document = {**diff.to_json(), "empty": diff.empty and not diff.cost_drivers}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.format == "json":
        print(json.dumps(document, indent=2))
    else:
        print(render_markdown(diff) if args.format == "markdown" else render_text(diff))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
