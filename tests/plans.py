"""Plans of this repository's stacks under mocks, made once per test session and shared by every test module that
only reads them (program, shapes, IAM contract, deploy role, sandbox, cost, runtime security, compliance): a plan
takes one to three seconds, and the suite used to make each stack's a dozen times."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from runner.plan import Plan, run_program

ROOT = Path(__file__).resolve().parents[1]


@cache
def planned(stack: str) -> Plan:
    return run_program(ROOT, stack)
