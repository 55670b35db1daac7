"""Plan time and resources per configured service: offline plans of a stack with 5, 20 and 50 services.

    uv run python bench/plan_services.py [--counts 5 20 50] [--runs 3] [--entry httpApi|alb]

Each plan runs `python -m runner.check --json` in a fresh process on a temporary copy of the program whose only
stack file configures N services (pinned images, a chain of calls, every other service public with two routes),
and reports the seconds (best of --runs), the stack's resources, those inside the services' components, and the
mandatory policy violations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PROGRAM_FILES = ("__main__.py", "Pulumi.yaml", "components", "services", "lambdas")
MICROSERVICE = "container-platform:microservice:Microservice"


def service_entry(index: int) -> list[str]:
    name = f"svc{index:02d}"
    lines = [
        f"    {name}:",
        f"      image: 210987654321.dkr.ecr.us-east-1.amazonaws.com/bench-{name}@sha256:{index:064x}",
        f"      port: {8080 + index}",
        "      healthCheckCommand: [CMD, /app/healthcheck]",
    ]
    if index % 2 == 0:
        lines.append(f'      routes: ["GET /{name}/{{id}}", "ANY /{name}/admin/{{proxy+}}"]')
    if index > 0:
        lines.append(f"      calls: [svc{index - 1:02d}]")
    return lines


def stack_yaml(count: int, entry: str) -> str:
    lines = [
        "config:",
        "  aws:region: us-east-1",
        "  aws:defaultTags:",
        "    tags:",
        "      environment: dev",
        "  container-platform:environment: dev",
        "  container-platform:applicationName: bench",
        f"  container-platform:entry: {entry}",
        "  container-platform:jobPlatform:",
        f"    enabled: {'false' if entry == 'httpApi' else 'true'}",
        "  container-platform:services:",
    ]
    for index in range(count):
        lines += service_entry(index)
    return "\n".join(lines) + "\n"


def copy_program(directory: Path, count: int, entry: str) -> Path:
    for name in PROGRAM_FILES:
        (directory / name).symlink_to(ROOT / name)
    (directory / "Pulumi.bench.yaml").write_text(stack_yaml(count, entry))
    return directory


def plan(program: Path) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "runner.check", "--program", str(program), "--stack", "bench", "--json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if completed.returncode not in (0, 1):
        raise RuntimeError(completed.stderr[-3000:])
    return seconds, json.loads(completed.stdout)


def in_services(report: dict[str, Any]) -> int:
    """Resources whose parent chain reaches a Microservice component (the components included)."""
    parents = {r["urn"]: r.get("parent") for r in report["resources"]}
    services = {r["urn"] for r in report["resources"] if r["type"] == MICROSERVICE}

    def inside(urn: str | None) -> bool:
        while urn is not None:
            if urn in services:
                return True
            urn = parents.get(urn)
        return False

    return sum(1 for r in report["resources"] if inside(r["urn"]))


def measure(count: int, runs: int, entry: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="plan-services-") as directory:
        program = copy_program(Path(directory), count, entry)
        timings, report = [], {}
        for _ in range(runs):
            seconds, report = plan(program)
            timings.append(seconds)
    services = in_services(report)
    return {
        "services": count,
        "seconds": round(min(timings), 2),
        "resources": len(report["resources"]),
        "in_services": services,
        "per_service": round(services / count, 1),
        "mandatory": report["mandatory"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--entry", choices=("httpApi", "alb"), default="httpApi")
    args = parser.parse_args(argv)
    print("| services | plan seconds (best of runs) | resources | in services | per service | mandatory |")
    print("| --- | --- | --- | --- | --- | --- |")
    for count in args.counts:
        row = measure(count, args.runs, args.entry)
        print(
            f"| {row['services']} | {row['seconds']} | {row['resources']} | {row['in_services']} | "
            f"{row['per_service']} | {row['mandatory']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
