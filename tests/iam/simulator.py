"""The one caller of iam-simulate (simulate.mjs): the IAM contract (tests/iam/contract.py) and the bootstrap
tests (tests/ci/iam_trust.py) both evaluate through `simulate`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = ROOT / "node_modules" / "@cloud-copilot" / "iam-simulate" / "package.json"
SIMULATE_SCRIPT = Path(__file__).with_name("simulate.mjs")


def simulate(requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One Node process for the whole batch. Each request is simulate.mjs's input (`id`, `principal`, `action`,
    `resource`, `accountId` of the resource, `identityPolicies`, `permissionBoundaryPolicies`, `resourcePolicy`,
    `context`); returns `{"id", "result", "errors"}` per request, in the order given."""
    if not requests:
        return []
    ensure_simulator()
    completed = subprocess.run(
        [str(node_executable()), str(SIMULATE_SCRIPT)],
        input=json.dumps({"requests": list(requests)}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"iam-simulate failed (exit {completed.returncode}): {completed.stderr[-2000:]}")
    by_id = {result["id"]: result for result in json.loads(completed.stdout)["results"]}
    return [by_id[request["id"]] for request in requests]


def node_executable() -> Path:
    from services.fauxqs import node_executable as venv_node

    return venv_node()


def ensure_simulator() -> None:
    """iam-simulate is an npm dev dependency (package.json), installed with fauxqs by `npm ci`."""
    if SIMULATOR.exists():
        return
    from services.fauxqs import npm_ci

    if npm_ci() != 0 or not SIMULATOR.exists():
        raise RuntimeError("iam-simulate is not installed and `npm ci` failed; run: npm ci (see package.json)")
