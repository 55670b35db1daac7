"""Benchmark: how long the offline plan takes, as users and CI run it (a fresh process each time).

    uv run python bench/plan_speed.py [--runs 5] [--stacks dev,staging,prod,dev-lean]

Each run starts `python -m runner.check --program . --stack <stack> --json` in a new process with
`PYTHONDONTWRITEBYTECODE=1` (as this environment and CI set it, so nothing the run compiles is kept), then
`--all` once per run for every stack in one process. Prints one JSON document: per stack the median, min and
max wall time over the runs, the report's own split (program, policy, cost) of the median run, the all-stacks
times, and whether the installed packages and the project carry bytecode (without it, every run compiles
pulumi_aws; the project's own modules are compiled first, as `./platform` does before every command).
Targets (issue 16): prod <= 3 s cold, all four stacks <= 6 s in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def timed_run(arguments: list[str]) -> tuple[float, dict[str, Any]]:
    """Wall seconds of one fresh `python -m runner.check` process, and its JSON report."""
    environment = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "runner.check", "--program", ".", *arguments, "--json"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        raise SystemExit(f"runner.check {' '.join(arguments)} failed ({completed.returncode}):\n{completed.stderr}")
    return seconds, json.loads(completed.stdout)


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


# The project's modules a plan imports (./platform compiles these and the services' too).
PROJECT_MODULES = ("__main__.py", "components", "policy", "runner")


def compile_project() -> None:
    """As `./platform` does before every command: the project's own bytecode, kept whatever the environment says."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *PROJECT_MODULES], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )


def bytecode_installed() -> dict[str, int]:
    """Compiled modules of pulumi_aws against its sources: the difference between a 3 s and a 10 s plan."""
    package = Path(sysconfig.get_paths()["purelib"]) / "pulumi_aws"
    own = [
        p
        for name in PROJECT_MODULES
        for p in ((ROOT / name).rglob("*.py") if (ROOT / name).is_dir() else [ROOT / name])
    ]
    return {
        "pulumi_aws_sources": sum(1 for _ in package.rglob("*.py")),
        "pulumi_aws_compiled": sum(1 for _ in package.rglob("*.pyc")),
        "project_sources": len(own),
        "project_compiled": sum(1 for p in own if any((p.parent / "__pycache__").glob(f"{p.stem}.*.pyc"))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per stack (default: 5)")
    parser.add_argument("--stacks", default="dev,staging,prod,dev-lean", help="comma-separated stacks")
    args = parser.parse_args()
    stacks = [stack.strip() for stack in args.stacks.split(",") if stack.strip()]
    compile_project()

    single: dict[str, Any] = {}
    for stack in stacks:
        runs = [timed_run(["--stack", stack]) for _ in range(args.runs)]
        times = [seconds for seconds, _ in runs]
        median_report = sorted(runs, key=lambda run: run[0])[len(runs) // 2][1]
        single[stack] = {**summary(times), "split_s": median_report["seconds"]}
    together = [timed_run(["--stacks", ",".join(stacks)])[0] for _ in range(args.runs)]
    print(
        json.dumps(
            {
                "runs": args.runs,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "bytecode": bytecode_installed(),
                "single_stack_cold": single,
                "all_stacks_one_process": {"stacks": stacks, **summary(together)},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
