"""The Dockerfile part of the CIS Docker Benchmark v1.6.0 report, standard library only, so that the CodeBuild
pipeline can write it next to its scan reports (components/buildspec.py) and runner/compliance.py can use the same
mapping:

    python3 runner/dockerfile_cis.py --hadolint-json reports/api-hadolint.json services/api/Dockerfile

hadolint's rules evidence the items it covers; three structural checks cover what hadolint has no rule for: a USER
in the final stage (4.1), a HEALTHCHECK there (4.6), no package-index update alone in a RUN (4.7).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# CIS item -> (title, the hadolint rules and structural checks that evidence it).
DOCKERFILE_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "4.1": ("Ensure that a user for the container has been created", ("DL3002", "CP-USER")),
    "4.2": ("Ensure that containers use only trusted base images", ("DL3006", "DL3007")),
    "4.3": ("Ensure that unnecessary packages are not installed in the container", ("DL3015",)),
    "4.6": ("Ensure that HEALTHCHECK instructions have been added to container images", ("CP-HEALTHCHECK",)),
    "4.7": ("Ensure update instructions are not used alone in the Dockerfile", ("CP-UPDATE-ALONE",)),
    "4.9": ("Ensure that COPY is used instead of ADD in Dockerfiles", ("DL3020",)),
}


@dataclass(frozen=True)
class DockerfileFinding:
    path: str
    line: int
    rule: str
    message: str


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    found: list[tuple[int, str, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        if stripped.startswith("#"):
            continue
        pending.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            keyword, _, arguments = " ".join(pending).partition(" ")
            found.append((start, keyword.upper(), arguments))
            pending = []
    return found


UPDATE = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf)\s+(update|check-update)\b")
INSTALL = re.compile(r"\b(apt-get|apt|apk|yum|dnf|microdnf)\s+(install|add|upgrade)\b")


def structural_findings(path: Path, shown: str) -> list[DockerfileFinding]:
    """CIS items hadolint has no rule for: a USER (4.1), a HEALTHCHECK (4.6), no index update alone (4.7)."""
    steps = instructions(path.read_text(encoding="utf-8"))
    findings = []
    last_stage = max((i for i, (_, keyword, _) in enumerate(steps) if keyword == "FROM"), default=0)
    final = steps[last_stage:]
    if not any(keyword == "USER" for _, keyword, _ in final):
        findings.append(
            DockerfileFinding(shown, 1, "CP-USER", "the final stage sets no USER: the container runs as root")
        )
    if not any(keyword == "HEALTHCHECK" for _, keyword, _ in final):
        findings.append(DockerfileFinding(shown, 1, "CP-HEALTHCHECK", "the final stage has no HEALTHCHECK"))
    for line, keyword, arguments in steps:
        if keyword == "RUN" and UPDATE.search(arguments) and not INSTALL.search(arguments):
            findings.append(
                DockerfileFinding(
                    shown, line, "CP-UPDATE-ALONE", "a package index update without an install in the same RUN"
                )
            )
    return findings


def item_results(findings: Sequence[DockerfileFinding]) -> list[dict[str, object]]:
    """Each Dockerfile item's status (`fail` with the findings, else `pass`) for one Dockerfile."""
    results: list[dict[str, object]] = []
    for item, (title, rules) in DOCKERFILE_ITEMS.items():
        found = [asdict(f) for f in findings if f.rule in rules]
        results.append({"id": item, "title": title, "rules": list(rules), "status": "fail" if found else "pass",
                        "evidence": found})  # fmt: skip
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CIS Docker Benchmark items of one Dockerfile, as JSON")
    parser.add_argument("--hadolint-json", required=True, help="hadolint --format json output for the Dockerfile")
    parser.add_argument("dockerfile")
    args = parser.parse_args(argv)
    raw = json.loads(Path(args.hadolint_json).read_text(encoding="utf-8") or "[]")
    findings = [DockerfileFinding(args.dockerfile, int(i["line"]), i["code"], i["message"]) for i in raw]
    findings += structural_findings(Path(args.dockerfile), args.dockerfile)
    report = {"benchmark": "CIS Docker Benchmark v1.6.0", "dockerfile": args.dockerfile,
              "items": item_results(findings)}  # fmt: skip
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
