"""Plans of this repository's stacks under mocks, made once per test session and shared by the test modules that
only read them (runtime security, compliance)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from runner.plan import Plan, run_program

ROOT = Path(__file__).resolve().parents[1]


@cache
def planned(stack: str) -> Plan:
    return run_program(ROOT, stack)
