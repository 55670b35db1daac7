"""Every stack planned once per session, and its API requests checked once."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.plan import Plan
from tests.plans import planned as stack_plan
from tests.shapes.check import STACKS, ResourceReport, check_plans

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return {stack: stack_plan(stack) for stack in STACKS}


@pytest.fixture(scope="session")
def reports(plans: dict[str, Plan]) -> dict[str, list[ResourceReport]]:
    return check_plans(plans.values())
